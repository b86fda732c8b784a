-- People's jobs go with the column that tells them from clients' jobs.
DELETE FROM export_jobs WHERE owner_kind <> 'client';
ALTER TABLE export_jobs DROP COLUMN owner_kind;
