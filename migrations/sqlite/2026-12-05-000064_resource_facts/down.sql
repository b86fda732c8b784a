ALTER TABLE resources DROP COLUMN facts;
