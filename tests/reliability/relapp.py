"""The app and job bodies of the reliability suite.

Worker processes load ``tests.reliability.relapp:app`` (DSN and schema from
``WERK_PROC_DSN`` / ``WERK_PROC_SCHEMA``). Every job body records its run in
the side table ``rel_history(job_id, attempt, pid, started_at, ended_at)``:
a row when it starts and ``ended_at`` when it finishes, each in a
transaction of its own, over a connection of the job's own process -- so the
history survives whatever happens to the worker, and works the same in every
executor (async, thread, process and fork children).

Each history row also names ``worker_pid``: the werk worker process the body
ran under (itself for async and thread workers, the worker that started a
process-pool or fork child; the worker puts its pid in the environment its
children inherit), so a run that finished in a pool child after its worker
was SIGKILLed counts as a run of the killed worker.

The side connection is one per process (psycopg connections are
thread-safe; threads share it), with its own ``application_name``
(``werk_rel_side``), so a test that cuts a worker's backends by the worker's
``application_name`` leaves the history alone.

Knobs for the app, from the environment of the worker process:
``WERK_REL_MAX_ACTIVE_SECS`` (max_active_secs), ``WERK_REL_MAX_POOL``
(max_pool_size).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg
import trio
from psycopg import sql

from werk_trio import Context, Werk

HISTORY = "rel_history"

SIDE_APPLICATION_NAME = "werk_rel_side"

app = Werk(
    os.environ.get("WERK_PROC_DSN") or None,
    schema=os.environ.get("WERK_PROC_SCHEMA") or None,
    task_modules=["tests"],
    max_active_secs=float(os.environ.get("WERK_REL_MAX_ACTIVE_SECS") or 3600),
    max_pool_size=int(os.environ.get("WERK_REL_MAX_POOL") or 10),
)

_lock = threading.Lock()
_side: dict[str, Any] = {}


def history_table(schema: str | None) -> sql.Composable:
    return sql.Identifier(schema, HISTORY) if schema else sql.Identifier(HISTORY)


def create_history(dsn: str, schema: str) -> None:
    """Create the side table (blocking; before the workers start)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (run_id bigserial PRIMARY KEY, job_id uuid NOT NULL,"
                " attempt integer NOT NULL, pid integer NOT NULL,"
                " started_at timestamptz NOT NULL DEFAULT clock_timestamp(), ended_at timestamptz,"
                " worker_pid integer)"
            ).format(history_table(schema))
        )


def _conn() -> psycopg.Connection[Any]:
    """This process's own connection (shared by its threads); a fork child opens a new one."""
    with _lock:
        conn = _side.get("conn")
        if conn is None or _side.get("pid") != os.getpid() or conn.closed or conn.broken:
            conn = psycopg.connect(
                os.environ["WERK_PROC_DSN"], autocommit=True, application_name=SIDE_APPLICATION_NAME
            )
            _side.update(conn=conn, pid=os.getpid())
        return conn


def _execute(query: sql.Composable, params: tuple[Any, ...]) -> Any:
    """Run one autocommit statement on the side connection; once more on a new
    connection if that one was cut under it (a test terminating backends). A
    cut right after the commit would record a run twice: the checker would then
    show a re-run that did not happen -- a false alarm, never a hidden one."""
    for tries in (1, 2):
        conn = _conn()
        try:
            return conn.execute(query, params).fetchall()
        except psycopg.OperationalError:
            if tries == 2 or not conn.broken:
                raise
    raise AssertionError("unreachable")


#: Set by the werk worker process when it imports this module (before its
#: executor starts any child), inherited by its process-pool and fork children.
WORKER_PID_ENV = "WERK_REL_WORKER_PID"


def _started_as_worker() -> bool:
    """This process is ``python -m werk_trio.cli ...`` (by its real command
    line: a multiprocessing child's ``sys.argv`` is copied from its parent)."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            return b"werk_trio.cli" in f.read()
    except OSError:
        return False


if _started_as_worker():
    os.environ[WORKER_PID_ENV] = str(os.getpid())


def _worker_pid() -> int:
    """The werk worker process this body runs under (known even after that
    worker was killed: a pool child may still be finishing a body then)."""
    return int(os.environ.get(WORKER_PID_ENV) or os.getpid())


def _table() -> sql.Composable:
    return history_table(os.environ.get("WERK_PROC_SCHEMA") or None)


def _start(ctx: Context) -> int:
    [row] = _execute(
        sql.SQL(
            "INSERT INTO {} (job_id, attempt, pid, worker_pid) VALUES (%s, %s, %s, %s) RETURNING run_id"
        ).format(_table()),
        (ctx.job.id, ctx.job.attempts, os.getpid(), _worker_pid()),
    )
    return int(row[0])


def _end(run_id: int) -> None:
    _execute(
        sql.SQL("UPDATE {} SET ended_at = clock_timestamp() WHERE run_id = %s RETURNING 1").format(_table()),
        (run_id,),
    )


def work(ctx: Context, ms: float = 0.0) -> int:
    """A plain job body: record the start, sleep ``ms`` milliseconds, record the end."""
    run_id = _start(ctx)
    if ms:
        time.sleep(ms / 1000)
    _end(run_id)
    return os.getpid()


async def awork(ctx: Context, ms: float = 0.0) -> int:
    """The Trio job body (for AsyncWorker): same records, Trio sleep."""
    run_id = await trio.to_thread.run_sync(_start, ctx)
    if ms:
        await trio.sleep(ms / 1000)
    await trio.to_thread.run_sync(_end, run_id)
    return os.getpid()


def kill_my_worker(ctx: Context) -> None:
    """Record the start, then end the process that runs it (a poison pill)."""
    _start(ctx)
    os._exit(13)


def cut_my_worker_connections(ctx: Context, ms: float = 0.0) -> int:
    """Record the start, terminate every backend of this worker (its pool and
    LISTEN connections: the ``application_name`` of ``WERK_PROC_DSN``, which
    the test makes unique per worker), record the end; return how many."""
    from psycopg.conninfo import conninfo_to_dict

    run_id = _start(ctx)
    name = conninfo_to_dict(os.environ["WERK_PROC_DSN"]).get("application_name")
    assert name and name != SIDE_APPLICATION_NAME, "give each worker its own application_name"
    rows = _execute(
        sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"),
        (name,),
    )
    if ms:
        time.sleep(ms / 1000)
    _end(run_id)
    return len(rows)


async def slow_first(ctx: Context, ms: float) -> int:
    """The Trio body, sleeping ``ms`` milliseconds on the first attempt only
    (a rescued attempt finishes at once)."""
    return await awork(ctx, ms if ctx.job.attempts == 1 else 0.0)
