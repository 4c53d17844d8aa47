"""Flow control's cost: the drain of one AsyncWorker (concurrency 50, burst)
on a queue without controls, against the same drain through each limited path
with limits too high to bind -- so the difference is the price of the path
itself, not of waiting:

* plain queue (baseline): no row in the queues table, the plain claim;
* plain queue while *another* queue is paused: the plain claim with a
  non-empty queues table (its one primary-key probe per queue finds nothing);
* ``set_queue_limit(q, 100_000)``: CLAIM_LIMITED under the queue lock, counting
  the queue's active jobs per claim;
* ``set_rate_limit(q, 10_000_000, 1)``: CLAIM_LIMITED plus the sliding window
  (a rate_log row per start, counted per claim: this cost grows with the
  number of starts inside the window);
* ``set_queue_limit(q, 100_000, partition_by="meta.customer")`` over 100
  customers: the partitioned scan (candidates judged per partition).

Run: ``python benchmarks/bench_flow.py [--dsn ...] [--jobs 5000] [--runs 3]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

from werk_trio import AsyncWorker, EnqueueParams, Werk

SECTION = "drain, AsyncWorker concurrency 50 (no-op jobs)"
NOOP = "bench_flow.noop"


async def noop() -> None:
    pass


async def drain(app: Werk, queue: str, jobs: int, meta: bool = False) -> float:
    await app.truncate()
    params = [
        EnqueueParams(NOOP, queue=queue, meta={"customer": f"c{i % 100}"} if meta else None)
        for i in range(jobs)
    ]
    await app.enqueue_many(params)
    worker = AsyncWorker(app, queues=[queue], concurrency=50, burst=True, handle_signals=False)
    start = time.perf_counter()
    await worker.run()
    elapsed = time.perf_counter() - start
    counts = await app.counts()
    assert counts.get(queue, {}).get("complete") == jobs, counts
    return elapsed


async def measure(dsn: str, schema: str, runs: int, jobs: int, results: _harness.Results) -> None:
    app = Werk(dsn, schema=schema, task_modules=["bench_flow", "__main__"])
    app.register(noop, name=NOOP)
    variants: list[tuple[str, Callable[[], Awaitable[float]]]] = [
        ("plain queue (no controls)", lambda: drain(app, "plain", jobs)),
        ("plain queue, another queue paused", lambda: drain(app, "plain", jobs)),
        ("max_running=100,000 (limited claim)", lambda: drain(app, "limited", jobs)),
        ("rate 10,000,000 per 1 s (limited claim + window)", lambda: drain(app, "rated", jobs)),
        ("max_running per meta.customer, 100 customers", lambda: drain(app, "parts", jobs, True)),
    ]
    for i, (name, _) in enumerate(variants):
        results.declare(SECTION, name, "jobs/s", baseline=i == 0)
    async with app:
        await app.set_queue_limit("limited", 100_000)
        await app.set_rate_limit("rated", 10_000_000, 1)
        await app.set_queue_limit("parts", 100_000, partition_by="meta.customer")
        for _ in range(runs):
            for name, run in variants:
                paused = name == "plain queue, another queue paused"
                if paused:
                    await app.pause_queue("elsewhere")
                results.add(SECTION, name, jobs, await run())
                if paused:
                    await app.resume_queue("elsewhere")


def main(argv: list[str] | None = None) -> int:
    parser = _harness.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5_000)
    args = parser.parse_args(argv)
    dsn = _harness.resolve_dsn(args.dsn)
    print(_harness.server_info(dsn))
    print(f"median of {args.runs} runs; {args.jobs:,} jobs per drain")
    print(_harness.load_note("at start"))
    results = _harness.Results()
    with _harness.fresh_schema(dsn) as schema:
        trio.run(measure, dsn, schema, args.runs, args.jobs, results)
    results.print()
    print("\n" + _harness.load_note("at end"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
