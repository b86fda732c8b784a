DROP TABLE resource_facts_derivation;
ALTER TABLE resources DROP COLUMN facts;
