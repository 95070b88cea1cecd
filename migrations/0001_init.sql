-- Swarm's schema. Every derived row records the message (and trace) that produced it: lineage.

CREATE TABLE projects (
    name        text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('vector', 'timeseries')),
    -- vector: the feature count; timeseries: the region count R
    dimension   integer NOT NULL CHECK (dimension > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE samples (
    id          bigserial PRIMARY KEY,
    project     text NOT NULL REFERENCES projects (name),
    site        text NOT NULL,
    subject     text NOT NULL,
    label       text NOT NULL,
    kind        text NOT NULL,
    timepoints  integer,
    "values"    real[] NOT NULL,
    job_id      text,
    message_id  text NOT NULL,
    trace_id    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project, site, subject)
);

CREATE TABLE features (
    sample_id   bigint NOT NULL REFERENCES samples (id) ON DELETE CASCADE,
    extractor   text NOT NULL,
    version     integer NOT NULL,
    "values"    real[] NOT NULL,
    job_id      text,
    message_id  text NOT NULL,
    trace_id    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sample_id, extractor, version)
);

CREATE TABLE runs (
    id            uuid PRIMARY KEY,
    project       text NOT NULL,
    model         text NOT NULL,
    params        jsonb NOT NULL DEFAULT '{}',
    cv            jsonb NOT NULL,
    sites         text[] NOT NULL DEFAULT '{}',
    n_samples     integer NOT NULL,
    n_features    integer NOT NULL,
    classes       text[] NOT NULL,
    -- per sample counts: {"<site>": {"<class>": n}}
    data_summary  jsonb NOT NULL DEFAULT '{}',
    -- {"accuracy": {"mean": .., "sd": ..}, "balanced_accuracy": {..}}
    metrics       jsonb NOT NULL,
    model_format  text NOT NULL,
    model_blob    bytea NOT NULL,
    duration_ms   bigint NOT NULL,
    job_id        text,
    message_id    text NOT NULL,
    trace_id      text,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE folds (
    run_id             uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    fold               integer NOT NULL,
    n_train            integer NOT NULL,
    n_test             integer NOT NULL,
    accuracy           double precision NOT NULL,
    balanced_accuracy  double precision NOT NULL,
    -- rows: true class, columns: predicted class, both in runs.classes order
    confusion          jsonb NOT NULL,
    PRIMARY KEY (run_id, fold)
);

CREATE TABLE reports (
    run_id      uuid PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    summary     text NOT NULL,
    markdown    text NOT NULL,
    html        text NOT NULL,
    json        jsonb NOT NULL,
    job_id      text,
    message_id  text NOT NULL,
    trace_id    text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Idempotency: a (queue, message_id) seen before is a redelivery.
CREATE TABLE processed_messages (
    queue         text NOT NULL,
    message_id    text NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, message_id)
);

-- Transactional outbox: downstream messages written with the derived rows, published after commit.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    message_id      text NOT NULL UNIQUE,
    message_type    text NOT NULL,
    routing_key     text NOT NULL,
    correlation_id  text,
    body            bytea NOT NULL,
    -- W3C trace context of the span that wrote the row: {"traceparent": .., "tracestate": ..}
    trace_headers   jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dead_letters (
    id            bigserial PRIMARY KEY,
    queue         text NOT NULL,
    message_id    text,
    message_type  text,
    correlation_id text,
    reason        text NOT NULL,
    body          bytea NOT NULL,
    headers       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_queue ON dead_letters (queue, created_at);
