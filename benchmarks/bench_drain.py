"""Drain and wake-up benchmark: werk workers against the raw-SQL floor.

Measured in one run against one server:

* raw floor -- a claim-and-complete loop in plain (sync) psycopg on a minimal
  queue table: ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED
  LIMIT n) RETURNING id`` then ``UPDATE ... SET status = 'done'``, batch 1 and
  batch 100, each its own durable commit. The baseline of the drain table.
* werk: N no-op jobs drained by one AsyncWorker at concurrency 10 and 50 (in
  this process), and by four ``werk worker --burst`` processes at once.
* idle wake-up latency: an idle AsyncWorker (poll_interval 30 s, so only
  NOTIFY can wake it); jobs enqueued 20 ms apart; enqueue -> start on the
  database clock (``started_at - enqueued_at``), p50 and p99, against a raw
  LISTEN -> claim loop in plain psycopg as the floor.
* with ``--groups-deps``: the same drain with 10 % of the jobs in concurrency
  groups and 10 % depending on another job, as a ratio to the plain drain.

Run: ``python benchmarks/bench_drain.py [--dsn ...] [--jobs 10000] [--runs 3]``.
"""

from __future__ import annotations

import os
import select
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import trio
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _harness  # noqa: E402

from werk_trio import AsyncWorker, Dependency, EnqueueParams, Werk  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SECTION = "drain (no-op jobs)"
LATENCY = "idle wake-up, enqueue -> start"


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
        start = time.perf_counter()
        while True:
            ids = [r[0] for r in conn.execute(claim, (batch,)).fetchall()]
            if not ids:
                break
            conn.execute(done, (ids,))
        return time.perf_counter() - start


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
        insert = sql.SQL("WITH i AS (INSERT INTO {} DEFAULT VALUES RETURNING 1) SELECT pg_notify(%s, '')").format(
            table
        )
        for _ in range(count):
            producer.execute(insert, (channel,))
            time.sleep(gap)
        time.sleep(0.3)
        stop.set()
        thread.join()
        rows = producer.execute(
            sql.SQL("SELECT extract(epoch FROM started_at - enqueued_at) FROM {} WHERE started_at IS NOT NULL").format(
                table
            )
        ).fetchall()
    return [float(r[0]) for r in rows]


# --- werk ------------------------------------------------------------------------------


def _params(jobs: int, groups_deps: bool) -> list[EnqueueParams]:
    params = []
    for i in range(jobs):
        if groups_deps and i % 10 == 0:
            params.append(EnqueueParams(NOOP, group=f"g{i % 40}"))
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


async def werk_drain(app: Werk, jobs: int, concurrency: int, groups_deps: bool = False) -> float:
    await _fill(app, jobs, groups_deps)
    worker = AsyncWorker(app, concurrency=concurrency, burst=True, handle_signals=False, poll_interval=0.5)
    start = time.perf_counter()
    await worker.run()
    elapsed = time.perf_counter() - start
    counts = await app.counts()
    done = sum(q.get("complete", 0) for q in counts.values())
    assert done == jobs, f"drained {done} of {jobs}: {counts}"
    return elapsed


async def werk_four_processes(app: Werk, dsn: str, schema: str, jobs: int) -> float:
    await _fill(app, jobs, False)
    env = dict(os.environ, WERK_BENCH_DSN=dsn, WERK_BENCH_SCHEMA=schema, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "werk_trio.cli", "worker", "bench_drain:app", "--burst",
            "--concurrency", "50", "--log-level", "WARNING"]
    start = time.perf_counter()
    procs = [subprocess.Popen(argv, env=env, cwd=Path(__file__).resolve().parent) for _ in range(4)]
    codes = [await trio.to_thread.run_sync(p.wait) for p in procs]
    elapsed = time.perf_counter() - start
    assert codes == [0, 0, 0, 0], codes
    counts = await app.counts()
    done = sum(q.get("complete", 0) for q in counts.values())
    assert done == jobs, f"drained {done} of {jobs}: {counts}"
    return elapsed


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


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# the app the four `werk worker` processes load (module:attribute bench_drain:app)
app = Werk(os.environ.get("WERK_BENCH_DSN") or None, schema=os.environ.get("WERK_BENCH_SCHEMA") or None,
           task_modules=["bench_drain", "__main__"])
app.register(noop, name="bench_drain.noop")


async def measure(dsn: str, schema: str, runs: int, jobs: int, groups_deps: bool, results: _harness.Results) -> None:
    werk = Werk(dsn, schema=schema, task_modules=["bench_drain", "__main__"])
    werk.register(noop, name="bench_drain.noop")
    results.declare(SECTION, "raw floor, claim 100 + complete (psycopg)", "jobs/s", baseline=True)
    results.declare(SECTION, "raw floor, claim 1 + complete (psycopg)", "jobs/s")
    results.declare(SECTION, "werk AsyncWorker, concurrency 10", "jobs/s")
    results.declare(SECTION, "werk AsyncWorker, concurrency 50", "jobs/s")
    results.declare(SECTION, "werk, 4 worker processes x concurrency 50", "jobs/s")
    if groups_deps:
        results.declare(SECTION, "werk c=50, 10% groups + 10% dependencies", "jobs/s")
    async with werk:
        for _ in range(runs):
            results.add(SECTION, "raw floor, claim 100 + complete (psycopg)", jobs,
                        await trio.to_thread.run_sync(raw_floor, dsn, schema, jobs, 100))
            results.add(SECTION, "raw floor, claim 1 + complete (psycopg)", min(jobs, 2000),
                        await trio.to_thread.run_sync(raw_floor, dsn, schema, min(jobs, 2000), 1))
            results.add(SECTION, "werk AsyncWorker, concurrency 10", jobs, await werk_drain(werk, jobs, 10))
            results.add(SECTION, "werk AsyncWorker, concurrency 50", jobs, await werk_drain(werk, jobs, 50))
            results.add(SECTION, "werk, 4 worker processes x concurrency 50", jobs,
                        await werk_four_processes(werk, dsn, schema, jobs))
            if groups_deps:
                results.add(SECTION, "werk c=50, 10% groups + 10% dependencies", jobs,
                            await werk_drain(werk, jobs, 50, groups_deps=True))
        raw = await trio.to_thread.run_sync(raw_wakeup, dsn, schema, 150, 0.02)
        ours = await werk_wakeup(werk, 150, 0.02)
    print(f"\n## {LATENCY} (jobs enqueued 20 ms apart, database clock)")
    for name, lat in (("raw LISTEN -> claim (psycopg)", raw), ("werk AsyncWorker (poll_interval 30 s)", ours)):
        print(f"{name:<40} p50 {_pct(lat, 0.5) * 1000:6.2f} ms   p99 {_pct(lat, 0.99) * 1000:6.2f} ms"
              f"   mean {statistics.mean(lat) * 1000:6.2f} ms   n={len(lat)}")


def main(argv: list[str] | None = None) -> int:
    parser = _harness.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--groups-deps", action="store_true", help="also drain with 10%% groups and deps")
    args = parser.parse_args(argv)
    dsn = _harness.resolve_dsn(args.dsn)
    print(_harness.server_info(dsn))
    print(f"median of {args.runs} runs; {args.jobs:,} jobs per drain")
    print(_harness.load_note("at start"))
    results = _harness.Results()
    with _harness.fresh_schema(dsn) as schema:
        trio.run(measure, dsn, schema, args.runs, args.jobs, args.groups_deps, results)
    results.print()
    print("\n" + _harness.load_note("at end"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
