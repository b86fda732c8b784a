-- The audit log: entries (each a Merkle leaf), the stored perfect-subtree nodes of the
-- RFC 9162 tree, signed checkpoints, and the head row whose lock orders appends from every
-- gateway instance into one sequence without gaps.

CREATE TABLE audit_head (
    id   INTEGER NOT NULL PRIMARY KEY,
    size BIGINT  NOT NULL
);
INSERT INTO audit_head (id, size) VALUES (1, 0);

CREATE TABLE audit_entries (
    seq        BIGINT NOT NULL PRIMARY KEY,
    recorded   BIGINT NOT NULL,
    action     TEXT   NOT NULL,
    outcome    TEXT   NOT NULL,
    client_id  TEXT   NOT NULL,
    patient_id TEXT,
    -- The entry's canonical bytes (JSON), exactly what its leaf hash covers.
    body       TEXT   NOT NULL
);
CREATE INDEX audit_entries_by_patient ON audit_entries (patient_id, seq);
CREATE INDEX audit_entries_by_client ON audit_entries (client_id, seq);
CREATE INDEX audit_entries_by_time ON audit_entries (recorded);

CREATE TABLE audit_nodes (
    level INTEGER NOT NULL,
    idx   BIGINT  NOT NULL,
    hash  BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE audit_checkpoints (
    size      BIGINT NOT NULL PRIMARY KEY,
    root      BLOB   NOT NULL,
    note      TEXT   NOT NULL,
    signed_at BIGINT NOT NULL
);
