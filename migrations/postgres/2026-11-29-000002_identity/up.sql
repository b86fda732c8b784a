-- Identity: registered recipient clients, revoked access tokens, and the replay cache of
-- client-assertion ids. All three are shared by every gateway instance on this database,
-- which is what makes a removal or a revocation hold everywhere from the next request.

CREATE TABLE clients (
    id           TEXT   NOT NULL PRIMARY KEY,
    name         TEXT   NOT NULL,
    organization TEXT   NOT NULL,
    role         TEXT   NOT NULL,
    jwks         TEXT,
    jwks_url     TEXT,
    purposes     TEXT   NOT NULL, -- JSON array of v3 ActReason codes
    resources    TEXT   NOT NULL, -- JSON array of resource types, or ["*"]
    created_at   BIGINT NOT NULL,
    removed_at   BIGINT
);

CREATE TABLE revoked_tokens (
    jti        TEXT   NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_by_expiry ON revoked_tokens (expires_at);

CREATE TABLE assertion_jtis (
    client_id  TEXT   NOT NULL,
    jti        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX assertion_jtis_by_expiry ON assertion_jtis (expires_at);
