"""Executor benchmark: drain rate of no-op jobs per worker type, and the
CPU-bound speedup of a ProcessWorker with two processes over one.

Measured in one run against one server; AsyncWorker's drain is the baseline
of the drain table (issue 4's targets: thread >= 0.5x of it, process >= 1,500
jobs/s, fork >= 150 jobs/s). The drain rate is taken on the database clock,
from the first job's start to the last job's completion, so that the
worker's start-up (half a second of process spawns for the pool) is not
counted as drain time; a second table shows the wall-clock rates of the
same runs, start-up included. The speedup runs the same batch of pure-Python
CPU-bound jobs on a ProcessWorker with concurrency 1 and with concurrency 2
and prints the ratio (first job start to last job end, database clock).

Two more sections put the process and fork workers beside the mechanism they
wrap, with the same no-op and the same concurrency 4: a raw
``trio_parallel`` ``run_sync`` call per job on an open worker context (the
children already started, as the database-clock span leaves the pool's
start-up out), and a raw ``os.fork()`` per job from a small Python process
(fork, the child runs the no-op and ``os._exit(0)``, the parent reaps it; four
at a time), which is what the fork server does per job. werk's per-job
overhead over each is its time per job divided by the raw one (issue 18's
target: <= 1.5x). Two more rows say what those ratios hold beside the
executor: an AsyncWorker with the same concurrency 4 and prefetch 4 (the
ProcessWorker's default) running the async no-op, i.e. the queue's own claim,
run and completion at that concurrency with no child at all; and the raw fork
again from a process that first imports ``bench_executors`` (werk_trio,
trio, psycopg: what the fork server holds for these jobs), since fork and
exit cost grows with the size of the forking process.

Run: ``python benchmarks/bench_executors.py [--dsn ...] [--jobs 2000] [--runs 3]``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _harness

from werk_trio import EnqueueParams, Werk
from werk_trio.worker import worker_class

PROCESS = "ProcessWorker against a raw trio-parallel call per job (no-op, 4 at a time)"
FORK = "ForkWorker against a raw fork per job (no-op, 4 at a time)"
SECTION = ("drain of no-op jobs, concurrency 4 (process/fork) or 50 (async/thread); database"
           " clock, first start -> last completion")
WALL = "the same drains, wall clock of worker.run() including its start-up (pool spawns, fork server)"
QUEUE_ALONE = "werk AsyncWorker, c=4, prefetch 4 (no child)"
# werk at its fastest documented setting for these executors, as the peers are
# measured at theirs: claims of 2 x concurrency, so a child never waits for a claim
PROCESS_PREFETCH = "werk ProcessWorker, concurrency 4, prefetch 8"
FORK_PREFETCH = "werk ForkWorker, concurrency 4, prefetch 8"
LOADED_FORK = "raw os.fork() per job, werk_trio imported"
NOOP = "bench_executors.noop"
BURN = "bench_executors.burn"


def noop() -> None:
    """The no-op job (a plain function: it runs in every executor)."""


async def anoop() -> None:
    """The no-op job for AsyncWorker (a Trio coroutine, the inline path)."""


def burn(rounds: int) -> int:
    acc = 0
    for i in range(rounds):
        acc = (acc * 31 + i) % 1_000_003
    return acc


def _app(dsn: str, schema: str) -> Werk:
    app = Werk(dsn, schema=schema, task_modules=["bench_executors"])
    app.register(noop, name=NOOP)
    app.register(anoop, name="bench_executors.anoop")
    app.register(burn, name=BURN)
    return app


async def drain(app: Werk, schema: str, kind: str, jobs: int, concurrency: int | None = None,
                **options: Any) -> tuple[float, float]:
    """(seconds on the database clock from the first job's start to the last
    one's completion, wall seconds of the whole run including the worker's
    start-up: the process pool's spawns, the fork server)."""
    await app.truncate()
    func = "bench_executors.anoop" if kind == "async" else NOOP
    await app.enqueue_many([EnqueueParams(func) for _ in range(jobs)])
    if concurrency is None:
        concurrency = 4 if kind in ("process", "fork") else 50
    worker = worker_class(kind)(app, concurrency=concurrency, burst=True, handle_signals=False,
                                poll_interval=0.5, **options)
    start = time.perf_counter()
    await worker.run()
    elapsed = time.perf_counter() - start
    done = sum(q.get("complete", 0) for q in (await app.counts()).values())
    assert done == jobs, f"{kind}: {done} of {jobs} complete"
    return await _harness.completed_span(app, schema, jobs), elapsed


async def raw_trio_parallel(jobs: int, concurrency: int = 4) -> float:
    """Seconds for ``jobs`` no-op ``run_sync`` calls, ``concurrency`` at a time,
    on a trio-parallel worker context whose children are already running."""
    import trio_parallel

    async with trio_parallel.open_worker_context(idle_timeout=float("inf")) as ctx:
        async with trio.open_nursery() as nursery:  # start the children: not part of the time
            for _ in range(concurrency):
                nursery.start_soon(ctx.run_sync, noop)
        left = jobs

        async def runner() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await ctx.run_sync(noop)

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(runner)
        return time.perf_counter() - start


# A small Python process that forks once per job, ``concurrency`` children at
# a time, and prints the seconds it took: the raw cost of what the fork
# server does per job (fork, the child's work and exit, the reaping).
_RAW_FORK = """
import importlib, os, sys, time
jobs, concurrency = int(sys.argv[1]), int(sys.argv[2])
if len(sys.argv) > 3:  # a module to hold before forking, and the path to find it on
    sys.path[:0] = sys.argv[4].split(os.pathsep)
    importlib.import_module(sys.argv[3])
def noop():
    pass
start = time.perf_counter()
running = started = 0
while started < jobs or running:
    while running < concurrency and started < jobs:
        if os.fork() == 0:
            noop()
            os._exit(0)
        running += 1
        started += 1
    os.wait()
    running -= 1
print(time.perf_counter() - start)
"""


async def raw_fork(jobs: int, concurrency: int = 4, preload: str | None = None) -> float:
    """Seconds for ``jobs`` forks, ``concurrency`` at a time, from a bare
    interpreter or (``preload``) one that imported that module first."""
    argv = [sys.executable, "-c", _RAW_FORK, str(jobs), str(concurrency)]
    if preload is not None:
        argv += [preload, os.pathsep.join(sys.path)]
    done = await trio.run_process(argv, capture_stdout=True)
    return float(done.stdout.decode())


async def cpu_batch(app: Werk, concurrency: int, rounds: int, jobs: int) -> float:
    await app.truncate()
    batch = await app.enqueue_many([EnqueueParams(BURN, (rounds,)) for _ in range(jobs)])
    worker = worker_class("process")(app, concurrency=concurrency, burst=True, handle_signals=False,
                                     poll_interval=0.2)
    await worker.run()
    runs = [e for j in batch if j for e in await app.get_executions(j.id)]
    start = min(e.started_at for e in runs)
    end = max(e.finished_at for e in runs if e.finished_at)
    return (end - start).total_seconds()


async def measure(dsn: str, schema: str, runs: int, jobs: int, results: _harness.Results) -> None:
    app = _app(dsn, schema)
    kinds = ("async", "thread", "process", "fork")
    for kind in kinds:
        results.declare(SECTION, f"{kind}", "jobs/s", baseline=kind == "async")
        results.declare(WALL, f"{kind}", "jobs/s", baseline=kind == "async")
    results.declare(PROCESS, "raw trio_parallel run_sync per job", "jobs/s", baseline=True)
    results.declare(PROCESS, "werk ProcessWorker, concurrency 4", "jobs/s")
    results.declare(PROCESS, PROCESS_PREFETCH, "jobs/s")
    results.declare(PROCESS, QUEUE_ALONE, "jobs/s")
    results.declare(FORK, "raw os.fork() per job", "jobs/s", baseline=True)
    results.declare(FORK, "werk ForkWorker, concurrency 4", "jobs/s")
    results.declare(FORK, FORK_PREFETCH, "jobs/s")
    results.declare(FORK, LOADED_FORK, "jobs/s")
    async with app:
        for _ in range(runs):
            for kind in kinds:
                span, wall = await drain(app, schema, kind, jobs)
                results.add(SECTION, kind, jobs, span)
                results.add(WALL, kind, jobs, wall)
                if kind == "process":
                    results.add(PROCESS, "werk ProcessWorker, concurrency 4", jobs, span)
                    raw = await raw_trio_parallel(jobs)
                    results.add(PROCESS, "raw trio_parallel run_sync per job", jobs, raw)
                    fetched, _ = await drain(app, schema, "process", jobs, 4, prefetch=8)
                    results.add(PROCESS, PROCESS_PREFETCH, jobs, fetched)
                    alone, _ = await drain(app, schema, "async", jobs, 4, prefetch=4)
                    results.add(PROCESS, QUEUE_ALONE, jobs, alone)
                if kind == "fork":
                    results.add(FORK, "werk ForkWorker, concurrency 4", jobs, span)
                    results.add(FORK, "raw os.fork() per job", jobs, await raw_fork(jobs))
                    fetched, _ = await drain(app, schema, "fork", jobs, 4, prefetch=8)
                    results.add(FORK, FORK_PREFETCH, jobs, fetched)
                    results.add(FORK, LOADED_FORK, jobs, await raw_fork(jobs, preload="bench_executors"))
        t0 = time.perf_counter()
        burn(200_000)
        rounds = max(100_000, int(200_000 * 0.25 / max(time.perf_counter() - t0, 1e-3)))
        one = [await cpu_batch(app, 1, rounds, 8) for _ in range(runs)]
        two = [await cpu_batch(app, 2, rounds, 8) for _ in range(runs)]
    best_one, best_two = min(one), min(two)
    print(f"\n## ProcessWorker, CPU-bound batch of 8 jobs x {rounds:,} rounds (best of {runs})")
    print(f"concurrency 1: {best_one:.3f} s   concurrency 2: {best_two:.3f} s"
          f"   speedup {best_one / best_two:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = _harness.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args(argv)
    dsn = _harness.resolve_dsn(args.dsn)
    print(_harness.server_info(dsn))
    print(f"median of {args.runs} runs; {args.jobs:,} jobs per drain")
    print(_harness.load_note("at start"))
    results = _harness.Results()
    with _harness.fresh_schema(dsn) as schema:
        trio.run(measure, dsn, schema, args.runs, args.jobs, results)
    results.print()
    print("\n## werk's per-job cost over the raw mechanism (time per job / raw time per job; target <= 1.5x)")
    for section, werk_row, raw_row in (
        (PROCESS, "werk ProcessWorker, concurrency 4", "raw trio_parallel run_sync per job"),
        (PROCESS, PROCESS_PREFETCH, "raw trio_parallel run_sync per job"),
        (FORK, "werk ForkWorker, concurrency 4", "raw os.fork() per job"),
        (FORK, FORK_PREFETCH, "raw os.fork() per job"),
    ):
        cost = results.median(section, raw_row) / results.median(section, werk_row)
        print(f"{werk_row:<46} {cost:5.2f}x the cost of a {raw_row}")
    for section, werk_row, raw_row, what in (
        (PROCESS, "werk ProcessWorker, concurrency 4", QUEUE_ALONE, "the queue alone at c=4"),
        (FORK, "werk ForkWorker, concurrency 4", LOADED_FORK, "a raw fork of a process holding werk_trio"),
    ):
        cost = results.median(section, raw_row) / results.median(section, werk_row)
        print(f"{werk_row:<46} {cost:5.2f}x the cost of {what}")
    print("\n" + _harness.load_note("at end"))
    return 0


if __name__ == "__main__":
    # run as the module ``bench_executors``, so that its job functions are
    # importable by name in process and fork children (not ``__main__.noop``)
    import bench_executors

    sys.exit(bench_executors.main())
