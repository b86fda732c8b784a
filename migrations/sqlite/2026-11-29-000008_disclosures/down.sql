DROP TABLE disclosure_retrievals;
DROP TABLE disclosures;
