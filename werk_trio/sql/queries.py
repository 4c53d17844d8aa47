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
    repeat_intervals, cron_name, failure_mode, progress, progress_message"""

# Timestamps are read clamped to the years Python's datetime can hold: a row
# written past the API with 'infinity' or year 20000 would otherwise fail the
# whole fetch (psycopg cannot load it) -- for a claim, after it committed. A
# clamped time shows as 0001-01-02 or 9999-12-30; the stored value is unchanged.
_TIME_COLUMNS = frozenset({"scheduled_at", "enqueued_at", "started_at", "completed_at", "touched_at",
                           "expires_at"})  # fmt: skip


def _readable(columns: str, prefix: str = "") -> str:
    out = []
    for name in (c.strip() for c in columns.split(",")):
        if name in _TIME_COLUMNS:
            col = prefix + name  # NULL stays NULL (GREATEST would skip it)
            out.append(f"CASE WHEN {col} < '0001-01-02 00:00Z' THEN '0001-01-02 00:00Z'::timestamptz "
                       f"WHEN {col} > '9999-12-30 00:00Z' THEN '9999-12-30 00:00Z'::timestamptz "
                       f"ELSE {col} END AS {name}")  # fmt: skip
        else:
            out.append(prefix + name)
    return ", ".join(out)


#: The names of JOB_COLUMNS, in order.
JOB_COLUMN_NAMES = tuple(c.strip() for c in JOB_COLUMNS.split(","))
#: JOB_COLUMNS as read (times clamped), bare and for a table aliased ``j``.
JOB_COLUMNS_J = _readable(JOB_COLUMNS, "j.")
JOB_COLUMNS = _readable(JOB_COLUMNS)

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

# WerkConfig(ephemeral_tables=True): the worker registry as an UNLOGGED table
# (no WAL for the heartbeats; emptied by a database crash -- workers
# re-register at their next heartbeat). The {workers} identifier is a checked
# name, so it is safe inside the quotes of a regclass literal.
WORKERS_PERSISTENCE = "SELECT relpersistence FROM pg_class WHERE oid = '{workers}'::regclass"
SET_WORKERS_UNLOGGED = "ALTER TABLE {workers} SET UNLOGGED"

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


def _insert_jobs(conflict: str, answer: str | None = None) -> str:
    """INSERT_JOBS with ``conflict`` as its ON CONFLICT clause (or none); with
    ``answer``, the INSERT alone with that RETURNING clause (one job: no CTE)."""
    insert = """
    INSERT INTO {jobs} (id, function, queue, status, priority, max_attempts, scheduled_at,
        expires_at, key, group_key, payload, timeout_secs, heartbeat_secs, meta, ttl, result_ttl,
        failure_ttl, on_success, on_failure, on_stopped, retry_intervals, repeat_remaining,
        repeat_interval_secs, repeat_intervals, cron_name, failure_mode)
    -- a job given an _at that has passed is queued (claimable, and notified) at once
    SELECT id, f, COALESCE(q, 'default'),
        CASE WHEN s = 'scheduled' AND run_at <= now() THEN 'queued' ELSE COALESCE(s, 'queued') END,
        COALESCE(p, 0),
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
    """ + conflict
    if answer is not None:
        return insert + answer
    return "WITH ins AS (" + insert + """
    RETURNING id, status, queue, key, scheduled_at
)
SELECT now(), array_agg(id) FILTER (WHERE key IS NOT NULL) AS keyed,
    count(pg_notify({jobs_channel}, queue)) FILTER (WHERE status = 'queued') AS notified,
    -- jobs due later tell the workers of their queue when (flow control):
    -- one NOTIFY per queue with the earliest due time of the batch
    (SELECT count(pg_notify({control_channel}, 'due:' || extract(epoch FROM d.due)::text || ':' || d.queue))
       FROM (SELECT queue, min(scheduled_at) AS due FROM ins WHERE status = 'scheduled'
             GROUP BY queue) d) AS due_notified
FROM ins
"""


INSERT_JOBS = _insert_jobs(_KEY_CONFLICT)
# The same for a batch without any _key, where no row can conflict: a plain
# INSERT skips the speculative insertion ON CONFLICT does for every row.
INSERT_JOBS_NO_KEYS = _insert_jobs("")

# One job (enqueue()): the INSERT's own RETURNING gives INSERT_JOBS's answer
# -- now(), the id if the row is keyed, its NOTIFY -- without the CTE and the
# aggregate, ~35 us less server time per enqueue (measured: benchmarks/README.md).
# No row back: its key was taken.
_ONE_ANSWER = """
    RETURNING now(), CASE WHEN key IS NOT NULL THEN ARRAY[id] END,
        CASE WHEN status = 'queued' THEN pg_notify({jobs_channel}, queue) END,
        CASE WHEN status = 'scheduled'
             THEN pg_notify({control_channel}, 'due:' || extract(epoch FROM scheduled_at)::text || ':' || queue)
        END
"""
INSERT_JOB = _insert_jobs(_KEY_CONFLICT, _ONE_ANSWER)
INSERT_JOB_NO_KEY = _insert_jobs("", _ONE_ANSWER)

# enqueue_many of a batch RowBuilder.copyable says COPY can take (werk_trio/_bulk.py):
# the rows in binary COPY, status and times left to the column defaults (queued,
# now()), then the statement's now() -- the same transaction's, so the rows' --
# and one NOTIFY per queue of the batch, as INSERT_JOBS sends.
COPY_JOBS = """
COPY {jobs} (id, function, payload, queue, priority, max_attempts, retry_intervals, timeout_secs,
    heartbeat_secs, group_key, meta, result_ttl, failure_ttl, failure_mode, on_success, on_failure,
    on_stopped, repeat_remaining, repeat_interval_secs, repeat_intervals, cron_name)
FROM STDIN (FORMAT BINARY)
"""
# The same for a batch where no job sets any option: three columns.
COPY_JOBS_PLAIN = "COPY {jobs} (id, function, payload) FROM STDIN (FORMAT BINARY)"
COPY_JOBS_NOTIFY = """
SELECT now(), count(pg_notify({jobs_channel}, q)) FROM unnest(%(queues)s::text[]) AS q
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
def _resolve_waiting(waiting: str) -> str:
    """RESOLVE_WAITING for the waiting jobs ``waiting`` selects (a WHERE clause
    on ``d``, the dependency rows)."""
    return """
WITH cand AS (
    SELECT d.job_id,
        bool_and(p.id IS NULL OR p.status IN ('complete', 'failed', 'aborted')) AS all_done,
        bool_or(p.status IN ('failed', 'aborted') AND NOT d.allow_failure) AS dep_failed,
        min(p.id::text) FILTER (WHERE p.status IN ('failed', 'aborted') AND NOT d.allow_failure) AS failed_parent
    FROM {job_deps} d
    JOIN {jobs} w ON w.id = d.job_id AND w.status = 'waiting'
    LEFT JOIN {jobs} p ON p.id = d.depends_on
    """ + waiting + """
    GROUP BY d.job_id
), upd AS (
    UPDATE {jobs} j SET
        status = CASE WHEN c.dep_failed THEN 'failed'
                      WHEN j.scheduled_at > now() THEN 'scheduled' ELSE 'queued' END,
        completed_at = CASE WHEN c.dep_failed THEN now() END,
        error = CASE WHEN c.dep_failed THEN
            'werk_trio.errors.DependencyFailed: dependency ' || c.failed_parent || ' ended failed or aborted' END,
        expires_at = CASE WHEN c.dep_failed
                          THEN COALESCE(now() + make_interval(secs => LEAST(j.failure_ttl, 3155760000)), j.expires_at)
                          ELSE j.expires_at END
    FROM cand c
    WHERE j.id = c.job_id AND j.status = 'waiting' AND (c.all_done OR c.dep_failed)
    RETURNING j.id, j.status, j.queue
)
SELECT id, status, queue,
    (SELECT count(pg_notify({jobs_channel}, q.queue))
       FROM (SELECT DISTINCT queue FROM upd WHERE status = 'queued') q) AS notified
FROM upd
"""


RESOLVE_WAITING = _resolve_waiting("WHERE d.job_id = ANY(%(ids)s::uuid[])")


GET_DEPENDENCIES = """
SELECT d.depends_on, d.allow_failure, p.status
FROM {job_deps} d LEFT JOIN {jobs} p ON p.id = d.depends_on
WHERE d.job_id = %(id)s ORDER BY d.depends_on
"""

# --- inspecting ---------------------------------------------------------------

GET_JOB = "SELECT " + JOB_COLUMNS + " FROM {jobs} WHERE id = %(id)s"
GET_JOBS = "SELECT " + JOB_COLUMNS + " FROM {jobs} WHERE id = ANY(%(ids)s::uuid[])"

# Newest first, from the newest end of jobs_listing_idx (0005). The ORDER BY
# names the table's columns (j.), not the output's: the output enqueued_at is
# the clamped expression of JOB_COLUMNS, and ordering by it sorted every row.
LIST_JOBS = (
    "SELECT " + JOB_COLUMNS + """ FROM {jobs} j
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(status)s::text[] IS NULL OR status = ANY(%(status)s::text[]))
  AND (%(worker_id)s::uuid IS NULL OR worker_id = %(worker_id)s)
  AND (%(function)s::text IS NULL OR function = %(function)s)
  AND (%(search)s::text IS NULL OR function ILIKE %(search)s OR key ILIKE %(search)s
       OR id::text LIKE %(search)s OR payload ILIKE %(search)s OR queue ILIKE %(search)s)
ORDER BY j.enqueued_at DESC, j.id DESC
LIMIT %(limit)s OFFSET %(offset)s"""
)

# Finished attempts, plus the job row itself as the attempt it holds: the
# running one (status active/aborting), or the last one of a complete job (a
# completion writes no execution row: the job row already says who ran it,
# when, and that it succeeded). The job row wins over an older execution row
# of the same number (a run cut off by a shutdown, then run again).
GET_EXECUTIONS = """
SELECT e.job_id, e.attempt, e.worker_id, e.status, e.started_at, e.finished_at, e.error,
    NULL AS result, NULL AS function
FROM {executions} e
LEFT JOIN {jobs} j ON j.id = e.job_id AND j.status IN ('active', 'aborting', 'complete')
    AND j.attempts = e.attempt
WHERE e.job_id = %(id)s AND j.id IS NULL
UNION ALL
SELECT id, attempts, worker_id, CASE WHEN status = 'complete' THEN 'complete' ELSE 'running' END,
    started_at, CASE WHEN status = 'complete' THEN completed_at END, NULL,
    CASE WHEN status = 'complete' THEN result END, function
FROM {jobs} WHERE id = %(id)s AND status IN ('active', 'aborting', 'complete') AND attempts >= 1
ORDER BY 2
"""

COUNT_BY_STATUS = """
SELECT queue, status, count(*) FROM {jobs} GROUP BY queue, status ORDER BY queue, status
"""

# The API server's metrics sampler: per queue, how long the oldest claimable
# job has been due (the SLO number; 0 rows for a queue with none due). A skip
# scan of the dequeue index (queue, priority DESC, scheduled_at, id): one
# probe per (queue, priority) for its head, the earliest scheduled_at of that
# priority -- a priority has a due job exactly when its head is due, and the
# queue's oldest due job is the earliest due head. Two index probes per
# distinct (queue, priority), however long the backlog (counting the due rows
# read all of a million-job backlog each refresh).
def _head(cond: str) -> str:
    """The head of the dequeue index after ``cond`` (an ``AND ...`` or nothing)."""
    return """SELECT queue, priority, scheduled_at FROM {jobs}
        WHERE status IN ('queued', 'scheduled') """ + cond + """
        ORDER BY queue, priority DESC, scheduled_at, id LIMIT 1"""


OLDEST_CLAIMABLE = """
WITH RECURSIVE heads AS (
    (""" + _head("") + """)
    UNION ALL
    SELECT n.queue, n.priority, n.scheduled_at FROM heads h CROSS JOIN LATERAL (
        SELECT * FROM (
            (""" + _head("AND queue = h.queue AND priority < h.priority") + """)
            UNION ALL
            (""" + _head("AND queue > h.queue") + """)
        ) next_head LIMIT 1
    ) n
)
SELECT queue, extract(epoch FROM now() - min(scheduled_at))::float8
FROM heads WHERE scheduled_at <= now()
GROUP BY queue ORDER BY queue
"""

# --- managing -----------------------------------------------------------------

CANCEL_JOB = """
UPDATE {jobs} SET status = 'aborted', completed_at = now(),
    error = COALESCE(error, 'cancelled before it started'),
    expires_at = COALESCE(now() + make_interval(secs => LEAST(failure_ttl, 3155760000)), expires_at)
WHERE id = %(id)s AND status IN ('queued', 'scheduled', 'waiting')
RETURNING """ + JOB_COLUMNS

# Only a running job: an unstarted one is stopped with CANCEL_JOB (pgwerk's rule).
ABORT_JOB = """
UPDATE {jobs} SET status = 'aborting'
WHERE id = %(id)s AND status = 'active'
RETURNING """ + JOB_COLUMNS

# A manual requeue gives a finished job a fresh attempt budget. Queued,
# scheduled and waiting jobs are left as they are (pgwerk's rule); a running
# job cannot be requeued (abort it first).
REQUEUE_JOB = """
WITH upd AS (
    UPDATE {jobs} SET status = 'queued', attempts = 0, scheduled_at = now(), started_at = NULL,
        completed_at = NULL, worker_id = NULL, error = NULL, result = NULL, touched_at = NULL,
        expires_at = CASE WHEN ttl IS NULL THEN NULL ELSE now() + make_interval(secs => LEAST(ttl, 3155760000)) END
    WHERE id = %(id)s AND status IN ('complete', 'failed', 'aborted')
    RETURNING """ + JOB_COLUMNS + """
)
SELECT upd.*, pg_notify({jobs_channel}, upd.queue) IS NULL FROM upd
"""

DELETE_JOB = "DELETE FROM {jobs} WHERE id = %(id)s RETURNING id"

TOUCH_JOB = """
UPDATE {jobs} SET touched_at = now() WHERE id = %(id)s AND status IN ('active', 'aborting')
RETURNING touched_at
"""

BULK_REQUEUE = """
WITH upd AS (
    UPDATE {jobs} SET status = 'queued', attempts = 0, scheduled_at = now(), started_at = NULL,
        completed_at = NULL, worker_id = NULL, error = NULL, result = NULL, touched_at = NULL,
        expires_at = CASE WHEN ttl IS NULL THEN NULL ELSE now() + make_interval(secs => LEAST(ttl, 3155760000)) END
    WHERE status IN ('failed', 'aborted')
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
      AND (%(function)s::text IS NULL OR function = %(function)s)
    RETURNING queue
)
SELECT count(*), (SELECT count(pg_notify({jobs_channel}, q.queue)) FROM (SELECT DISTINCT queue FROM upd) q)
FROM upd
"""

BULK_CANCEL = """
WITH upd AS (
    UPDATE {jobs} SET status = 'aborted', completed_at = now(),
        error = COALESCE(error, 'cancelled before it started'),
        expires_at = COALESCE(now() + make_interval(secs => LEAST(failure_ttl, 3155760000)), expires_at)
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
    " {finished_counts}, {stats_marks}, {rate_log}, {finished_removed}"
)
VACUUM = (
    "VACUUM (ANALYZE) {jobs}, {executions}, {workers}, {job_deps}, {queue_samples}, {throughput},"
    " {finished_counts}, {stats_marks}, {finished_removed}"
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
SELECT id, (SELECT count(pg_notify({jobs_channel}, q.queue))
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
SELECT id, (SELECT count(pg_notify({jobs_channel}, q.queue))
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
# * jit off: the generic plan guesses a LIMIT of unknown size at a tenth of
#   the claimable rows, so with a backlog of 200,000 its cost passes
#   jit_above_cost (100,000 by default) and every claim compiled its
#   expressions first -- 40-70 ms per claim, the drain 10x slower than on an
#   empty table. A claim reads a few dozen rows: JIT never pays off here.
GENERIC_PLANS = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('jit', 'off', true)"
)
CLAIM_SETTINGS = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('jit', 'off', true),"
    " set_config('synchronous_commit', 'off', true)"
)
# The same settings for the whole session of the poller's own claim connection
# (CLAIM_SESSION; CLAIM_SESSION_DURABLE keeps commits synchronous), set once
# when it connects: a claim is then one statement, not a pipeline of two. A
# psycopg pipeline costs the client about as much CPU as the claim statement
# itself (an empty claim: 413-463 us of CPU as settings + claim in a
# pipeline, 173-263 us as one statement, 2026-12-06). Not without LISTEN or
# with prepare_threshold=None (PgBouncer in transaction mode, where a
# session is not the client's and its settings would reach other clients'
# transactions): there claims take the pipeline above.
CLAIM_SESSION_DURABLE = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', false), set_config('jit', 'off', false)"
)
CLAIM_SESSION = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', false), set_config('jit', 'off', false),"
    " set_config('synchronous_commit', 'off', false)"
)

# ``LEAST(attempts + 1, max_attempts)``: a queued row written past the API
# with no attempts left (the constraints allow attempts = max_attempts) gets
# one last attempt; ``attempts + 1`` would break the attempt-budget CHECK and
# with it every claim of the queue.
# Of the picked jobs of one group only the first (by ``ord``) is claimed; the
# test runs for grouped jobs only, so a claim without groups sorts nothing more.
_CLAIM_UPDATE = """
claimed AS (
    UPDATE {jobs} j SET status = 'active', attempts = LEAST(j.attempts + 1, j.max_attempts), started_at = now(),
        worker_id = %(worker_id)s, touched_at = NULL, completed_at = NULL
    FROM picked r
    WHERE j.id = r.id AND (r.group_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM picked e WHERE e.group_key = r.group_key AND e.ord < r.ord))
    RETURNING """ + JOB_COLUMNS_J + """
)"""

# The answer of a claim that came back short (flow control): besides the
# claimed rows, one row with a NULL id whose scheduled_at is the earliest time
# a job of these queues becomes claimable (a job due later, a freed rate-limit
# slot), whose enqueued_at is the database clock, and whose priority counts
# the worker's queues that have controls (queues table) -- the worker sleeps
# until that due time instead of until its next poll, and reloads the
# controls when its count is off. A full claim skips it (the worker claims
# again at once).
def _info_row(due: str) -> str:
    fill = {
        "scheduled_at": due,
        "enqueued_at": "clock_timestamp()",
        "priority": "(SELECT count(*) FROM {queues} f WHERE f.name = ANY(%(queues)s::text[]))",
    }
    return ", ".join(fill.get(c, "NULL") for c in JOB_COLUMN_NAMES)


# The next job due later in the queues of ``qs`` (jobs_scheduled_idx).
_NEXT_DUE = """(SELECT min(d.due) FROM qs CROSS JOIN LATERAL (
        SELECT s.scheduled_at AS due FROM {jobs} s
        WHERE s.queue = qs.name AND s.status = 'scheduled' AND s.scheduled_at > now()
        ORDER BY s.scheduled_at LIMIT 1) d)"""


def _claim_answer(due: str) -> str:
    return """
SELECT * FROM claimed
UNION ALL
SELECT """ + _info_row(due) + """
WHERE (SELECT count(*) FROM claimed) < %(n)s
"""


_CLAIM_TAIL = _CLAIM_UPDATE + _claim_answer(_NEXT_DUE)

_CLAIMABLE = """status IN ('queued', 'scheduled') AND scheduled_at <= now()
      AND (expires_at IS NULL OR expires_at > now())
      AND (group_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM {jobs} a WHERE a.group_key = c.group_key AND a.status IN ('active', 'aborting')))"""

# The plain claims serve only queues without controls (no row in {queues}:
# not paused, no limit, no rate) -- one primary-key probe per queue, so a
# queue paused or limited a moment ago is never claimed here, whatever the
# worker believes; queues with controls go through CLAIM_LIMITED.
_UNCONTROLLED = "NOT EXISTS (SELECT 1 FROM {queues} f WHERE f.name = q.name)"

# Both claim statements read each queue through the dequeue index in its
# own order (one LATERAL scan per queue, ``queue = name``, so the scan stops
# after %(n)s live rows instead of sorting every eligible row), locking with
# SKIP LOCKED as they go; then they keep the best %(n)s across queues. Rows
# locked but not kept are released when the statement commits.

# Priority: highest priority first across all the worker's queues.
CLAIM_PRIORITY = """
WITH qs AS (
    SELECT name FROM unnest(%(queues)s::text[]) AS q(name) WHERE """ + _UNCONTROLLED + """
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
    WHERE """ + _UNCONTROLLED + """
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

# --- flow control ---------------------------------------------------------------

# Sent before CLAIM_LIMITED in the same pipeline (so the same transaction):
# the per-queue locks of the worker's limited queues, in the given (sorted)
# order. Only claims of limited queues take them; CLAIM_LIMITED's snapshot is
# taken after they are held, so it sees every claim committed before -- many
# workers claiming at the same instant never exceed a limit.
LOCK_QUEUES = """
SELECT count(pg_advisory_xact_lock(hashtextextended(%(key)s || q.name, 3)))
FROM unnest(%(queues)s::text[]) AS q(name)
"""

# A job's partition value for a control's ``*_by`` ('_group' or 'meta.<key>');
# jobs without one share the partition ''.
def _part(by: str, alias: str) -> str:
    return (f"COALESCE(CASE WHEN {by} = '_group' THEN {alias}.group_key "
            f"ELSE {{meta_part}}({alias}.meta, substr({by}, 6)) END, '')")


# The claim of a worker with limited queues (also serving unlimited ones):
# * paused queues are skipped; a queue with controls only when the worker
#   locked it (%(locked)s: LOCK_QUEUES ran first) -- one whose controls are
#   newer than the worker's knowledge waits for the NOTIFY that tells it;
# * whole-queue limits cap the scan itself: max_running minus the queue's
#   active jobs, rate_n minus its starts in the sliding window (rate_log);
# * partitioned limits scan up to %(scan)s candidates and keep, per
#   partition, what its own running count and window leave;
# * the starts of rate-limited queues go into rate_log (same transaction),
#   and the window's expired rows are pruned;
# * a short answer's due time includes the next free rate slot of a queue
#   whose budget ran out.
# Order: the worker's dequeue strategy, as the plain claims -- CLAIM_LIMITED
# by priority across the queues (CLAIM_PRIORITY's), CLAIM_LIMITED_BY_QUEUE
# interleaving the queues in the given order (CLAIM_BY_QUEUE's: the first
# eligible job of each queue, then the second of each, ...).
def _claim_limited(order: str) -> str:
    return """
WITH qs AS (
    SELECT q.name, q.pos, f.max_running, f.limit_by, f.rate_n, f.rate_by,
        make_interval(secs => f.rate_secs) AS win
    FROM unnest(%(queues)s::text[]) WITH ORDINALITY AS q(name, pos)
    LEFT JOIN {queues} f ON f.name = q.name
    WHERE f.name IS NULL OR (NOT f.paused AND f.name = ANY(%(locked)s::text[]))
), pruned AS (
    DELETE FROM {rate_log} r USING qs
    WHERE qs.rate_n IS NOT NULL AND r.queue = qs.name AND r.started_at <= now() - qs.win
), budget AS (
    SELECT qs.*,
        CASE WHEN qs.max_running IS NULL OR qs.limit_by IS NOT NULL THEN %(n)s
             ELSE qs.max_running - (SELECT count(*) FROM {jobs} a
                                    WHERE a.queue = qs.name AND a.status IN ('active', 'aborting'))
        END AS run_left,
        CASE WHEN qs.rate_n IS NULL OR qs.rate_by IS NOT NULL THEN %(n)s
             ELSE qs.rate_n - (SELECT count(*) FROM {rate_log} r
                               WHERE r.queue = qs.name AND r.part = '' AND r.started_at > now() - qs.win)
        END AS rate_left,
        CASE WHEN qs.rate_n IS NOT NULL AND qs.rate_by IS NULL THEN
            COALESCE((SELECT min(r.started_at) FROM {rate_log} r
                      WHERE r.queue = qs.name AND r.part = '' AND r.started_at > now() - qs.win), now())
            + qs.win END AS rate_free_at
    FROM qs
), cand AS (
    SELECT s.id, s.group_key, s.priority, s.scheduled_at, b.name AS q, b.pos, b.max_running, b.limit_by,
        b.rate_n, b.rate_by, b.win, LEAST(b.run_left, b.rate_left) AS queue_left,
        CASE WHEN b.limit_by IS NOT NULL THEN """ + _part("b.limit_by", "s") + """ END AS lpart,
        CASE WHEN b.rate_by IS NOT NULL THEN """ + _part("b.rate_by", "s") + """ END AS rpart
    FROM budget b CROSS JOIN LATERAL (
        SELECT c.id, c.group_key, c.priority, c.scheduled_at, c.meta FROM {jobs} c
        WHERE queue = b.name AND """ + _CLAIMABLE + """
        ORDER BY priority DESC, scheduled_at, id
        LIMIT CASE WHEN b.limit_by IS NULL AND b.rate_by IS NULL
                   THEN GREATEST(0, LEAST(%(n)s, b.run_left, b.rate_left)) ELSE %(scan)s END
        FOR UPDATE SKIP LOCKED
    ) s
), running AS (
    SELECT b.name AS q, """ + _part("b.limit_by", "a") + """ AS lpart, count(*) AS n
    FROM budget b JOIN {jobs} a ON a.queue = b.name AND a.status IN ('active', 'aborting')
    WHERE b.limit_by IS NOT NULL
    GROUP BY 1, 2
), windows AS (
    SELECT p.q, p.rpart, w.n, w.oldest
    FROM (SELECT DISTINCT q, rpart, win FROM cand WHERE rate_by IS NOT NULL) p
    CROSS JOIN LATERAL (
        SELECT count(*) AS n, min(l.started_at) AS oldest FROM {rate_log} l
        WHERE l.queue = p.q AND l.part = p.rpart AND l.started_at > now() - p.win) w
), judged AS (
    SELECT c.*,
        (c.limit_by IS NULL OR row_number() OVER (PARTITION BY c.q, c.lpart
            ORDER BY c.priority DESC, c.scheduled_at, c.id) <= c.max_running - COALESCE(r.n, 0)) AS run_ok,
        (c.rate_by IS NULL OR row_number() OVER (PARTITION BY c.q, c.rpart
            ORDER BY c.priority DESC, c.scheduled_at, c.id) <= c.rate_n - COALESCE(w.n, 0)) AS rate_ok,
        COALESCE(w.oldest, now()) + c.win AS part_free_at
    FROM cand c
    LEFT JOIN running r ON r.q = c.q AND r.lpart = c.lpart
    LEFT JOIN windows w ON w.q = c.q AND w.rpart = c.rpart
), eligible AS (
    SELECT j.*, row_number() OVER (PARTITION BY j.q
        ORDER BY j.priority DESC, j.scheduled_at, j.id) AS queue_rank
    FROM judged j WHERE j.run_ok AND j.rate_ok
), picked AS (
    -- a whole-queue limit beside a partitioned one: the queue's own budget too
    SELECT id, group_key, q, rpart, rate_n, row_number() OVER (ORDER BY """ + order + """) AS ord
    FROM eligible WHERE queue_rank <= queue_left
    ORDER BY """ + order + """ LIMIT %(n)s
), """ + _CLAIM_UPDATE + """, logged AS (
    INSERT INTO {rate_log} (queue, part, started_at)
    SELECT p.q, COALESCE(p.rpart, ''), now() FROM claimed c JOIN picked p ON p.id = c.id
    WHERE p.rate_n IS NOT NULL
)""" + _claim_answer("""LEAST(""" + _NEXT_DUE + """,
    (SELECT min(b.rate_free_at) FROM budget b
     WHERE b.rate_free_at IS NOT NULL
       AND b.rate_left <= (SELECT count(*) FROM picked p WHERE p.q = b.name)),
    (SELECT min(j.part_free_at) FROM judged j WHERE j.run_ok AND NOT j.rate_ok))""")


CLAIM_LIMITED = _claim_limited("priority DESC, scheduled_at, id")
CLAIM_LIMITED_BY_QUEUE = _claim_limited("queue_rank, pos")

# The controls of the given queues (a worker loads its own at start and when
# a NOTIFY says they changed) or of all (list_queues).
QUEUE_CONTROLS = """
SELECT name, paused, paused_at, max_running, limit_by, rate_n, rate_secs, rate_by FROM {queues}
WHERE %(queues)s::text[] IS NULL OR name = ANY(%(queues)s::text[])
ORDER BY name
"""

PAUSE_QUEUE = """
INSERT INTO {queues} (name, paused, paused_at)
VALUES (%(name)s, %(paused)s, CASE WHEN %(paused)s THEN now() END)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, paused_at = excluded.paused_at,
    updated_at = now()
"""

SET_QUEUE_LIMIT = """
INSERT INTO {queues} (name, max_running, limit_by) VALUES (%(name)s, %(max_running)s, %(by)s)
ON CONFLICT (name) DO UPDATE SET max_running = excluded.max_running, limit_by = excluded.limit_by,
    updated_at = now()
"""

SET_RATE_LIMIT = """
INSERT INTO {queues} (name, rate_n, rate_secs, rate_by) VALUES (%(name)s, %(n)s, %(per)s, %(by)s)
ON CONFLICT (name) DO UPDATE SET rate_n = excluded.rate_n, rate_secs = excluded.rate_secs,
    rate_by = excluded.rate_by, updated_at = now()
"""

# After every change: a queue left without any control has no row (the plain
# claim serves it again), and its rate window goes with its rate; then every
# worker hears of it.
DROP_UNUSED_CONTROLS = """
WITH gone AS (
    DELETE FROM {queues} WHERE name = %(name)s AND NOT paused AND max_running IS NULL
        AND rate_n IS NULL
    RETURNING name
), unrated AS (
    DELETE FROM {rate_log} WHERE queue = %(name)s
        AND NOT EXISTS (SELECT 1 FROM {queues} f WHERE f.name = %(name)s AND f.rate_n IS NOT NULL)
)
SELECT pg_notify({control_channel}, 'queue:' || %(name)s), (SELECT count(*) FROM gone)
"""

# ctx.set_progress: fenced by worker and attempt (a later attempt elsewhere is
# not overwritten; the attempt's last report stays after it ends).
SET_PROGRESS = """
UPDATE {jobs} SET progress = %(progress)s, progress_message = %(message)s
WHERE id = %(id)s AND worker_id = %(worker_id)s AND attempts = %(attempt)s
"""

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
# A repeating job (repeat_remaining > 0) that completes ends complete like any
# other, and its next run is a new row (``next``: its id, made by the runner)
# with repeat_remaining - 1, scheduled ``delay`` seconds on: each run keeps its
# own result, executions and callbacks, and wait_for / dependents of a run see
# that run end (pgwerk's form). The new row takes no ``key`` (the first run's
# row keeps it) and no dependencies.
# A finished row's expires_at is when the sweep deletes it: completed_at +
# result_ttl (complete) or + failure_ttl (failed / aborted).
# The attempt goes back to the queue (requeue, snooze, or a failure with
# attempts left) unless an abort was asked for: an abort wins over everything,
# a shutdown's requeue too (as RESCUE_JOBS ends an aborting job of a dead
# worker). In the UPDATE's SET, j is the row before it: its status and attempts.
_GOES_BACK = """(j.status <> 'aborting' AND (o.kind IN ('requeue', 'snooze')
        OR o.kind = 'fail' AND j.attempts < j.max_attempts))"""
_STOPPED_ABORT = "'aborted by request (abort_job); its worker stopped before it saw the request'"

# The completer's replan of a connection's statements (PLAN_MAX_AGE in
# werk_trio/actors/completer.py has why).
DISCARD_PLANS = "DISCARD PLANS"

COMPLETE_BATCH = """
WITH o AS (
    SELECT * FROM json_to_recordset(%(outcomes)s::json)
        AS o(id uuid, attempt integer, kind text, result text, error text, delay float8, next uuid)
), upd AS (
    -- One pass: the fence and the new state in the UPDATE itself, which
    -- Postgres evaluates on the row's latest version (a sweeper or another
    -- worker may have taken the job meanwhile, an abort may have been asked
    -- for), so the job is read once, by primary key.
    UPDATE {jobs} j SET
        status = CASE WHEN o.kind = 'abort' OR j.status = 'aborting' THEN 'aborted'
                      WHEN """ + _GOES_BACK + """ THEN
                          CASE WHEN o.kind <> 'requeue' AND COALESCE(o.delay, 0) > 0 THEN 'scheduled'
                               ELSE 'queued' END
                      WHEN o.kind = 'complete' THEN 'complete'
                      ELSE 'failed' END,
        -- a requeue or a snooze spends no attempt
        attempts = CASE WHEN o.kind IN ('requeue', 'snooze') AND j.status <> 'aborting'
                        THEN j.attempts - 1 ELSE j.attempts END,
        result = CASE WHEN o.kind = 'complete' THEN o.result ELSE j.result END,
        error = CASE WHEN o.kind = 'complete' THEN NULL
                     WHEN o.kind IN ('requeue', 'snooze') AND j.status <> 'aborting' THEN j.error
                     WHEN o.kind = 'requeue' THEN """ + _STOPPED_ABORT + """
                     ELSE o.error END,
        completed_at = CASE WHEN """ + _GOES_BACK + """ THEN NULL ELSE now() END,
        scheduled_at = CASE WHEN """ + _GOES_BACK + """ THEN now() + make_interval(secs => COALESCE(o.delay, 0))
                            ELSE j.scheduled_at END,
        worker_id = CASE WHEN """ + _GOES_BACK + """ THEN NULL ELSE j.worker_id END,
        expires_at = CASE WHEN """ + _GOES_BACK + """ THEN NULL
                          WHEN o.kind = 'complete' AND j.status <> 'aborting' THEN
                              CASE WHEN j.result_ttl IS NOT NULL
                                   THEN now() + make_interval(secs => LEAST(j.result_ttl, 3155760000))
                                   ELSE j.expires_at END
                          WHEN j.failure_ttl IS NOT NULL
                              THEN now() + make_interval(secs => LEAST(j.failure_ttl, 3155760000))
                          ELSE j.expires_at END
    FROM o
    -- The fence as "(...) IS TRUE" (the same rows: NULL fails either way):
    -- conditions no index can serve, so the rows are found by primary key,
    -- one probe per outcome. A plain "worker_id = ... AND status IN
    -- ('active', 'aborting')" let the planner read the worker's entries of
    -- jobs_running_idx instead -- its cheapest path when the statistics show
    -- no running job (a big backlog just analyzed) -- and that reads every
    -- entry the worker's finished jobs left there until vacuum removes them
    -- (a drain 14x slower with a 200,000-job backlog).
    WHERE j.id = o.id AND (j.worker_id = %(worker_id)s) IS TRUE AND j.attempts = o.attempt
      AND (j.status IN ('active', 'aborting')) IS TRUE
      -- the batch's ids again, as an array the primary key can serve: the
      -- planner takes json_to_recordset for 100 rows whatever it holds, and
      -- on a table of some 20,000 rows 100 primary-key probes looked dearer
      -- than a sequential scan, so every write read the whole table (689 of
      -- the 718 writes of a 20,000-job drain at c=10). With this condition
      -- a scan must test each row against the array, and the probes are the
      -- cheaper plan at every table size (test_completion_plan.py).
      AND j.id = ANY(%(ids)s::uuid[])
    -- in RETURNING, j is the row as updated: status is the new status
    RETURNING j.id, j.status, j.queue, o.kind, o.attempt, j.started_at,
        CASE WHEN o.kind = 'requeue' AND j.status = 'aborted' THEN """ + _STOPPED_ABORT + """
             ELSE o.error END AS error, o.next, o.delay,
        j.on_success IS NOT NULL OR j.on_failure IS NOT NULL OR j.on_stopped IS NOT NULL AS has_callbacks,
        j.scheduled_at, j.group_key
), ex AS (
    INSERT INTO {executions} (job_id, attempt, worker_id, status, started_at, finished_at, error)
    SELECT u.id, u.attempt, %(worker_id)s,
        CASE WHEN u.kind = 'complete' THEN 'complete'
             WHEN u.status = 'aborted' OR u.kind = 'requeue' THEN 'aborted' ELSE 'failed' END,
        u.started_at, now(), CASE WHEN u.kind = 'complete' THEN NULL ELSE u.error END
    FROM upd u
    -- a job that ends complete is its own record of its last attempt (see
    -- GET_EXECUTIONS): no row here, the hot path's one insert saved
    WHERE u.status <> 'complete'
      -- a snooze is no attempt: the job runs again under the same number
      AND NOT (u.kind = 'snooze' AND u.status IN ('queued', 'scheduled'))
    -- a run cut off by a shutdown keeps its number: its row is replaced when
    -- the attempt runs again
    ON CONFLICT (job_id, attempt) DO UPDATE SET worker_id = excluded.worker_id,
        status = excluded.status, started_at = excluded.started_at,
        finished_at = excluded.finished_at, error = excluded.error
), rep AS (
    INSERT INTO {jobs} (id, function, queue, status, priority, max_attempts, scheduled_at,
        expires_at, group_key, payload, timeout_secs, heartbeat_secs, meta, ttl, result_ttl,
        failure_ttl, on_success, on_failure, on_stopped, retry_intervals, repeat_remaining,
        repeat_interval_secs, repeat_intervals, cron_name, failure_mode)
    SELECT u.next, j.function, j.queue,
        CASE WHEN COALESCE(u.delay, 0) > 0 THEN 'scheduled' ELSE 'queued' END, j.priority,
        j.max_attempts, now() + make_interval(secs => COALESCE(u.delay, 0)),
        now() + make_interval(secs => COALESCE(u.delay, 0) + j.ttl), j.group_key, j.payload,
        j.timeout_secs, j.heartbeat_secs, j.meta, j.ttl, j.result_ttl, j.failure_ttl,
        j.on_success, j.on_failure, j.on_stopped, j.retry_intervals, j.repeat_remaining - 1,
        j.repeat_interval_secs, j.repeat_intervals, j.cron_name, j.failure_mode
    -- {jobs} here is the row as it was before this statement: its options
    FROM upd u JOIN {jobs} j ON j.id = u.id
    WHERE u.status = 'complete' AND u.next IS NOT NULL AND j.repeat_remaining > 0
    RETURNING id, status, queue
)
SELECT id, status, has_callbacks,
    -- a job queued again wakes its queue's workers, and so does a job of a
    -- group that ends its run: the group's next job may wait in that queue,
    -- and no other write would tell an idle worker it is claimable now
    (SELECT count(pg_notify({jobs_channel}, q.queue))
       FROM (SELECT DISTINCT queue FROM upd WHERE status = 'queued' OR group_key IS NOT NULL
             UNION SELECT queue FROM rep WHERE status = 'queued') q) AS woke,
    (SELECT count(pg_notify({done_channel}, CASE WHEN length(d.ids) > 7000 THEN '*' ELSE d.ids END))
       FROM (SELECT string_agg(id::text, ',') AS ids FROM upd
             WHERE status IN ('complete', 'failed', 'aborted')) d
       WHERE d.ids IS NOT NULL) AS done,
    -- retries with back-off, repeats and snoozes tell the workers of their
    -- queue when they are due (flow control: on time, not at the next poll)
    (SELECT count(pg_notify({control_channel},
                            'due:' || extract(epoch FROM d.due)::text || ':' || d.queue))
       FROM (SELECT queue, min(scheduled_at) AS due FROM upd WHERE status = 'scheduled'
             GROUP BY queue) d) AS due
FROM upd
"""

# The rest of a completion transaction, pipelined after COMPLETE_BATCH with
# the batch's ids as %(ids)s (they see its changes; for jobs that did not end
# they find nothing to do). Dependents are locked by one statement and
# resolved by the next, whose snapshot is taken after the locks are held, so a
# parent finished concurrently by another worker is seen.
RESOLVE_DEPENDENTS_OF = _resolve_waiting(
    "WHERE d.job_id IN (SELECT job_id FROM {job_deps} WHERE depends_on = ANY(%(ids)s::uuid[]))"
)

DELETE_FAILED = """
DELETE FROM {jobs} WHERE id = ANY(%(ids)s::uuid[]) AND status = 'failed' AND failure_mode = 'delete'
"""

NOTIFY_DONE = "SELECT pg_notify({done_channel}, %(payload)s)"

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
        error = l.reason,
        expires_at = CASE WHEN j.status = 'aborting' OR j.attempts >= j.max_attempts
                          THEN COALESCE(now() + make_interval(secs => LEAST(j.failure_ttl, 3155760000)), j.expires_at)
                          ELSE j.expires_at END
    FROM lost l WHERE j.id = l.id
    RETURNING j.id, j.status, j.queue
), ex AS (
    INSERT INTO {executions} (job_id, attempt, worker_id, status, started_at, finished_at, error)
    SELECT l.id, l.attempts, l.worker_id, 'failed', l.started_at, now(), l.reason FROM lost l
    ON CONFLICT (job_id, attempt) DO NOTHING
)
SELECT id, status, queue,
    (SELECT count(pg_notify({jobs_channel}, q.queue))
       FROM (SELECT DISTINCT queue FROM upd WHERE status = 'queued') q) AS woke
FROM upd
"""

# Unstarted jobs past their _ttl never run.
EXPIRE_JOBS = """
UPDATE {jobs} SET status = 'aborted', completed_at = now(),
    error = 'expired: not started within its ttl',
    expires_at = COALESCE(now() + make_interval(secs => LEAST(failure_ttl, 3155760000)), expires_at)
WHERE status IN ('queued', 'scheduled', 'waiting') AND expires_at <= now()
RETURNING id
"""

# Finished rows past their result_ttl / failure_ttl: their expires_at (pgwerk's
# row expiry time) has passed. Every statement that ends a job sets it --
# completed_at + result_ttl (complete) or + failure_ttl (failed, aborted), the
# TTL counted at most 100 years (MAX_SECONDS, 3155760000 s) -- and migration
# 0007 set it on the rows that ended without one; a row written past the API
# without one is kept. The scan is a range of jobs_ttl_idx (0007: keyed on
# expires_at, its predicate the one below), oldest expiry first, so it reads
# the due rows and stops, however many rows wait for a later expiry.
# At most %(limit)s rows a statement, each statement its own transaction
# after the sweep's commit (_maintenance.delete_expired): a minute's finished
# rows of a busy queue are a hundred thousand, and one statement deleting them
# held its snapshot, its row locks and the sweep's for seconds. A row another
# transaction holds (a requeue of it, a delete_job) is skipped, not waited for:
# the next sweep takes it; FOR UPDATE re-reads a row changed since the
# statement's snapshot and checks the condition on what it is now.
DELETE_EXPIRED_RESULTS = """
WITH due AS (
    SELECT id FROM {jobs}
    WHERE ((status = 'complete' AND result_ttl IS NOT NULL)
           OR (status IN ('failed', 'aborted') AND failure_ttl IS NOT NULL))
      AND expires_at <= now()
    ORDER BY expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), del AS (
    DELETE FROM {jobs} j USING due WHERE j.id = due.id
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

# Per-queue counts by status, with the number of workers online (running and
# heard from within three of their heartbeat intervals) on every row; one row
# with a NULL queue when there is no job at all; and the statuses whose count
# is an estimate (NULL: none). Live jobs are {live_counts} (migration 0006:
# exact up to %(limit)s = estimate_limit per queue and status, the planner's
# estimate above it, never reading more than about the limit's worth of index
# entries per queue, whatever the backlog); finished ones are the last
# recount (FINISHED_COUNTS, as of its as_of) plus the rows finished since (a
# range of the finished-rows index), so a million finished rows are never
# counted here. Without a recount yet, every finished row is counted.
# (The upper bound 'infinity' changes no result: as a second unknown bound it
# makes the planner guess a short range -- 0.5 % of the rows, not a third --
# so it reads the index without launching parallel workers, which cost more
# than the whole range.)
_COUNTED = """live_counts AS (
    SELECT queue, status, n, estimated FROM {live_counts}(%(limit)s)
), since AS (
    SELECT COALESCE(max(as_of), '-infinity') AS at, timestamptz 'infinity' AS until
    FROM {finished_counts}
), counted AS (
    SELECT queue, status, n, estimated FROM live_counts
    UNION ALL
    SELECT queue, status, n, false FROM {finished_counts}
    UNION ALL
    SELECT queue, status, count(*), false FROM {jobs}
    WHERE status IN ('complete', 'failed', 'aborted') AND completed_at >= (SELECT at FROM since)
      AND completed_at < (SELECT until FROM since)
    GROUP BY queue, status
)"""

QUEUE_STATS = """
WITH """ + _COUNTED + """, per AS (
    SELECT queue,
        COALESCE(sum(n) FILTER (WHERE status = 'scheduled'), 0)::bigint AS scheduled,
        COALESCE(sum(n) FILTER (WHERE status = 'queued'), 0)::bigint AS queued,
        COALESCE(sum(n) FILTER (WHERE status = 'active'), 0)::bigint AS active,
        COALESCE(sum(n) FILTER (WHERE status = 'aborting'), 0)::bigint AS aborting,
        COALESCE(sum(n) FILTER (WHERE status = 'waiting'), 0)::bigint AS waiting,
        COALESCE(sum(n) FILTER (WHERE status = 'complete'), 0)::bigint AS complete,
        COALESCE(sum(n) FILTER (WHERE status = 'failed'), 0)::bigint AS failed,
        COALESCE(sum(n) FILTER (WHERE status = 'aborted'), 0)::bigint AS aborted,
        array_agg(status) FILTER (WHERE estimated) AS estimated
    FROM counted GROUP BY queue HAVING sum(n) > 0
), online AS (
    SELECT count(*) AS n FROM {workers}
    WHERE status <> 'stopped' AND last_seen > now() - make_interval(secs => 3 * heartbeat_interval)
)
SELECT p.queue, p.scheduled, p.queued, p.active, p.aborting, p.waiting, p.complete, p.failed,
    p.aborted, p.estimated, o.n
FROM online o LEFT JOIN per p ON true
ORDER BY p.queue
"""

# Werk.list_queues: QUEUE_STATS' counts by queue and status (the statuses
# with jobs), each with whether it is an estimate; no exact count of every
# row, which at a million rows took 200 ms per dashboard refresh.
QUEUE_COUNTS = """
WITH """ + _COUNTED + """
SELECT queue, status, sum(n)::bigint, bool_or(estimated) FROM counted
GROUP BY queue, status HAVING sum(n) > 0
ORDER BY queue, status
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
# recorded once); then the pass's mark. The counts are {live_counts}, as in
# QUEUE_STATS: above %(limit)s jobs of a queue and status the sample holds the
# estimate, and names the column in ``estimated`` (migration 0008; NULL when
# every count is exact).
SAMPLE_QUEUES = """
WITH live_counts AS (
    SELECT queue, status, n, estimated FROM {live_counts}(%(limit)s)
), counts AS (
    SELECT queue,
        COALESCE(sum(n) FILTER (WHERE status = 'queued'), 0)::bigint AS queued,
        COALESCE(sum(n) FILTER (WHERE status = 'scheduled'), 0)::bigint AS scheduled,
        COALESCE(sum(n) FILTER (WHERE status = 'waiting'), 0)::bigint AS waiting,
        COALESCE(sum(n) FILTER (WHERE status IN ('active', 'aborting')), 0) AS active,
        NULLIF(array_remove(ARRAY[
            CASE WHEN bool_or(estimated) FILTER (WHERE status = 'queued') THEN 'queued' END,
            CASE WHEN bool_or(estimated) FILTER (WHERE status = 'scheduled') THEN 'scheduled' END,
            CASE WHEN bool_or(estimated) FILTER (WHERE status = 'waiting') THEN 'waiting' END,
            CASE WHEN bool_or(estimated) FILTER (WHERE status IN ('active', 'aborting')) THEN 'active' END
        ], NULL), ARRAY[]::text[]) AS estimated
    FROM live_counts GROUP BY queue
), previous AS (
    SELECT queue FROM {queue_samples}
    WHERE sampled_at = (SELECT max(sampled_at) FROM {queue_samples})
      AND queued + scheduled + waiting + active > 0
), mark AS (
    INSERT INTO {stats_marks} (name, at) VALUES ('sample', now())
    ON CONFLICT (name) DO UPDATE SET at = excluded.at
)
INSERT INTO {queue_samples} (sampled_at, queue, queued, scheduled, waiting, active, estimated)
SELECT now(), q.queue, COALESCE(c.queued, 0), COALESCE(c.scheduled, 0), COALESCE(c.waiting, 0),
    COALESCE(c.active, 0), c.estimated
FROM (SELECT queue FROM counts UNION SELECT queue FROM previous) q
LEFT JOIN counts c ON c.queue = q.queue
RETURNING queue
"""

# The end of both roll-ups: the span's mark moves to its end (when it moved
# at all); returns how many roll-up rows were written.
def _move_mark(name: str) -> str:
    """Move the ``name`` mark (a literal of this module, never input)."""
    return """
INSERT INTO {stats_marks} (name, at)
SELECT '""" + name + """', last FROM span WHERE last > first
ON CONFLICT (name) DO UPDATE SET at = excluded.at
RETURNING (SELECT count(*) FROM ins)
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
)""" + _move_mark("throughput")

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
    FROM {throughput} r
    -- scalar bounds: a range of throughput_bucket_idx, not a scan of 25 hours of minutes
    WHERE r.level = 'minute' AND r.bucket >= (SELECT first FROM span) AND r.bucket < (SELECT last FROM span)
    GROUP BY 2, 3, 4
    RETURNING 1
)""" + _move_mark("throughput_hour")

# The finished rows by queue and status as of 5 s ago (the rows finished
# since are counted by QUEUE_STATS itself), kept up to date incrementally: the
# previous counts, plus the rows finished between their as_of and the new one
# (a short range of the finished-rows index), minus the counted rows that left
# the finished states since (deleted or requeued: the finished_removed log the
# triggers of migration 0005 write, emptied here). The first pass (no counts
# yet) counts every finished row. One statement, one snapshot: a removal that
# commits after it is in the next pass's log, and its row in this pass's
# counts. The new as_of is 5 s ago, and never later than the start of the
# oldest client transaction still open (a completion stamps completed_at with
# its transaction's now(), and a row it commits after this pass must not fall
# behind the counts' as_of, where no later pass would look), nor earlier than
# the previous as_of (a long transaction holds the counts where they are; the
# rows finished meanwhile are QUEUE_STATS's tail). Sessions of other roles,
# whose xact_start is hidden without pg_read_all_stats, are left to the 5 s
# margin. (The bounds are scalar subqueries, so the range scan's bounds are
# known when it starts, as in QUEUE_STATS.)
RECOUNT_FINISHED = """
WITH p AS (
    SELECT COALESCE((SELECT max(as_of) FROM {finished_counts}), '-infinity') AS prev
), t AS (
    SELECT GREATEST(p.prev, LEAST(now() - interval '5 seconds',
                    (SELECT min(xact_start) FROM pg_stat_activity
                     WHERE datname = current_database() AND backend_type = 'client backend'
                       AND pid <> pg_backend_pid()))) AS as_of,
        p.prev
    FROM p
), gone AS (
    DELETE FROM {finished_removed} RETURNING queue, status, completed_at, n
), old AS (
    DELETE FROM {finished_counts} RETURNING queue, status, n
), counted AS (
    SELECT queue, status, n FROM old
    UNION ALL
    SELECT j.queue, j.status, count(*) FROM {jobs} j
    WHERE j.status IN ('complete', 'failed', 'aborted')
      AND j.completed_at >= (SELECT prev FROM t) AND j.completed_at < (SELECT as_of FROM t)
    GROUP BY j.queue, j.status
    UNION ALL
    SELECT g.queue, g.status, -sum(g.n) FROM gone g
    WHERE g.completed_at < (SELECT prev FROM t)
    GROUP BY g.queue, g.status
)
INSERT INTO {finished_counts} (queue, status, n, as_of)
SELECT c.queue, c.status, sum(c.n), (SELECT as_of FROM t) FROM counted c
GROUP BY c.queue, c.status HAVING sum(c.n) > 0
"""

# Samples and hour rows past the retention; minute rows older than 25 hours
# once their hour is rolled up.
PRUNE_STATS = """
WITH s AS (
    DELETE FROM {queue_samples} WHERE sampled_at < now() - make_interval(secs => %(retention)s)
), m AS (
    DELETE FROM {throughput}
    WHERE level = 'minute'  -- one bound: a range of throughput_bucket_idx
      AND bucket < LEAST(now() - interval '25 hours',
                         (SELECT at FROM {stats_marks} WHERE name = 'throughput_hour'))
)
DELETE FROM {throughput}
WHERE level = 'hour' AND bucket < now() - make_interval(secs => %(retention)s)
"""

# Samples of the last %(minutes)s; with %(bucket)s seconds, averaged per
# bucket (aligned to the epoch) and queue, the bucket's start as its time.
QUEUE_DEPTH_HISTORY = """
SELECT sampled_at, queue, queued, scheduled, waiting, active, COALESCE(estimated, ARRAY[]::text[])
FROM {queue_samples}
WHERE sampled_at >= now() - make_interval(mins => %(minutes)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
ORDER BY sampled_at, queue
"""
QUEUE_DEPTH_HISTORY_BINNED = """
SELECT date_bin(make_interval(secs => %(bucket)s), sampled_at, """ + _EPOCH + """) AS t, queue,
    round(avg(queued))::int, round(avg(scheduled))::int, round(avg(waiting))::int,
    round(avg(active))::int,
    -- a column is an estimate in the bucket when it was in any of its samples
    array_remove(ARRAY[
        CASE WHEN bool_or('queued' = ANY(estimated)) THEN 'queued' END,
        CASE WHEN bool_or('scheduled' = ANY(estimated)) THEN 'scheduled' END,
        CASE WHEN bool_or('waiting' = ANY(estimated)) THEN 'waiting' END,
        CASE WHEN bool_or('active' = ANY(estimated)) THEN 'active' END
    ], NULL)
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

# --- cron (werk_trio/cron.py) ------------------------------------------------------
#
# One lease row elects the leader; no session state (no advisory lock, no
# LISTEN), so all of this works through PgBouncer in transaction mode. The
# leader's round is one transaction: CRON_RENEW (fenced by holder and
# generation; it keeps the lease row locked until the commit, so no standby
# can take the lease while the round enqueues), CRON_DUE_SCHEDULES (FOR
# UPDATE), INSERT_JOBS with the key cron:{name}:{tick}, CRON_ADVANCE.

# A standby (or a fresh scheduler) takes the lease when nobody holds it or
# it has expired. SKIP LOCKED: a leader mid-round holds the row, and a
# standby does not wait for it (that lease is being renewed).
CRON_TAKE_LEASE = """
UPDATE {cron_lease} SET holder = %(holder)s, holder_name = %(holder_name)s,
    generation = generation + 1, acquired_at = now(), renewed_at = now(),
    expires_at = now() + make_interval(secs => %(lease)s)
WHERE id = (SELECT id FROM {cron_lease}
            WHERE id = 1 AND (holder IS NULL OR expires_at < now())
            FOR UPDATE SKIP LOCKED)
RETURNING generation
"""

# The first statement of a round: a leader frozen inside its round (SIGSTOP,
# a VM pause) holds the lease row's lock, which would keep every standby out;
# after half the lease the server ends its session instead, and the round's
# statements cannot outlast it either. Transaction-local: PgBouncer-safe.
CRON_ROUND_LIMITS = """
SELECT set_config('idle_in_transaction_session_timeout', %(ms)s, true),
    set_config('statement_timeout', %(ms)s, true)
"""

# The leader renews at the start of its round. Zero rows: another scheduler
# took the lease (the generation moved on): stop leading. Returns now().
CRON_RENEW = """
UPDATE {cron_lease} SET renewed_at = now(), expires_at = now() + make_interval(secs => %(lease)s)
WHERE id = 1 AND holder = %(holder)s AND generation = %(generation)s
RETURNING now()
"""

# A stopping leader gives the lease up at once (fenced like CRON_RENEW).
CRON_RELEASE = """
UPDATE {cron_lease} SET holder = NULL, holder_name = NULL, expires_at = NULL
WHERE id = 1 AND holder = %(holder)s AND generation = %(generation)s
"""

CRON_GET_LEASE = """
SELECT holder, holder_name, generation, acquired_at, renewed_at, expires_at, now()
FROM {cron_lease} WHERE id = 1
"""

CRON_SCHEDULE_COLUMNS = """name, function, queue, cron, interval_secs, tz, options, paused,
    removed_at, next_run_at, last_run_at, last_job_id, total_runs"""

# Due schedules, locked for the round (a concurrent pause, trigger or
# re-registration waits for the commit). Paused ones are due too: the round
# advances their next run without enqueueing.
CRON_DUE_SCHEDULES = """
SELECT """ + CRON_SCHEDULE_COLUMNS + """ FROM {cron_schedules}
WHERE removed_at IS NULL AND next_run_at <= now()
ORDER BY next_run_at, name
FOR UPDATE
"""

# After a tick: the next run, and (when a job was enqueued) the last run.
CRON_ADVANCE = """
UPDATE {cron_schedules} SET next_run_at = %(next_run_at)s,
    last_run_at = COALESCE(%(last_run_at)s, last_run_at),
    last_job_id = COALESCE(%(job_id)s, last_job_id),
    total_runs = total_runs + %(runs)s
WHERE name = %(name)s
"""

# A scheduler's start: its registrations' current rows, locked (with the
# database clock, for computing first runs).
CRON_LOCK_SCHEDULES = """
SELECT name, cron, interval_secs, tz, removed_at IS NOT NULL
FROM {cron_schedules} WHERE name = ANY(%(names)s::text[])
ORDER BY name
FOR UPDATE
"""

# The end of a round: seconds until the next due schedule (NULL: none).
CRON_NEXT_DUE = """
SELECT extract(epoch FROM min(next_run_at) - now())::float8
FROM {cron_schedules} WHERE removed_at IS NULL
"""

# What a running scheduler shows in its CronJobs.
CRON_SCHEDULE_TIMES = """
SELECT name, next_run_at, last_run_at, paused FROM {cron_schedules}
WHERE name = ANY(%(names)s::text[])
"""

CRON_NOW = "SELECT now()"

# Register (or re-register) one schedule. A changed timing (cron, interval,
# tz) takes the new next run; an unchanged one keeps its place. paused=true
# pauses; an operator's pause survives re-registration.
CRON_UPSERT = """
INSERT INTO {cron_schedules} (name, function, queue, cron, interval_secs, tz, options, paused,
    next_run_at)
VALUES (%(name)s, %(function)s, %(queue)s, %(cron)s, %(interval_secs)s, %(tz)s, %(options)s,
    %(paused)s, %(next_run_at)s)
ON CONFLICT (name) DO UPDATE SET
    function = EXCLUDED.function, queue = EXCLUDED.queue, cron = EXCLUDED.cron,
    interval_secs = EXCLUDED.interval_secs, tz = EXCLUDED.tz, options = EXCLUDED.options,
    paused = {cron_schedules}.paused OR EXCLUDED.paused,
    next_run_at = CASE WHEN %(retime)s THEN EXCLUDED.next_run_at
                       ELSE {cron_schedules}.next_run_at END,
    removed_at = NULL, updated_at = now()
"""

# Schedules a starting scheduler does not register (with ``keep`` empty:
# just ``names``) are marked removed, never deleted: their history stays.
CRON_MARK_REMOVED = """
UPDATE {cron_schedules} SET removed_at = now(), updated_at = now()
WHERE removed_at IS NULL
  AND (name = ANY(%(names)s::text[])
       OR (%(others)s AND NOT name = ANY(%(keep)s::text[])))
RETURNING name
"""

CRON_SET_PAUSED = """
UPDATE {cron_schedules} SET paused = %(paused)s, updated_at = now()
WHERE name = %(name)s AND removed_at IS NULL
RETURNING name
"""

CRON_SCHEDULE_STATE = """
SELECT removed_at IS NOT NULL FROM {cron_schedules} WHERE name = %(name)s
"""

# One schedule, locked, for a manual trigger.
CRON_GET_SCHEDULE = """
SELECT """ + CRON_SCHEDULE_COLUMNS + """ FROM {cron_schedules}
WHERE name = %(name)s AND removed_at IS NULL
FOR UPDATE
"""

CRON_RECORD_TRIGGER = """
UPDATE {cron_schedules} SET last_job_id = %(job_id)s, total_runs = total_runs + 1,
    last_run_at = now()
WHERE name = %(name)s
"""

# Per schedule: definition, state, the last job's status and the failed
# runs still in the jobs table (jobs_cron_idx).
CRON_STATS = """
SELECT s.name, s.function, s.queue, s.cron, s.interval_secs, s.tz, s.next_run_at, s.last_run_at,
    s.paused, s.removed_at, s.total_runs, s.last_job_id, last.status, last.enqueued_at,
    last.completed_at, (SELECT count(*) FROM {jobs} f WHERE f.cron_name = s.name AND f.status = 'failed')
FROM {cron_schedules} s
LEFT JOIN {jobs} last ON last.id = s.last_job_id
ORDER BY s.name
"""
