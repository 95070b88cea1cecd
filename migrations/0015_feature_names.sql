-- The names of a project's features, stored once per project: `features` names each column of a
-- vector project (a feature table's header, NEURO-LEARN's feature columns), `regions` names the R
-- regions of a time-series project, whose connectivity features are named by region pairs.
-- Written by `swarm publish` (from the files' headers) and `swarm regions`; no row: the features
-- are unnamed. No foreign key: the names may be stored before the ingest worker creates the
-- project.
CREATE TABLE feature_names (
    project     text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('features', 'regions')),
    names       text[] NOT NULL CHECK (cardinality(names) > 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO feature_names (project, kind, names)
SELECT name, 'regions', region_labels FROM projects
WHERE region_labels IS NOT NULL AND cardinality(region_labels) > 0;
