-- The notifications of audit entries are derived from the entries: see the SQLite
-- migration of the same name for the reasons and each table's meaning.
ALTER TABLE audit_entries ADD COLUMN notice TEXT;
CREATE INDEX audit_entries_notices ON audit_entries (patient_id, recorded, seq)
    WHERE notice IS NOT NULL;

CREATE TABLE notification_reads (
    patient_id TEXT   NOT NULL,
    audit_seq  BIGINT NOT NULL,
    read_at    BIGINT NOT NULL,
    PRIMARY KEY (patient_id, audit_seq)
);

ALTER TABLE notification_deliveries
    DROP CONSTRAINT notification_deliveries_notification_id_fkey;
ALTER TABLE notification_deliveries ADD COLUMN patient_id TEXT;
UPDATE notification_deliveries d SET patient_id = n.patient_id
    FROM notifications n WHERE n.id = d.notification_id;
ALTER TABLE notification_deliveries ALTER COLUMN patient_id SET NOT NULL;
-- The entry a derived notification reports; NULL for a stored notification.
ALTER TABLE notification_deliveries ADD COLUMN audit_seq BIGINT;
CREATE INDEX notification_deliveries_pending ON notification_deliveries (patient_id)
    WHERE next_attempt_at IS NOT NULL;

CREATE TABLE notification_derivation (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    outbox_next BIGINT  NOT NULL,
    legacy_from BIGINT  NOT NULL,
    legacy_to   BIGINT  NOT NULL
);
INSERT INTO notification_derivation (id, outbox_next, legacy_from, legacy_to)
    SELECT 1, s.legacy_from, s.legacy_from, s.legacy_to
    FROM (SELECT COALESCE((SELECT MAX(audit_seq) + 1 FROM notifications), 0) AS legacy_from,
                 COALESCE((SELECT MAX(seq) + 1 FROM audit_entries), 0) AS legacy_to) s;
