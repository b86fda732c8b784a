-- Access requests: a recipient client asks a patient for access; the patient approves (a
-- Consent is created and linked here) or declines. A request whose patient identifier
-- matches no stored Patient, or several, is kept too, as `unmatched`: the recipient gets the
-- same answer either way, and only an operator ever sees it.
-- Times are microseconds since the Unix epoch, like the audit log's.

CREATE TABLE access_requests (
    -- UUIDv7: time-ordered, so it is also the listing's paging cursor.
    id                TEXT   NOT NULL PRIMARY KEY,
    client_id         TEXT   NOT NULL REFERENCES clients (id),
    -- The matched Patient's id; NULL when unmatched.
    patient_id        TEXT,
    status            TEXT   NOT NULL
        CHECK (status IN ('pending', 'approved', 'declined', 'unmatched')),
    -- The identifier the recipient gave, as sent (shown to operators only, never logged).
    identifier_system TEXT   NOT NULL,
    identifier_value  TEXT   NOT NULL,
    -- v3 ActReason code.
    purpose           TEXT   NOT NULL,
    -- JSON array of FHIR resource types.
    data_classes      TEXT   NOT NULL,
    -- FHIR dates or dateTimes of the requested data period, as sent.
    period_start      TEXT,
    period_end        TEXT,
    -- The recipient's free text (at most 1000 characters); never logged.
    reason            TEXT   NOT NULL,
    created           BIGINT NOT NULL,
    decided_at        BIGINT,
    -- `patient` or `operator`.
    decided_by        TEXT,
    -- The Consent created on approval.
    consent_id        TEXT,
    CHECK ((status = 'unmatched') = (patient_id IS NULL)),
    CHECK ((status = 'approved') = (consent_id IS NOT NULL)),
    CHECK ((status IN ('approved', 'declined')) = (decided_at IS NOT NULL))
);
CREATE INDEX access_requests_by_patient ON access_requests (patient_id, status, id);
CREATE INDEX access_requests_by_status ON access_requests (status, id);
CREATE INDEX access_requests_by_client ON access_requests (client_id, id);
