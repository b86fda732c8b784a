-- FHIR records: the current version of each resource, every version, and its search index.
-- Times are microseconds since the Unix epoch (BIGINT) so both backends compare them alike.

CREATE TABLE resources (
    resource_type  TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    version_id     BIGINT  NOT NULL,
    last_updated   BIGINT  NOT NULL,
    -- The Patient the resource belongs to (its own id for a Patient); NULL when none.
    patient_id     TEXT,
    -- The resource's clinical date as a range, NULL when it has none.
    clinical_start BIGINT,
    clinical_end   BIGINT,
    body           TEXT    NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX resources_by_id ON resources (id);
CREATE INDEX resources_by_patient ON resources (patient_id, resource_type);
CREATE INDEX resources_by_last_updated ON resources (resource_type, last_updated);

CREATE TABLE resource_versions (
    resource_type TEXT   NOT NULL,
    id            TEXT   NOT NULL,
    version_id    BIGINT NOT NULL,
    last_updated  BIGINT NOT NULL,
    body          TEXT   NOT NULL,
    PRIMARY KEY (resource_type, id, version_id)
);

-- Token search terms: kind is 'code', 'category', 'security' or 'identifier';
-- token is 'system|code' so that a system-qualified search is one equality.
CREATE TABLE resource_tokens (
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    system        TEXT NOT NULL,
    code          TEXT NOT NULL,
    token         TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id, kind, token),
    FOREIGN KEY (resource_type, resource_id) REFERENCES resources (resource_type, id)
);
CREATE INDEX resource_tokens_by_token ON resource_tokens (kind, token);
CREATE INDEX resource_tokens_by_code ON resource_tokens (kind, code);
