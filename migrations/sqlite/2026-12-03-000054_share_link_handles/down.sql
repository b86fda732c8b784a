DROP INDEX share_links_handle;
ALTER TABLE share_link_tickets DROP COLUMN recipient;
ALTER TABLE share_links DROP COLUMN handle;
