-- No table changes on PostgreSQL. The SQLite migration of the same name makes
-- `audit_entries.seq` the table's rowid and writes the CHECK on `notifications.kind` without an
-- IN list; on PostgreSQL a `BIGINT PRIMARY KEY` is already the table's only key index and an
-- IN list is compared in place. The name is kept in both folders so that the two list the
-- same migrations, and PostgreSQL refuses a migration with no statement, so this one records
-- the column's meaning in the catalogue.
COMMENT ON COLUMN audit_entries.seq IS
    'The entry''s position in the log, from 0: its leaf index in the Merkle tree (docs/AUDIT.md).';
