-- SMART Health Links (docs/PATIENT_RIGHTS.md): the link's id is the secret part of its
-- manifest URL, so it must never reach the audit log, a notification or the patient's
-- listing. `handle` is the public name of a link (a UUID): what the patient deactivates by,
-- and what audit entries and notifications name. A ticket keeps the recipient named in the
-- manifest request, for the audit entry of the file fetch it leads to.
ALTER TABLE share_links ADD COLUMN handle TEXT;
CREATE UNIQUE INDEX share_links_handle ON share_links (handle);
ALTER TABLE share_link_tickets ADD COLUMN recipient TEXT;
