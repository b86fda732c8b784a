DROP TABLE notification_deliveries;
DROP TABLE notification_webhooks;
DROP TABLE notifications;
