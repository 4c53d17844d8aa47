-- 0001: jobs, executions, workers, dependencies.
-- Identifiers are {placeholders} filled with psycopg.sql.Identifier; nothing
-- else is substituted. Times are the database clock (now()).

CREATE TABLE {jobs} (
    id                   uuid PRIMARY KEY,
    function             text NOT NULL CHECK (function <> ''),
    queue                text NOT NULL DEFAULT 'default' CHECK (queue <> ''),
    status               text NOT NULL DEFAULT 'queued' CHECK (status IN
                           ('scheduled', 'queued', 'waiting', 'active', 'aborting',
                            'complete', 'failed', 'aborted')),
    priority             integer NOT NULL DEFAULT 0,
    attempts             integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts         integer NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    scheduled_at         timestamptz NOT NULL DEFAULT now(),
    enqueued_at          timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    completed_at         timestamptz,
    touched_at           timestamptz,
    expires_at           timestamptz,
    key                  text,
    group_key            text,
    payload              text,
    result               text,
    error                text,
    timeout_secs         double precision CHECK (timeout_secs > 0),
    heartbeat_secs       double precision CHECK (heartbeat_secs > 0),
    worker_id            uuid,
    meta                 text,
    ttl                  double precision CHECK (ttl > 0),
    result_ttl           double precision CHECK (result_ttl >= 0),
    failure_ttl          double precision CHECK (failure_ttl >= 0),
    on_success           jsonb,
    on_failure           jsonb,
    on_stopped           jsonb,
    retry_intervals      double precision[],
    repeat_remaining     integer NOT NULL DEFAULT 0 CHECK (repeat_remaining >= 0),
    repeat_interval_secs double precision CHECK (repeat_interval_secs >= 0),
    repeat_intervals     double precision[],
    cron_name            text,
    failure_mode         text NOT NULL DEFAULT 'hold' CHECK (failure_mode IN ('hold', 'delete')),
    -- an attempt may only be running while attempts are left; a rescued or
    -- retried job never exceeds its budget
    CONSTRAINT {jobs_attempt_budget} CHECK (attempts <= max_attempts),
    CONSTRAINT {jobs_active_owner} CHECK (
        status NOT IN ('active', 'aborting') OR (worker_id IS NOT NULL AND started_at IS NOT NULL))
);

-- Serves the dequeue query: only claimable rows are in it, in claim order.
CREATE INDEX {jobs_dequeue_idx} ON {jobs} (queue, priority DESC, scheduled_at, id)
    WHERE status IN ('queued', 'scheduled');

-- Idempotency: one row per key while the row exists.
CREATE UNIQUE INDEX {jobs_key_idx} ON {jobs} (key) WHERE key IS NOT NULL;

-- Concurrency groups: at most one running job per group, enforced here.
CREATE UNIQUE INDEX {jobs_group_active_idx} ON {jobs} (group_key)
    WHERE group_key IS NOT NULL AND status IN ('active', 'aborting');

-- The sweeper, the abort-watcher and the completer's fence look up running
-- jobs by worker.
CREATE INDEX {jobs_running_idx} ON {jobs} (worker_id)
    WHERE status IN ('active', 'aborting');

-- Finished rows by age (purge). Only terminal rows are in it, so a job's
-- trips through scheduled/queued/active cost no insert here.
CREATE INDEX {jobs_finished_idx} ON {jobs} (completed_at)
    WHERE status IN ('complete', 'failed', 'aborted');

-- The sweeper's lookups, each over the few rows that need it: finished rows
-- with a result/failure TTL, unstarted rows with a TTL, waiting rows.
CREATE INDEX {jobs_ttl_idx} ON {jobs} (completed_at)
    WHERE status IN ('complete', 'failed', 'aborted')
      AND (result_ttl IS NOT NULL OR failure_ttl IS NOT NULL);
CREATE INDEX {jobs_expiry_idx} ON {jobs} (expires_at)
    WHERE expires_at IS NOT NULL AND status IN ('queued', 'scheduled', 'waiting');
CREATE INDEX {jobs_waiting_idx} ON {jobs} (id) WHERE status = 'waiting';

-- One row per finished attempt, written with the outcome (the running
-- attempt is the job row itself: get_executions shows it as 'running').
CREATE TABLE {executions} (
    job_id       uuid NOT NULL REFERENCES {jobs} (id) ON DELETE CASCADE,
    attempt      integer NOT NULL CHECK (attempt >= 1),
    worker_id    uuid,
    status       text NOT NULL DEFAULT 'running' CHECK (status IN
                   ('running', 'complete', 'failed', 'aborted')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    error        text,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE {workers} (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL,
    hostname           text NOT NULL,
    pid                integer NOT NULL,
    worker_type        text NOT NULL,
    queues             text[] NOT NULL,
    concurrency        integer NOT NULL CHECK (concurrency >= 1),
    heartbeat_interval double precision NOT NULL CHECK (heartbeat_interval > 0),
    started_at         timestamptz NOT NULL DEFAULT now(),
    last_seen          timestamptz NOT NULL DEFAULT now(),
    status             text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'stopping'))
);

CREATE TABLE {job_deps} (
    job_id         uuid NOT NULL REFERENCES {jobs} (id) ON DELETE CASCADE,
    depends_on     uuid NOT NULL,
    allow_failure  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, depends_on),
    CHECK (job_id <> depends_on)
);
CREATE INDEX {job_deps_parent_idx} ON {job_deps} (depends_on);
