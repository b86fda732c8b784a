-- The patient is told of the steps of their rights (docs/PATIENT_RIGHTS.md): amendments,
-- delegations, what a delegate did, and shared links. Each comes from an audit entry, like
-- the existing kinds, so only the list of kinds widens.
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('break_glass', 'disclosure', 'access_request', 'amendment', 'delegation', 'delegate_action', 'share_link'));
