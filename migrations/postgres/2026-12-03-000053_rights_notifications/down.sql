DELETE FROM notification_deliveries WHERE notification_id IN (SELECT id FROM notifications
    WHERE kind NOT IN ('break_glass', 'disclosure', 'access_request'));
DELETE FROM notifications WHERE kind NOT IN ('break_glass', 'disclosure', 'access_request');
ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
    CHECK (kind IN ('break_glass', 'disclosure', 'access_request'));
