-- A version per patient for the release context: see the SQLite migration of the same name
-- for its meaning. Here one function bumps it; each trigger's WHEN keeps the function from
-- running for the rows that do not matter (most resources are not consents).
CREATE TABLE patient_context_versions (
    patient_id TEXT   NOT NULL PRIMARY KEY,
    version    BIGINT NOT NULL
);

CREATE FUNCTION patient_context_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.patient_id IS NOT NULL THEN
        INSERT INTO patient_context_versions AS v (patient_id, version)
            VALUES (OLD.patient_id, 1)
            ON CONFLICT (patient_id) DO UPDATE SET version = v.version + 1;
    END IF;
    IF TG_OP = 'INSERT' AND NEW.patient_id IS NOT NULL
       OR TG_OP = 'UPDATE' AND NEW.patient_id IS NOT NULL
          AND NEW.patient_id IS DISTINCT FROM OLD.patient_id THEN
        INSERT INTO patient_context_versions AS v (patient_id, version)
            VALUES (NEW.patient_id, 1)
            ON CONFLICT (patient_id) DO UPDATE SET version = v.version + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER patient_context_resource_insert AFTER INSERT ON resources FOR EACH ROW
    WHEN (NEW.resource_type IN ('Consent', 'Patient'))
    EXECUTE FUNCTION patient_context_bump();
CREATE TRIGGER patient_context_resource_update AFTER UPDATE ON resources FOR EACH ROW
    WHEN (OLD.resource_type IN ('Consent', 'Patient') OR NEW.resource_type IN ('Consent', 'Patient'))
    EXECUTE FUNCTION patient_context_bump();
CREATE TRIGGER patient_context_resource_delete AFTER DELETE ON resources FOR EACH ROW
    WHEN (OLD.resource_type IN ('Consent', 'Patient'))
    EXECUTE FUNCTION patient_context_bump();
CREATE TRIGGER patient_context_amendment_change AFTER INSERT OR UPDATE OR DELETE ON amendments
    FOR EACH ROW EXECUTE FUNCTION patient_context_bump();
