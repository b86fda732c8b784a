-- FHIR Bulk Data exports of a study Group (docs/EXPORT.md). One row per job, so that any
-- instance can answer a status request; the work itself runs on the instance that accepted
-- the job, which keeps `heartbeat` fresh. A running job whose heartbeat is older than the
-- timeout is marked failed by whichever instance is asked next. Times are microseconds since
-- the Unix epoch, like the audit log's.

CREATE TABLE export_jobs (
    -- UUIDv7.
    id               TEXT   NOT NULL PRIMARY KEY,
    -- The researcher client that asked; the only one that sees the job.
    client_id        TEXT   NOT NULL,
    -- The Group id of the study exported.
    study            TEXT   NOT NULL,
    -- The purpose of use of the kick-off token.
    purpose          TEXT   NOT NULL,
    -- The kick-off URL, echoed as the manifest's `request`.
    request_url      TEXT   NOT NULL,
    -- The `_type` list, comma-separated; empty for every type.
    types            TEXT   NOT NULL,
    -- `_since`, when given.
    since_micros     BIGINT,
    status           TEXT   NOT NULL
        CHECK (status IN ('running', 'complete', 'failed', 'cancelled')),
    -- The manifest's `transactionTime`: when the job was accepted.
    transaction_time BIGINT NOT NULL,
    heartbeat        BIGINT NOT NULL,
    patients_done    BIGINT NOT NULL DEFAULT 0,
    patients_total   BIGINT,
    -- JSON array of {"type", "count"} once complete; counts only, never record content.
    output_files     TEXT,
    -- A stable code and a client-safe message once failed.
    error_code       TEXT,
    error_message    TEXT,
    completed        BIGINT,
    -- After this the files are removed and the job answers 404.
    expires          BIGINT
);
CREATE INDEX export_jobs_by_client ON export_jobs (client_id, status);

-- The export's members are the distinct owners of Consent resources.
CREATE INDEX resources_by_type_and_patient ON resources (resource_type, patient_id);
