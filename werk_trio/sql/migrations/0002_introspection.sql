-- 0002: introspection -- stopped workers stay listed for a while, queue-depth
-- samples, and the finished-rows index made covering for the statistics.

-- A worker that stops is kept as 'stopped' until expires_at (the sweeper
-- deletes it then), so an operator sees who left. A stopped row holds no job:
-- its deregistration released them, and the sweeper treats a stopped worker
-- like a missing one.
ALTER TABLE {workers} DROP CONSTRAINT IF EXISTS {workers_status_check};
ALTER TABLE {workers} ADD CONSTRAINT {workers_status_check}
    CHECK (status IN ('running', 'stopping', 'stopped'));
ALTER TABLE {workers} ADD COLUMN stopped_at timestamptz;
ALTER TABLE {workers} ADD COLUMN expires_at timestamptz;
ALTER TABLE {workers} ADD CONSTRAINT {workers_stopped_expiry}
    CHECK (status <> 'stopped' OR (stopped_at IS NOT NULL AND expires_at IS NOT NULL));

-- Queue depth over time, which the jobs table cannot answer: one row per
-- queue per sample, written by the one worker holding the sweep lock (at most
-- every stats_sample_interval), pruned by the sweeper after stats_retention.
CREATE TABLE {queue_samples} (
    sampled_at  timestamptz NOT NULL,
    queue       text NOT NULL,
    queued      integer NOT NULL CHECK (queued >= 0),
    scheduled   integer NOT NULL CHECK (scheduled >= 0),
    waiting     integer NOT NULL CHECK (waiting >= 0),
    active      integer NOT NULL CHECK (active >= 0),
    PRIMARY KEY (sampled_at, queue)
);

-- The finished-rows index (purge, statistics) carries what the throughput and
-- per-worker statements read, so they are index-only scans. Same rows, same
-- one insert per finished job as before: no new index on the completion path.
-- (DROP INDEX resolves an unqualified name through the search_path, not the
-- table's schema: the old index is named in its table's schema.)
DO $$
BEGIN
    EXECUTE 'DROP INDEX ' || (
        SELECT quote_ident(n.nspname) FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE t.oid = '{jobs}'::regclass) || '.{jobs_finished_idx}';
END
$$;
CREATE INDEX {jobs_finished_idx} ON {jobs} (completed_at) INCLUDE (status, queue, worker_id)
    WHERE status IN ('complete', 'failed', 'aborted');
