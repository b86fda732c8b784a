-- Tree nodes keyed by the leaf that completes them, `last_leaf = ((idx + 1) << level) - 1`,
-- so that every group commit appends its nodes at the right edge of one index instead of at
-- one place per level (docs/AUDIT.md). The same key as on SQLite.
ALTER TABLE audit_nodes ADD COLUMN last_leaf BIGINT;
UPDATE audit_nodes SET last_leaf = ((idx + 1) << level) - 1;
ALTER TABLE audit_nodes ALTER COLUMN last_leaf SET NOT NULL;
ALTER TABLE audit_nodes DROP CONSTRAINT audit_nodes_pkey;
ALTER TABLE audit_nodes ADD PRIMARY KEY (last_leaf, level);
