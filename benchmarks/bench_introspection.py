"""How long each introspection statement takes on a big table.

Fills a fresh schema with ``--jobs`` finished jobs (default 1,000,000: 93 %
complete, 5 % failed with an execution row each, 2 % aborted) spread evenly
over the last ``--days`` (default 7) across 5 queues and 8 workers (6
running, 2 stopped), plus a live backlog (2,000 queued, 200 scheduled, 50
active) and a week of queue-depth samples (one per minute per queue, as the
sweeper writes them); VACUUM ANALYZE; then times every introspection method
of :class:`werk_trio.Werk` through the app (statement, network and decoding
into Python objects), ``--runs`` times each after one warm-up call, and prints
the median and the slowest in milliseconds. Target (issue 18): under 50 ms
each at 1,000,000 finished jobs.

The fill is plain SQL into the app's own tables (``generate_series``): the
benchmark measures reading, not writing.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import trio
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import arg_parser, fresh_schema, load_note, resolve_dsn, server_info

from werk_trio import Werk

QUEUES = ["default", "emails", "reports", "media", "billing"]
WORKERS = [uuid.UUID(int=i + 1) for i in range(8)]
STOPPED = WORKERS[6:]


def fill(dsn: str, schema: str, jobs: int, days: float) -> None:
    table = sql.Identifier(schema, "_werk_jobs")
    execs = sql.Identifier(schema, "_werk_executions")
    workers = sql.Identifier(schema, "_werk_workers")
    samples = sql.Identifier(schema, "_werk_queue_samples")
    span = days * 86400.0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i, wid in enumerate(WORKERS):
            stopped = wid in STOPPED
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (id, name, hostname, pid, worker_type, queues, concurrency,"
                    " heartbeat_interval, status, stopped_at, expires_at) VALUES (%s, %s, 'bench', %s,"
                    " 'async', %s, 10, 3600, %s, CASE WHEN %s THEN now() END,"
                    " CASE WHEN %s THEN now() + interval '1 hour' END)"
                ).format(workers),
                (wid, f"bench-{i}", 1000 + i, QUEUES, "stopped" if stopped else "running",
                 stopped, stopped),
            )
        # finished jobs, newest first: job i finished i * span / jobs seconds ago
        conn.execute(
            sql.SQL(
                """
                INSERT INTO {} (id, function, queue, status, attempts, max_attempts, scheduled_at,
                    enqueued_at, started_at, completed_at, worker_id, payload, result, error)
                SELECT gen_random_uuid(), 'bench.tasks.work', q.names[1 + i %% 5], s.status, 1, 1,
                    t.done - interval '2 seconds', t.done - interval '2 seconds',
                    t.done - interval '1 second',
                    t.done, w.ids[1 + i %% 8], '{{"args":[' || i || ']}}',
                    CASE WHEN s.status = 'complete' THEN '{{"ok":true}}' END,
                    CASE WHEN s.status <> 'complete' THEN 'bench.tasks.Boom: no' END
                FROM generate_series(0, %(n)s - 1) AS g(i)
                CROSS JOIN (SELECT %(queues)s::text[] AS names) q
                CROSS JOIN (SELECT %(workers)s::uuid[] AS ids) w
                CROSS JOIN LATERAL (SELECT now() - make_interval(secs => i * %(span)s / %(n)s) AS done) t
                CROSS JOIN LATERAL (SELECT CASE WHEN i %% 100 < 5 THEN 'failed'
                                                WHEN i %% 100 < 7 THEN 'aborted'
                                                ELSE 'complete' END AS status) s
                """
            ).format(table),
            {"n": jobs, "queues": QUEUES, "workers": WORKERS, "span": span},
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (job_id, attempt, worker_id, status, started_at, finished_at, error)"
                " SELECT id, 1, worker_id, 'failed', started_at, completed_at, error FROM {}"
                " WHERE status = 'failed'"
            ).format(execs, table)
        )
        # the live backlog
        conn.execute(
            sql.SQL(
                """
                INSERT INTO {} (id, function, queue, status, attempts, scheduled_at, started_at,
                    worker_id, payload)
                SELECT gen_random_uuid(), 'bench.tasks.work', (%(queues)s::text[])[1 + i %% 5],
                    CASE WHEN i < 2000 THEN 'queued' WHEN i < 2200 THEN 'scheduled' ELSE 'active' END,
                    CASE WHEN i < 2200 THEN 0 ELSE 1 END,
                    CASE WHEN i < 2000 THEN now() ELSE now() + interval '1 hour' END,
                    CASE WHEN i >= 2200 THEN now() END,
                    CASE WHEN i >= 2200 THEN (%(workers)s::uuid[])[1 + i %% 6] END, '{{}}'
                FROM generate_series(0, 2249) AS g(i)
                """
            ).format(table),
            {"queues": QUEUES, "workers": WORKERS},
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (sampled_at, queue, queued, scheduled, waiting, active)"
                " SELECT now() - make_interval(mins => m), q, 400 + m %% 50, 40, 0, 10"
                " FROM generate_series(0, %s) AS g(m), unnest(%s::text[]) AS u(q)"
            ).format(samples),
            (int(days * 1440), QUEUES),
        )


Timings = list[tuple[str, list[float], list[float]]]


async def time_calls(app: Werk, calls: list[tuple[str, Callable[[], Awaitable[Any]]]], runs: int) -> Timings:
    """(name, call ms per run, server ms per run) of each call: through the
    app, and the planning + execution time on the server of the statements
    the call sent (EXPLAIN ANALYZE of each with its parameters, summed),
    which leaves out the network and the decoding into Python objects. One
    warm-up call each (plans cached, pages in memory); the runs interleaved,
    so drift hits every row alike. ``app`` must be open."""
    sent: list[tuple[str, Any]] = []
    fetch = app._fetch

    async def recording(query: str, params: Any = None) -> list[Any]:
        sent.append((query, params))
        return await fetch(query, params)

    app._fetch = recording  # type: ignore[method-assign]
    out: Timings = [(name, [], []) for name, _ in calls]
    try:
        for _, call in calls:
            await call()
        for _ in range(runs):
            for (_, call), (_, times, server) in zip(calls, out, strict=True):
                sent.clear()
                start = time.perf_counter()
                await call()
                times.append((time.perf_counter() - start) * 1000)
                assert sent, "the call sent no statement"
                spent = 0.0
                async with app.connection() as conn:
                    for query, params in sent:
                        cur = await conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params)
                        row = await cur.fetchone()
                        assert row is not None
                        plan = row[0][0]
                        spent += plan["Planning Time"] + plan["Execution Time"]
                server.append(spent)
    finally:
        app._fetch = fetch  # type: ignore[method-assign]
    return out


def print_timings(results: Timings, runs: int, title: str = "call") -> None:
    width = max(len(title), *(len(name) for name, _, _ in results))
    print(f"\n{title:<{width}}  median ms   max ms  server ms   (runs={runs}, target < 50 ms)")
    for name, times, server in results:
        flag = "" if statistics.median(times) < 50 else "  <- over target"
        on_server = f"{statistics.median(server):9.1f}" if server else "        -"
        print(f"{name:<{width}}  {statistics.median(times):9.1f}  {max(times):7.1f}  {on_server}{flag}")


async def measure(dsn: str, schema: str, runs: int) -> Timings:
    """(name, call ms per run, server ms per run): the call through the app,
    and the statement's planning + execution time on the server (EXPLAIN
    ANALYZE of the very statement and parameters the call sent), which
    leaves out the network and the decoding into Python objects."""
    app = Werk(dsn, schema=schema, auto_migrate=False)
    live, gone = WORKERS[0], STOPPED[0]
    calls: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("get_queue_stats()", app.get_queue_stats),
        ("get_throughput_history(60)", lambda: app.get_throughput_history(60)),
        ("get_throughput_history(1440)  [hourly]", lambda: app.get_throughput_history(1440)),
        ("get_throughput_history(10080)  [hourly]", lambda: app.get_throughput_history(10080)),
        ("get_throughput_history(1440, bucket_secs=60)",
         lambda: app.get_throughput_history(1440, bucket_secs=60)),
        ("get_queue_depth_history(60)", lambda: app.get_queue_depth_history(60)),
        ("get_queue_depth_history(1440)  [15-min averages]", lambda: app.get_queue_depth_history(1440)),
        ("get_queue_depth_history(1440, bucket_secs=60)",
         lambda: app.get_queue_depth_history(1440, bucket_secs=60)),
        ("get_server_info()", app.get_server_info),
        ("list_workers()", app.list_workers),
        ("get_worker(id)", lambda: app.get_worker(live)),
        ("list_worker_jobs(running worker, 50)", lambda: app.list_worker_jobs(live)),
        ("list_worker_jobs(stopped worker, 50, offset=1000)",
         lambda: app.list_worker_jobs(gone, 50, 1000)),
        ("list_jobs(limit=50)  [first page]", lambda: app.list_jobs(limit=50)),
        ("list_jobs(limit=50, offset=1000)", lambda: app.list_jobs(limit=50, offset=1000)),
        ("list_jobs(queue='emails', limit=50)", lambda: app.list_jobs(queue="emails", limit=50)),
        ("list_jobs(status='failed', limit=50)", lambda: app.list_jobs(status="failed", limit=50)),
        ("metrics gauge: oldest claimable job per queue",
         lambda: app._fetch(app.sql.OLDEST_CLAIMABLE)),
        ("list_queues()  [both dashboards, every refresh]", app.list_queues),
        ("counts()  [exact, every row]", app.counts),
    ]  # fmt: skip
    # the sweeper's statistics pass, as a running worker does it every minute
    # (here forced on each sweep): not an introspection call, but its cost
    sweeper = Werk(dsn, schema=schema, auto_migrate=False, stats_sample_interval=0.001)
    passes: list[float] = []
    async with app, sweeper:
        start = time.perf_counter()
        await sweeper.sweep()
        print(f"first statistics pass (rolls up {len(QUEUES)} queues' week): "
              f"{(time.perf_counter() - start) * 1000:.0f} ms")
        await app.vacuum()
        for _ in range(runs):
            start = time.perf_counter()
            await sweeper.sweep()
            passes.append((time.perf_counter() - start) * 1000)
        out = await time_calls(app, calls, runs)
    out.append(("sweep() with the statistics pass (sweeper, each minute)", passes, []))
    return out


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="finished jobs in the table")
    parser.add_argument("--days", type=float, default=7.0, help="days the finished jobs span")
    parser.add_argument("--reuse", metavar="SCHEMA", default=None,
                        help="measure a schema an earlier run filled and kept (--keep), without filling")
    parser.add_argument("--keep", action="store_true", help="keep the filled schema (its name is printed)")
    args = parser.parse_args()
    dsn = resolve_dsn(args.dsn)
    print(server_info(dsn))
    print(load_note("at start"))
    if args.reuse:
        print(f"measuring the kept schema {args.reuse}")
        trio.run(_migrate, dsn, args.reuse)  # a schema kept by an older werk_trio
        results = trio.run(measure, dsn, args.reuse, args.runs)
    else:
        with fresh_schema(dsn) as schema:
            trio.run(_migrate, dsn, schema)
            start = time.perf_counter()
            fill(dsn, schema, args.jobs, args.days)
            took = time.perf_counter() - start
            print(f"filled {args.jobs:,} finished jobs over {args.days:g} days in {took:.0f} s")
            results = trio.run(measure, dsn, schema, args.runs)
            if args.keep:
                _keep(dsn, schema)
    print(load_note("at end"))
    print_timings(results, args.runs)


def _keep(dsn: str, schema: str) -> None:
    """Copy the filled schema's tables to a schema that outlives the run."""
    kept = schema.replace("werk_bench_", "werk_bench_kept_")
    with psycopg.connect(dsn, autocommit=True) as conn:
        rename = sql.SQL("ALTER SCHEMA {} RENAME TO {}")
        conn.execute(rename.format(sql.Identifier(schema), sql.Identifier(kept)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))  # fresh_schema drops it
    print(f"kept the filled schema as {kept} (--reuse {kept}; drop it when done)")


async def _migrate(dsn: str, schema: str) -> None:
    async with Werk(dsn, schema=schema):
        pass


if __name__ == "__main__":
    main()
