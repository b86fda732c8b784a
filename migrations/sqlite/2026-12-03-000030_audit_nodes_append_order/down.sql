CREATE TABLE audit_nodes_by_level (
    level INTEGER NOT NULL,
    idx   BIGINT  NOT NULL,
    hash  BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
);
INSERT INTO audit_nodes_by_level (level, idx, hash) SELECT level, idx, hash FROM audit_nodes;
DROP TABLE audit_nodes;
ALTER TABLE audit_nodes_by_level RENAME TO audit_nodes;
