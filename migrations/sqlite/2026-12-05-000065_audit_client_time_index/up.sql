-- An entry's client and time are found through a summary of the log in blocks, which the
-- audit writer keeps with the patient index, a step behind its commits and many commits at a
-- time (docs/AUDIT.md, "The patient index"; docs/PERFORMANCE.md, "Seventeenth step"),
-- instead of two indexes on `audit_entries` that every group commit wrote: appended in key
-- order, each was rebalanced at its right edge over and over, four and two pages of a
-- commit's sixteen.
--
-- * `audit_blocks`: the log below `audit_patient_index.next_seq` cut into runs of
--   sequences `[first_seq, end_seq)`, each with the earliest and latest time recorded in it.
-- * `audit_block_clients`: which clients have an entry in which block.
--
-- A reader asking for a client's entries, or for those in a time range, scans the blocks
-- that can hold one, newest first, and the log's tail from the cursor on. Rows are only ever
-- derived from `audit_entries` and can be derived again. Here, blocks of 4,096 sequences.
CREATE TABLE audit_blocks (
    first_seq BIGINT NOT NULL PRIMARY KEY,
    end_seq   BIGINT NOT NULL,
    earliest  BIGINT NOT NULL,
    latest    BIGINT NOT NULL
);
CREATE TABLE audit_block_clients (
    client_id TEXT   NOT NULL,
    first_seq BIGINT NOT NULL,
    PRIMARY KEY (client_id, first_seq)
) WITHOUT ROWID;
INSERT INTO audit_blocks (first_seq, end_seq, earliest, latest)
    SELECT seq / 4096 * 4096, MAX(seq) + 1, MIN(recorded), MAX(recorded) FROM audit_entries
    WHERE seq < (SELECT next_seq FROM audit_patient_index WHERE id = 1)
    GROUP BY seq / 4096 * 4096;
INSERT INTO audit_block_clients (client_id, first_seq)
    SELECT DISTINCT client_id, seq / 4096 * 4096 FROM audit_entries
    WHERE seq < (SELECT next_seq FROM audit_patient_index WHERE id = 1);
DROP INDEX audit_entries_by_client;
DROP INDEX audit_entries_by_time;
