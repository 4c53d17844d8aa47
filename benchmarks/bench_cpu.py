"""CPU time per job of the worker process: a burst AsyncWorker drain.

Throughput on a loaded machine is noise; the CPU the worker's own process
spends per job (``time.process_time()`` around the drain, divided by the
jobs) is far less sensitive to what else runs. N no-op jobs are enqueued,
then one AsyncWorker (in this process, ``burst=True``) drains them; the
figure is the median of ``--runs`` drains, in microseconds per job. The
server's CPU is not in it (it is another process). Then the runner's share
alone: the same number of real claimed rows run back to back through one
Runner, no database in the loop (the least load-sensitive figure).

``--profile`` runs one more drain under cProfile and prints the top entries
by own time.

Run: ``python benchmarks/bench_cpu.py [--dsn ...] [--jobs 20000] [--runs 3]
[--concurrency 50] [--profile]``.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _harness

from werk_trio import AsyncWorker, EnqueueParams, Werk
from werk_trio.actors.completer import Outcome
from werk_trio.actors.poller import Row
from werk_trio.actors.runner import Runner

NOOP = "bench_cpu.noop"


async def noop() -> None:
    """The no-op job."""


async def drain_cpu(
    app: Werk, jobs: int, concurrency: int, profile: cProfile.Profile | None = None
) -> tuple[float, float, float]:
    """(microseconds of this process's CPU per job, jobs per claim, jobs per
    completion write) for one burst drain."""
    await app.truncate()
    for chunk in range(0, jobs, 20_000):
        await app.enqueue_many([EnqueueParams(NOOP) for _ in range(min(20_000, jobs - chunk))])
    worker = AsyncWorker(app, concurrency=concurrency, burst=True, handle_signals=False, poll_interval=0.5)
    start = time.process_time()
    if profile is not None:
        profile.enable()
    await worker.run()
    if profile is not None:
        profile.disable()
    spent = time.process_time() - start
    writes = worker.completer.batches
    return spent / jobs * 1e6, jobs / max(1, worker.poller.claims), jobs / max(1, writes)


async def runner_cpu(app: Werk, jobs: int) -> float:
    """Microseconds of CPU per job of the runner alone (decode the claimed row,
    hooks, executor, classify, hand over), without the database: real rows are
    claimed first, then one Runner runs them back to back from its channel, as
    in a worker; the outcomes are dropped (the jobs stay claimed until the
    next truncate)."""
    await app.truncate()
    await app.enqueue_many([EnqueueParams(NOOP) for _ in range(jobs)])
    worker = AsyncWorker(app, concurrency=1, handle_signals=False)
    rows = await worker.poller.claim(jobs)
    send, recv = trio.open_memory_channel[Outcome](len(rows))
    runner = Runner(app, worker.db, worker.settings, worker.executor, worker.ledger,
                    trio.Semaphore(len(rows)), worker.wake, send, worker.hooks, worker.progress, None, worker)
    send_rows, recv_rows = trio.open_memory_channel[Row](len(rows))
    for row in rows:
        send_rows.send_nowait(row)
    send_rows.close()  # the runner returns once it ran them all
    async with worker.executor.running():
        start = time.process_time()
        await runner.run(recv_rows)
        spent = time.process_time() - start
    kinds = {recv.receive_nowait().kind for _ in rows}
    assert kinds == {"complete"}, kinds
    return spent / len(rows) * 1e6


async def measure(dsn: str, schema: str, jobs: int, runs: int, concurrency: int, profile: bool) -> None:
    app = Werk(dsn, schema=schema, task_modules=["bench_cpu", "__main__"])
    app.register(noop, name=NOOP)
    async with app:
        figures = [await drain_cpu(app, jobs, concurrency) for _ in range(runs)]
        cpu = [f[0] for f in figures]
        per_claim = statistics.median(f[1] for f in figures)
        per_write = statistics.median(f[2] for f in figures)
        print(f"AsyncWorker c={concurrency}, {jobs:,} no-op jobs: {statistics.median(cpu):.1f} us CPU/job "
              f"(runs: {', '.join(f'{f:.1f}' for f in cpu)}); jobs per claim {per_claim:.1f}, "
              f"per write {per_write:.1f}")
        alone = [await runner_cpu(app, min(jobs, 20_000)) for _ in range(runs)]
        print(f"  of which the runner alone (no database): {statistics.median(alone):.1f} us CPU/job "
              f"(runs: {', '.join(f'{f:.1f}' for f in alone)})")
        if profile:
            prof = cProfile.Profile(time.process_time)  # CPU, not wall time
            await drain_cpu(app, jobs, concurrency, prof)
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = _harness.arg_parser(__doc__.splitlines()[0])
    parser.set_defaults(runs=3)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--profile", action="store_true", help="one more drain under cProfile")
    args = parser.parse_args()
    dsn = _harness.resolve_dsn(args.dsn)
    print(_harness.load_note("before"))
    with _harness.fresh_schema(dsn) as schema:
        trio.run(measure, dsn, schema, args.jobs, args.runs, args.concurrency, args.profile)
    print(_harness.load_note("after"))


if __name__ == "__main__":
    main()
