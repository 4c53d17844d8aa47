-- 0002: introspection -- stopped workers stay listed for a while, queue-depth
-- samples, and the finished-rows index made covering for the statistics.

-- A worker that stops is kept as 'stopped' until expires_at (the sweeper
-- deletes it then), so an operator sees who left. A stopped row holds no job:
-- its deregistration released them, and the sweeper treats a stopped worker
-- like a missing one.
-- (0001's status CHECK is unnamed: found by its definition, whatever name
-- Postgres gave it.)
DO $$
DECLARE
    old text;
BEGIN
    FOR old IN SELECT conname FROM pg_constraint
               WHERE conrelid = '{workers}'::regclass AND contype = 'c'
                 AND pg_get_constraintdef(oid) LIKE '%stopping%'
    LOOP
        EXECUTE 'ALTER TABLE {workers} DROP CONSTRAINT ' || quote_ident(old);
    END LOOP;
END
$$;
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

-- Finished jobs per minute ('minute' rows) and per hour ('hour' rows), per
-- queue and per worker, rolled up by the sweeping worker from the
-- finished-rows index once each minute has passed, and from the minute rows
-- once each hour has (the throughput history reads these and the job rows
-- of the minutes after the last roll-up). Minute rows are kept 25 hours,
-- hour rows stats_retention. History: a job deleted later still counts here.
CREATE TABLE {throughput} (
    level      text NOT NULL CHECK (level IN ('minute', 'hour')),
    bucket     timestamptz NOT NULL,
    queue      text NOT NULL,
    worker_id  uuid,
    completed  integer NOT NULL CHECK (completed >= 0),
    failed     integer NOT NULL CHECK (failed >= 0),
    aborted    integer NOT NULL CHECK (aborted >= 0)
);
-- covering: the history reads it index-only (rows are written once a minute)
CREATE INDEX {throughput_bucket_idx} ON {throughput} (level, bucket)
    INCLUDE (queue, worker_id, completed, failed);

-- The finished rows counted by queue and status as of a moment (recounted
-- by the sweeping worker each sample): get_queue_stats adds the rows
-- finished since, so it never counts a million rows itself.
CREATE TABLE {finished_counts} (
    queue   text NOT NULL,
    status  text NOT NULL,
    n       bigint NOT NULL CHECK (n >= 0),
    as_of   timestamptz NOT NULL
);

-- When the statistics were last sampled ('sample') and up to which instant
-- the throughput is rolled up into minutes ('throughput') and hours
-- ('throughput_hour').
CREATE TABLE {stats_marks} (
    name  text PRIMARY KEY,
    at    timestamptz NOT NULL
);
