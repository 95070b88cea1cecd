-- swarm_analyst: the read-only role analysts query reports with. It may read the views
-- report_summary and run_metrics and the table reports, and nothing else: no other table (not
-- samples, features or the runs behind the views), no writes, no DDL.
--
-- Run it as the database owner, after the migrations (`swarm migrate`), in the database they
-- created; deploy/postgres/roles.sql applies it too. It is plain SQL (no psql meta-commands), so
-- a program can run it as one batch as well:
--
--     psql -v ON_ERROR_STOP=1 -d swarm -f deploy/postgres/analyst.sql
--
-- It is idempotent: it creates the role if it is missing, revokes whatever the role holds on
-- the schema's tables and grants the list below afresh, in one transaction. The role is
-- cluster-wide (NOLOGIN: give it to people, `GRANT swarm_analyst TO alice;`, or make a login
-- role for a tool, `CREATE ROLE bi LOGIN PASSWORD '…' IN ROLE swarm_analyst;`); grants are per
-- database. Migration 0005 restores the grant on report_summary when it recreates the view;
-- re-run this file after any migration that recreates a view.
--
-- The views run with their owner's rights (not security_invoker), which is what lets the role
-- read runs and folds through them without any right on the tables themselves.

BEGIN;

-- CREATE ROLE cannot say IF NOT EXISTS, and two sessions (tests in other databases) may run this
-- at once: the loser of the race finds the role there. Per-role settings (a read-only default, a
-- statement timeout) belong on the login roles of people and tools, since they are not
-- inherited: `ALTER ROLE alice SET default_transaction_read_only = on;`.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'swarm_analyst') THEN
        BEGIN
            CREATE ROLE swarm_analyst NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;

-- Start from nothing on this database's tables, views and sequences.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM swarm_analyst;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM swarm_analyst;
REVOKE CREATE ON SCHEMA public FROM swarm_analyst;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO swarm_analyst', current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO swarm_analyst;
GRANT SELECT ON report_summary, run_metrics, reports TO swarm_analyst;

COMMIT;
