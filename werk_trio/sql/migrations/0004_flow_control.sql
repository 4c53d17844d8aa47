-- 0002: flow control -- paused queues, global and partitioned limits, rate
-- limits, progress, and the index that tells a worker its next due job.
-- (Numbered 0002 on the h17 branch; the integrator renumbers it at merge.)

-- One row per queue that has a control set (paused, a concurrency limit or a
-- rate limit); a queue with none has no row, and the plain claim skips any
-- queue that has one. ``limit_by`` / ``rate_by``: NULL for the whole queue,
-- '_group' for the job's group, or 'meta.<key>' for a key of its meta.
CREATE TABLE {queues} (
    name         text PRIMARY KEY CHECK (name <> ''),
    paused       boolean NOT NULL DEFAULT false,
    paused_at    timestamptz,
    max_running  integer CHECK (max_running >= 1),
    limit_by     text CHECK (limit_by = '_group' OR limit_by LIKE 'meta._%'),
    rate_n       integer CHECK (rate_n >= 1),
    rate_secs    double precision CHECK (rate_secs > 0),
    rate_by      text CHECK (rate_by = '_group' OR rate_by LIKE 'meta._%'),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((rate_n IS NULL) = (rate_secs IS NULL))
);

-- Starts of rate-limited queues (a sliding window per queue and partition),
-- written by the claim that starts them under the queue's lock and pruned by
-- the next one. Only rate-limited queues write here.
CREATE TABLE {rate_log} (
    queue       text NOT NULL,
    part        text NOT NULL DEFAULT '',
    started_at  timestamptz NOT NULL
);
CREATE INDEX {rate_log_idx} ON {rate_log} (queue, part, started_at);

-- A job's meta value for a partition key, NULL when meta is not JSON (another
-- serializer) or lacks the key: a row never makes a claim fail.
CREATE FUNCTION {meta_part}(meta text, key text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN meta::jsonb ->> key;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- Progress reported by the running handler (ctx.set_progress).
ALTER TABLE {jobs}
    ADD COLUMN progress double precision CHECK (progress >= 0 AND progress <= 1),
    ADD COLUMN progress_message text;

-- The earliest due job of a queue (a claim that comes back short reads it, so
-- the worker sleeps until then, not until its next poll). Only jobs due later
-- are in it: immediate jobs cost nothing here.
CREATE INDEX {jobs_scheduled_idx} ON {jobs} (queue, scheduled_at) WHERE status = 'scheduled';
