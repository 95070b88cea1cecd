-- A sample's values as bytes: big-endian float4, as float4send writes them (workers/runtime's
-- `floats`). PostgreSQL sends and receives a real[] element by element through float4's I/O
-- functions: about 0.9 ms to read and 0.3 ms more to write one 200 × 116 series here, against
-- 0.04 ms to read the same bytes as bytea. The features worker reads every series back once, so
-- the array format cost more than anything else the database did in the pipeline bench.
-- Samples are the workers' (analysts read features, runs and reports), so the format is theirs.
CREATE OR REPLACE FUNCTION pg_temp.float4_bytes(v real[]) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(string_agg(float4send(x), ''::bytea ORDER BY i), ''::bytea)
    FROM unnest(v) WITH ORDINALITY AS u(x, i)
$$;
ALTER TABLE samples ALTER COLUMN "values" TYPE bytea USING pg_temp.float4_bytes("values");
-- The new type starts with its default storage; keep the values uncompressed (0007).
ALTER TABLE samples ALTER COLUMN "values" SET STORAGE EXTERNAL;
