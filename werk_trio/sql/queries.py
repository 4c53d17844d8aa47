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
# ``d`` (delay) and ``tu`` (ttl) are whole microseconds, so the client gets each
# row's scheduled_at and expires_at by the same exact arithmetic from the one
# row this returns -- now() (every new row's enqueued_at), the ids of the keyed
# rows that were inserted (a keyed row missing from it lost its key to another
# job, ON CONFLICT DO NOTHING, even within this batch), and the NOTIFY count --
# instead of shipping back a row per job; one aggregate pass over the
# inserted rows computes them.
# New claimable jobs wake the workers of their queues: pg_notify per queued
# row, which Postgres folds into one NOTIFY per queue (identical channel and
# payload within a transaction); cheaper than a DISTINCT for one row, and no
# dearer for 20,000.
_KEY_CONFLICT = "ON CONFLICT (key) WHERE key IS NOT NULL DO NOTHING"
INSERT_JOBS = """
WITH ins AS (
    INSERT INTO {jobs} (id, function, queue, status, priority, max_attempts, scheduled_at,
        expires_at, key, group_key, payload, timeout_secs, heartbeat_secs, meta, ttl, result_ttl,
        failure_ttl, on_success, on_failure, on_stopped, retry_intervals, repeat_remaining,
        repeat_interval_secs, repeat_intervals, cron_name, failure_mode)
    SELECT id, f, COALESCE(q, 'default'), COALESCE(s, 'queued'), COALESCE(p, 0),
        COALESCE(ma, 1), run_at, run_at + tu * interval '1 microsecond', k, g, pl, to_, hb, m,
        ttl, rttl, fttl, on_s, on_f, on_x, ri, COALESCE(rr, 0), rs, rv, cron,
        COALESCE(fm, 'hold')
    FROM (
        SELECT t.*, COALESCE(at, now() + d * interval '1 microsecond', now()) AS run_at
        FROM json_to_recordset(%(rows)s::json) AS t(
            id uuid, f text, q text, s text, p integer, ma integer, d bigint, at timestamptz,
            k text, g text, pl text, to_ float8, hb float8, m text, ttl float8, tu bigint,
            rttl float8, fttl float8, on_s jsonb, on_f jsonb, on_x jsonb, ri float8[],
            rr integer, rs float8, rv float8[], cron text, fm text)
    ) AS input
    """ + _KEY_CONFLICT + """
    RETURNING id, status, queue, key
)
SELECT now(), array_agg(id) FILTER (WHERE key IS NOT NULL) AS keyed,
    count(pg_notify(%(channel)s, queue)) FILTER (WHERE status = 'queued') AS notified
FROM ins
"""

# The same for a batch without any _key, where no row can conflict: a plain
# INSERT skips the speculative insertion ON CONFLICT does for every row.
INSERT_JOBS_NO_KEYS = INSERT_JOBS.replace(_KEY_CONFLICT, "")

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

# Finished attempts, plus the job row itself as the attempt it holds: the
# running one (status active/aborting), or the last one of a complete job (a
# completion writes no execution row: the job row already says who ran it,
# when, and that it succeeded). The job row wins over an older execution row
# of the same number (a run cut off by a shutdown, then run again).
GET_EXECUTIONS = """
SELECT e.job_id, e.attempt, e.worker_id, e.status, e.started_at, e.finished_at, e.error
FROM {executions} e
LEFT JOIN {jobs} j ON j.id = e.job_id AND j.status IN ('active', 'aborting', 'complete')
    AND j.attempts = e.attempt
WHERE e.job_id = %(id)s AND j.id IS NULL
UNION ALL
SELECT id, attempts, worker_id, CASE WHEN status = 'complete' THEN 'complete' ELSE 'running' END,
    started_at, CASE WHEN status = 'complete' THEN completed_at END, NULL
FROM {jobs} WHERE id = %(id)s AND status IN ('active', 'aborting', 'complete') AND attempts >= 1
ORDER BY 2
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
    RETURNING id
)
SELECT count(*), array_agg(id) FROM upd
"""

PURGE_JOBS = """
WITH del AS (
    DELETE FROM {jobs}
    WHERE id IN (
        SELECT id FROM {jobs}
        WHERE status = ANY(%(statuses)s::text[])
          AND COALESCE(completed_at, enqueued_at) <= now() - make_interval(secs => %(older_than)s)
          AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
        LIMIT %(limit)s)
    RETURNING 1
)
SELECT count(*) FROM del
"""

# ``werk slowest``: run time of the last attempt per function over the jobs
# that finished within %(since)s seconds -- a range scan of jobs_finished_idx
# (its predicate is this status list).
FUNCTION_STATS = """
SELECT function, count(*) AS runs, avg(secs), percentile_cont(0.5) WITHIN GROUP (ORDER BY secs),
    percentile_cont(0.95) WITHIN GROUP (ORDER BY secs), max(secs),
    count(*) FILTER (WHERE status = 'failed') AS failures
FROM (
    SELECT function, status, extract(epoch FROM completed_at - started_at)::float8 AS secs
    FROM {jobs}
    WHERE status IN ('complete', 'failed', 'aborted')
      AND completed_at >= now() - make_interval(secs => %(since)s)
      AND started_at IS NOT NULL
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
) finished
GROUP BY function
ORDER BY avg(secs) DESC, function
LIMIT %(limit)s
"""

TRUNCATE = (
    "TRUNCATE {job_deps}, {executions}, {jobs}, {workers}, {queue_samples}, {throughput},"
    " {finished_counts}, {stats_marks}"
)
VACUUM = (
    "VACUUM (ANALYZE) {jobs}, {executions}, {workers}, {job_deps}, {queue_samples}, {throughput},"
    " {finished_counts}, {stats_marks}"
)

# --- workers ------------------------------------------------------------------

REGISTER_WORKER = """
INSERT INTO {workers} (id, name, hostname, pid, worker_type, queues, concurrency, heartbeat_interval)
VALUES (%(id)s, %(name)s, %(hostname)s, %(pid)s, %(worker_type)s, %(queues)s, %(concurrency)s,
        %(heartbeat_interval)s)
ON CONFLICT (id) DO UPDATE SET last_seen = now(), status = 'running', stopped_at = NULL,
    expires_at = NULL
"""

# The worker's heartbeat; no row back means a sweeper took it for dead.
HEARTBEAT_WORKER = (
    "UPDATE {workers} SET last_seen = now() WHERE id = %(id)s AND status <> 'stopped' RETURNING 1"
)
# A stopped worker stays listed (status 'stopped') until expires_at, so an
# operator sees who left; DELETE_STOPPED_WORKERS removes it then. It holds no
# job (RELEASE_WORKER_JOBS ran first, in the same transaction), and the
# sweeper treats it like a missing worker (RESCUE_JOBS, DEAD_WORKERS).
DEREGISTER_WORKER = """
UPDATE {workers} SET status = 'stopped', stopped_at = now(),
    expires_at = now() + make_interval(secs => %(retention)s)
WHERE id = %(id)s
"""

# At deregistration, after the last outcome was written: jobs still active for
# this worker were claimed but never run (a claim cut off by stop or cancel
# after the server committed it, or jobs handed over after the runners were
# cancelled). Back to queued without spending the attempt, like a shutdown
# requeue; their open execution row is closed (the next claim reuses it).
RELEASE_WORKER_JOBS = """
WITH upd AS (
    UPDATE {jobs} SET status = 'queued', attempts = attempts - 1, worker_id = NULL
    WHERE worker_id = %(id)s AND status = 'active'
    RETURNING id, attempts + 1 AS attempt, queue
)
SELECT id, (SELECT count(pg_notify(%(jobs_channel)s, q.queue))
              FROM (SELECT DISTINCT queue FROM upd) q) AS woke
FROM upd
"""
# Jobs active for this worker that it does not know it holds: a claim that
# committed but whose reply never arrived (the connection died on the way
# back). They never started here, so they go back to queued with the attempt
# unspent. %(held)s is every job the worker knows (claimed, running, or
# finished but not yet acked); %(grace)s seconds keep a claim whose reply is
# still on its way out of it.
RELEASE_UNKNOWN_JOBS = """
WITH lost AS (
    SELECT id FROM {jobs}
    WHERE worker_id = %(worker_id)s AND status = 'active'
      AND started_at < now() - make_interval(secs => %(grace)s)
      AND NOT (id = ANY(%(held)s::uuid[]))
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE {jobs} j SET status = 'queued', attempts = j.attempts - 1, worker_id = NULL
    FROM lost l WHERE j.id = l.id AND j.status = 'active' AND j.worker_id = %(worker_id)s
    RETURNING j.id, j.queue
)
SELECT id, (SELECT count(pg_notify(%(jobs_channel)s, q.queue))
              FROM (SELECT DISTINCT queue FROM upd) q) AS woke
FROM upd
"""
_WORKER_COLUMNS = """id, name, hostname, pid, worker_type, queues, concurrency, heartbeat_interval,
    started_at, last_seen, status, extract(epoch FROM now() - last_seen) AS heartbeat_age,
    stopped_at, expires_at"""
LIST_WORKERS = "SELECT " + _WORKER_COLUMNS + " FROM {workers} ORDER BY started_at"
GET_WORKER = "SELECT " + _WORKER_COLUMNS + " FROM {workers} WHERE id = %(id)s"

# Jobs with _heartbeat that this worker runs: touched so the sweep leaves them.
TOUCH_JOBS = """
UPDATE {jobs} SET touched_at = now()
WHERE id = ANY(%(ids)s::uuid[]) AND worker_id = %(worker_id)s AND status IN ('active', 'aborting')
"""

# --- claiming -----------------------------------------------------------------

# The tail shared by both claim statements: mark the picked rows active for
# this worker (spending an attempt), at most one per concurrency group. No
# execution row yet: the running attempt is the job row itself, and its
# execution row is written once, with the outcome.
# Sent before a claim, in the same pipeline (so in the claim's implicit
# transaction, ended by the pipeline's one Sync), local to that transaction
# (the connection goes back to the pool as it came; works through PgBouncer in
# transaction mode):
# * plan_cache_mode: the prepared claim statements run their generic plan.
#   Left to itself ("auto"), Postgres keeps planning them afresh -- a LIMIT of
#   unknown size makes the generic plan look dear -- and planning cost ~0.3 ms
#   per claim, as much as running it (measured: backend CPU 37-40 -> 30-32
#   us/job for claim + complete at 50 per claim).
# * synchronous_commit (CLAIM_SETTINGS, unless durable_claims): the claim's
#   commit does not wait for its WAL flush (~0.2 ms here, on the critical path
#   of every claim; the drain at concurrency 50 went 17,900 -> 20,700 jobs/s).
#   Only a crash of the database server can undo such a commit, and then only
#   the last few hundred ms of claims: their jobs are simply queued again.
#   Completions stay durable, and a completion's flush covers every claim
#   written before it.
GENERIC_PLANS = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"
CLAIM_SETTINGS = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true),"
    " set_config('synchronous_commit', 'off', true)"
)

_CLAIM_TAIL = """
ranked AS (
    SELECT id, group_key,
        row_number() OVER (PARTITION BY group_key ORDER BY ord) AS group_rank
    FROM picked
), claimed AS (
    UPDATE {jobs} j SET status = 'active', attempts = j.attempts + 1, started_at = now(),
        worker_id = %(worker_id)s, touched_at = NULL, completed_at = NULL
    FROM ranked r
    WHERE j.id = r.id AND (r.group_key IS NULL OR r.group_rank = 1)
    RETURNING """ + ", ".join("j." + c.strip() for c in JOB_COLUMNS.split(",")) + """
)
SELECT * FROM claimed
"""

_CLAIMABLE = """status IN ('queued', 'scheduled') AND scheduled_at <= now()
      AND (expires_at IS NULL OR expires_at > now())
      AND (group_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM {jobs} a WHERE a.group_key = c.group_key AND a.status IN ('active', 'aborting')))"""

# Both claim statements read each queue through the dequeue index in its
# own order (one LATERAL scan per queue, ``queue = name``, so the scan stops
# after %(n)s live rows instead of sorting every eligible row), locking with
# SKIP LOCKED as they go; then they keep the best %(n)s across queues. Rows
# locked but not kept are released when the statement commits.

# Priority: highest priority first across all the worker's queues.
CLAIM_PRIORITY = """
WITH qs AS (
    SELECT name FROM unnest(%(queues)s::text[]) AS q(name)
), cand AS (
    SELECT s.* FROM qs CROSS JOIN LATERAL (
        SELECT c.id, c.group_key, c.priority, c.scheduled_at FROM {jobs} c
        WHERE queue = qs.name AND """ + _CLAIMABLE + """
        ORDER BY priority DESC, scheduled_at, id
        LIMIT %(n)s
        FOR UPDATE SKIP LOCKED
    ) s
), picked AS (
    SELECT id, group_key, row_number() OVER (ORDER BY priority DESC, scheduled_at, id) AS ord
    FROM cand ORDER BY priority DESC, scheduled_at, id LIMIT %(n)s
), """ + _CLAIM_TAIL

# RoundRobin / Random: queues interleaved in the given order (the worker
# rotates or shuffles it each poll): the first job of each queue, then the
# second of each, ...
CLAIM_BY_QUEUE = """
WITH qs AS (
    SELECT name, pos FROM unnest(%(queues)s::text[]) WITH ORDINALITY AS q(name, pos)
), cand AS (
    SELECT s.id, s.group_key, row_number() OVER (PARTITION BY qs.pos ORDER BY s.priority DESC,
           s.scheduled_at, s.id) AS rn, qs.pos
    FROM qs CROSS JOIN LATERAL (
        SELECT c.id, c.group_key, c.priority, c.scheduled_at FROM {jobs} c
        WHERE queue = qs.name AND """ + _CLAIMABLE + """
        ORDER BY priority DESC, scheduled_at, id
        LIMIT %(n)s
        FOR UPDATE SKIP LOCKED
    ) s
), picked AS (
    SELECT id, group_key, row_number() OVER (ORDER BY rn, pos) AS ord
    FROM cand ORDER BY rn, pos LIMIT %(n)s
), """ + _CLAIM_TAIL

# --- completing ---------------------------------------------------------------

# One statement writes a whole batch of outcomes. Each outcome is fenced: it
# applies only if the job is still active (or aborting) for this worker and
# this attempt -- a late ack from a worker that lost the job changes nothing.
# The fence sits in the UPDATE's own WHERE, which Postgres re-checks on the
# latest row version, so no separate locking pass is needed; only rows the
# UPDATE really changed get execution rows.
# kind: complete | fail (retry if attempts are left) | fail_final | abort |
# requeue (shutdown: back to queued without spending the attempt). ``delay``
# (seconds, computed by the runner from the job's retry or repeat intervals)
# is added to the database clock.
COMPLETE_BATCH = """
WITH o AS (
    SELECT * FROM json_to_recordset(%(outcomes)s::json)
        AS o(id uuid, attempt integer, kind text, result text, error text, delay float8)
), cur AS (
    SELECT j.id, j.attempts, j.started_at, o.kind, o.result, o.error, o.delay,
        CASE
            WHEN o.kind = 'requeue' THEN 'queued'
            WHEN o.kind = 'abort' OR j.status = 'aborting' THEN 'aborted'
            WHEN o.kind = 'complete' AND j.repeat_remaining > 0 THEN 'scheduled'
            WHEN o.kind = 'complete' THEN 'complete'
            WHEN o.kind = 'fail' AND j.attempts < j.max_attempts THEN
                CASE WHEN COALESCE(o.delay, 0) > 0 THEN 'scheduled' ELSE 'queued' END
            ELSE 'failed'
        END AS new_status
    FROM {jobs} j JOIN o ON o.id = j.id
    WHERE j.worker_id = %(worker_id)s AND j.attempts = o.attempt
      AND j.status IN ('active', 'aborting')
), upd AS (
    UPDATE {jobs} j SET
        status = c.new_status,
        attempts = CASE WHEN c.kind = 'requeue' THEN j.attempts - 1
                        WHEN c.kind = 'complete' AND c.new_status = 'scheduled' THEN 0
                        ELSE j.attempts END,
        result = CASE WHEN c.kind = 'complete' THEN c.result ELSE j.result END,
        error = CASE WHEN c.kind = 'complete' THEN NULL WHEN c.kind = 'requeue' THEN j.error
                     ELSE c.error END,
        completed_at = CASE WHEN c.new_status IN ('complete', 'failed', 'aborted') THEN now() END,
        scheduled_at = CASE WHEN c.new_status IN ('queued', 'scheduled')
                            THEN now() + make_interval(secs => COALESCE(c.delay, 0))
                            ELSE j.scheduled_at END,
        repeat_remaining = CASE WHEN c.kind = 'complete' AND c.new_status = 'scheduled'
                                THEN j.repeat_remaining - 1 ELSE j.repeat_remaining END,
        worker_id = CASE WHEN c.new_status IN ('queued', 'scheduled') THEN NULL ELSE j.worker_id END,
        expires_at = CASE WHEN c.new_status IN ('queued', 'scheduled') THEN NULL ELSE j.expires_at END
    FROM cur c
    -- the fence again, here, so the UPDATE re-checks it on the row's latest
    -- version (a sweeper or another worker may have taken the job meanwhile)
    WHERE j.id = c.id AND j.worker_id = %(worker_id)s AND j.attempts = c.attempts
      AND j.status IN ('active', 'aborting')
    RETURNING j.id, j.status, j.queue, j.failure_mode, c.kind, c.attempts AS attempt,
        j.started_at, c.error, c.new_status,
        EXISTS (SELECT 1 FROM {job_deps} d WHERE d.depends_on = j.id) AS has_dependents,
        j.on_success IS NOT NULL OR j.on_failure IS NOT NULL OR j.on_stopped IS NOT NULL AS has_callbacks
), ex AS (
    INSERT INTO {executions} (job_id, attempt, worker_id, status, started_at, finished_at, error)
    SELECT u.id, u.attempt, %(worker_id)s,
        CASE WHEN u.kind = 'complete' THEN 'complete'
             WHEN u.new_status = 'aborted' OR u.kind = 'requeue' THEN 'aborted' ELSE 'failed' END,
        u.started_at, now(), CASE WHEN u.kind = 'complete' THEN NULL ELSE u.error END
    FROM upd u
    -- a job that ends complete is its own record of its last attempt (see
    -- GET_EXECUTIONS): no row here, the hot path's one insert saved
    WHERE u.new_status <> 'complete'
    -- a run cut off by a shutdown keeps its number: its row is replaced when
    -- the attempt runs again
    ON CONFLICT (job_id, attempt) DO UPDATE SET worker_id = excluded.worker_id,
        status = excluded.status, started_at = excluded.started_at,
        finished_at = excluded.finished_at, error = excluded.error
)
SELECT id, status, queue, failure_mode, kind, has_dependents, has_callbacks,
    (SELECT count(pg_notify(%(jobs_channel)s, q.queue))
       FROM (SELECT DISTINCT queue FROM upd WHERE status = 'queued') q) AS woke,
    (SELECT count(pg_notify(%(done_channel)s, CASE WHEN length(d.ids) > 7000 THEN '*' ELSE d.ids END))
       FROM (SELECT string_agg(id::text, ',') AS ids FROM upd
             WHERE status IN ('complete', 'failed', 'aborted')) d
       WHERE d.ids IS NOT NULL) AS done
FROM upd
"""

# The rest of a completion transaction, pipelined after COMPLETE_BATCH with
# the batch's ids as %(ids)s (they see its changes; for jobs that did not end
# they find nothing to do). Dependents are locked by one statement and
# resolved by the next, whose snapshot is taken after the locks are held, so a
# parent finished concurrently by another worker is seen.
RESOLVE_DEPENDENTS_OF = RESOLVE_WAITING.replace(
    "WHERE d.job_id = ANY(%(ids)s::uuid[])",
    "WHERE d.job_id IN (SELECT job_id FROM {job_deps} WHERE depends_on = ANY(%(ids)s::uuid[]))",
)

DELETE_FAILED = """
DELETE FROM {jobs} WHERE id = ANY(%(ids)s::uuid[]) AND status = 'failed' AND failure_mode = 'delete'
"""

NOTIFY_DONE = "SELECT pg_notify(%(channel)s, %(payload)s)"

# Dependents of the given (now terminal) parents, locked: their resolution
# runs as the next statement of the same transaction, with a fresh snapshot.
LOCK_DEPENDENTS = """
SELECT w.id FROM {jobs} w
WHERE w.status = 'waiting' AND w.id IN (
    SELECT job_id FROM {job_deps} WHERE depends_on = ANY(%(ids)s::uuid[]))
ORDER BY w.id
FOR UPDATE OF w
"""

# --- abort-watcher -------------------------------------------------------------

ABORTING_JOBS = """
SELECT id FROM {jobs} WHERE worker_id = %(worker_id)s AND status = 'aborting'
"""

# --- sweeper -------------------------------------------------------------------

SWEEP_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended(%(key)s, 1))"

# Workers silent for three of their heartbeat intervals are dead -- judged
# only over a stretch in which the sweeping worker itself reached the
# database (%(healthy_for)s seconds; NULL for a sweep outside a worker): after
# a database outage every live worker's last beat is old, and none is dead.
DEAD_WORKERS = """
DELETE FROM {workers}
WHERE status <> 'stopped' AND last_seen < now() - make_interval(secs => 3 * heartbeat_interval)
  AND (%(healthy_for)s::float8 IS NULL OR 3 * heartbeat_interval < %(healthy_for)s::float8)
RETURNING id, name
"""

# Running jobs whose worker is gone (dead, or its row deleted), or untouched
# for max_active_secs: the attempt is spent; requeue if attempts are left,
# else fail. The lost attempt gets its execution row, failed.
RESCUE_JOBS = """
WITH lost AS (
    SELECT j.id, j.attempts, j.worker_id, j.started_at,
        CASE WHEN w.id IS NULL THEN 'worker lost: worker ' || j.worker_id::text
                                    || ' died (no heartbeat for 3 intervals) while running this job'
             ELSE 'worker lost: job stuck, not touched for '
                  || %(max_active_secs)s::text || 's (max_active_secs)' END AS reason
    FROM {jobs} j LEFT JOIN {workers} w ON w.id = j.worker_id AND w.status <> 'stopped'
    WHERE j.status IN ('active', 'aborting')
      AND (w.id IS NULL
           OR COALESCE(j.touched_at, j.started_at) < now() - make_interval(secs => %(max_active_secs)s))
    FOR UPDATE OF j SKIP LOCKED
), upd AS (
    UPDATE {jobs} j SET
        status = CASE WHEN j.status = 'aborting' THEN 'aborted'
                      WHEN j.attempts < j.max_attempts THEN 'queued' ELSE 'failed' END,
        worker_id = CASE WHEN j.status <> 'aborting' AND j.attempts < j.max_attempts THEN NULL
                         ELSE j.worker_id END,
        scheduled_at = CASE WHEN j.status <> 'aborting' AND j.attempts < j.max_attempts THEN now()
                            ELSE j.scheduled_at END,
        completed_at = CASE WHEN j.status = 'aborting' OR j.attempts >= j.max_attempts THEN now() END,
        error = l.reason
    FROM lost l WHERE j.id = l.id
    RETURNING j.id, j.status, j.queue
), ex AS (
    INSERT INTO {executions} (job_id, attempt, worker_id, status, started_at, finished_at, error)
    SELECT l.id, l.attempts, l.worker_id, 'failed', l.started_at, now(), l.reason FROM lost l
    ON CONFLICT (job_id, attempt) DO NOTHING
)
SELECT id, status, queue,
    (SELECT count(pg_notify(%(jobs_channel)s, q.queue))
       FROM (SELECT DISTINCT queue FROM upd WHERE status = 'queued') q) AS woke
FROM upd
"""

# Unstarted jobs past their _ttl never run.
EXPIRE_JOBS = """
UPDATE {jobs} SET status = 'aborted', completed_at = now(),
    error = 'expired: not started within its ttl'
WHERE status IN ('queued', 'scheduled', 'waiting') AND expires_at <= now()
RETURNING id
"""

# Finished rows past their result_ttl / failure_ttl.
DELETE_EXPIRED_RESULTS = """
WITH del AS (
    DELETE FROM {jobs}
    WHERE (status = 'complete' AND result_ttl IS NOT NULL
           AND completed_at <= now() - make_interval(secs => result_ttl))
       OR (status IN ('failed', 'aborted') AND failure_ttl IS NOT NULL
           AND completed_at <= now() - make_interval(secs => failure_ttl))
    RETURNING 1
)
SELECT count(*) FROM del
"""

# Safety net for dependency resolution: waiting jobs whose parents all ended.
STALE_WAITING = """
SELECT w.id FROM {jobs} w WHERE w.status = 'waiting' AND NOT EXISTS (
    SELECT 1 FROM {job_deps} d JOIN {jobs} p ON p.id = d.depends_on
    WHERE d.job_id = w.id AND p.status NOT IN ('complete', 'failed', 'aborted'))
LIMIT 1000
"""

# --- reporting -----------------------------------------------------------------

# Latency percentiles (p50, p95, p99) of finished attempts, in seconds:
# enqueue -> start, and run time. A complete job's last attempt is the job
# row itself (GET_EXECUTIONS).
EXECUTION_PERCENTILES = """
WITH runs AS (
    SELECT e.started_at, e.finished_at, j.enqueued_at
    FROM {executions} e JOIN {jobs} j ON j.id = e.job_id
    WHERE e.finished_at IS NOT NULL
      AND NOT (j.status = 'complete' AND j.attempts = e.attempt)
    UNION ALL
    SELECT started_at, completed_at, enqueued_at FROM {jobs}
    WHERE status = 'complete' AND attempts >= 1
)
SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
           (ORDER BY extract(epoch FROM started_at - enqueued_at)),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP
           (ORDER BY extract(epoch FROM finished_at - started_at)),
       count(*)
FROM runs
"""

# werk_trio.testing: drop a test schema and everything in it.
DROP_SCHEMA = "DROP SCHEMA IF EXISTS {schema} CASCADE"

# --- introspection (the API behind the dashboards) ----------------------------

# Stopped workers past their retention (the sweeper).
DELETE_STOPPED_WORKERS = """
DELETE FROM {workers} WHERE status = 'stopped' AND expires_at <= now() RETURNING id
"""

_EPOCH = "timestamptz '1970-01-01 00:00:00+00'"

# The live jobs (not finished), each branch through its own partial index --
# dequeue, running, waiting -- so the cost follows the live jobs, never the
# finished ones.
_LIVE_JOBS = """
    SELECT queue, status FROM {jobs} WHERE status IN ('queued', 'scheduled')
    UNION ALL
    SELECT queue, status FROM {jobs} WHERE status IN ('active', 'aborting')
    UNION ALL
    SELECT queue, status FROM {jobs} WHERE status = 'waiting'"""

# Per-queue counts by status, with the number of workers online (running and
# heard from within three of their heartbeat intervals) on every row; one row
# with a NULL queue when there is no job at all. Live jobs are counted as they
# are; finished ones are the last recount (FINISHED_COUNTS, as of its as_of)
# plus the rows finished since (a range of the finished-rows index), so a
# million finished rows are never counted here. Without a recount yet, every
# finished row is counted. (The upper bound 'infinity' changes no result: as a
# second unknown bound it makes the planner guess a short range -- 0.5 % of
# the rows, not a third -- so it reads the index without launching parallel
# workers, which cost more than the whole range.)
QUEUE_STATS = """
WITH since AS (
    SELECT COALESCE(max(as_of), '-infinity') AS at, timestamptz 'infinity' AS until
    FROM {finished_counts}
), counted AS (
    SELECT queue, status, 1::bigint AS n FROM (""" + _LIVE_JOBS + """
    ) live
    UNION ALL
    SELECT queue, status, n FROM {finished_counts}
    UNION ALL
    SELECT queue, status, count(*) FROM {jobs}
    WHERE status IN ('complete', 'failed', 'aborted') AND completed_at >= (SELECT at FROM since)
      AND completed_at < (SELECT until FROM since)
    GROUP BY queue, status
), per AS (
    SELECT queue,
        COALESCE(sum(n) FILTER (WHERE status = 'scheduled'), 0) AS scheduled,
        COALESCE(sum(n) FILTER (WHERE status = 'queued'), 0) AS queued,
        COALESCE(sum(n) FILTER (WHERE status = 'active'), 0) AS active,
        COALESCE(sum(n) FILTER (WHERE status = 'aborting'), 0) AS aborting,
        COALESCE(sum(n) FILTER (WHERE status = 'waiting'), 0) AS waiting,
        COALESCE(sum(n) FILTER (WHERE status = 'complete'), 0) AS complete,
        COALESCE(sum(n) FILTER (WHERE status = 'failed'), 0) AS failed,
        COALESCE(sum(n) FILTER (WHERE status = 'aborted'), 0) AS aborted
    FROM counted GROUP BY queue HAVING sum(n) > 0
), online AS (
    SELECT count(*) AS n FROM {workers}
    WHERE status <> 'stopped' AND last_seen > now() - make_interval(secs => 3 * heartbeat_interval)
)
SELECT p.queue, p.scheduled, p.queued, p.active, p.aborting, p.waiting, p.complete, p.failed,
    p.aborted, o.n
FROM online o LEFT JOIN per p ON true
ORDER BY p.queue
"""

# Finished jobs per time bucket (%(bucket)s seconds, a multiple of 60, aligned
# to the epoch), per queue and per worker, over the last %(n)s buckets (the
# current one included): completed and failed (jobs that ended failed; a
# retried attempt is not a failure of the job). Minutes already rolled up
# (THROUGHPUT, up to the 'throughput' mark) come from there; the minutes
# after the mark from the job rows (a short range of the finished-rows index,
# which carries status, queue and worker_id). With %(hourly)s (buckets of
# whole hours), the hours rolled up from the minutes (up to the
# 'throughput_hour' mark) come from the hour rows: a week is 168 rows per
# queue and worker, not 10,080. Every bucket appears at least
# once (queue and worker NULL, counts 0 when nothing finished in it).
_FIRST_BUCKET = (
    "(date_bin(make_interval(secs => %(bucket)s), now(), " + _EPOCH + ")"
    " - make_interval(secs => %(bucket)s * (%(n)s - 1)))"
)
THROUGHPUT_HISTORY = """
WITH w AS (
    SELECT make_interval(secs => %(bucket)s) AS step,
        date_bin(make_interval(secs => %(bucket)s), now(), """ + _EPOCH + """) AS last,
        COALESCE((SELECT at FROM {stats_marks} WHERE name = 'throughput'), '-infinity') AS mark,
        CASE WHEN %(hourly)s THEN
            COALESCE((SELECT at FROM {stats_marks} WHERE name = 'throughput_hour'), '-infinity')
        ELSE '-infinity' END AS hour_mark,
        timestamptz 'infinity' AS until
), grid AS (
    SELECT w.last - w.step * g.i AS t FROM w, generate_series(0, %(n)s - 1) AS g(i)
), parts AS (
    SELECT date_bin((SELECT step FROM w), r.bucket, """ + _EPOCH + """) AS t, r.queue, r.worker_id,
        r.completed::bigint AS completed, r.failed::bigint AS failed
    FROM {throughput} r
    WHERE %(hourly)s AND r.level = 'hour' AND r.bucket >= """ + _FIRST_BUCKET + """
      AND r.bucket < (SELECT hour_mark FROM w)
    UNION ALL
    SELECT date_bin((SELECT step FROM w), r.bucket, """ + _EPOCH + """), r.queue, r.worker_id,
        r.completed, r.failed
    FROM {throughput} r
    WHERE r.level = 'minute' AND r.bucket >= """ + _FIRST_BUCKET + """
      AND r.bucket >= (SELECT hour_mark FROM w) AND r.bucket < (SELECT mark FROM w)
    UNION ALL
    SELECT date_bin((SELECT step FROM w), j.completed_at, """ + _EPOCH + """), j.queue, j.worker_id,
        count(*) FILTER (WHERE j.status = 'complete'), count(*) FILTER (WHERE j.status = 'failed')
    FROM {jobs} j
    WHERE j.status IN ('complete', 'failed') AND j.completed_at >= """ + _FIRST_BUCKET + """
      AND j.completed_at >= (SELECT mark FROM w)
      AND j.completed_at < (SELECT until FROM w)  -- a short range for the planner, as in QUEUE_STATS
    GROUP BY 1, 2, 3
), done AS (
    SELECT t, queue, worker_id, sum(completed) AS completed, sum(failed) AS failed
    FROM parts GROUP BY 1, 2, 3 HAVING sum(completed) + sum(failed) > 0
)
SELECT g.t, d.queue, d.worker_id, COALESCE(wk.name, d.worker_id::text) AS worker_name,
    COALESCE(d.completed, 0), COALESCE(d.failed, 0)
FROM grid g LEFT JOIN done d ON d.t = g.t LEFT JOIN {workers} wk ON wk.id = d.worker_id
ORDER BY g.t, d.queue, worker_name
"""

# --- the statistics pass (the sweeper, under its lock: one writer at a time)

# Is a pass due? None was taken in the last 0.9 * %(interval)s seconds
# (whichever worker took it).
STATS_DUE = """
SELECT NOT EXISTS (SELECT 1 FROM {stats_marks}
    WHERE name = 'sample' AND at > now() - make_interval(secs => 0.9 * %(interval)s))
"""

# One queue-depth sample: one row per queue with live jobs, plus a zero row
# for a queue whose previous sample was not all zeros (the drop to empty is
# recorded once); then the pass's mark.
SAMPLE_QUEUES = """
WITH counts AS (
    SELECT queue,
        count(*) FILTER (WHERE status = 'queued') AS queued,
        count(*) FILTER (WHERE status = 'scheduled') AS scheduled,
        count(*) FILTER (WHERE status = 'waiting') AS waiting,
        count(*) FILTER (WHERE status IN ('active', 'aborting')) AS active
    FROM (""" + _LIVE_JOBS + """
    ) live GROUP BY queue
), previous AS (
    SELECT queue FROM {queue_samples}
    WHERE sampled_at = (SELECT max(sampled_at) FROM {queue_samples})
      AND queued + scheduled + waiting + active > 0
), mark AS (
    INSERT INTO {stats_marks} (name, at) VALUES ('sample', now())
    ON CONFLICT (name) DO UPDATE SET at = excluded.at
)
INSERT INTO {queue_samples} (sampled_at, queue, queued, scheduled, waiting, active)
SELECT now(), q.queue, COALESCE(c.queued, 0), COALESCE(c.scheduled, 0), COALESCE(c.waiting, 0),
    COALESCE(c.active, 0)
FROM (SELECT queue FROM counts UNION SELECT queue FROM previous) q
LEFT JOIN counts c ON c.queue = q.queue
RETURNING queue
"""

# Roll up the finished jobs of every whole minute since the 'throughput' mark
# (first pass: since %(retention)s seconds ago) that ended at least 5 s ago
# (so completions still committing are in), and move the mark.
ROLLUP_THROUGHPUT = """
WITH span AS (
    SELECT COALESCE((SELECT at FROM {stats_marks} WHERE name = 'throughput'),
                    date_bin(interval '1 minute', now() - make_interval(secs => %(retention)s), """ + _EPOCH + """)) AS first,
        date_bin(interval '1 minute', now() - interval '5 seconds', """ + _EPOCH + """) AS last
), ins AS (
    INSERT INTO {throughput} (level, bucket, queue, worker_id, completed, failed, aborted)
    SELECT 'minute', date_bin(interval '1 minute', j.completed_at, """ + _EPOCH + """), j.queue,
        j.worker_id,
        count(*) FILTER (WHERE j.status = 'complete'), count(*) FILTER (WHERE j.status = 'failed'),
        count(*) FILTER (WHERE j.status = 'aborted')
    FROM {jobs} j, span
    WHERE j.status IN ('complete', 'failed', 'aborted')
      AND j.completed_at >= span.first AND j.completed_at < span.last
    GROUP BY 2, 3, 4
    RETURNING 1
)
INSERT INTO {stats_marks} (name, at)
SELECT 'throughput', last FROM span WHERE last > first
ON CONFLICT (name) DO UPDATE SET at = excluded.at
RETURNING (SELECT count(*) FROM ins)
"""

# Roll the minute rows of every whole hour since the 'throughput_hour' mark
# (first pass: since the oldest minute row) up to the minute mark into hour
# rows, and move the mark.
ROLLUP_THROUGHPUT_HOURS = """
WITH span AS (
    SELECT COALESCE((SELECT at FROM {stats_marks} WHERE name = 'throughput_hour'),
                    (SELECT date_bin(interval '1 hour', min(bucket), """ + _EPOCH + """)
                     FROM {throughput} WHERE level = 'minute')) AS first,
        date_bin(interval '1 hour', (SELECT at FROM {stats_marks} WHERE name = 'throughput'),
                 """ + _EPOCH + """) AS last
), ins AS (
    INSERT INTO {throughput} (level, bucket, queue, worker_id, completed, failed, aborted)
    SELECT 'hour', date_bin(interval '1 hour', r.bucket, """ + _EPOCH + """), r.queue, r.worker_id,
        sum(r.completed)::int, sum(r.failed)::int, sum(r.aborted)::int
    FROM {throughput} r, span
    WHERE r.level = 'minute' AND r.bucket >= span.first AND r.bucket < span.last
    GROUP BY 2, 3, 4
    RETURNING 1
)
INSERT INTO {stats_marks} (name, at)
SELECT 'throughput_hour', last FROM span WHERE last > first
ON CONFLICT (name) DO UPDATE SET at = excluded.at
RETURNING (SELECT count(*) FROM ins)
"""

# Count the finished rows again, by queue and status, as of 5 s ago (the rows
# finished since are counted by QUEUE_STATS itself). Deletes and requeues of
# finished rows show in get_queue_stats from this recount on.
RECOUNT_FINISHED = """
WITH t AS (SELECT now() - interval '5 seconds' AS as_of), old AS (
    DELETE FROM {finished_counts}
)
INSERT INTO {finished_counts} (queue, status, n, as_of)
SELECT j.queue, j.status, count(*), t.as_of FROM {jobs} j, t
WHERE j.status IN ('complete', 'failed', 'aborted') AND j.completed_at < t.as_of
GROUP BY j.queue, j.status, t.as_of
"""

# Samples and hour rows past the retention; minute rows older than 25 hours
# once their hour is rolled up.
PRUNE_STATS = """
WITH s AS (
    DELETE FROM {queue_samples} WHERE sampled_at < now() - make_interval(secs => %(retention)s)
), m AS (
    DELETE FROM {throughput}
    WHERE level = 'minute' AND bucket < now() - interval '25 hours'
      AND bucket < (SELECT at FROM {stats_marks} WHERE name = 'throughput_hour')
)
DELETE FROM {throughput}
WHERE level = 'hour' AND bucket < now() - make_interval(secs => %(retention)s)
"""

# Samples of the last %(minutes)s; with %(bucket)s seconds, averaged per
# bucket (aligned to the epoch) and queue, the bucket's start as its time.
QUEUE_DEPTH_HISTORY = """
SELECT sampled_at, queue, queued, scheduled, waiting, active FROM {queue_samples}
WHERE sampled_at >= now() - make_interval(mins => %(minutes)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
ORDER BY sampled_at, queue
"""
QUEUE_DEPTH_HISTORY_BINNED = """
SELECT date_bin(make_interval(secs => %(bucket)s), sampled_at, """ + _EPOCH + """) AS t, queue,
    round(avg(queued))::int, round(avg(scheduled))::int, round(avg(waiting))::int,
    round(avg(active))::int
FROM {queue_samples}
WHERE sampled_at >= now() - make_interval(mins => %(minutes)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
GROUP BY 1, 2
ORDER BY 1, 2
"""

# Server version, database size, and each of this app's tables (%(tables)s:
# their qualified names) with its total size (indexes and TOAST included) and
# its row estimate: the planner's (pg_class.reltuples, set by VACUUM and
# ANALYZE -- autovacuum keeps it current), or the statistics' live-row count
# for a table never analyzed yet.
SERVER_INFO = """
SELECT current_setting('server_version'), version(), pg_database_size(current_database()),
    (SELECT COALESCE(json_agg(json_build_object(
            'name', c.relname, 'size_bytes', pg_total_relation_size(c.oid),
            'row_count', CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint
                              ELSE pg_stat_get_live_tuples(c.oid) END)
            ORDER BY pg_total_relation_size(c.oid) DESC), '[]'::json)
     FROM unnest(%(tables)s::text[]) AS t(name)
     JOIN pg_class c ON c.oid = to_regclass(t.name))
"""

# The jobs a worker runs now (active/aborting, through the running-jobs
# index) and, after them, the finished jobs it ran last (the finished-rows
# index read backwards from the newest, index-only: it carries worker_id).
LIST_WORKER_JOBS = (
    "SELECT " + JOB_COLUMNS + """ FROM (
    SELECT j.*, 0 AS part, j.started_at AS at FROM {jobs} j
    WHERE j.worker_id = %(worker_id)s AND j.status IN ('active', 'aborting')
    UNION ALL
    SELECT f.*, 1 AS part, f.completed_at AS at FROM (
        SELECT * FROM {jobs}
        WHERE worker_id = %(worker_id)s AND status IN ('complete', 'failed', 'aborted')
        ORDER BY completed_at DESC
        LIMIT %(limit)s + %(offset)s
    ) f
) x
ORDER BY part, at DESC, id
LIMIT %(limit)s OFFSET %(offset)s"""
)
