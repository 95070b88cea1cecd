-- What `swarm publish` published under a job id (its samples and messages), so that `swarm status
-- JOB` and `swarm publish --wait` can say how much of it has arrived. Written by the CLI when it
-- reaches the database; a job of another producer has no row.
CREATE TABLE published_jobs (
    job_id        text PRIMARY KEY,
    project       text NOT NULL,
    site          text NOT NULL,
    samples       integer NOT NULL CHECK (samples >= 0),
    messages      integer NOT NULL CHECK (messages >= 0),
    published_at  timestamptz NOT NULL DEFAULT now()
);
