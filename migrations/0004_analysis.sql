-- Analysis: regression runs (no accuracy), repeated k-fold, subjects' covariates.

-- A regression fold has no accuracy; its metrics live in folds.metrics (r2, mae, rmse, pearson_r).
ALTER TABLE folds ALTER COLUMN accuracy DROP NOT NULL;
ALTER TABLE folds ALTER COLUMN balanced_accuracy DROP NOT NULL;
-- The repeat of a repeated k-fold (0 otherwise); fold numbers run on across repeats.
ALTER TABLE folds ADD COLUMN repeat integer NOT NULL DEFAULT 0;
-- The site a leave-one-site-out fold tests (or the held-out test sites joined by '+').
ALTER TABLE folds ADD COLUMN name text;

-- Covariates of a subject (e.g. {"age": 31, "sex": 1}), for univariate statistics.
ALTER TABLE samples ADD COLUMN covariates jsonb NOT NULL DEFAULT '{}';
