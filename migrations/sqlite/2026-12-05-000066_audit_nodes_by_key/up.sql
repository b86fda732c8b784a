-- Tree nodes keyed by one integer, `node_key = last_leaf * 64 + level`, the table's rowid
-- (docs/AUDIT.md, "Storage"; docs/PERFORMANCE.md, "Seventeenth step"). Keyed by
-- `(last_leaf, level)` without a rowid, the table was an index b-tree filled at its right
-- edge in key order, which SQLite rebalances over and over (three leaves and their parent
-- whenever the rightmost leaf overflows): 3.6 of a group commit's 9.7 pages for about a
-- kilobyte of nodes. A rowid table appends at its end cheaply, and the key keeps the order.
CREATE TABLE audit_nodes_by_key (
    node_key INTEGER NOT NULL PRIMARY KEY,
    level    INTEGER NOT NULL,
    idx      BIGINT  NOT NULL,
    hash     BLOB    NOT NULL
);
INSERT INTO audit_nodes_by_key (node_key, level, idx, hash)
    SELECT last_leaf * 64 + level, level, idx, hash FROM audit_nodes ORDER BY last_leaf, level;
DROP TABLE audit_nodes;
ALTER TABLE audit_nodes_by_key RENAME TO audit_nodes;
