-- A patient's audit entries are found through an index the audit writer keeps a step behind
-- its commits, many commits at a time (docs/AUDIT.md, "The patient index"; docs/PERFORMANCE.md,
-- "Fourteenth step"), instead of two indexes on `audit_entries` that every group commit
-- wrote a leaf of per patient in the batch.
--
-- * `audit_patient_entries`: each entry about a patient, by (patient, sequence).
-- * `audit_patient_notices`: each of those that calls for a notification (`notice` not NULL),
--   by (patient, recorded, sequence), the feed's order.
-- * `audit_patient_index`: one row, `next_seq`: every entry below it is in both tables. The
--   entries from it on are the log's tail, which readers take from `audit_entries` itself.
--
-- Rows are only ever derived from `audit_entries` and can be derived again.
CREATE TABLE audit_patient_entries (
    patient_id TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    PRIMARY KEY (patient_id, seq)
) WITHOUT ROWID;
CREATE TABLE audit_patient_notices (
    patient_id TEXT   NOT NULL,
    recorded   BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    PRIMARY KEY (patient_id, recorded, seq)
) WITHOUT ROWID;
CREATE TABLE audit_patient_index (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    next_seq BIGINT  NOT NULL
);
INSERT INTO audit_patient_entries (patient_id, seq)
    SELECT patient_id, seq FROM audit_entries WHERE patient_id IS NOT NULL;
INSERT INTO audit_patient_notices (patient_id, recorded, seq)
    SELECT patient_id, recorded, seq FROM audit_entries
    WHERE patient_id IS NOT NULL AND notice IS NOT NULL;
INSERT INTO audit_patient_index (id, next_seq)
    SELECT 1, COALESCE(MAX(seq) + 1, 0) FROM audit_entries;
DROP INDEX audit_entries_by_patient;
DROP INDEX audit_entries_notices;
