-- Reports for analysts: optional region labels per project (names connectivity features as region
-- pairs in reports), and report_summary with every headline metric. report_summary is recreated,
-- so its grant to swarm_analyst (deploy/postgres/analyst.sql) is restored here when the role exists.

-- One label per region (the R columns of a time-series project), in column order. NULL: no labels.
ALTER TABLE projects ADD COLUMN IF NOT EXISTS region_labels text[];

DROP VIEW IF EXISTS report_summary;

-- One row per run with its headline metrics: the main score is balanced accuracy for
-- classification and R² for regression.
CREATE VIEW report_summary AS
SELECT r.id AS run_id,
       r.project,
       r.model,
       r.params,
       coalesce(r.cv ->> 'scheme', 'stratified_k_fold') AS scheme,
       (r.cv ->> 'folds')::integer AS folds,
       r.n_samples,
       r.n_features,
       r.classes,
       coalesce(nullif(r.results ->> 'task', ''),
                CASE WHEN r.metrics ? 'r2' THEN 'regression' ELSE 'classification' END) AS task,
       m.main_metric,
       (r.metrics -> m.main_metric ->> 'mean')::double precision AS main_score,
       (r.metrics -> m.main_metric ->> 'sd')::double precision AS main_score_sd,
       (r.metrics -> 'accuracy' ->> 'mean')::double precision AS accuracy,
       (r.metrics -> 'accuracy' ->> 'sd')::double precision AS accuracy_sd,
       (r.metrics -> 'balanced_accuracy' ->> 'mean')::double precision AS balanced_accuracy,
       (r.metrics -> 'balanced_accuracy' ->> 'sd')::double precision AS balanced_accuracy_sd,
       (r.metrics -> 'roc_auc' ->> 'mean')::double precision AS roc_auc,
       (r.metrics -> 'f1_macro' ->> 'mean')::double precision AS f1_macro,
       (r.metrics -> 'r2' ->> 'mean')::double precision AS r2,
       (r.metrics -> 'mae' ->> 'mean')::double precision AS mae,
       (r.metrics -> 'rmse' ->> 'mean')::double precision AS rmse,
       (r.results -> 'permutation' ->> 'p_value')::double precision AS permutation_p,
       r.duration_ms,
       r.job_id,
       r.trace_id,
       r.created_at,
       p.created_at AS reported_at
FROM runs r
CROSS JOIN LATERAL (
    SELECT CASE WHEN r.results ->> 'task' = 'regression' OR r.metrics ? 'r2' THEN 'r2'
                ELSE 'balanced_accuracy' END AS main_metric
) m
LEFT JOIN reports p ON p.run_id = r.id AND p.kind = 'run';

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'swarm_analyst') THEN
        GRANT SELECT ON report_summary TO swarm_analyst;
    END IF;
END
$$;
