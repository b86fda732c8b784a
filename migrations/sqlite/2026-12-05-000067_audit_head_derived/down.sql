-- The head row again, at the entries' size.
DROP VIEW audit_head;
CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY,
    size BIGINT  NOT NULL
);
INSERT INTO audit_head (id, size) SELECT 1, COALESCE(MAX(seq) + 1, 0) FROM audit_entries;
