-- One number per patient that changes whenever anything a release reads about the patient
-- (besides the requested resource itself) changes: a consent of the patient, the patient's
-- own Patient record, or an amendment request of the patient (the records the patient
-- disputes). A release reads this one row, in its own read transaction, to tell whether the
-- context it parsed earlier is still current (`release::context`, `docs/PERFORMANCE.md`).
--
-- The triggers keep it, so no write path can forget to, on any instance: every write to
-- these rows goes through the database, and the number changes in the same transaction as
-- the write. A patient without a row is at version 0. Rows are never deleted, so a patient's
-- version never repeats while the database lives.
CREATE TABLE patient_context_versions (
    patient_id TEXT   NOT NULL PRIMARY KEY,
    version    BIGINT NOT NULL
);

CREATE TRIGGER patient_context_resource_insert AFTER INSERT ON resources
    WHEN NEW.resource_type IN ('Consent', 'Patient') AND NEW.patient_id IS NOT NULL
BEGIN
    INSERT INTO patient_context_versions (patient_id, version) VALUES (NEW.patient_id, 1)
        ON CONFLICT (patient_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER patient_context_resource_update AFTER UPDATE ON resources
    WHEN OLD.resource_type IN ('Consent', 'Patient') OR NEW.resource_type IN ('Consent', 'Patient')
BEGIN
    INSERT INTO patient_context_versions (patient_id, version)
        SELECT OLD.patient_id, 1 WHERE OLD.patient_id IS NOT NULL
        ON CONFLICT (patient_id) DO UPDATE SET version = version + 1;
    INSERT INTO patient_context_versions (patient_id, version)
        SELECT NEW.patient_id, 1
        WHERE NEW.patient_id IS NOT NULL AND NEW.patient_id IS NOT OLD.patient_id
        ON CONFLICT (patient_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER patient_context_resource_delete AFTER DELETE ON resources
    WHEN OLD.resource_type IN ('Consent', 'Patient') AND OLD.patient_id IS NOT NULL
BEGIN
    INSERT INTO patient_context_versions (patient_id, version) VALUES (OLD.patient_id, 1)
        ON CONFLICT (patient_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER patient_context_amendment_insert AFTER INSERT ON amendments
BEGIN
    INSERT INTO patient_context_versions (patient_id, version) VALUES (NEW.patient_id, 1)
        ON CONFLICT (patient_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER patient_context_amendment_update AFTER UPDATE ON amendments
BEGIN
    INSERT INTO patient_context_versions (patient_id, version) VALUES (OLD.patient_id, 1)
        ON CONFLICT (patient_id) DO UPDATE SET version = version + 1;
    INSERT INTO patient_context_versions (patient_id, version)
        SELECT NEW.patient_id, 1 WHERE NEW.patient_id IS NOT OLD.patient_id
        ON CONFLICT (patient_id) DO UPDATE SET version = version + 1;
END;

CREATE TRIGGER patient_context_amendment_delete AFTER DELETE ON amendments
BEGIN
    INSERT INTO patient_context_versions (patient_id, version) VALUES (OLD.patient_id, 1)
        ON CONFLICT (patient_id) DO UPDATE SET version = version + 1;
END;
