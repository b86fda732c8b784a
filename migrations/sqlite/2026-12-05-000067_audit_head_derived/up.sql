-- SQLite's log size is the entries' own: `audit_head` becomes a view of the highest
-- sequence plus one (docs/PERFORMANCE.md, "Eighteenth step").
--
-- The head row was replaced on every group commit of the audit writer: one more statement
-- and one more page of the write-ahead log per commit, for a number the entries already
-- hold. On PostgreSQL the row stays, because its row lock orders the appends of every
-- instance; on SQLite the writer's `IMMEDIATE` transaction holds the database's write lock,
-- and sequences are the table's rowids, so the highest is found at the b-tree's right edge
-- (one descent: the maximum is a subquery of its own, which SQLite answers from the
-- b-tree's edge; `MAX(seq)` among the view's own columns would scan the whole log).
--
-- The row and the entries commit together, so they agree. If they do not, entries were cut
-- from the tail or written around the gateway: the migration stops here rather than lose
-- the difference, and `consentgate audit verify` on the old build says where.
CREATE TEMPORARY TABLE audit_head_check (
    agrees INTEGER NOT NULL CONSTRAINT audit_head_matches_the_entries CHECK (agrees)
);
INSERT INTO audit_head_check (agrees)
    SELECT (SELECT size FROM audit_head) = (SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_entries);
DROP TABLE audit_head_check;

DROP TABLE audit_head;
CREATE VIEW audit_head (id, size) AS
    SELECT 1, COALESCE((SELECT MAX(seq) FROM audit_entries) + 1, 0);
