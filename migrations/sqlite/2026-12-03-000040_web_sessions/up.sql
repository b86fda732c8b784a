-- The patient page (docs/PATIENT_PAGE.md): signed-in sessions, sign-ins under way (OpenID
-- Connect authorization code flow with PKCE), and the development issuer's authorization
-- requests. Times are microseconds since the Unix epoch. Secrets the browser holds (the
-- session cookie, the sign-in binding cookie, authorization codes) are stored only as their
-- SHA-256 (hex), so a copy of this table opens no session.

CREATE TABLE web_sessions (
    -- SHA-256 (hex) of the session cookie's value.
    id_hash    TEXT   NOT NULL PRIMARY KEY,
    -- The signed-in patient (a FHIR id) and their account at the issuer.
    patient_id TEXT   NOT NULL,
    subject    TEXT   NOT NULL,
    -- The issuer that signed them in.
    issuer     TEXT   NOT NULL,
    -- The per-session CSRF token every form carries.
    csrf       TEXT   NOT NULL,
    created    BIGINT NOT NULL,
    expires    BIGINT NOT NULL
);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires);

CREATE TABLE web_sign_ins (
    -- SHA-256 (hex) of the OAuth `state` sent to the issuer.
    state_hash   TEXT   NOT NULL PRIMARY KEY,
    -- SHA-256 (hex) of the binding cookie set in the browser that started the sign-in.
    binding_hash TEXT   NOT NULL,
    -- Which configured issuer (its `iss`).
    issuer       TEXT   NOT NULL,
    -- The OpenID Connect nonce the id_token must carry.
    nonce        TEXT   NOT NULL,
    -- The PKCE code verifier (RFC 7636), sent with the code.
    verifier     TEXT   NOT NULL,
    redirect_uri TEXT   NOT NULL,
    created      BIGINT NOT NULL,
    expires      BIGINT NOT NULL
);
CREATE INDEX web_sign_ins_by_expiry ON web_sign_ins (expires);

CREATE TABLE dev_issuer_requests (
    -- Random; the sign-in form of the development issuer carries it.
    id             TEXT   NOT NULL PRIMARY KEY,
    client_id      TEXT   NOT NULL,
    redirect_uri   TEXT   NOT NULL,
    state          TEXT   NOT NULL,
    nonce          TEXT   NOT NULL,
    -- PKCE S256 challenge.
    code_challenge TEXT   NOT NULL,
    -- Set when the person picks who they are: `Patient/{id}`.
    fhir_user      TEXT,
    -- SHA-256 (hex) of the authorization code, once issued; used once.
    code_hash      TEXT   UNIQUE,
    created        BIGINT NOT NULL,
    expires        BIGINT NOT NULL
);
CREATE INDEX dev_issuer_requests_by_expiry ON dev_issuer_requests (expires);
