-- 0002 (issue 13 asks for 0003; renumbered at merge): cron schedules and the
-- scheduler's leader lease. Times are the database clock (now()).

-- One row per schedule: its definition (written by the schedulers that
-- register it, on start), its state (paused, removed, next/last run) and
-- its run counter. Every process reads and changes it; the leader enqueues
-- from it.
CREATE TABLE {cron_schedules} (
    name           text PRIMARY KEY CHECK (name <> ''),
    function       text NOT NULL CHECK (function <> ''),
    queue          text NOT NULL CHECK (queue <> ''),
    cron           text,
    interval_secs  double precision CHECK (interval_secs > 0),
    tz             text NOT NULL DEFAULT 'UTC',
    -- args, kwargs, timeout, result_ttl, failure_ttl, meta: JSON text whose
    -- args/kwargs/meta are encoded with the app's serializer
    options        text NOT NULL,
    paused         boolean NOT NULL DEFAULT false,
    -- set when the schedule was unregistered or left out of a scheduler's
    -- registrations at its start: kept for its history, never enqueued
    removed_at     timestamptz,
    next_run_at    timestamptz NOT NULL,
    last_run_at    timestamptz,
    last_job_id    uuid,
    total_runs     bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (interval_secs IS NULL))
);

-- The leader's round looks up due schedules by time.
CREATE INDEX {cron_schedules_due_idx} ON {cron_schedules} (next_run_at) WHERE removed_at IS NULL;

-- The one lease row: who leads (holder), since when, until when; generation
-- counts the takeovers and fences a leader that lost the lease.
CREATE TABLE {cron_lease} (
    id           integer PRIMARY KEY CHECK (id = 1),
    holder       uuid,
    holder_name  text,
    generation   bigint NOT NULL DEFAULT 0,
    acquired_at  timestamptz,
    renewed_at   timestamptz,
    expires_at   timestamptz
);
INSERT INTO {cron_lease} (id) VALUES (1);

-- Failed-run counts per schedule (list_cron_stats): only jobs made by a
-- schedule are in it, so other jobs cost nothing.
CREATE INDEX {jobs_cron_idx} ON {jobs} (cron_name, status) WHERE cron_name IS NOT NULL;
