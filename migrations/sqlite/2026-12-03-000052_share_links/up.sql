-- SMART Health Links (docs/PATIENT_RIGHTS.md): the encrypted file (a compact JWE whose key
-- is only in the link the patient holds), an optional passcode (a PBKDF2 hash), an expiry
-- and a use limit. `share_link_tickets` are the short-lived, single-use file locations a
-- manifest hands out. Times are microseconds since the Unix epoch.
CREATE TABLE share_links (
    -- 43 characters of base64url randomness (256 bits): the manifest URL's secret part.
    id               TEXT    NOT NULL PRIMARY KEY,
    patient_id       TEXT    NOT NULL,
    label            TEXT,
    created          BIGINT  NOT NULL,
    created_by       TEXT    NOT NULL,
    expires          BIGINT,
    max_uses         BIGINT,
    uses             BIGINT  NOT NULL DEFAULT 0,
    passcode_hash    TEXT,
    failed_passcodes BIGINT  NOT NULL DEFAULT 0,
    content_type     TEXT    NOT NULL,
    -- The compact JWE; the gateway cannot decrypt it.
    jwe              TEXT    NOT NULL,
    -- `Type/id` of what the file holds, JSON array (for the audit entry of each fetch).
    resources        TEXT    NOT NULL,
    deactivated_at   BIGINT
);
CREATE INDEX share_links_patient ON share_links (patient_id, created);

CREATE TABLE share_link_tickets (
    ticket  TEXT   NOT NULL PRIMARY KEY,
    link_id TEXT   NOT NULL REFERENCES share_links (id),
    expires BIGINT NOT NULL
);
