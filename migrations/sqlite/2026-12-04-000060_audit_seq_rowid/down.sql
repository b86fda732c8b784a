-- Back to `seq BIGINT PRIMARY KEY` (a rowid and an index on seq) and the IN-list CHECK of
-- 2026-12-03-000053; every row is kept. The same rebuild as up.sql.
CREATE TABLE audit_entries_next (
    seq        BIGINT  NOT NULL PRIMARY KEY,
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
        CHECK (kind IN ('break_glass', 'disclosure', 'access_request', 'amendment', 'delegation', 'delegate_action', 'share_link')),
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
