DROP INDEX notifications_once_per_request;
CREATE UNIQUE INDEX notifications_once_per_request ON notifications (access_request_id);
