DROP INDEX resources_by_type_and_patient;
DROP TABLE export_jobs;
