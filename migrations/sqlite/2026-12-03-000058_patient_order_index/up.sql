-- The export reads a page of patients' resources ordered by (patient, type, id). With the id
-- in the index, the rows come out of the index in that order; before, SQLite sorted every
-- page, bodies included, in a temporary b-tree (docs/PERFORMANCE.md, "Export").
DROP INDEX resources_by_patient;
CREATE INDEX resources_by_patient ON resources (patient_id, resource_type, id);
