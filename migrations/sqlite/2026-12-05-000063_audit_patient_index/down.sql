-- Back to the two indexes on `audit_entries`, which cover every entry as it is written.
CREATE INDEX audit_entries_by_patient ON audit_entries (patient_id, seq);
CREATE INDEX audit_entries_notices ON audit_entries (patient_id, recorded, seq)
    WHERE notice IS NOT NULL;
DROP TABLE audit_patient_index;
DROP TABLE audit_patient_notices;
DROP TABLE audit_patient_entries;
