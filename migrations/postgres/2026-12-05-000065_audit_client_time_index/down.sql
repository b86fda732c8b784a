-- Back to the two indexes on `audit_entries`, which cover every entry as it is written.
CREATE INDEX audit_entries_by_client ON audit_entries (client_id, seq);
CREATE INDEX audit_entries_by_time ON audit_entries (recorded);
DROP TABLE audit_block_clients;
DROP TABLE audit_blocks;
