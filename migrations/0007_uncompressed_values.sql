-- Sample and feature values are float arrays that do not compress: store them out of line
-- without trying (Postgres spent ~7 % of the machine's CPU on pglz in the pipeline bench).
ALTER TABLE samples ALTER COLUMN "values" SET STORAGE EXTERNAL;
ALTER TABLE features ALTER COLUMN "values" SET STORAGE EXTERNAL;
