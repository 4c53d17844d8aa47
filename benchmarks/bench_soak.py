"""Soak: a steady enqueue + drain for ``--duration`` seconds; does anything grow?

First the drain rate is measured as the soak will load the worker: a burst
drain of 5,000 no-op jobs gives a first estimate; then the same worker setup
runs for ``--calibrate`` seconds (default 20) over a backlog that it cannot
empty in that time, with the producer beside it in this process enqueueing
at half the estimate, and the outcomes it writes in the last two thirds of
that time are the drain rate (a burst drain alone, with nothing else in the
process, overstated it: half of it was more than the worker drained beside
the producer, and the backlog grew). Then, for ``--duration`` seconds (default
3600), one producer enqueues no-op jobs at half that rate (``--rate`` to set
it), in a batch every 100 ms, each job with ``result_ttl`` ``--result-ttl``
seconds (default 300) so the sweeper deletes finished rows and the table can
reach a steady size; one AsyncWorker (``--concurrency``, default 50) runs
them, with its sweeper and statistics pass on their defaults, in this process.

Every ``--sample`` seconds (default 60) it prints one line: the jobs enqueued
and completed in the interval, the claim latency of the jobs that finished in
it (enqueue -> start, p50 and p99, on the database clock), the jobs table's
size and its indexes' size (``pg_table_size``, ``pg_indexes_size``), and its
dead rows (``n_dead_tup``); then the worker's own side of the interval
(``--actors``, on by default): its claims (count, mean and slowest round
trip in ms, jobs per claim), its completion writes (likewise, outcomes per
write), the slowest enqueue of the producer, the Trio loop's worst lag (a
task that sleeps 10 ms and records how late it wakes: the process's one
thread busy) and the CPU seconds the process used. A stall then shows
which of them ran slow. At the end, the trend: each quantity's first and
last third (medians) and its least-squares slope per hour. A healthy run
shows latency flat and the sizes levelling off once the result TTL has
passed; autovacuum with the storage parameters of migration 0005
(docs/guides/performance.md, "Table size under a steady load") is what keeps
them there. A server with autovacuum off is flagged at the start: there
nothing removes the dead row versions and the sizes grow by design.

Run: ``python benchmarks/bench_soak.py [--dsn ...] [--duration 3600] [--sample 60]``.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import trio
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _harness

from werk_trio import AsyncWorker, EnqueueParams, Werk

NOOP = "bench_soak.noop"
TICK = 0.1  # seconds between two batches of the producer
COLUMNS = ("enqueued", "completed", "p50 ms", "p99 ms", "table MB", "index MB", "dead rows")
ACTOR_COLUMNS = ("claims", "claim ms", "claim max", "per claim", "writes", "write ms", "write max",
                 "per write", "enq max", "lag max", "cpu s")
LAG_TICK = 0.01  # seconds the lag probe sleeps


@dataclass
class Timings:
    """Round trips of one kind in the current interval: count, total and
    slowest seconds, items (jobs claimed, outcomes written)."""

    count: int = 0
    total: float = 0.0
    slowest: float = 0.0
    items: int = 0

    def add(self, seconds: float, items: int) -> None:
        self.count += 1
        self.total += seconds
        self.slowest = max(self.slowest, seconds)
        self.items += items


@dataclass
class ActorProbe:
    """The worker's side of each interval (see the module docstring)."""

    claims: Timings = field(default_factory=Timings)
    writes: Timings = field(default_factory=Timings)
    enqueue_max: float = 0.0
    lag_max: float = 0.0
    cpu: float = field(default_factory=time.process_time)

    def attach(self, worker: AsyncWorker) -> None:
        """Time the worker's claims and completion writes (wraps the two
        methods on this instance only)."""
        claim, write = worker.poller.claim, worker.completer._write

        async def timed_claim(n: int) -> Any:
            t0 = time.perf_counter()
            rows = await claim(n)
            self.claims.add(time.perf_counter() - t0, len(rows))
            return rows

        async def timed_write(batch: list[Any]) -> Any:
            t0 = time.perf_counter()
            due = await write(batch)
            self.writes.add(time.perf_counter() - t0, len(batch))
            return due

        worker.poller.claim = timed_claim  # type: ignore[method-assign]
        worker.completer._write = timed_write  # type: ignore[method-assign]

    async def lag(self) -> None:
        """Forever: sleep LAG_TICK, record how late the wake-up came."""
        while True:
            t0 = trio.current_time()
            await trio.sleep(LAG_TICK)
            self.lag_max = max(self.lag_max, trio.current_time() - t0 - LAG_TICK)

    def take(self) -> dict[str, float]:
        """This interval's columns, and a fresh interval."""
        c, w = self.claims, self.writes
        cpu = time.process_time()
        row = {
            "claims": c.count, "claim ms": 1000 * c.total / max(1, c.count), "claim max": 1000 * c.slowest,
            "per claim": c.items / max(1, c.count),
            "writes": w.count, "write ms": 1000 * w.total / max(1, w.count), "write max": 1000 * w.slowest,
            "per write": w.items / max(1, w.count),
            "enq max": 1000 * self.enqueue_max, "lag max": 1000 * self.lag_max, "cpu s": cpu - self.cpu,
        }
        self.claims, self.writes, self.cpu = Timings(), Timings(), cpu
        self.enqueue_max = self.lag_max = 0.0
        return row


async def noop() -> None:
    """The no-op job."""


async def _fill(app: Werk, jobs: int, ttl: float | None = None) -> None:
    for chunk in range(0, jobs, 20_000):
        await app.enqueue_many([EnqueueParams(NOOP, result_ttl=ttl)
                                for _ in range(min(20_000, jobs - chunk))])  # fmt: skip


async def burst_rate(app: Werk, jobs: int, concurrency: int, prefetch: int) -> float:
    """Jobs/s of a burst drain of ``jobs`` no-op jobs (database clock)."""
    await app.truncate()
    await _fill(app, jobs)
    await AsyncWorker(app, concurrency=concurrency, prefetch=prefetch, burst=True,
                      handle_signals=False).run()  # fmt: skip
    seconds = await _harness.completed_span(app, app.sql.schema or "public", jobs)
    await app.truncate()
    return jobs / seconds


async def calibrate(app: Werk, seconds: float, concurrency: int, prefetch: int, ttl: float) -> float:
    """Jobs/s the soak's worker writes while the soak's producer runs beside it:
    a backlog it cannot drain in ``seconds``, the producer at half the burst
    rate, the outcomes written in the last two thirds of ``seconds``."""
    estimate = await burst_rate(app, 5_000, concurrency, prefetch)
    await _fill(app, int(estimate * seconds * 1.5), ttl)
    worker = AsyncWorker(app, concurrency=concurrency, prefetch=prefetch, handle_signals=False)
    probe = ActorProbe()
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        start = trio.current_time()
        nursery.start_soon(produce, app, estimate / 2, ttl, start + seconds, [0], probe)
        await trio.sleep_until(start + seconds / 3)
        written, since = worker.completer.written, trio.current_time()
        await trio.sleep_until(start + seconds)
        rate = (worker.completer.written - written) / (trio.current_time() - since)
        left = await app.counts()
        worker.stop()
    await app.truncate()
    queued = sum(q.get("queued", 0) for q in left.values())
    print(f"burst drain {estimate:,.0f} jobs/s; beside the producer ({estimate / 2:,.0f} jobs/s) the "
          f"worker wrote {rate:,.0f} jobs/s ({queued:,} still queued at the end)")
    return rate


async def produce(
    app: Werk, rate: float, ttl: float, stop_at: float, enqueued: list[int], probe: ActorProbe,
) -> None:
    """``rate`` jobs/s until ``stop_at`` (trio clock), a batch per TICK; the
    batch size follows the clock, so a slow enqueue does not lower the rate."""
    start = trio.current_time()
    sent = 0
    while (now := trio.current_time()) < stop_at:
        due = int((now - start) * rate) - sent
        if due > 0:
            await app.enqueue_many([EnqueueParams(NOOP, result_ttl=ttl) for _ in range(due)])
            probe.enqueue_max = max(probe.enqueue_max, trio.current_time() - now)
            sent += due
            enqueued[0] += due
        await trio.sleep(TICK)


async def sample(app: Werk, since: float) -> dict[str, float]:
    """Claim latency of the jobs finished in the last ``since`` seconds, and the
    jobs table's size now."""
    jobs = app.sql.idents["jobs"]
    name = f"{app.sql.schema or 'public'}.{app.config.prefix}_jobs"
    query = sql.SQL(
        """
        SELECT count(*),
            percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - enqueued_at)),
            percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - enqueued_at)),
            pg_table_size(%(t)s::regclass), pg_indexes_size(%(t)s::regclass),
            (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = %(t)s::regclass)
        FROM {} WHERE status = 'complete' AND completed_at >= now() - make_interval(secs => %(s)s)
        """
    ).format(jobs)
    async with app.connection() as conn:
        row = await (await conn.execute(query, {"t": name, "s": since})).fetchone()
    assert row is not None
    done, p50, p99, table, index, dead = row
    return {"completed": done, "p50 ms": (p50 or 0) * 1000, "p99 ms": (p99 or 0) * 1000,
            "table MB": table / 2**20, "index MB": index / 2**20, "dead rows": dead or 0}


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` over ``ts`` (seconds), per hour."""
    if len(ts) < 2:
        return 0.0
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    var = sum((t - mt) ** 2 for t in ts)
    return 0.0 if var == 0 else 3600 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


def print_trend(rows: list[tuple[float, dict[str, float]]]) -> None:
    print("\n## trend (median of the first and last third of the samples; slope per hour)")
    ts = [t for t, _ in rows]
    third = max(1, len(rows) // 3)
    for column in ("p50 ms", "p99 ms", "table MB", "index MB", "dead rows"):
        ys = [r[column] for _, r in rows]
        first, last = statistics.median(ys[:third]), statistics.median(ys[-third:])
        slope = slope_per_hour(ts, ys)
        print(f"{column:<10} first {first:10.2f}   last {last:10.2f}   slope {slope:+10.2f}/h")


async def soak(dsn: str, schema: str, args: Any) -> list[tuple[float, dict[str, float]]]:
    app = Werk(dsn, schema=schema, task_modules=["bench_soak", "__main__"])
    app.register(noop, name=NOOP)
    rows: list[tuple[float, dict[str, float]]] = []
    async with app:
        rate = args.rate
        if rate is None:
            drain_rate = await calibrate(app, args.calibrate, args.concurrency, args.prefetch,
                                         args.result_ttl)  # fmt: skip
            rate = drain_rate / 2
            print(f"drain rate {drain_rate:,.0f} jobs/s; enqueueing at half: {rate:,.0f} jobs/s")
        else:
            print(f"enqueueing at {rate:,.0f} jobs/s (--rate)")
        columns = COLUMNS + (ACTOR_COLUMNS if args.actors else ())
        print(f"\n{'t (s)':>7}  " + "  ".join(f"{c:>10}" for c in columns))
        enqueued = [0]
        worker = AsyncWorker(app, concurrency=args.concurrency, prefetch=args.prefetch, handle_signals=False)
        probe = ActorProbe()
        if args.actors:
            probe.attach(worker)
        start = trio.current_time()
        stop_at = start + args.duration
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            nursery.start_soon(produce, app, rate, args.result_ttl, stop_at, enqueued, probe)
            if args.actors:
                nursery.start_soon(probe.lag)
            probe.take()
            next_at = start + args.sample
            while next_at <= stop_at + 1e-9:
                await trio.sleep_until(next_at)
                actors = probe.take()
                row = await sample(app, args.sample)
                row["enqueued"], enqueued[0] = enqueued[0], 0
                row.update(actors)
                rows.append((next_at - start, row))
                print(f"{next_at - start:>7.0f}  " + "  ".join(f"{row[c]:>10,.1f}" for c in columns),
                      flush=True)
                next_at += args.sample
            worker.stop()
            nursery.cancel_scope.cancel()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = _harness.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="seconds of steady load")
    parser.add_argument("--sample", type=float, default=60.0, help="seconds between two samples")
    parser.add_argument("--rate", type=float, default=None,
                        help="jobs/s to enqueue (default: half the drain rate)")
    parser.add_argument("--calibrate", type=float, default=20.0,
                        help="seconds of the drain-rate measurement (beside the producer)")
    parser.add_argument("--result-ttl", type=float, default=300.0, help="seconds a finished job is kept")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--prefetch", type=int, default=0, help="the worker's prefetch (default 0)")
    parser.add_argument("--no-actors", dest="actors", action="store_false",
                        help="leave out the worker's claim / write / loop-lag columns")
    args = parser.parse_args(argv)
    if args.calibrate <= 0:
        parser.error(f"--calibrate must be a number of seconds above 0, got {args.calibrate:g}")
    dsn = _harness.resolve_dsn(args.dsn)
    print(_harness.server_info(dsn))
    print(_harness.load_note("at start"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        autovacuum = conn.execute("SHOW autovacuum").fetchone()
    if not autovacuum or autovacuum[0] != "on":
        print("autovacuum is OFF on this server: dead row versions are never removed and the table"
              " and index sizes grow without bound; soak against a server with autovacuum on")
    with _harness.fresh_schema(dsn) as schema:
        rows = trio.run(soak, dsn, schema, args)
    print_trend(rows)
    print(_harness.load_note("at end"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
