-- Patient notifications (docs/NOTIFICATIONS.md): an outbox written in the same transaction
-- as the event it reports, so a notification is never lost and never written twice; the
-- patient's webhook registration; and the push-delivery state the worker resumes from after
-- a restart. Times are microseconds since the Unix epoch, like the audit log's.

CREATE TABLE notifications (
    -- UUIDv7: time-ordered, so it is also the feed's paging cursor.
    id                TEXT   NOT NULL PRIMARY KEY,
    patient_id        TEXT   NOT NULL,
    kind              TEXT   NOT NULL
        CHECK (kind IN ('break_glass', 'disclosure', 'access_request')),
    created           BIGINT NOT NULL,
    -- The audit entry reported (break_glass, disclosure); its details are in the access log.
    audit_seq         BIGINT REFERENCES audit_entries (seq),
    -- The access request reported (access_request).
    access_request_id TEXT,
    -- JSON object of ids and codes only, never record content or free text.
    summary           TEXT   NOT NULL,
    read_at           BIGINT,
    CHECK ((kind = 'access_request') = (access_request_id IS NOT NULL)),
    CHECK (kind = 'access_request' OR audit_seq IS NOT NULL)
);
-- One notification per audit entry and per access request, whatever retries happen.
CREATE UNIQUE INDEX notifications_once_per_entry ON notifications (audit_seq);
CREATE UNIQUE INDEX notifications_once_per_request ON notifications (access_request_id);
CREATE INDEX notifications_feed ON notifications (patient_id, id);
CREATE INDEX notifications_unread ON notifications (patient_id, id) WHERE read_at IS NULL;

CREATE TABLE notification_webhooks (
    patient_id TEXT   NOT NULL PRIMARY KEY,
    -- https only (checked by the API).
    url        TEXT   NOT NULL,
    -- The HMAC-SHA256 key of the X-Consentgate-Signature header; shown to the patient once.
    secret     TEXT   NOT NULL,
    created    BIGINT NOT NULL
);

-- One row per notification that had a webhook to go to when it was written.
CREATE TABLE notification_deliveries (
    notification_id TEXT    NOT NULL PRIMARY KEY REFERENCES notifications (id),
    -- Attempts started (claimed), including one that may be in flight.
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- When the worker next picks the row up; NULL once finished (delivered or given up).
    next_attempt_at BIGINT,
    delivered_at    BIGINT,
    -- The outcome of the latest attempt, a code such as http_500 or timeout.
    last_status     TEXT
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
