-- Only an access request's notification has an access_request_id; every other notification
-- (a disclosure for each consent-checked read, written by the audit writer in its commit)
-- left a NULL entry in this index for nothing. Partial, it is no longer written on the hot
-- path (docs/PERFORMANCE.md, "Fifth step"); a lookup by request id still uses it, and
-- uniqueness among non-NULL ids is unchanged.
DROP INDEX notifications_once_per_request;
CREATE UNIQUE INDEX notifications_once_per_request ON notifications (access_request_id)
    WHERE access_request_id IS NOT NULL;
