-- Version 2: the schema's version is kept by the migrations themselves, in
-- schemaversion (one row per applied migration), so the single-row version table of
-- the first release goes.
DROP TABLE schema_version;
