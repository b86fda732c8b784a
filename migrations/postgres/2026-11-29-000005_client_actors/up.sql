-- The FHIR references a client acts as (Organization/x, Practitioner/y, Group/study), which a
-- patient's consent names as its actor. JSON array; the client's own Device/{id} is implied.
ALTER TABLE clients ADD COLUMN acts_as TEXT NOT NULL DEFAULT '[]';
