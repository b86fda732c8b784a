DROP TABLE assertion_jtis;
DROP TABLE revoked_tokens;
DROP TABLE clients;
