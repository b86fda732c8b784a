-- Back to stored notifications only. The notifications derived since the upgrade are not
-- stored back (their summaries are computed by the code, not SQL): they, their read marks
-- and their deliveries go, and the entries stay, so nothing reported is lost from the
-- access log. Stored notifications and their deliveries are kept as they are.
DROP TABLE notification_derivation;
CREATE TABLE notification_deliveries_next (
    notification_id TEXT    NOT NULL PRIMARY KEY REFERENCES notifications (id),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    delivered_at    BIGINT,
    last_status     TEXT
);
INSERT INTO notification_deliveries_next
        (notification_id, attempts, next_attempt_at, delivered_at, last_status)
    SELECT notification_id, attempts, next_attempt_at, delivered_at, last_status
    FROM notification_deliveries WHERE audit_seq IS NULL;
DROP TABLE notification_deliveries;
ALTER TABLE notification_deliveries_next RENAME TO notification_deliveries;
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
DROP TABLE notification_reads;
DROP INDEX audit_entries_notices;
ALTER TABLE audit_entries DROP COLUMN notice;
