DROP INDEX resources_by_patient;
CREATE INDEX resources_by_patient ON resources (patient_id, resource_type);
