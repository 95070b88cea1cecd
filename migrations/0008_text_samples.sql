-- Text samples: the document is kept with the sample; the features worker hashes it.
ALTER TABLE projects DROP CONSTRAINT projects_kind_check;
ALTER TABLE projects ADD CONSTRAINT projects_kind_check CHECK (kind IN ('vector', 'timeseries', 'text'));
ALTER TABLE samples ADD COLUMN text text;
