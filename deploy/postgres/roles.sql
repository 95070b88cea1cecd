-- Swarm's Postgres roles: one writer role per worker kind, each with only the privileges its
-- handler and the shared runtime (idempotency record, outbox, dead letters) need.
--
--     swarm_ingest    projects (read, add), samples (read, add, update)
--     swarm_features  samples (read), features (read, add, update)
--     swarm_train     projects, feature_names, samples, features (read); runs, folds, predictions, stats_jobs (read, add);
--                     run_jobs, run_units (read, add, update)
--     swarm_report    projects, feature_names, runs, folds, predictions, stats_jobs (read); samples' id and
--                     covariates only (read); reports (read, add, update)
--     every worker    processed_messages (add), outbox (read, add, lock, delete), dead_letters (add)
--
-- No worker may delete or truncate data, create or alter tables, or read what it does not use;
-- the read-only analyst role, swarm_analyst, is deploy/postgres/analyst.sql, applied at the end.
--
-- Run it as the database owner, after the migrations (`swarm migrate`), in the database they
-- created, and again after every migration that adds a table:
--
--     psql -v ON_ERROR_STOP=1 -d swarm -f deploy/postgres/roles.sql
--
-- It is idempotent: it creates missing roles, revokes what the roles hold on the schema's tables
-- and grants the list below afresh, all in one transaction. Roles are cluster-wide; grants are
-- per database. The roles can log in but have no password: set one from your secret store,
--
--     ALTER ROLE swarm_ingest PASSWORD '…';
--
-- (deploy/postgres/apply.sh does both), and run the workers with MIGRATE=false.

\set ON_ERROR_STOP on

BEGIN;

-- Create the roles. CREATE ROLE cannot say IF NOT EXISTS, and two sessions (tests in other
-- databases) may run this at once: the loser of the race finds the role there.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['swarm_ingest', 'swarm_features', 'swarm_train', 'swarm_report'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

-- Nobody but the owner creates objects in the schema (the default since Postgres 15).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Start from nothing on this database's tables, so a privilege removed here is removed there.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM swarm_ingest, swarm_features, swarm_train, swarm_report;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM swarm_ingest, swarm_features, swarm_train, swarm_report;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO swarm_ingest, swarm_features, swarm_train, swarm_report',
                   current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO swarm_ingest, swarm_features, swarm_train, swarm_report;

-- The grants: (role, table, privileges). A role that may add rows to a table also gets USAGE on
-- the table's serial sequences. A table that does not exist is an error: migrate first.
DO $$
DECLARE
    g record;
    seq regclass;
BEGIN
    FOR g IN
        SELECT * FROM (VALUES
            -- the runtime, in every worker
            ('swarm_ingest',   'processed_messages', 'INSERT'),
            ('swarm_features', 'processed_messages', 'INSERT'),
            ('swarm_train',    'processed_messages', 'INSERT'),
            ('swarm_report',   'processed_messages', 'INSERT'),
            -- SELECT … FOR UPDATE SKIP LOCKED (the sweeper) needs UPDATE.
            ('swarm_ingest',   'outbox', 'SELECT, INSERT, UPDATE, DELETE'),
            ('swarm_features', 'outbox', 'SELECT, INSERT, UPDATE, DELETE'),
            ('swarm_train',    'outbox', 'SELECT, INSERT, UPDATE, DELETE'),
            ('swarm_report',   'outbox', 'SELECT, INSERT, UPDATE, DELETE'),
            ('swarm_ingest',   'dead_letters', 'INSERT'),
            ('swarm_features', 'dead_letters', 'INSERT'),
            ('swarm_train',    'dead_letters', 'INSERT'),
            ('swarm_report',   'dead_letters', 'INSERT'),
            -- ingest: the first batch of a project fixes its shape; samples are upserted.
            ('swarm_ingest', 'projects', 'SELECT, INSERT'),
            ('swarm_ingest', 'samples',  'SELECT, INSERT, UPDATE'),
            -- features: reads samples, upserts features.
            ('swarm_features', 'samples',  'SELECT'),
            ('swarm_features', 'features', 'SELECT, INSERT, UPDATE'),
            -- train: reads the data, writes a run and its results.
            ('swarm_train', 'projects',    'SELECT'),
            ('swarm_train', 'feature_names', 'SELECT'),
            ('swarm_train', 'samples',     'SELECT'),
            ('swarm_train', 'features',    'SELECT'),
            ('swarm_train', 'runs',        'SELECT, INSERT'),
            ('swarm_train', 'folds',       'SELECT, INSERT'),
            ('swarm_train', 'predictions', 'SELECT, INSERT'),
            ('swarm_train', 'stats_jobs',  'SELECT, INSERT'),
            ('swarm_train', 'run_jobs',    'SELECT, INSERT, UPDATE'),
            ('swarm_train', 'run_units',   'SELECT, INSERT, UPDATE'),
            -- report: reads a run and its results, upserts the report.
            ('swarm_report', 'projects',    'SELECT'),
            ('swarm_report', 'feature_names', 'SELECT'),
            ('swarm_report', 'runs',        'SELECT'),
            ('swarm_report', 'folds',       'SELECT'),
            ('swarm_report', 'predictions', 'SELECT'),
            ('swarm_report', 'stats_jobs',  'SELECT'),
            ('swarm_report', 'reports',     'SELECT, INSERT, UPDATE')
        ) AS t (role, tbl, privileges)
    LOOP
        IF to_regclass(format('public.%I', g.tbl)) IS NULL THEN
            RAISE EXCEPTION 'table public.% does not exist: run `swarm migrate` first', g.tbl;
        END IF;
        EXECUTE format('GRANT %s ON public.%I TO %I', g.privileges, g.tbl, g.role);
        IF g.privileges LIKE '%INSERT%' THEN
            FOR seq IN
                SELECT d.objid::regclass
                FROM pg_depend d
                JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                WHERE d.classid = 'pg_class'::regclass
                  AND d.refobjid = format('public.%I', g.tbl)::regclass
                  AND d.deptype = 'a'
            LOOP
                EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I', seq, g.role);
            END LOOP;
        END IF;
    END LOOP;
END
$$;

-- The report lists a run's covariates: it may read those two columns of samples, not the values.
GRANT SELECT (id, covariates) ON samples TO swarm_report;

COMMIT;

-- The read-only analyst role (its own file, so it can be applied alone).
\ir analyst.sql
