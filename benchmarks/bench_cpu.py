"""CPU time per job of the worker process: a burst AsyncWorker drain.

Throughput on a loaded machine is noise; the CPU the worker's own process
spends per job (``time.process_time()`` around the drain, divided by the
jobs) is far less sensitive to what else runs. N no-op jobs are enqueued,
then one AsyncWorker (in this process, ``burst=True``) drains them; the
figure is the median of ``--runs`` drains, in microseconds per job. The
server's CPU is not in it (it is another process).

``--profile`` runs one more drain under cProfile and prints the top entries
by own time.

Run: ``python benchmarks/bench_cpu.py [--dsn ...] [--jobs 20000] [--runs 3]
[--concurrency 50] [--executor async] [--profile]``.
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
