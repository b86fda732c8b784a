-- On SQLite `audit_head` became a view of the entries' highest sequence plus one
-- (migrations/sqlite/2026-12-05-000067_audit_head_derived). PostgreSQL keeps the row: its
-- row lock orders the appends of every instance sharing the database. Only its description
-- changes, so the two backends keep the same list of migrations.
COMMENT ON TABLE audit_head IS
    'The audit log size, moved with every append; its row lock orders appends from every instance';
