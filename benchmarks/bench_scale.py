"""Cost as work grows: the drain rate and the introspection calls with big tables.

Three tables, each measured ``--runs`` times, interleaved:

* **empty**: only the measured jobs;
* **1M finished kept**: ``--rows`` (default 1,000,000) finished jobs in the
  table (93 % complete, 5 % failed, 2 % aborted, over the last 7 days), as a
  fleet that keeps a week of results has: each with a result/failure TTL of
  8 days and the ``expires_at`` the completion sets from it, so none is due
  yet and every sweep has them to skip;
* **1M queued backlog**: ``--rows`` jobs queued in the same queue, due now,
  at a lower priority than the measured jobs -- the claim reads past the same
  million-entry dequeue index, and the backlog stays claimable all along.

In each, ``--jobs`` (default 10,000) no-op jobs are enqueued in bulk and
drained by one AsyncWorker at ``--concurrency`` (default 50) in this process;
the rate is on the database clock, from the first measured job's start to the
last one's completion (the worker keeps running into the backlog after them,
and is stopped once they are all done). Each table's rate is shown as a
ratio to the empty table's rate of the same run. Target (issue 18): >= 0.9x.

Then, at each size, the introspection calls (get_queue_stats, the throughput
history, server_info, list_jobs pages, the metrics sampler's oldest-claimable
gauge, list_queues(), counts()) and the sweeper's statistics pass are timed as
bench_introspection.py times them: through the app, and the statement's
server time from EXPLAIN ANALYZE. Target: < 50 ms each. So is a sweep
without the statistics pass (rescues, expiries, the rows past their TTL:
what every sweep_interval costs).

The tables are filled with ``INSERT ... SELECT generate_series`` into the
app's own tables (a million rows in seconds), then VACUUM ANALYZE, as
autovacuum would have done by then.

Run: ``python benchmarks/bench_scale.py [--dsn ...] [--rows 1000000] [--jobs 10000] [--runs 3]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _harness
from bench_introspection import Timings, print_timings, time_calls

from werk_trio import AsyncWorker, EnqueueParams, Werk

SECTION = "drain, AsyncWorker (database clock: first start -> last completion of the measured jobs)"
MEASURED = "bench_scale.noop"
FILLER = "bench_scale.filler"
TABLES = ("empty", "1M finished kept", "1M queued backlog")


async def noop() -> None:
    """The no-op job (measured and filler alike)."""


def _label(table: str, rows: int) -> str:
    return table.replace("1M", f"{rows:,}")


async def fill(app: Werk, table: str, rows: int) -> None:
    """Empty the app's tables, then put ``rows`` filler jobs in as ``table`` says."""
    await app.truncate()
    jobs = app.sql.idents["jobs"]
    if table == "1M finished kept":
        statement = sql.SQL(
            """
            INSERT INTO {} (id, function, queue, status, attempts, max_attempts, scheduled_at,
                enqueued_at, started_at, completed_at, payload, result, error, result_ttl,
                failure_ttl, expires_at)
            SELECT gen_random_uuid(), %(f)s, 'default', s.status, 1, 1, t.done - interval '2 s',
                t.done - interval '2 s', t.done - interval '1 s', t.done, '{{"args":[]}}',
                CASE WHEN s.status = 'complete' THEN 'null' END,
                CASE WHEN s.status <> 'complete' THEN 'bench: no' END,
                691200, 691200, t.done + interval '8 days'
            FROM generate_series(0, %(n)s - 1) AS g(i)
            CROSS JOIN LATERAL (SELECT now() - make_interval(secs => 60 + i * 604800.0 / %(n)s) AS done) t
            CROSS JOIN LATERAL (SELECT CASE WHEN i %% 100 < 5 THEN 'failed' WHEN i %% 100 < 7
                                       THEN 'aborted' ELSE 'complete' END AS status) s
            """
        ).format(jobs)
    elif table == "1M queued backlog":
        statement = sql.SQL(
            """
            INSERT INTO {} (id, function, queue, status, priority, scheduled_at, enqueued_at, payload)
            SELECT gen_random_uuid(), %(f)s, 'default', 'queued', -1, now() - interval '1 s',
                now() - interval '1 s', '{{"args":[]}}'
            FROM generate_series(1, %(n)s)
            """
        ).format(jobs)
    else:
        return
    async with app.connection() as conn:
        await conn.execute(statement, {"f": FILLER, "n": rows})
    await app.vacuum()


async def drain(app: Werk, jobs: int, concurrency: int) -> float:
    """Enqueue ``jobs`` measured jobs (priority 0: ahead of the backlog), run a
    worker until none of them is left queued or running; seconds from the
    first one's start to the last one's completion."""
    ids = []
    for chunk in range(0, jobs, 20_000):
        made = await app.enqueue_many([EnqueueParams(MEASURED) for _ in range(min(20_000, jobs - chunk))])
        ids += [job.id for job in made if job is not None]
    t = app.sql.idents["jobs"]
    # through the dequeue and running-jobs indexes: a few rows, whatever the table holds
    left = sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM {t} WHERE queue = 'default' AND priority = 0"
        "               AND status IN ('queued', 'scheduled'))"
        " OR EXISTS (SELECT 1 FROM {t} WHERE status IN ('active', 'aborting') AND function = %(f)s)"
    ).format(t=t)
    span = sql.SQL(
        "SELECT count(*), extract(epoch FROM max(completed_at) - min(started_at))::float8 FROM {}"
        " WHERE id = ANY(%(ids)s) AND status = 'complete'"
    ).format(t)
    # the statistics pass (once a minute in a fleet; its cost at this size is
    # in the introspection table) now, so the worker's first sweep finds it
    # done: a drain of seconds would otherwise carry a minute's share of it
    await app.sweep()
    worker = AsyncWorker(app, concurrency=concurrency, poll_interval=0.5, handle_signals=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        while True:  # a benchmark, not a test: polling is the simple way to see the end
            await trio.sleep(0.05)
            async with app.connection() as conn:
                row = await (await conn.execute(left, {"f": MEASURED})).fetchone()
            if row is not None and not row[0]:
                break
        worker.stop()
    async with app.connection() as conn:
        row = await (await conn.execute(span, {"ids": ids})).fetchone()
    assert row is not None and row[0] == jobs, f"drained {row} of {jobs}"
    return float(row[1])


def introspection_calls(app: Werk) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
    return [
        ("get_queue_stats()", app.get_queue_stats),
        ("get_throughput_history(60)", lambda: app.get_throughput_history(60)),
        ("get_throughput_history(1440)  [hourly]", lambda: app.get_throughput_history(1440)),
        ("get_server_info()", app.get_server_info),
        ("list_jobs(limit=50)  [first page]", lambda: app.list_jobs(limit=50)),
        ("list_jobs(limit=50, offset=1000)", lambda: app.list_jobs(limit=50, offset=1000)),
        ("list_jobs(status='failed', limit=50)", lambda: app.list_jobs(status="failed", limit=50)),
        ("metrics gauge: oldest claimable job per queue", lambda: app._fetch(app.sql.OLDEST_CLAIMABLE)),
        ("list_queues()  [both dashboards, every refresh]", app.list_queues),
        ("counts()  [exact, every row]", app.counts),
    ]


async def introspection(dsn: str, schema: str, app: Werk, runs: int) -> Timings:
    """The calls, and the statistics pass as the sweeping worker runs it (its
    first pass, which counts everything, outside the timing)."""
    sweeps: list[float] = []
    await app.sweep()  # the pass, if due, outside the timing
    for _ in range(runs):
        start = time.perf_counter()
        await app.sweep()
        sweeps.append((time.perf_counter() - start) * 1000)
    sweeper = Werk(dsn, schema=schema, auto_migrate=False, stats_sample_interval=0.001)
    passes: list[float] = []
    async with sweeper:
        await sweeper.sweep()
        for _ in range(runs):
            start = time.perf_counter()
            await sweeper.sweep()
            passes.append((time.perf_counter() - start) * 1000)
    out = await time_calls(app, introspection_calls(app), runs)
    out.append(("sweep()  [every sweep_interval: the pass not due]", sweeps, []))
    out.append(("sweep() with the statistics pass", passes, []))
    return out


async def measure(dsn: str, schema: str, args: Any, results: _harness.Results) -> dict[str, Timings]:
    app = Werk(dsn, schema=schema, task_modules=["bench_scale", "__main__"])
    app.register(noop, name=MEASURED)
    app.register(noop, name=FILLER)
    for table in TABLES:
        results.declare(SECTION, _label(table, args.rows), "jobs/s", baseline=table == "empty")
    timings: dict[str, Timings] = {}
    async with app:
        for run in range(args.runs):
            for table in TABLES:
                start = time.perf_counter()
                await fill(app, table, args.rows)
                filled = time.perf_counter() - start
                if run == 0 and table != "empty":
                    print(f"filled {_label(table, args.rows)} in {filled:.0f} s")
                    timings[table] = await introspection(dsn, schema, app, args.runs)
                results.add(SECTION, _label(table, args.rows), args.jobs,
                            await drain(app, args.jobs, args.concurrency))
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = _harness.arg_parser(__doc__.splitlines()[0])
    parser.set_defaults(runs=3)
    parser.add_argument("--rows", type=int, default=1_000_000, help="finished / queued rows in the table")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs drained per measurement")
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args(argv)
    dsn = _harness.resolve_dsn(args.dsn)
    print(_harness.server_info(dsn))
    print(f"median of {args.runs} runs; {args.jobs:,} jobs per drain; {args.rows:,} rows kept")
    print(_harness.load_note("at start"))
    results = _harness.Results()
    with _harness.fresh_schema(dsn) as schema:
        timings = trio.run(measure, dsn, schema, args, results)
    results.print()
    for table, rows in timings.items():
        print_timings(rows, args.runs, title=f"with {_label(table, args.rows)}")
    print("\ntarget: each table >= 0.9x the empty table's rate; each call < 50 ms")
    print(_harness.load_note("at end"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
