ALTER TABLE resource_versions DROP COLUMN source_client;
ALTER TABLE resources DROP COLUMN source_client;
