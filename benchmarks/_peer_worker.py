"""A peer's worker as a process of its own, started by bench_drain.py.

``python _peer_worker.py {pgqueuer|procrastinate} DSN SCHEMA CONCURRENCY {drain|wait}``

The process connects and builds the peer's worker, prints ``ready``, and
waits for a ``go`` line on stdin before it starts the worker, so the parent
times the drain from the moment it tells the worker to start, with the
interpreter's start-up, the imports and the connection outside the timed
span, as werk's AsyncWorker rows have theirs outside it.

* ``drain``: the worker runs until the queue is empty (pgqueuer's
  ``QueueExecutionMode.drain``, procrastinate's ``wait=False``), then the
  process prints ``done`` and exits.
* ``wait``: the worker runs (polling fallback 30 s, so only NOTIFY wakes it)
  until a ``stop`` line arrives, then stops the peer's documented way
  (pgqueuer: its ``shutdown`` event; procrastinate: cancelling the run, its
  graceful stop) and exits.

Each peer runs at its documented fastest settings; benchmarks/README.md says
which and why. Only the peer and asyncio are used here: werk_trio is not
imported, so nothing of werk's is loaded in the peer's process.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import timedelta
from typing import Any

ENTRYPOINT = "bench_drain.noop"  # pgqueuer's entrypoint; procrastinate's task is "noop"
POLL_FALLBACK = 30.0  # seconds: the wake-up measurement must be woken by NOTIFY


async def _line() -> str:
    """The next line the parent writes on stdin (read in a thread: stdin is a pipe)."""
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


def pgqueuer_settings(concurrency: int) -> dict[str, int]:
    """pgqueuer's fastest settings for concurrency C.

    pgqueuer has no single concurrency setting: ``max_concurrent_tasks`` is
    its ceiling on the jobs one worker has in flight (enforced in its dequeue
    statement), so concurrency C is ``max_concurrent_tasks=C``. For short
    jobs its docs say to raise ``batch_size`` (jobs claimed per dequeue round
    trip; its completion log flushes per batch too), and it refuses a
    batch_size above max_concurrent_tasks / 2, so ``batch_size=C // 2`` is the
    largest it accepts (and measured faster than its default of 10 and than
    no ceiling at all).
    """
    return {"max_concurrent_tasks": concurrency, "batch_size": max(1, concurrency // 2)}


async def run_pgqueuer(dsn: str, schema: str, concurrency: int, mode: str) -> None:
    import asyncpg  # type: ignore[import-not-found]
    from pgqueuer import PgQueuer
    from pgqueuer.types import QueueExecutionMode

    # one dedicated asyncpg connection, its fastest driver and what its docs
    # name for a worker (a pool is for producers)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    pgq = PgQueuer.from_asyncpg_connection(conn)

    @pgq.entrypoint(ENTRYPOINT)
    async def _noop(job: Any) -> None:
        """The no-op job."""

    settings = pgqueuer_settings(concurrency)
    print("ready", flush=True)
    if await _line() != "go":
        return
    try:
        if mode == "drain":
            await pgq.run(mode=QueueExecutionMode.drain, **settings)
            print("done", flush=True)
        else:
            run = asyncio.create_task(pgq.run(dequeue_timeout=timedelta(seconds=POLL_FALLBACK), **settings))
            await _line()  # "stop"
            pgq.shutdown.set()
            await run
    finally:
        await conn.close()


async def run_procrastinate(dsn: str, schema: str, concurrency: int, mode: str) -> None:
    import procrastinate

    # Its documented defaults otherwise: the psycopg pool (a pool of 10, werk's
    # maximum, was no faster: its worker fetches one job per round trip, one
    # fetch at a time), LISTEN/NOTIFY on, jobs kept after success.
    connector = procrastinate.PsycopgConnector(conninfo=dsn, kwargs={"options": f"-c search_path={schema}"})
    papp = procrastinate.App(connector=connector)

    @papp.task(name="noop")
    async def _noop() -> None:
        """The no-op job."""

    async with papp.open_async():
        print("ready", flush=True)
        if await _line() != "go":
            return
        if mode == "drain":
            await papp.run_worker_async(concurrency=concurrency, wait=False, install_signal_handlers=False)
            print("done", flush=True)
            return
        run = asyncio.create_task(papp.run_worker_async(
            concurrency=concurrency, wait=True, fetch_job_polling_interval=POLL_FALLBACK,
            install_signal_handlers=False))
        await _line()  # "stop"
        run.cancel()  # its documented way to stop a run_worker_async: a graceful stop
        try:
            await run
        except asyncio.CancelledError:
            pass


def main(argv: list[str]) -> int:
    system, dsn, schema, concurrency, mode = argv
    # per-job INFO lines are not part of the work (nor procrastinate's warning
    # about an app defined in __main__)
    logging.basicConfig(level=logging.ERROR)
    runner = {"pgqueuer": run_pgqueuer, "procrastinate": run_procrastinate}[system]
    asyncio.run(runner(dsn, schema, int(concurrency), mode))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
