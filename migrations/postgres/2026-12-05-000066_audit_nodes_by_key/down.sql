-- Back to nodes keyed by `(last_leaf, level)`.
ALTER TABLE audit_nodes ADD COLUMN last_leaf BIGINT;
UPDATE audit_nodes SET last_leaf = node_key / 64;
ALTER TABLE audit_nodes ALTER COLUMN last_leaf SET NOT NULL;
ALTER TABLE audit_nodes DROP CONSTRAINT audit_nodes_pkey;
ALTER TABLE audit_nodes ADD PRIMARY KEY (last_leaf, level);
ALTER TABLE audit_nodes DROP COLUMN node_key;
