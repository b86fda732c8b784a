-- The notifications of audit entries are derived from the entries (docs/NOTIFICATIONS.md,
-- "Where notifications come from"; docs/PERFORMANCE.md, "Tenth step"): the audit writer no
-- longer writes a notification row (five b-trees) per disclosure, only the kind of notice an
-- entry calls for, in a column of the entry itself, covered by one partial index.
--
-- * `audit_entries.notice`: the kind (`disclosure`, `break_glass`, ...) or NULL. Not part of
--   the entry's canonical bytes or its leaf hash: it is derived from them by
--   `notify::kind_of`, and can be derived again.
-- * `notification_reads`: the patient's read marks of derived notifications.
-- * `notification_deliveries`: no longer tied to a `notifications` row (a derived
--   notification has none); it names its patient, and its entry for a derived one.
-- * `notification_derivation`: one row. `outbox_next` is the first entry the delivery worker
--   has not yet looked at for webhook deliveries. `legacy_from`..`legacy_to` are the entries
--   written before this migration after the last stored notification: the ones whose
--   notifications a crash of the earlier writer (which held them in memory) could have lost.
--   The writer derives their `notice` once, at its next start.
--
-- Stored notifications stay as they are, ids and read marks included; the feed shows both.
ALTER TABLE audit_entries ADD COLUMN notice TEXT;
CREATE INDEX audit_entries_notices ON audit_entries (patient_id, recorded, seq)
    WHERE notice IS NOT NULL;

CREATE TABLE notification_reads (
    patient_id TEXT   NOT NULL,
    audit_seq  BIGINT NOT NULL,
    read_at    BIGINT NOT NULL,
    PRIMARY KEY (patient_id, audit_seq)
);

-- SQLite cannot drop a foreign key in place: the table is rebuilt, every row kept.
CREATE TABLE notification_deliveries_next (
    notification_id TEXT    NOT NULL PRIMARY KEY,
    patient_id      TEXT    NOT NULL,
    -- The entry a derived notification reports; NULL for a stored notification.
    audit_seq       BIGINT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    delivered_at    BIGINT,
    last_status     TEXT
);
INSERT INTO notification_deliveries_next
        (notification_id, patient_id, audit_seq, attempts, next_attempt_at, delivered_at,
         last_status)
    SELECT d.notification_id, n.patient_id, NULL, d.attempts, d.next_attempt_at,
           d.delivered_at, d.last_status
    FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id;
DROP TABLE notification_deliveries;
ALTER TABLE notification_deliveries_next RENAME TO notification_deliveries;
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
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
