-- The data source that supplied a record (docs/PATIENT_RIGHTS.md, "Corrections"): the client
-- id of the `data_source` client that created it, NULL for records the operators or the
-- gateway wrote. Each version row names the data source that wrote that version (NULL: an
-- operator or the gateway). Existing rows were all written by operators: NULL.
ALTER TABLE resources ADD COLUMN source_client TEXT;
ALTER TABLE resource_versions ADD COLUMN source_client TEXT;
