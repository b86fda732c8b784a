-- An entry's client and time are found through two more tables the audit writer keeps with
-- the patient index, a step behind its commits and many commits at a time (docs/AUDIT.md,
-- "The patient index"; docs/PERFORMANCE.md, "Seventeenth step"), instead of two indexes on
-- `audit_entries` that every group commit wrote: appended in key order, each was rebalanced
-- at its right edge over and over, four and two pages of a commit's sixteen.
--
-- * `audit_client_entries`: every entry, by (client, sequence).
-- * `audit_time_entries`: every entry, by (recorded, sequence).
--
-- Both cover the entries below `audit_patient_index.next_seq`, as the patient index does;
-- the entries from it on are the log's tail, which readers take from `audit_entries` itself.
-- Rows are only ever derived from `audit_entries` and can be derived again.
CREATE TABLE audit_client_entries (
    client_id TEXT   NOT NULL,
    seq       BIGINT NOT NULL,
    PRIMARY KEY (client_id, seq)
);
CREATE TABLE audit_time_entries (
    recorded BIGINT NOT NULL,
    seq      BIGINT NOT NULL,
    PRIMARY KEY (recorded, seq)
);
INSERT INTO audit_client_entries (client_id, seq)
    SELECT client_id, seq FROM audit_entries
    WHERE seq < (SELECT next_seq FROM audit_patient_index WHERE id = 1);
INSERT INTO audit_time_entries (recorded, seq)
    SELECT recorded, seq FROM audit_entries
    WHERE seq < (SELECT next_seq FROM audit_patient_index WHERE id = 1);
DROP INDEX audit_entries_by_client;
DROP INDEX audit_entries_by_time;
