DROP TRIGGER patient_context_amendment_change ON amendments;
DROP TRIGGER patient_context_resource_delete ON resources;
DROP TRIGGER patient_context_resource_update ON resources;
DROP TRIGGER patient_context_resource_insert ON resources;
DROP FUNCTION patient_context_bump();
DROP TABLE patient_context_versions;
