-- A patient's own Bulk Data export (GET /fhir/Patient/$export, docs/EXPORT.md) runs on the
-- same jobs as a study's. A job is owned either by a recipient client or by a person (the
-- patient, or a delegate reading for them): `owner_kind` says which, and `client_id` then
-- holds the owner's key (the client id, or the person's `Patient/{id}` or
-- `RelatedPerson/{id}`). `study` holds the patient's id for a person's job. Every lookup
-- filters on both columns, so a client and a person can never reach each other's jobs.
ALTER TABLE export_jobs ADD COLUMN owner_kind TEXT NOT NULL DEFAULT 'client'
    CHECK (owner_kind IN ('client', 'person'));
