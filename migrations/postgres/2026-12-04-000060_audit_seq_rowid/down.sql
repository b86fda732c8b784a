COMMENT ON COLUMN audit_entries.seq IS NULL;
