ALTER TABLE clients DROP COLUMN acts_as;
