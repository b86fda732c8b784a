-- Disclosure packages (docs/DISCLOSURES.md): a patient-authorized, frozen and signed FHIR
-- Bundle for one recipient, served until it expires or its retrieval limit is reached, and
-- the time of every retrieval. Times are microseconds since the Unix epoch.

CREATE TABLE disclosures (
    -- UUIDv7; also the Bundle's id.
    id             TEXT   NOT NULL PRIMARY KEY,
    patient_id     TEXT   NOT NULL,
    -- The recipient client's id: the only caller the package is served to.
    recipient      TEXT   NOT NULL,
    -- The v3 ActReason purpose of use the patient authorized.
    purpose        TEXT   NOT NULL,
    -- The authorization the patient signed (Consent.policy.uri), e.g. an SSA-827 form URL.
    policy_uri     TEXT   NOT NULL,
    -- The Consent recorded for it; revoking that consent stops the package.
    consent_id     TEXT   NOT NULL,
    created        BIGINT NOT NULL,
    -- The last instant it may be fetched (inclusive), the end of the consent's period.
    expires        BIGINT NOT NULL,
    max_retrievals BIGINT NOT NULL CHECK (max_retrievals BETWEEN 1 AND 100),
    -- Retrievals counted so far; always the number of disclosure_retrievals rows.
    retrievals     BIGINT NOT NULL DEFAULT 0
        CHECK (retrievals >= 0 AND retrievals <= max_retrievals),
    -- JSON array of the Type/id references in the bundle.
    resources      TEXT   NOT NULL,
    -- The exact bytes served (a FHIR Bundle of type collection) and their SHA-256 (hex).
    bundle         TEXT   NOT NULL,
    bundle_sha256  TEXT   NOT NULL,
    -- The detached JWS (RFC 7515 appendix F) over the bundle bytes.
    signature      TEXT   NOT NULL
);
CREATE INDEX disclosures_by_patient ON disclosures (patient_id, created);

CREATE TABLE disclosure_retrievals (
    -- UUIDv7.
    id            TEXT   NOT NULL PRIMARY KEY,
    disclosure_id TEXT   NOT NULL REFERENCES disclosures (id),
    fetched       BIGINT NOT NULL,
    -- The audit entry of the retrieval, once it is durable.
    audit_seq     BIGINT
);
CREATE INDEX disclosure_retrievals_by_disclosure ON disclosure_retrievals (disclosure_id, fetched);
