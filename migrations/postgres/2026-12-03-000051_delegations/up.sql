-- Delegates (docs/PATIENT_RIGHTS.md): a RelatedPerson who acts for a patient within a grant
-- of actions, for a period. A delegate's token names the RelatedPerson; the delegation in
-- force is read afresh on every request, so a revocation holds from the next one. Times are
-- microseconds since the Unix epoch.
CREATE TABLE delegations (
    id                TEXT   NOT NULL PRIMARY KEY,
    patient_id        TEXT   NOT NULL,
    related_person_id TEXT   NOT NULL,
    -- parent, guardian, power_of_attorney, carer
    relationship      TEXT   NOT NULL,
    -- JSON array of action codes (view_access_log, manage_consents, ...).
    actions           TEXT   NOT NULL,
    period_start      BIGINT NOT NULL,
    period_end        BIGINT,
    -- Patient/{id}, or `operator` (then `legal_document` names the authority).
    created_by        TEXT   NOT NULL,
    legal_document    TEXT,
    created           BIGINT NOT NULL,
    ended_at          BIGINT,
    -- revoked, majority (the patient came of age)
    ended_reason      TEXT,
    CHECK ((ended_at IS NULL) = (ended_reason IS NULL))
);
-- At most one delegation in force per RelatedPerson: what its token may do is never a choice.
CREATE UNIQUE INDEX delegations_live ON delegations (related_person_id) WHERE ended_at IS NULL;
CREATE INDEX delegations_patient ON delegations (patient_id, id);
