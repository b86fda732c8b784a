ALTER TABLE audit_nodes DROP CONSTRAINT audit_nodes_pkey;
ALTER TABLE audit_nodes ADD PRIMARY KEY (level, idx);
ALTER TABLE audit_nodes DROP COLUMN last_leaf;
