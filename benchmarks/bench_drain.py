"""Drain and wake-up benchmark: werk workers against the raw-SQL floor and peers.

Measured in one run against one server:

* raw floor -- a claim-and-complete loop in plain (sync) psycopg on a minimal
  queue table: ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED
  LIMIT n) RETURNING id`` then ``UPDATE ... SET status = 'done'``, batch 1 and
  batch 100, each its own durable commit. The baseline of the drain table.
  The same loop (batch 100) also runs on a copy of werk's own jobs table
  (``LIKE ... INCLUDING ALL``: its columns, constraints and indexes) holding
  rows werk enqueued, setting what werk's claim and completion set: the
  share of the gap that is the table's width and indexes, not werk's code.
* werk: N no-op jobs drained by one AsyncWorker at concurrency 10 and 50 (in
  this process), at its defaults and at its fastest documented setting for
  short jobs (``prefetch=concurrency``: the next claim overlaps the running
  jobs, as pgqueuer's ``batch_size`` does; docs/guides/performance.md), and
  by four ``werk worker --burst`` processes at once; the four-process rate
  is taken on the database clock, N / (last ``completed_at`` - first
  ``started_at``), so the interpreters' start-up is not in it.
* idle wake-up latency: an idle AsyncWorker (poll_interval 30 s, so only
  NOTIFY can wake it); jobs enqueued 20 ms apart; enqueue -> start on the
  database clock (``started_at - enqueued_at``), p50 and p99, against a raw
  LISTEN -> claim loop in plain psycopg as the floor.
* with ``--groups-deps``: the same drain with 10 % of the jobs in concurrency
  groups and 10 % depending on another job, as a ratio to the plain drain.
* peers, when installed (``pip install -e '.[bench]'``) and not
  ``--no-peers``: pgqueuer (``PgQueuer.run`` in drain mode,
  ``max_concurrent_tasks=C, batch_size=C // 2``, on a dedicated asyncpg
  connection) and procrastinate (``run_worker_async(concurrency=C,
  wait=False)``), each as a worker process of its own (``_peer_worker.py``),
  drain the same N no-op jobs at concurrency 10 and 50, timed from the moment
  the process is told to start to the last completion the peer stamps
  itself, on the database clock; their idle wake-up latency is measured the
  same way as werk's, from the timestamps the peer records. Each peer's
  producer side runs in its own ``asyncio.run`` on its own tables in the same
  schema; a peer that fails is reported and does not hide werk's numbers.

Run: ``python benchmarks/bench_drain.py [--dsn ...] [--jobs 10000] [--runs 3] [--no-peers]``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import trio
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _harness

from werk_trio import AsyncWorker, Dependency, EnqueueParams, Werk

REPO = Path(__file__).resolve().parents[1]
SECTION = "drain (no-op jobs)"
LATENCY = "idle wake-up, enqueue -> start"
WAKE_JOBS = 150  # jobs per wake-up measurement
WAKE_GAP = 0.02  # seconds between two enqueues of the wake-up measurement
FOUR = "werk, 4 worker processes x concurrency 50 (database clock: first start -> last completion)"


async def noop() -> None:
    """The no-op job."""


#: Enqueued by name, so the worker processes (which import this module as
#: ``bench_drain``) find it too.
NOOP = "bench_drain.noop"


# --- the raw floor ------------------------------------------------------------------


def raw_floor(dsn: str, schema: str, jobs: int, batch: int) -> float:
    """Seconds for a claim-and-complete loop over ``jobs`` rows, ``batch`` per claim."""
    table = sql.Identifier(schema, "raw_queue")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigserial PRIMARY KEY, status text NOT NULL DEFAULT 'queued',"
                " payload text, priority int NOT NULL DEFAULT 0)"
            ).format(table)
        )
        conn.execute(
            sql.SQL("CREATE INDEX ON {} (priority DESC, id) WHERE status = 'queued'").format(table)
        )
        conn.execute(
            sql.SQL("INSERT INTO {} (payload) SELECT '{{}}' FROM generate_series(1, %s)").format(table),
            (jobs,),
        )
        claim = sql.SQL(
            "UPDATE {t} SET status = 'active' WHERE id IN (SELECT id FROM {t} WHERE status = 'queued'"
            " ORDER BY priority DESC, id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id"
        ).format(t=table)
        done = sql.SQL("UPDATE {} SET status = 'done' WHERE id = ANY(%s)").format(table)
        return _claim_loop(conn, claim, done, batch)


def _claim_loop(conn: psycopg.Connection[Any], claim: sql.Composed, done: sql.Composed, batch: int) -> float:
    """Seconds to claim ``batch`` rows and mark them done, each its own
    durable commit, until the claim finds none."""
    start = time.perf_counter()
    while True:
        ids = [r[0] for r in conn.execute(claim, (batch,)).fetchall()]
        if not ids:
            break
        conn.execute(done, (ids,))
    return time.perf_counter() - start


WERK_TABLE_FLOOR = "raw floor on werk's table, claim 100 + complete (psycopg)"


def raw_floor_werk_table(dsn: str, schema: str, jobs: sql.Composable) -> float:
    """The same loop, batch 100, on a copy of werk's jobs table -- every
    column, default, constraint, index and statistics object (``LIKE ...
    INCLUDING ALL``) and its storage parameters, not its triggers -- holding
    the rows werk enqueued (moved out of werk's table first): the claim sets
    what werk's claim sets (status, attempts, started_at, worker_id) in
    werk's dequeue order, the completion status, completed_at and result.
    What this costs over the minimal floor is the table's width and its
    indexes; what werk costs over this is its statements and its process."""
    table = sql.Identifier(schema, "raw_jobs")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(table, jobs))
        row = conn.execute(sql.SQL("SELECT reloptions FROM pg_class WHERE oid = %s::regclass"),
                           (jobs.as_string(conn),)).fetchone()  # fmt: skip
        if row and row[0]:  # the catalog's own "name=value" strings
            conn.execute(sql.SQL("ALTER TABLE {} SET ({})").format(table, sql.SQL(", ".join(row[0]))))
        with conn.transaction():
            conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(table, jobs))
            conn.execute(sql.SQL("DELETE FROM {}").format(jobs))
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
        claim = sql.SQL(
            "UPDATE {t} SET status = 'active', attempts = attempts + 1, started_at = now(),"
            " worker_id = '00000000-0000-4000-8000-000000000001' WHERE id IN (SELECT id FROM {t}"
            " WHERE queue = 'default' AND status = 'queued' AND scheduled_at <= now()"
            " ORDER BY queue, priority DESC, scheduled_at, id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING id"
        ).format(t=table)
        done = sql.SQL(
            "UPDATE {} SET status = 'complete', completed_at = now(), result = 'null' WHERE id = ANY(%s)"
        ).format(table)
        try:
            return _claim_loop(conn, claim, done, 100)
        finally:
            conn.execute(sql.SQL("DROP TABLE {}").format(table))


def raw_wakeup(dsn: str, schema: str, count: int, gap: float) -> list[float]:
    """Raw LISTEN -> claim latencies (seconds, database clock) for ``count`` jobs."""
    table = sql.Identifier(schema, "raw_wake")
    channel = f"{schema}_raw_wake"
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        setup.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigserial PRIMARY KEY, status text NOT NULL DEFAULT 'queued',"
                " enqueued_at timestamptz NOT NULL DEFAULT clock_timestamp(), started_at timestamptz)"
            ).format(table)
        )
    stop = threading.Event()

    def consumer() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            claim = sql.SQL(
                "UPDATE {t} SET status = 'active', started_at = clock_timestamp() WHERE id IN"
                " (SELECT id FROM {t} WHERE status = 'queued' LIMIT 10 FOR UPDATE SKIP LOCKED)"
            ).format(t=table)
            while not stop.is_set():
                if select.select([conn.fileno()], [], [], 0.1)[0]:
                    conn.pgconn.consume_input()
                    while conn.pgconn.notifies():
                        pass
                    conn.execute(claim)

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    time.sleep(0.3)
    with psycopg.connect(dsn, autocommit=True) as producer:
        insert = sql.SQL(
            "WITH i AS (INSERT INTO {} DEFAULT VALUES RETURNING 1) SELECT pg_notify(%s, '')"
        ).format(table)
        for _ in range(count):
            producer.execute(insert, (channel,))
            time.sleep(gap)
        time.sleep(0.3)
        stop.set()
        thread.join()
        rows = producer.execute(
            sql.SQL(
                "SELECT extract(epoch FROM started_at - enqueued_at) FROM {} WHERE started_at IS NOT NULL"
            ).format(table)
        ).fetchall()
    return [float(r[0]) for r in rows]


# --- werk ------------------------------------------------------------------------------


def _params(jobs: int, groups_deps: bool) -> list[EnqueueParams]:
    params = []
    for i in range(jobs):
        if groups_deps and i % 10 == 0:
            # every 10th job, in 40 groups of N/400 jobs each (i % 40 would be
            # only 4 groups: i is a multiple of 10)
            params.append(EnqueueParams(NOOP, group=f"g{(i // 10) % 40}"))
        else:
            params.append(EnqueueParams(NOOP))
    return params


async def _fill(app: Werk, jobs: int, groups_deps: bool) -> None:
    await app.truncate()
    if not groups_deps:
        for chunk in range(0, jobs, 20_000):
            await app.enqueue_many(_params(min(20_000, jobs - chunk), False))
        return
    parents = await app.enqueue_many(_params(jobs - jobs // 10, True))
    # 10 % depend on a parent: they wait until it is done, then run
    deps = [EnqueueParams(NOOP, depends_on=Dependency(p)) for p in parents[: jobs // 10] if p]
    await app.enqueue_many(deps)


def _prefetched(concurrency: int) -> str:
    return f"werk AsyncWorker, concurrency {concurrency}, prefetch {concurrency}"


async def werk_drain(app: Werk, jobs: int, concurrency: int, groups_deps: bool = False,
                     **options: Any) -> float:
    await _fill(app, jobs, groups_deps)
    worker = AsyncWorker(app, concurrency=concurrency, burst=True, handle_signals=False, poll_interval=0.5,
                         **options)
    start = time.perf_counter()
    await worker.run()
    elapsed = time.perf_counter() - start
    counts = await app.counts()
    done = sum(q.get("complete", 0) for q in counts.values())
    assert done == jobs, f"drained {done} of {jobs}: {counts}"
    return elapsed


async def werk_four_processes(app: Werk, dsn: str, schema: str, jobs: int) -> float:
    """Seconds from the first job's start to the last job's completion, on the
    database clock: the four interpreter start-ups before it, which dominated
    the wall time at 10,000 no-op jobs, are not in it. The time the first
    process claims alone while the others are still starting is."""
    await _fill(app, jobs, False)
    env = dict(os.environ, WERK_BENCH_DSN=dsn, WERK_BENCH_SCHEMA=schema, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "werk_trio.cli", "worker", "bench_drain:app", "--burst",
            "--concurrency", "50", "--log-level", "WARNING"]
    procs = [subprocess.Popen(argv, env=env, cwd=Path(__file__).resolve().parent) for _ in range(4)]
    codes = [await trio.to_thread.run_sync(p.wait) for p in procs]
    assert codes == [0, 0, 0, 0], codes
    counts = await app.counts()
    done = sum(q.get("complete", 0) for q in counts.values())
    assert done == jobs, f"drained {done} of {jobs}: {counts}"
    return await _harness.completed_span(app, schema, jobs)


async def werk_wakeup(app: Werk, count: int, gap: float) -> list[float]:
    await app.truncate()
    worker = AsyncWorker(app, concurrency=10, poll_interval=30, handle_signals=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        for _ in range(count):
            await app.enqueue(NOOP)
            await trio.sleep(gap)
        await trio.sleep(0.3)
        worker.stop()
    async with app.connection() as conn:
        cur = await conn.execute(app.sql.EXECUTION_PERCENTILES)
        row = await cur.fetchone()
    assert row is not None
    jobs = await app.list_jobs(status="complete", limit=10_000)
    return [(j.started_at - j.enqueued_at).total_seconds() for j in jobs if j.started_at and j.enqueued_at]


async def werk_wakeup_process(app: Werk, dsn: str, schema: str, count: int, gap: float) -> list[float]:
    """The same wake-up with the worker in a process of its own (``werk
    worker``, concurrency 10, poll interval 30 s), as the peers' workers run:
    the producer's enqueue calls no longer share the worker's Trio thread.
    Jobs are enqueued once its listener's LISTEN shows in pg_stat_activity;
    SIGTERM stops it."""
    await app.truncate()
    env = dict(os.environ, WERK_BENCH_DSN=dsn, WERK_BENCH_SCHEMA=schema, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "werk_trio.cli", "worker", "bench_drain:app", "--concurrency", "10",
            "--poll-interval", "30", "--log-level", "WARNING"]
    proc = subprocess.Popen(argv, env=env, cwd=Path(__file__).resolve().parent)
    try:
        listening = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                     " AND pid <> pg_backend_pid() AND query LIKE %s")
        with trio.fail_after(60):
            while True:
                async with app.connection() as conn:
                    cur = await conn.execute(listening, (f"LISTEN %{app.sql.jobs_channel}%",))
                    row = await cur.fetchone()
                if row is not None and row[0] and proc.poll() is None:
                    break
                assert proc.poll() is None, f"werk worker exited with {proc.returncode}"
                await trio.sleep(0.05)
        for _ in range(count):
            await app.enqueue(NOOP)
            await trio.sleep(gap)
        await trio.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await trio.to_thread.run_sync(proc.wait)
    assert code == 0, f"werk worker exited with {code}"
    jobs = await app.list_jobs(status="complete", limit=10_000)
    assert len(jobs) == count, f"{len(jobs)} of {count} jobs complete"
    return [(j.started_at - j.enqueued_at).total_seconds() for j in jobs if j.started_at and j.enqueued_at]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# the app the four `werk worker` processes load (module:attribute bench_drain:app)
app = Werk(os.environ.get("WERK_BENCH_DSN") or None, schema=os.environ.get("WERK_BENCH_SCHEMA") or None,
           task_modules=["bench_drain", "__main__"])
app.register(noop, name="bench_drain.noop")


METRICS_ON = "werk AsyncWorker, concurrency 50, metrics_port=0"


async def measure(
    dsn: str, schema: str, runs: int, jobs: int, groups_deps: bool, results: _harness.Results,
    latencies: dict[str, list[float]], worker_metrics: bool = False,
) -> None:
    werk = Werk(dsn, schema=schema, task_modules=["bench_drain", "__main__"])
    werk.register(noop, name="bench_drain.noop")
    results.declare(SECTION, "raw floor, claim 100 + complete (psycopg)", "jobs/s", baseline=True)
    results.declare(SECTION, "raw floor, claim 1 + complete (psycopg)", "jobs/s")
    results.declare(SECTION, WERK_TABLE_FLOOR, "jobs/s")
    results.declare(SECTION, "werk AsyncWorker, concurrency 10", "jobs/s")
    results.declare(SECTION, "werk AsyncWorker, concurrency 50", "jobs/s")
    for c in (10, 50):
        results.declare(SECTION, _prefetched(c), "jobs/s")
    if worker_metrics:
        results.declare(SECTION, METRICS_ON, "jobs/s")
    results.declare(SECTION, FOUR, "jobs/s")
    if groups_deps:
        results.declare(SECTION, "werk c=50, 10% groups + 10% dependencies", "jobs/s")
    async with werk:
        for _ in range(runs):
            results.add(SECTION, "raw floor, claim 100 + complete (psycopg)", jobs,
                        await trio.to_thread.run_sync(raw_floor, dsn, schema, jobs, 100))
            results.add(SECTION, "raw floor, claim 1 + complete (psycopg)", min(jobs, 2000),
                        await trio.to_thread.run_sync(raw_floor, dsn, schema, min(jobs, 2000), 1))
            await _fill(werk, jobs, False)
            results.add(SECTION, WERK_TABLE_FLOOR, jobs, await trio.to_thread.run_sync(
                raw_floor_werk_table, dsn, schema, werk.sql.idents["jobs"]))
            results.add(SECTION, "werk AsyncWorker, concurrency 10", jobs, await werk_drain(werk, jobs, 10))
            results.add(SECTION, "werk AsyncWorker, concurrency 50", jobs, await werk_drain(werk, jobs, 50))
            for c in (10, 50):
                results.add(SECTION, _prefetched(c), jobs, await werk_drain(werk, jobs, c, prefetch=c))
            if worker_metrics:  # the same drain, interleaved, with the worker's counters on
                results.add(SECTION, METRICS_ON, jobs, await werk_drain(werk, jobs, 50, metrics_port=0))
            results.add(SECTION, FOUR, jobs, await werk_four_processes(werk, dsn, schema, jobs))
            if groups_deps:
                results.add(SECTION, "werk c=50, 10% groups + 10% dependencies", jobs,
                            await werk_drain(werk, jobs, 50, groups_deps=True))
        latencies["raw LISTEN -> claim (psycopg)"] = await trio.to_thread.run_sync(
            raw_wakeup, dsn, schema, WAKE_JOBS, WAKE_GAP)
        latencies["werk AsyncWorker (poll_interval 30 s)"] = await werk_wakeup(werk, WAKE_JOBS, WAKE_GAP)
        latencies["werk worker process (poll_interval 30 s)"] = await werk_wakeup_process(
            werk, dsn, schema, WAKE_JOBS, WAKE_GAP)


# --- peers (each its own worker process, on its own tables in the same schema) ------
#
# Every peer gets the same work as werk: N no-op jobs (an async function that
# returns at once) bulk-enqueued into its own empty tables, then drained by one
# worker process of its own (_peer_worker.py), at its documented fastest
# settings. The process connects and builds its worker first, says "ready",
# and starts the worker on "go": the drain is timed on the database clock,
# from clock_timestamp() right after "go" is sent to the last completion the
# peer itself stamps with now() (pgqueuer's 'successful' log rows,
# procrastinate's 'succeeded' events), so neither the interpreter's start-up
# nor the exit is in it. Each drain is checked against the peer's own record
# that all N ran. The wake-up measurement is werk's: an idle worker process
# that only a NOTIFY can wake (its polling fallback set to 30 s), WAKE_JOBS
# jobs enqueued WAKE_GAP apart from this process, enqueue -> start from
# timestamps the peer writes itself with now(), i.e. on the database clock.

PGQ_ENTRYPOINT = "bench_drain.noop"
PEER_WORKER = Path(__file__).resolve().parent / "_peer_worker.py"
PEER_TIMEOUT = 600.0  # seconds: a peer process that takes longer is reported as failed


class PeerProcess:
    """One peer worker process (_peer_worker.py), driven over its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def ready(cls, system: str, dsn: str, schema: str, concurrency: int, mode: str) -> PeerProcess:
        """Start it and wait until it has connected and built its worker."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(PEER_WORKER), system, dsn, schema, str(concurrency), mode,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        peer = cls(proc)
        await peer.expect("ready")
        return peer

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        await self.proc.stdin.drain()

    async def expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), PEER_TIMEOUT)
        if line.decode().strip() != word:
            await self.proc.wait()
            raise RuntimeError(f"peer worker said {line!r} (exit {self.proc.returncode}), not {word!r}")

    async def finish(self) -> None:
        """Wait for its exit; a non-zero exit is a failure of the peer."""
        code = await asyncio.wait_for(self.proc.wait(), PEER_TIMEOUT)
        if code != 0:
            raise RuntimeError(f"peer worker exited with {code}")


async def _pgqueuer_queries(dsn: str, schema: str) -> tuple[Any, Any]:
    """(connection, pgqueuer ``Queries``) on a new asyncpg connection in
    ``schema``: the producer side, in this process."""
    import asyncpg  # type: ignore[import-not-found]
    from pgqueuer.queries import Queries

    conn: Any = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    return conn, Queries.from_asyncpg_connection(conn)


async def _pgqueuer_reset(queries: Any) -> None:
    await queries.clear_queue()
    await queries.clear_queue_log()
    await queries.clear_statistics_log()


async def pgqueuer_drain(dsn: str, schema: str, jobs: int, concurrency: int) -> float:
    conn, queries = await _pgqueuer_queries(dsn, schema)
    try:
        await _pgqueuer_reset(queries)
        for chunk in range(0, jobs, 20_000):
            n = min(20_000, jobs - chunk)
            await queries.enqueue([PGQ_ENTRYPOINT] * n, [None] * n, [0] * n)
        peer = await PeerProcess.ready("pgqueuer", dsn, schema, concurrency, "drain")
        await peer.send("go")
        go_at = await conn.fetchval("SELECT clock_timestamp()")
        await peer.expect("done")
        await peer.finish()
        names = queries.qbe.settings.qualified
        row = await conn.fetchrow(
            f"SELECT (SELECT count(*) FROM {names.queue_table}) AS left_over,"
            f" count(*) AS done, extract(epoch FROM max(created) - $1)::float8 AS span"
            f" FROM {names.queue_table_log} WHERE status = 'successful'", go_at)
        left_over, done = row["left_over"], row["done"]
        assert (left_over, done) == (0, jobs), f"pgqueuer drained {done} of {jobs}; {left_over} left queued"
        return float(row["span"])
    finally:
        await conn.close()


async def pgqueuer_wakeup(dsn: str, schema: str, count: int, gap: float) -> list[float]:
    conn, queries = await _pgqueuer_queries(dsn, schema)
    try:
        await _pgqueuer_reset(queries)
        peer = await PeerProcess.ready("pgqueuer", dsn, schema, 10, "wait")
        await peer.send("go")
        await asyncio.sleep(1.0)  # no readiness signal: give it time to LISTEN
        for _ in range(count):
            await queries.enqueue(PGQ_ENTRYPOINT, None, 0)
            await asyncio.sleep(gap)
        await asyncio.sleep(0.3)
        await peer.send("stop")
        await peer.finish()
        # its log gets a 'queued' row at enqueue and a 'picked' row at the
        # claim, each stamped now() by the server
        log = queries.qbe.settings.qualified.queue_table_log
        rows = await conn.fetch(
            f"SELECT extract(epoch FROM p.created - q.created)::float8 AS latency FROM {log} q"
            f" JOIN {log} p ON p.job_id = q.job_id AND p.status = 'picked' WHERE q.status = 'queued'"
        )
        return [float(r["latency"]) for r in rows]
    finally:
        await conn.close()


async def measure_pgqueuer(
    dsn: str, schema: str, runs: int, jobs: int, results: _harness.Results, latencies: dict[str, list[float]]
) -> None:
    __import__("asyncpg")  # its worker runs on asyncpg: without it the peer is skipped
    conn, queries = await _pgqueuer_queries(dsn, schema)
    try:
        await queries.install()
    finally:
        await conn.close()
    names = {c: f"pgqueuer process, max_concurrent_tasks {c}, batch_size {c // 2} (asyncpg)"
             for c in (10, 50)}
    for name in names.values():
        results.declare(SECTION, name, "jobs/s")
    for _ in range(runs):
        for c, name in names.items():
            results.add(SECTION, name, jobs, await pgqueuer_drain(dsn, schema, jobs, c))
    wake = "pgqueuer process (dequeue_timeout 30 s; asyncpg)"
    latencies[wake] = await pgqueuer_wakeup(dsn, schema, WAKE_JOBS, WAKE_GAP)


async def _go_time(connector: Any) -> Any:
    row = await connector.execute_query_one_async("SELECT clock_timestamp() AS t")
    return row["t"]


async def procrastinate_drain(papp: Any, dsn: str, schema: str, jobs: int, concurrency: int) -> float:
    connector = papp.connector
    await connector.execute_query_async("TRUNCATE procrastinate_jobs CASCADE")
    task = papp.tasks["noop"]
    for chunk in range(0, jobs, 20_000):
        await task.batch_defer_async(*({} for _ in range(min(20_000, jobs - chunk))))
    peer = await PeerProcess.ready("procrastinate", dsn, schema, concurrency, "drain")
    await peer.send("go")
    go_at = await _go_time(connector)
    await peer.expect("done")
    await peer.finish()
    row = await connector.execute_query_one_async(
        "SELECT (SELECT count(*) FILTER (WHERE status = 'succeeded') FROM procrastinate_jobs) AS done,"
        " (SELECT count(*) FROM procrastinate_jobs) AS total,"
        " (SELECT extract(epoch FROM max(at) - %(go)s)::float8 FROM procrastinate_events"
        "  WHERE type = 'succeeded') AS span", go=go_at)
    assert (row["done"], row["total"]) == (jobs, jobs), f"procrastinate drained {row['done']} of {jobs}"
    return float(row["span"])


async def procrastinate_wakeup(papp: Any, dsn: str, schema: str, count: int, gap: float) -> list[float]:
    connector = papp.connector
    await connector.execute_query_async("TRUNCATE procrastinate_jobs CASCADE")
    task = papp.tasks["noop"]
    peer = await PeerProcess.ready("procrastinate", dsn, schema, 10, "wait")
    await peer.send("go")
    await asyncio.sleep(1.0)  # no readiness signal: give it time to LISTEN
    for _ in range(count):
        await task.defer_async()
        await asyncio.sleep(gap)
    await asyncio.sleep(0.3)
    await peer.send("stop")
    await peer.finish()
    # its events table gets a 'deferred' and a 'started' row per job, each
    # stamped now() by the server (by its triggers)
    rows = await connector.execute_query_all_async(
        "SELECT extract(epoch FROM s.at - d.at)::float8 AS latency FROM procrastinate_events d"
        " JOIN procrastinate_events s ON s.job_id = d.job_id AND s.type = 'started' WHERE d.type = 'deferred'"
    )
    return [float(r["latency"]) for r in rows]


async def measure_procrastinate(
    dsn: str, schema: str, runs: int, jobs: int, results: _harness.Results, latencies: dict[str, list[float]]
) -> None:
    import procrastinate

    # the producer side, in this process: its psycopg connector, the schema
    # and the jobs (the worker process has its own)
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    connector = procrastinate.PsycopgConnector(conninfo=dsn, kwargs={"options": f"-c search_path={schema}"})
    papp = procrastinate.App(connector=connector)

    @papp.task(name="noop")
    async def _noop() -> None:
        """The no-op job."""

    names = {c: f"procrastinate process, concurrency {c} (psycopg pool)" for c in (10, 50)}
    for name in names.values():
        results.declare(SECTION, name, "jobs/s")
    async with papp.open_async():
        await papp.schema_manager.apply_schema_async()
        for _ in range(runs):
            for c, name in names.items():
                results.add(SECTION, name, jobs, await procrastinate_drain(papp, dsn, schema, jobs, c))
        wake = "procrastinate process (polling interval 30 s; psycopg)"
        latencies[wake] = await procrastinate_wakeup(papp, dsn, schema, WAKE_JOBS, WAKE_GAP)


PEERS = {"pgqueuer": measure_pgqueuer, "procrastinate": measure_procrastinate}


def print_latencies(latencies: dict[str, list[float]]) -> None:
    print(f"\n## {LATENCY} (jobs enqueued {WAKE_GAP * 1000:.0f} ms apart, database clock)")
    width = max([40, *(len(name) for name in latencies)])
    for name, lat in latencies.items():
        if not lat:
            print(f"{name:<{width}} no job started")
            continue
        print(f"{name:<{width}} p50 {_pct(lat, 0.5) * 1000:6.2f} ms   p99 {_pct(lat, 0.99) * 1000:6.2f} ms"
              f"   mean {statistics.mean(lat) * 1000:6.2f} ms   n={len(lat)}")


def main(argv: list[str] | None = None) -> int:
    parser = _harness.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--groups-deps", action="store_true", help="also drain with 10%% groups and deps")
    _harness.add_peer_options(parser, PEERS)
    parser.add_argument("--worker-metrics", action="store_true",
                        help="also drain at c=50 with the worker's Prometheus counters on")
    args = parser.parse_args(argv)
    peers = _harness.chosen_peers(PEERS, args)
    dsn = _harness.resolve_dsn(args.dsn)
    print(_harness.server_info(dsn))
    print(f"median of {args.runs} runs; {args.jobs:,} jobs per drain")
    print(_harness.load_note("at start"))
    results = _harness.Results()
    latencies: dict[str, list[float]] = {}
    with _harness.fresh_schema(dsn) as schema:
        trio.run(functools.partial(measure, worker_metrics=args.worker_metrics),
                 dsn, schema, args.runs, args.jobs, args.groups_deps, results, latencies)
        peer_args = (dsn, schema, args.runs, args.jobs, results, latencies)
        _harness.run_peers(peers, args.no_peers, results, *peer_args)
    print_latencies(latencies)
    results.print()
    print("\n" + _harness.load_note("at end"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
