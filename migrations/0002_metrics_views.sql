-- Per-fold metrics as an open map (more metrics need no new column), and the analyst views.

ALTER TABLE folds ADD COLUMN metrics jsonb NOT NULL DEFAULT '{}';
UPDATE folds SET metrics = jsonb_build_object('accuracy', accuracy, 'balanced_accuracy', balanced_accuracy);

-- One row per run with its headline metrics.
CREATE VIEW report_summary AS
SELECT r.id AS run_id,
       r.project,
       r.model,
       r.params,
       r.cv ->> 'scheme' AS scheme,
       (r.cv ->> 'folds')::integer AS folds,
       r.n_samples,
       r.n_features,
       r.classes,
       (r.metrics -> 'accuracy' ->> 'mean')::double precision AS accuracy,
       (r.metrics -> 'accuracy' ->> 'sd')::double precision AS accuracy_sd,
       (r.metrics -> 'balanced_accuracy' ->> 'mean')::double precision AS balanced_accuracy,
       (r.metrics -> 'balanced_accuracy' ->> 'sd')::double precision AS balanced_accuracy_sd,
       r.duration_ms,
       r.job_id,
       r.trace_id,
       r.created_at,
       p.created_at AS reported_at
FROM runs r
LEFT JOIN reports p ON p.run_id = r.id;

-- Long format: one row per run, fold and metric; fold is NULL for the mean over folds.
CREATE VIEW run_metrics AS
SELECT f.run_id, f.fold, m.key AS metric, (m.value #>> '{}')::double precision AS value
FROM folds f, jsonb_each(f.metrics) m
WHERE jsonb_typeof(m.value) = 'number'
UNION ALL
SELECT r.id, NULL, m.key, (m.value ->> 'mean')::double precision
FROM runs r, jsonb_each(r.metrics) m
WHERE jsonb_typeof(m.value) = 'object' AND m.value ? 'mean';
