-- Two costs of every group commit of the audit writer (docs/PERFORMANCE.md, "Seventh step"):
--
-- 1. `audit_entries.seq` was declared `BIGINT PRIMARY KEY`. In SQLite only the exact type
--    `INTEGER PRIMARY KEY` makes a column the rowid, so the table had a hidden rowid and a
--    second b-tree (`sqlite_autoindex_audit_entries_1`) mapping `seq` to it: one more index
--    insert per entry and about two more pages written per commit. As `INTEGER PRIMARY KEY`
--    the entries are stored by `seq` itself. Values and their meaning do not change.
-- 2. The CHECK on `notifications.kind` was `kind IN (seven values)`. SQLite evaluates an
--    IN list of that length by building a temporary b-tree of the values, on every insert,
--    so every disclosure's notification paid for one. The same rule written with `OR`
--    compares in place.
--
-- SQLite cannot change a primary key or a CHECK in place: the three tables are rebuilt under
-- new names, the old ones dropped (children first, so no foreign key is ever broken), and
-- the new ones renamed, which rewrites the references. Every row is copied as it was.
CREATE TABLE audit_entries_next (
    seq        INTEGER NOT NULL PRIMARY KEY,
    recorded   BIGINT  NOT NULL,
    action     TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    patient_id TEXT,
    -- The entry's canonical bytes (JSON), exactly what its leaf hash covers.
    body       TEXT    NOT NULL
);
INSERT INTO audit_entries_next (seq, recorded, action, outcome, client_id, patient_id, body)
    SELECT seq, recorded, action, outcome, client_id, patient_id, body FROM audit_entries;
CREATE TABLE notifications_next (
    id                TEXT   NOT NULL PRIMARY KEY,
    patient_id        TEXT   NOT NULL,
    kind              TEXT   NOT NULL
        CHECK (kind = 'break_glass' OR kind = 'disclosure' OR kind = 'access_request'
            OR kind = 'amendment' OR kind = 'delegation' OR kind = 'delegate_action'
            OR kind = 'share_link'),
    created           BIGINT NOT NULL,
    audit_seq         BIGINT REFERENCES audit_entries_next (seq),
    access_request_id TEXT,
    summary           TEXT   NOT NULL,
    read_at           BIGINT,
    CHECK ((kind = 'access_request') = (access_request_id IS NOT NULL)),
    CHECK (kind = 'access_request' OR audit_seq IS NOT NULL)
);
INSERT INTO notifications_next
        (id, patient_id, kind, created, audit_seq, access_request_id, summary, read_at)
    SELECT id, patient_id, kind, created, audit_seq, access_request_id, summary, read_at
    FROM notifications;
CREATE TABLE notification_deliveries_next (
    notification_id TEXT    NOT NULL PRIMARY KEY REFERENCES notifications_next (id),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    delivered_at    BIGINT,
    last_status     TEXT
);
INSERT INTO notification_deliveries_next
        (notification_id, attempts, next_attempt_at, delivered_at, last_status)
    SELECT notification_id, attempts, next_attempt_at, delivered_at, last_status
    FROM notification_deliveries;
DROP TABLE notification_deliveries;
DROP TABLE notifications;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_next RENAME TO audit_entries;
ALTER TABLE notifications_next RENAME TO notifications;
ALTER TABLE notification_deliveries_next RENAME TO notification_deliveries;
CREATE INDEX audit_entries_by_patient ON audit_entries (patient_id, seq);
CREATE INDEX audit_entries_by_client ON audit_entries (client_id, seq);
CREATE INDEX audit_entries_by_time ON audit_entries (recorded);
CREATE UNIQUE INDEX notifications_once_per_entry ON notifications (audit_seq);
CREATE UNIQUE INDEX notifications_once_per_request ON notifications (access_request_id)
    WHERE access_request_id IS NOT NULL;
CREATE INDEX notifications_feed ON notifications (patient_id, id);
CREATE INDEX notifications_unread ON notifications (patient_id, id) WHERE read_at IS NULL;
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
