-- Training fans out: a train.v1 run is planned into work units that any train replica computes
-- (train.unit.v1), each stored once; the unit that completes the run's units assembles and stores
-- the run. run_jobs holds each run's state from the moment it is planned; runs is written only
-- when it has finished.
CREATE TABLE run_jobs (
    run_id        uuid PRIMARY KEY,
    project       text NOT NULL,
    -- running: units being computed; finished: the runs row is stored; failed: see reason;
    -- cancelled: by `swarm cancel`, its remaining units are acknowledged without computing.
    state         text NOT NULL CHECK (state IN ('running', 'finished', 'failed', 'cancelled')),
    reason        text,
    -- The train.v1 body (MessagePack) and the samples it was planned on, in the analysis' order:
    -- what every replica rebuilds the run from.
    request       bytea NOT NULL,
    sample_ids    bigint[] NOT NULL DEFAULT '{}',
    -- Units planned (the last one assembles the run) and stored so far.
    units_total   integer NOT NULL DEFAULT 0,
    units_done    integer NOT NULL DEFAULT 0,
    fits          bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    job_id        text,
    message_id    text NOT NULL,
    trace_id      text
);

CREATE TABLE run_units (
    run_id       uuid NOT NULL REFERENCES run_jobs (run_id) ON DELETE CASCADE,
    unit         integer NOT NULL,
    -- What the unit computes (plan::UnitSpec as JSON, or "finish").
    spec         jsonb NOT NULL,
    state        text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'done')),
    -- Computations started (a crash between compute and commit, or a redelivery while it
    -- computes, starts another); started_at is the last one's start.
    attempts     integer NOT NULL DEFAULT 0,
    started_at   timestamptz,
    done_at      timestamptz,
    duration_ms  bigint,
    -- The unit's results (MessagePack).
    result       bytea,
    PRIMARY KEY (run_id, unit)
);

-- Units waiting, for the gauge and `swarm status`.
CREATE INDEX run_units_queued ON run_units (run_id) WHERE state = 'queued';
