-- The patient is told of the steps of their rights (docs/PATIENT_RIGHTS.md): amendments,
-- delegations, what a delegate did, and shared links. Each comes from an audit entry, like
-- the existing kinds, so only the list of kinds widens. SQLite cannot change a CHECK in
-- place: both tables are rebuilt under new names, the old ones dropped (child first, so no
-- foreign key is ever broken), and the new ones renamed, which rewrites the reference.
CREATE TABLE notifications_next (
    id                TEXT   NOT NULL PRIMARY KEY,
    patient_id        TEXT   NOT NULL,
    kind              TEXT   NOT NULL
        CHECK (kind IN ('break_glass', 'disclosure', 'access_request', 'amendment', 'delegation', 'delegate_action', 'share_link')),
    created           BIGINT NOT NULL,
    audit_seq         BIGINT REFERENCES audit_entries (seq),
    access_request_id TEXT,
    summary           TEXT   NOT NULL,
    read_at           BIGINT,
    CHECK ((kind = 'access_request') = (access_request_id IS NOT NULL)),
    CHECK (kind = 'access_request' OR audit_seq IS NOT NULL)
);
INSERT INTO notifications_next
    SELECT id, patient_id, kind, created, audit_seq, access_request_id, summary, read_at
    FROM notifications WHERE kind IN ('break_glass', 'disclosure', 'access_request', 'amendment', 'delegation', 'delegate_action', 'share_link');
CREATE TABLE notification_deliveries_next (
    notification_id TEXT    NOT NULL PRIMARY KEY REFERENCES notifications_next (id),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    delivered_at    BIGINT,
    last_status     TEXT
);
INSERT INTO notification_deliveries_next
    SELECT notification_id, attempts, next_attempt_at, delivered_at, last_status
    FROM notification_deliveries
    WHERE notification_id IN (SELECT id FROM notifications_next);
DROP TABLE notification_deliveries;
DROP TABLE notifications;
ALTER TABLE notifications_next RENAME TO notifications;
ALTER TABLE notification_deliveries_next RENAME TO notification_deliveries;
CREATE UNIQUE INDEX notifications_once_per_entry ON notifications (audit_seq);
CREATE UNIQUE INDEX notifications_once_per_request ON notifications (access_request_id);
CREATE INDEX notifications_feed ON notifications (patient_id, id);
CREATE INDEX notifications_unread ON notifications (patient_id, id) WHERE read_at IS NULL;
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
