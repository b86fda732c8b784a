-- Back to nodes keyed by `(last_leaf, level)`, without a rowid.
CREATE TABLE audit_nodes_by_leaf (
    last_leaf BIGINT  NOT NULL,
    level     INTEGER NOT NULL,
    idx       BIGINT  NOT NULL,
    hash      BLOB    NOT NULL,
    PRIMARY KEY (last_leaf, level)
) WITHOUT ROWID;
INSERT INTO audit_nodes_by_leaf (last_leaf, level, idx, hash)
    SELECT node_key / 64, level, idx, hash FROM audit_nodes;
DROP TABLE audit_nodes;
ALTER TABLE audit_nodes_by_leaf RENAME TO audit_nodes;
