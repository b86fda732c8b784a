-- Requests to amend a record (HIPAA 45 CFR 164.526; docs/PATIENT_RIGHTS.md): the patient's
-- request, the data source's answer (accept with a corrected version, or deny with a
-- reason), the deadline (60 days, one 30-day extension) and the patient's statement of
-- disagreement, which travels with every later release of the record. Times are
-- microseconds since the Unix epoch.
CREATE TABLE amendments (
    -- UUIDv7: time-ordered, the listings' paging cursor.
    id                  TEXT   NOT NULL PRIMARY KEY,
    patient_id          TEXT   NOT NULL,
    resource_type       TEXT   NOT NULL,
    resource_id         TEXT   NOT NULL,
    -- The version the patient disputed.
    version_id          BIGINT NOT NULL,
    -- The data source client that supplied that version; NULL: the operators answer.
    source_client       TEXT,
    status              TEXT   NOT NULL
        CHECK (status IN ('pending', 'accepted', 'denied')),
    -- Patient/{id}, or RelatedPerson/{id} for a delegate.
    requested_by        TEXT   NOT NULL,
    -- The patient's free text: stored and shown, never logged.
    what_is_wrong       TEXT   NOT NULL,
    proposed_correction TEXT   NOT NULL,
    created             BIGINT NOT NULL,
    due                 BIGINT NOT NULL,
    extended_at         BIGINT,
    extension_reason    TEXT,
    -- When the gateway found it overdue and told the patient (once).
    overdue_at          BIGINT,
    answered_at         BIGINT,
    -- The client id of the data source, or `operator`.
    answered_by         TEXT,
    denial_reason       TEXT,
    corrected_version   BIGINT,
    provenance_id       TEXT,
    -- The statement of disagreement (a gateway-internal DocumentReference) after a denial.
    statement_id        TEXT,
    statement           TEXT,
    statement_at        BIGINT,
    CHECK ((status = 'accepted') = (corrected_version IS NOT NULL)),
    CHECK (statement_id IS NULL OR status = 'denied')
);
CREATE INDEX amendments_patient ON amendments (patient_id, id);
CREATE INDEX amendments_queue ON amendments (source_client, status, id);
CREATE INDEX amendments_pending_due ON amendments (due) WHERE status = 'pending';
CREATE INDEX amendments_disputed ON amendments (patient_id) WHERE statement_id IS NOT NULL;
