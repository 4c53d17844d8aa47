-- 0005: flat cost as the tables grow -- the finished-rows recount made
-- incremental, an index for the job listing's pages, and the per-table
-- storage parameters that keep table and index size bounded under a steady
-- enqueue + drain (docs/guides/performance.md, "Table size under a steady load").

-- Finished rows that stopped being finished rows (deleted: purge, TTL expiry,
-- delete_job, failure_mode 'delete'; or requeued) since the statistics pass
-- last counted them, so the pass can subtract them instead of counting every
-- finished row again (RECOUNT_FINISHED). ``completed_at`` is '-infinity' for a
-- row finished before the counts' as_of at the time it went (the counts held
-- it, whatever the pass does meanwhile: as_of only grows), else the row's own
-- completed_at (the pass decides then whether its counts held it). Written by
-- the triggers below (nothing before the first pass: no counts to correct),
-- emptied by each pass.
CREATE TABLE {finished_removed} (
    queue         text NOT NULL,
    status        text NOT NULL,
    completed_at  timestamptz NOT NULL,
    n             bigint NOT NULL CHECK (n > 0)
);

-- A DELETE statement: one row per queue, status and (recent) completed_at
-- over the finished rows it removed, read from its transition table. A
-- statement-level trigger, so a purge of a million rows writes a handful of
-- rows here, not a million; a DELETE of unfinished rows writes none.
CREATE FUNCTION {finished_gone}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {finished_removed} (queue, status, completed_at, n)
    SELECT g.queue, g.status,
        CASE WHEN g.completed_at < m.as_of THEN '-infinity'::timestamptz ELSE g.completed_at END,
        count(*)
    FROM gone g, (SELECT COALESCE(max(as_of), '-infinity') AS as_of FROM {finished_counts}) m
    WHERE g.status IN ('complete', 'failed', 'aborted') AND g.completed_at IS NOT NULL
      AND m.as_of > '-infinity'  -- no counts yet: the first pass counts what is there
    GROUP BY 1, 2, 3;
    RETURN NULL;
END
$$;
CREATE TRIGGER {jobs_finished_gone} AFTER DELETE ON {jobs}
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION {finished_gone}();

-- An UPDATE that takes a row out of the finished states (a requeue). A row
-- trigger whose WHEN is checked in the executor as each row is updated, so
-- the claims and completions -- no finished row in them -- queue no trigger
-- event and run no function: the hot path pays one comparison per row.
CREATE FUNCTION {finished_requeued}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {finished_removed} (queue, status, completed_at, n)
    SELECT OLD.queue, OLD.status,
        CASE WHEN OLD.completed_at < m.as_of THEN '-infinity'::timestamptz ELSE OLD.completed_at END, 1
    FROM (SELECT COALESCE(max(as_of), '-infinity') AS as_of FROM {finished_counts}) m
    WHERE m.as_of > '-infinity';
    RETURN NULL;
END
$$;
CREATE TRIGGER {jobs_finished_requeued} AFTER UPDATE OF status ON {jobs}
    FOR EACH ROW
    WHEN (OLD.status IN ('complete', 'failed', 'aborted') AND OLD.completed_at IS NOT NULL
          AND NEW.status NOT IN ('complete', 'failed', 'aborted'))
    EXECUTE FUNCTION {finished_requeued}();

-- list_jobs pages, newest first (ORDER BY enqueued_at DESC, id DESC LIMIT n
-- OFFSET m): read from the newest end of this index instead of sorting every
-- row of the table -- 130 ms at 1,000,000 rows before, under 1 ms now. Ids
-- are time-ordered and enqueued_at is the insert's now(), so inserts land at
-- the right edge.
CREATE INDEX {jobs_listing_idx} ON {jobs} (enqueued_at, id);

-- Storage parameters. The jobs table is a queue: every job is one insert and
-- two non-HOT updates (status is in the partial indexes' predicates), so it
-- makes two dead row versions per job. Vacuum it after 1 % of its rows are
-- dead, not the default 20 %: with a million finished rows kept, 20 % lets
-- 200,000 dead versions pile up at the head of the dequeue index, where every
-- claim steps over them. (The default cost delay keeps up: it dirties ~5,000
-- pages/s, hundreds of thousands of dead versions, against the two per job of
-- a 10,000 jobs/s drain.) Analyze after 2 %, so the planner sees the backlog
-- move; vacuum after 5 % inserts, so the visibility map stays current for the
-- finished-rows index's index-only scans. fillfactor 90 leaves room on each
-- page for an update's new version to stay on its page.
ALTER TABLE {jobs} SET (
    fillfactor = 90,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05
);
-- Workers: a handful of rows, each updated every heartbeat (HOT: last_seen
-- is in no index), so half of each page is kept free for the new versions,
-- and a few hundred dead versions are enough to vacuum.
ALTER TABLE {workers} SET (
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200
);
-- The small churned tables: rows inserted and deleted all the time (rate
-- windows, the removal log, the recount, the stats marks, the cron lease).
ALTER TABLE {rate_log} SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);
ALTER TABLE {finished_removed} SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 200);
ALTER TABLE {finished_counts} SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 200);
ALTER TABLE {stats_marks} SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0,
                               autovacuum_vacuum_threshold = 200);
ALTER TABLE {cron_lease} SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0,
                              autovacuum_vacuum_threshold = 200);
