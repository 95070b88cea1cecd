-- Everything a run's report renders beyond the plain columns (broker_schemas::results::RunResults),
-- per-subject out-of-fold predictions, and univariate statistics jobs.

ALTER TABLE runs ADD COLUMN results jsonb NOT NULL DEFAULT '{}';

CREATE TABLE predictions (
    run_id      uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    -- repeat of a repeated k-fold (0 otherwise)
    repeat      integer NOT NULL DEFAULT 0,
    sample_id   bigint NOT NULL,
    site        text NOT NULL,
    subject     text NOT NULL,
    fold        integer NOT NULL,
    y_true      text NOT NULL,
    y_pred      text NOT NULL,
    -- decision score or probability of the positive class (binary), or the prediction (regression)
    score       double precision,
    PRIMARY KEY (run_id, repeat, sample_id)
);

CREATE TABLE stats_jobs (
    id          uuid PRIMARY KEY,
    project     text NOT NULL,
    test        text NOT NULL,
    covariate   text,
    sites       text[] NOT NULL DEFAULT '{}',
    n_samples   integer NOT NULL,
    n_features  integer NOT NULL,
    -- broker_schemas::results::StatsResults
    results     jsonb NOT NULL,
    duration_ms bigint NOT NULL,
    job_id      text,
    message_id  text NOT NULL,
    trace_id    text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A report belongs to a run or to a statistics job.
ALTER TABLE reports DROP CONSTRAINT reports_run_id_fkey;
ALTER TABLE reports ADD COLUMN kind text NOT NULL DEFAULT 'run' CHECK (kind IN ('run', 'stats'));
