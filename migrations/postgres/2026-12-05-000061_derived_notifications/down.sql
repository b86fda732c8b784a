-- Back to stored notifications only; see the SQLite down migration: the notifications
-- derived since the upgrade, their read marks and deliveries go, the entries stay.
DROP TABLE notification_derivation;
DELETE FROM notification_deliveries WHERE audit_seq IS NOT NULL;
DROP INDEX notification_deliveries_pending;
ALTER TABLE notification_deliveries DROP COLUMN audit_seq;
ALTER TABLE notification_deliveries DROP COLUMN patient_id;
ALTER TABLE notification_deliveries ADD CONSTRAINT notification_deliveries_notification_id_fkey
    FOREIGN KEY (notification_id) REFERENCES notifications (id);
DROP TABLE notification_reads;
DROP INDEX audit_entries_notices;
ALTER TABLE audit_entries DROP COLUMN notice;
