"""``werk demo``: the main job in one command.

Enqueues a few thousand demo jobs across queues and priorities (some fail and
retry, a few fail for good), drains them with a burst worker while rich's
progress display shows the attempts done, then prints a summary: jobs per status and
queue, throughput, and latency percentiles (enqueue to start, and run time).
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

import click
import trio
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn

from ..app import Werk
from ..jobs import EnqueueParams, Retry
from ..worker import AsyncWorker
from ._common import log_options, make_console

QUEUES = ("emails", "reports", "default")


async def send_email(to: str) -> str:
    await trio.sleep(random.uniform(0.001, 0.01))  # noqa: S311 (demo timing, not security)
    return f"sent to {to}"


async def build_report(n: int) -> int:
    await trio.sleep(random.uniform(0.002, 0.02))  # noqa: S311 (demo timing, not security)
    return sum(range(n))


async def flaky(n: int) -> int:
    """Fails on its first attempt, succeeds on the retry."""
    from ..jobs import Context  # noqa: F401 - documents the ctx type

    await trio.sleep(0.001)
    raise RuntimeError(f"flaky #{n}: transient error (will be retried)")


async def flaky_ctx(ctx: Any, n: int) -> int:
    if ctx.job.attempts < 2:
        raise RuntimeError(f"flaky #{n}: transient error on attempt {ctx.job.attempts}")
    return n


def crunch(n: int) -> int:
    """A plain function: runs in a thread so the loop never blocks."""
    return sum(i * i for i in range(n))


async def doomed(n: int) -> None:
    raise ValueError(f"doomed #{n}: always fails")


def _params(total: int) -> list[EnqueueParams]:
    rng = random.Random(7)  # noqa: S311 (a reproducible demo mix)
    out = []
    for i in range(total):
        r = rng.random()
        if r < 0.40:
            p = EnqueueParams(send_email, kwargs={"to": f"user{i}@example.com"}, queue="emails",
                              priority=rng.choice((0, 0, 5)))
        elif r < 0.70:
            p = EnqueueParams(build_report, args=(rng.randint(100, 2000),), queue="reports")
        elif r < 0.85:
            p = EnqueueParams(crunch, args=(rng.randint(100, 3000),), queue="default", priority=1)
        elif r < 0.97:
            p = EnqueueParams(flaky_ctx, args=(i,), queue="default", retry=Retry(3, 0.05))
        else:
            p = EnqueueParams(doomed, args=(i,), queue="reports", retry=Retry(2, 0.05))
        out.append(p)
    return out


@click.command("demo")
@click.option("--jobs", type=click.IntRange(1, 1_000_000), default=3000, show_default=True)
@click.option("-c", "--concurrency", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--dsn", default=None, help="Default: WERK_DSN, DATABASE_URL, or the embedded Postgres.")
@click.option("--schema", default="werk_demo", show_default=True,
              help="Schema for the demo's tables (emptied first).")
@log_options(default_level="WARNING")
def command(jobs: int, concurrency: int, dsn: str | None, schema: str, log_level: str, log_format: str,
            no_color: bool) -> None:  # fmt: skip
    """Enqueue demo jobs and drain them with a live progress display, then a summary."""
    from .._logging import setup_logging

    setup_logging(log_level, log_format, False if no_color else None)
    trio.run(run_demo, jobs, concurrency, dsn, schema, log_level, no_color)


async def run_demo(total: int, concurrency: int, dsn: str | None, schema: str, log_level: str,
                   no_color: bool = False) -> int:  # fmt: skip
    app = Werk(dsn, schema=schema, log_level=log_level)
    for fn in (send_email, build_report, flaky, flaky_ctx, crunch, doomed):
        app.register(fn)
    out = sys.stdout
    async with app:
        print(f"werk demo on {app!r}", file=out)
        await app.truncate()
        t0 = time.perf_counter()
        await app.enqueue_many(_params(total))
        t_enq = time.perf_counter() - t0
        print(f"enqueued {total} jobs in {t_enq * 1000:.0f} ms across queues {', '.join(QUEUES)}", file=out)
        start = time.perf_counter()
        earlier = 0  # attempts of the burst runs before this one
        columns = (TextColumn("draining"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                   TextColumn("{task.fields[rate]:>7.0f} attempts/s"))  # fmt: skip
        with Progress(*columns, console=make_console(no_color), auto_refresh=False) as progress:
            task = progress.add_task("drain", total=total, rate=0.0)
            while True:
                worker = AsyncWorker(app, queues=list(QUEUES), concurrency=concurrency, burst=True,
                                     poll_interval=0.2, handle_signals=True)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(worker.run)
                    while not worker.stopped.is_set():
                        done = earlier + sum(v for k, v in worker.stats.items() if k != "requeue")
                        rate = done / max(time.perf_counter() - start, 1e-9)
                        progress.update(task, completed=min(done, total), rate=rate, refresh=True)
                        with trio.move_on_after(0.1):
                            await worker.stopped.wait()
                earlier += sum(v for k, v in worker.stats.items() if k != "requeue")
                # burst ends when nothing is claimable *now*; retries waiting out
                # their back-off (50 ms here) are not yet: run again for them
                counts = await app.counts()
                if not any(q.get("scheduled") or q.get("queued") for q in counts.values()):
                    break
                await trio.sleep(0.05)
            elapsed = time.perf_counter() - start
            progress.update(task, completed=total, rate=earlier / max(elapsed, 1e-9), refresh=True)
        print(f"done in {elapsed:.2f}s", file=out)
        await _summary(app, total, elapsed)
    return 0


async def _summary(app: Werk, total: int, elapsed: float) -> None:
    counts = await app.counts()
    print("\njobs by queue and status:")
    for queue in sorted(counts):
        parts = "  ".join(f"{s}={n}" for s, n in sorted(counts[queue].items()))
        print(f"  {queue:<8} {parts}")
    async with app.connection() as conn:
        cur = await conn.execute(app.sql.EXECUTION_PERCENTILES)
        wait_p, run_p, attempts = await cur.fetchone()  # type: ignore[misc]
    print(f"\nthroughput: {attempts / elapsed:,.0f} attempts/s ({total / elapsed:,.0f} jobs/s), "
          f"{attempts} attempts")
    if wait_p:
        for label, values in (("latency, enqueue -> start (ms):", wait_p), ("run time (ms):", run_p)):
            p50, p95, p99 = (x * 1000 for x in values)
            print(f"{label:<31} p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}")
