-- Tree nodes keyed by one integer, `node_key = last_leaf * 64 + level`, as on SQLite, where
-- it is the table's rowid (docs/AUDIT.md, "Storage"): one key and one code path for both.
ALTER TABLE audit_nodes ADD COLUMN node_key BIGINT;
UPDATE audit_nodes SET node_key = last_leaf * 64 + level;
ALTER TABLE audit_nodes ALTER COLUMN node_key SET NOT NULL;
ALTER TABLE audit_nodes DROP CONSTRAINT audit_nodes_pkey;
ALTER TABLE audit_nodes ADD PRIMARY KEY (node_key);
ALTER TABLE audit_nodes DROP COLUMN last_leaf;
