-- The purpose of use a client's token gets when its token request names none (standard SMART
-- Backend Services clients send no purpose); NULL for none.
ALTER TABLE clients ADD COLUMN default_purpose TEXT;
