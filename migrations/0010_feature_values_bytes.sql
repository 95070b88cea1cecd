-- Feature values as bytes too (see 0009): every extracted row was written through float4's
-- per-element receive function, about 5 % of the machine's CPU in the pipeline bench, and the
-- train worker read every row back through the per-element send function. Analysts read
-- features through runs, folds and reports, not this column.
CREATE OR REPLACE FUNCTION pg_temp.float4_bytes(v real[]) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(string_agg(float4send(x), ''::bytea ORDER BY i), ''::bytea)
    FROM unnest(v) WITH ORDINALITY AS u(x, i)
$$;
ALTER TABLE features ALTER COLUMN "values" TYPE bytea USING pg_temp.float4_bytes("values");
ALTER TABLE features ALTER COLUMN "values" SET STORAGE EXTERNAL;
