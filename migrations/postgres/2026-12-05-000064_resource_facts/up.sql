-- The facts a consent decision reads of a resource (its classes, codes, security labels,
-- clinical period, references, whether it is gateway-internal, the categories a scope may
-- narrow to), derived once when the version is written (`decision::stored`) and read back
-- instead of parsing the body: JSON, with the derivation's version in it. NULL for rows
-- written before, and for rows whose facts came from an older derivation, which are then
-- derived from the body as before.
ALTER TABLE resources ADD COLUMN facts TEXT;

-- Which derivation's facts every row has been given (`records::facts::backfill`, run by
-- `serve` in the background after an upgrade): 0 until the first walk is through.
CREATE TABLE resource_facts_derivation (
    id      INTEGER PRIMARY KEY,
    version INTEGER NOT NULL
);
INSERT INTO resource_facts_derivation (id, version) VALUES (1, 0);
