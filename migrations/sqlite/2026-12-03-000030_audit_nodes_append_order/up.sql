-- Tree nodes keyed by the leaf that completes them, `last_leaf = ((idx + 1) << level) - 1`,
-- so that every group commit appends its nodes at the end of one b-tree instead of at one
-- place per level (half-empty pages, a dozen more pages written per commit; docs/AUDIT.md).
-- WITHOUT ROWID: the key is the table, no second b-tree.
CREATE TABLE audit_nodes_by_leaf (
    last_leaf BIGINT  NOT NULL,
    level     INTEGER NOT NULL,
    idx       BIGINT  NOT NULL,
    hash      BLOB    NOT NULL,
    PRIMARY KEY (last_leaf, level)
) WITHOUT ROWID;
INSERT INTO audit_nodes_by_leaf (last_leaf, level, idx, hash)
    SELECT ((idx + 1) << level) - 1, level, idx, hash FROM audit_nodes;
DROP TABLE audit_nodes;
ALTER TABLE audit_nodes_by_leaf RENAME TO audit_nodes;
