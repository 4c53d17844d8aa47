-- 0007: the sweep finds the rows past their result/failure TTL by their
-- expires_at (pgwerk's "row expiry time", which every statement that ends a
-- job sets: completed_at + result_ttl for a complete row, + failure_ttl for a
-- failed or aborted one, the TTL counted at most 100 years). Until now the
-- sweep compared completed_at with each row's own TTL, a condition no index
-- range serves: every sweep read every finished row that had a TTL, due or
-- not -- a day's result_ttl at 100 jobs/s is 8.6 million rows read once a
-- minute to delete a minute's 6,000. Keyed on expires_at, the sweep's scan
-- starts at the oldest expiry and stops at now(): it reads the due rows only.
-- The index holds the same rows as before less the finished rows whose TTL
-- is not the one of their status (a complete row with only a failure_ttl):
-- no index is added on the completion path.

-- Rows that ended before their expires_at was set (or were written past the
-- API) get it from the same rule; bounded so that no stored value can make
-- it overflow (completed_at past year 9999 counts as 9999, the TTL at most
-- +-100 years, NaN as 100 years), so the migration cannot fail on a row.
UPDATE {jobs} SET expires_at = LEAST(completed_at, '9999-12-31 00:00:00+00'::timestamptz)
    + make_interval(secs => GREATEST(-3155760000, LEAST(
        CASE WHEN status = 'complete' THEN result_ttl ELSE failure_ttl END, 3155760000)))
WHERE expires_at IS NULL AND completed_at IS NOT NULL
  AND ((status = 'complete' AND result_ttl IS NOT NULL)
       OR (status IN ('failed', 'aborted') AND failure_ttl IS NOT NULL));

-- (named in its table's schema: DROP INDEX resolves an unqualified name
-- through the search_path, as in 0002)
DO $$
BEGIN
    EXECUTE 'DROP INDEX ' || (
        SELECT quote_ident(n.nspname) FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE t.oid = '{jobs}'::regclass) || '.{jobs_ttl_idx}';
END
$$;
CREATE INDEX {jobs_ttl_idx} ON {jobs} (expires_at)
    WHERE (status = 'complete' AND result_ttl IS NOT NULL)
       OR (status IN ('failed', 'aborted') AND failure_ttl IS NOT NULL);
