DROP TABLE share_link_tickets;
DROP TABLE share_links;
