DROP TABLE resource_tokens;
DROP TABLE resource_versions;
DROP TABLE resources;
