"""The named statements. ``{jobs}`` etc. are table identifiers filled by
:class:`werk_trio.sql.Statements`; ``%(name)s`` are query parameters.

Statuses: a job is claimable when it is ``queued`` or ``scheduled`` and its
``scheduled_at`` has come (on the database clock).
"""

# ruff: noqa: E501

JOB_COLUMNS = """id, function, queue, status, priority, attempts, max_attempts, scheduled_at,
    enqueued_at, started_at, completed_at, touched_at, expires_at, key, group_key, payload,
    result, error, timeout_secs, heartbeat_secs, worker_id, meta, ttl, result_ttl, failure_ttl,
    on_success, on_failure, on_stopped, retry_intervals, repeat_remaining, repeat_interval_secs,
    repeat_intervals, cron_name, failure_mode"""

# --- migrations ---------------------------------------------------------------

MIGRATE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))"
CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"
CREATE_MIGRATIONS = """CREATE TABLE IF NOT EXISTS {migrations} (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
APPLIED_MIGRATIONS = "SELECT version FROM {migrations} ORDER BY version"
RECORD_MIGRATION = "INSERT INTO {migrations} (version, name) VALUES (%(version)s, %(name)s)"

# --- enqueue ------------------------------------------------------------------

# One statement for one job or twenty thousand: the rows travel as one JSON
# array of objects (short keys, absent = default), parsed by the server.
# Key collisions are skipped (ON CONFLICT DO NOTHING) and simply not returned.
# New claimable jobs wake the workers of their queues with one NOTIFY per
# queue per statement (Postgres also folds duplicates within a transaction).
INSERT_JOBS = """
WITH input AS (
    SELECT * FROM json_to_recordset(%(rows)s::json) AS t(
        id uuid, f text, q text, s text, p integer, ma integer, d float8, at timestamptz,
        k text, g text, pl text, to_ float8, hb float8, m text, ttl float8, rttl float8,
        fttl float8, on_s jsonb, on_f jsonb, on_x jsonb, ri float8[], rr integer, rs float8,
        rv float8[], cron text, fm text)
), timed AS (
    SELECT input.*, COALESCE(at, now() + make_interval(secs => COALESCE(d, 0))) AS run_at
    FROM input
), ins AS (
    INSERT INTO {jobs} (id, function, queue, status, priority, max_attempts, scheduled_at,
        expires_at, key, group_key, payload, timeout_secs, heartbeat_secs, meta, ttl, result_ttl,
        failure_ttl, on_success, on_failure, on_stopped, retry_intervals, repeat_remaining,
        repeat_interval_secs, repeat_intervals, cron_name, failure_mode)
    SELECT id, f, COALESCE(q, 'default'), COALESCE(s, 'queued'), COALESCE(p, 0),
        COALESCE(ma, 1), run_at, run_at + make_interval(secs => ttl), k, g, pl, to_, hb, m,
        ttl, rttl, fttl, on_s, on_f, on_x, ri, COALESCE(rr, 0), rs, rv, cron,
        COALESCE(fm, 'hold')
    FROM timed
    ON CONFLICT (key) WHERE key IS NOT NULL DO NOTHING
    RETURNING id, status, queue, scheduled_at, enqueued_at, expires_at
)
SELECT id, scheduled_at, enqueued_at, expires_at,
    (SELECT count(pg_notify(%(channel)s, q.queue))
       FROM (SELECT DISTINCT queue FROM ins WHERE status = 'queued') q) AS notified
FROM ins
"""

# Parents of new dependent jobs, locked so that none can finish (and miss the
# new dependents) before the enqueue commits.
LOCK_PARENTS = "SELECT id, status FROM {jobs} WHERE id = ANY(%(ids)s::uuid[]) FOR SHARE"

INSERT_DEPS = """
INSERT INTO {job_deps} (job_id, depends_on, allow_failure)
SELECT d.job_id, d.depends_on, d.allow_failure
FROM unnest(%(job_id)s::uuid[], %(depends_on)s::uuid[], %(allow_failure)s::bool[])
     AS d(job_id, depends_on, allow_failure)
WHERE d.job_id = ANY(%(inserted)s::uuid[])
ON CONFLICT DO NOTHING
"""

# Waiting jobs among %(ids)s whose dependencies have all ended: queue them, or
# fail them with DependencyFailed when a dependency failed without
# allow_failure. A dependency row whose parent was deleted counts as done.
RESOLVE_WAITING = """
WITH cand AS (
    SELECT d.job_id,
        bool_and(p.id IS NULL OR p.status IN ('complete', 'failed', 'aborted')) AS all_done,
        bool_or(p.status IN ('failed', 'aborted') AND NOT d.allow_failure) AS dep_failed,
        min(p.id::text) FILTER (WHERE p.status IN ('failed', 'aborted') AND NOT d.allow_failure) AS failed_parent
    FROM {job_deps} d
    JOIN {jobs} w ON w.id = d.job_id AND w.status = 'waiting'
    LEFT JOIN {jobs} p ON p.id = d.depends_on
    WHERE d.job_id = ANY(%(ids)s::uuid[])
    GROUP BY d.job_id
), upd AS (
    UPDATE {jobs} j SET
        status = CASE WHEN c.dep_failed THEN 'failed'
                      WHEN j.scheduled_at > now() THEN 'scheduled' ELSE 'queued' END,
        completed_at = CASE WHEN c.dep_failed THEN now() END,
        error = CASE WHEN c.dep_failed THEN
            'werk_trio.errors.DependencyFailed: dependency ' || c.failed_parent || ' ended failed or aborted' END
    FROM cand c
    WHERE j.id = c.job_id AND j.status = 'waiting' AND (c.all_done OR c.dep_failed)
    RETURNING j.id, j.status, j.queue
)
SELECT id, status, queue,
    (SELECT count(pg_notify(%(channel)s, q.queue))
       FROM (SELECT DISTINCT queue FROM upd WHERE status = 'queued') q) AS notified
FROM upd
"""

# Dependents (direct) of the given parents that are still waiting.
WAITING_DEPENDENTS = """
SELECT DISTINCT d.job_id FROM {job_deps} d JOIN {jobs} w ON w.id = d.job_id
WHERE d.depends_on = ANY(%(ids)s::uuid[]) AND w.status = 'waiting'
"""

GET_DEPENDENCIES = """
SELECT d.depends_on, d.allow_failure, p.status
FROM {job_deps} d LEFT JOIN {jobs} p ON p.id = d.depends_on
WHERE d.job_id = %(id)s ORDER BY d.depends_on
"""

# --- inspecting ---------------------------------------------------------------

GET_JOB = "SELECT " + JOB_COLUMNS + " FROM {jobs} WHERE id = %(id)s"
GET_JOBS = "SELECT " + JOB_COLUMNS + " FROM {jobs} WHERE id = ANY(%(ids)s::uuid[])"

LIST_JOBS = (
    "SELECT " + JOB_COLUMNS + """ FROM {jobs}
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(status)s::text[] IS NULL OR status = ANY(%(status)s::text[]))
  AND (%(worker_id)s::uuid IS NULL OR worker_id = %(worker_id)s)
  AND (%(function)s::text IS NULL OR function = %(function)s)
  AND (%(search)s::text IS NULL OR function ILIKE %(search)s OR key ILIKE %(search)s
       OR id::text LIKE %(search)s OR payload ILIKE %(search)s)
ORDER BY enqueued_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s"""
)

GET_EXECUTIONS = """
SELECT job_id, attempt, worker_id, status, started_at, finished_at, error
FROM {executions} WHERE job_id = %(id)s ORDER BY attempt
"""

COUNT_BY_STATUS = """
SELECT queue, status, count(*) FROM {jobs} GROUP BY queue, status ORDER BY queue, status
"""

# --- managing -----------------------------------------------------------------

CANCEL_JOB = """
UPDATE {jobs} SET status = 'aborted', completed_at = now(),
    error = COALESCE(error, 'cancelled before it started')
WHERE id = %(id)s AND status IN ('queued', 'scheduled', 'waiting')
RETURNING """ + JOB_COLUMNS

ABORT_JOB = """
UPDATE {jobs} SET status = CASE WHEN status = 'active' THEN 'aborting' ELSE 'aborted' END,
    completed_at = CASE WHEN status = 'active' THEN completed_at ELSE now() END,
    error = CASE WHEN status = 'active' THEN error ELSE COALESCE(error, 'aborted before it started') END
WHERE id = %(id)s AND status IN ('active', 'queued', 'scheduled', 'waiting')
RETURNING """ + JOB_COLUMNS

# A manual requeue gives the job a fresh attempt budget. Waiting jobs keep
# waiting; a running job cannot be requeued (abort it first).
REQUEUE_JOB = """
WITH upd AS (
    UPDATE {jobs} SET status = 'queued', attempts = 0, scheduled_at = now(), started_at = NULL,
        completed_at = NULL, worker_id = NULL, error = NULL, result = NULL, touched_at = NULL,
        expires_at = CASE WHEN ttl IS NULL THEN NULL ELSE now() + make_interval(secs => ttl) END
    WHERE id = %(id)s AND status IN ('complete', 'failed', 'aborted', 'queued', 'scheduled')
    RETURNING """ + JOB_COLUMNS + """
)
SELECT upd.*, pg_notify(%(channel)s, upd.queue) IS NULL FROM upd
"""

DELETE_JOB = "DELETE FROM {jobs} WHERE id = %(id)s RETURNING id"

TOUCH_JOB = """
UPDATE {jobs} SET touched_at = now() WHERE id = %(id)s AND status IN ('active', 'aborting')
RETURNING touched_at
"""

EXISTS_JOB = "SELECT status FROM {jobs} WHERE id = %(id)s"

BULK_REQUEUE = """
WITH upd AS (
    UPDATE {jobs} SET status = 'queued', attempts = 0, scheduled_at = now(), started_at = NULL,
        completed_at = NULL, worker_id = NULL, error = NULL, result = NULL, touched_at = NULL
    WHERE status IN ('failed', 'aborted')
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
      AND (%(function)s::text IS NULL OR function = %(function)s)
    RETURNING queue
)
SELECT count(*), (SELECT count(pg_notify(%(channel)s, q.queue)) FROM (SELECT DISTINCT queue FROM upd) q)
FROM upd
"""

BULK_CANCEL = """
WITH upd AS (
    UPDATE {jobs} SET status = 'aborted', completed_at = now(),
        error = COALESCE(error, 'cancelled before it started')
    WHERE status IN ('queued', 'scheduled', 'waiting')
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    RETURNING 1
)
SELECT count(*) FROM upd
"""

PURGE_JOBS = """
WITH del AS (
    DELETE FROM {jobs}
    WHERE status = ANY(%(statuses)s::text[])
      AND COALESCE(completed_at, enqueued_at) <= now() - make_interval(secs => %(older_than)s)
    RETURNING 1
)
SELECT count(*) FROM del
"""

TRUNCATE = "TRUNCATE {job_deps}, {executions}, {jobs}, {workers}"
VACUUM = "VACUUM (ANALYZE) {jobs}, {executions}, {workers}, {job_deps}"
