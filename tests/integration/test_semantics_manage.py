"""Issue 5, managing jobs while two worker processes drain the queue.

cancel_job / bulk_cancel_jobs race the workers' claims: each cancel either
wins (the job ends ``aborted`` and never starts: no side-table row, ever) or
loses with a clear error because a worker already has it. requeue_job /
bulk_requeue_jobs run finished jobs again; abort_job stops a running job on
an async worker; purge_jobs deletes only finished rows, never one a worker
still needs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import trio

from tests import procapp
from tests._support import runs
from werk_trio import ConfigError, EnqueueParams, ExecutionStatus, InvalidJobState, JobStatus, Werk
from werk_trio.testing import until, wait_for_status

from ._semantics_support import make_tables, query, wait_terminal, workers


async def _run_counts(app: Werk) -> dict[Any, int]:
    return dict(await query(app, "SELECT job_id, count(*) FROM {runs} GROUP BY job_id"))


async def test_cancel_and_bulk_cancel_race_the_workers_and_cancelled_jobs_never_start(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        args = ("--queues", "load,bulk", "--concurrency", "4", "--sweep-interval", "600")
        async with workers(app, dsn, schema, tmp_path, *args) as children:
            load = await app.enqueue_many(
                EnqueueParams(procapp.sleep_job, (0.03,), queue="load") for _ in range(200)
            )
            bulk = await app.enqueue_many(
                EnqueueParams(procapp.sleep_job, (0.03,), queue="bulk") for _ in range(100)
            )
            cancelled: list[Any] = []
            refused: list[Any] = []

            async def cancel_some() -> None:
                # from the front (the workers' next claims) and the back, every other job
                order = [j for pair in zip(load[:100:2], load[:99:-2], strict=True) for j in pair]
                for job in order:
                    assert job is not None
                    if await app.cancel_job(job.id):
                        assert (await app.get_job(job.id)).status is JobStatus.ABORTED
                        cancelled.append(job.id)
                    else:  # a worker has it already (it is active or complete)
                        assert (await app.get_job(job.id)).status is not JobStatus.QUEUED
                        refused.append(job.id)

            bulk_count = 0

            async def bulk_cancel_midway() -> None:
                nonlocal bulk_count

                async def some_bulk_done() -> bool:
                    rows = await query(
                        app, "SELECT count(*) FROM {jobs} WHERE queue = 'bulk' AND status = 'complete'"
                    )
                    return rows[0][0] >= 10

                await until(some_bulk_done)
                bulk_count = await app.bulk_cancel_jobs(queue="bulk")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_some)
                nursery.start_soon(bulk_cancel_midway)
            every = [j.id for j in (*load, *bulk) if j is not None]
            ended = await wait_terminal(app, every)
            for child in children:
                assert "Traceback" not in child.output(), child.output()

        counts = await _run_counts(app)
        for job_id in cancelled:
            assert ended[job_id].status is JobStatus.ABORTED
            assert job_id not in counts, "a cancelled job started"
        for job_id in refused:
            assert ended[job_id].status is JobStatus.COMPLETE and counts[job_id] == 1
        for job_id, job in ended.items():
            if job.status is JobStatus.COMPLETE:
                assert counts.get(job_id) == 1, "each job that was not cancelled ran exactly once"
            else:
                assert job.status is JobStatus.ABORTED and job_id not in counts
        bulk_aborted = [j for j in ended.values() if j.queue == "bulk" and j.status is JobStatus.ABORTED]
        assert len(bulk_aborted) == bulk_count > 0
        assert (
            10 <= sum(1 for j in ended.values() if j.queue == "bulk" and j.status is JobStatus.COMPLETE) < 100
        )
        print(
            f"under load: cancel_job won {len(cancelled)} races and lost {len(refused)} (already claimed); "
            f"bulk_cancel_jobs took {bulk_count} of 100; no cancelled job started"
        )
        assert cancelled and refused, "no race between cancel and claim happened"


async def test_requeue_and_bulk_requeue_run_finished_jobs_again_while_workers_run(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        args = ("--queues", "rq,rq_fail", "--concurrency", "4", "--sweep-interval", "600")
        async with workers(app, dsn, schema, tmp_path, *args) as children:
            jobs = await app.enqueue_many(
                EnqueueParams(procapp.sleep_job, (0.02,), queue="rq") for _ in range(100)
            )
            broken = await app.enqueue_many(EnqueueParams(procapp.fail, queue="rq_fail") for _ in range(10))
            long = await app.enqueue(procapp.sleep_job, 60, _queue="rq")
            assert long
            requeued: list[Any] = []
            # as the first 30 finish, requeue each while the others still drain
            for job in jobs[:30]:
                assert job is not None
                done = await wait_for_status(app, job.id, JobStatus.COMPLETE)
                assert await app.requeue_job(job.id) is True
                again = await app.get_job(job.id)  # queued again, or already claimed again
                assert (again.status, again.attempts) == (JobStatus.QUEUED, 0) or (
                    again.started_at is not None and again.started_at > done.completed_at
                ), again
                requeued.append(job.id)
            await until(lambda: runs(app, long.id))
            assert await app.requeue_job(long.id) is False  # running: left alone
            assert (await app.get_job(long.id)).status is JobStatus.ACTIVE
            await wait_terminal(app, [j.id for j in broken if j is not None])
            assert await app.bulk_requeue_jobs(queue="rq_fail", function_name="tests.procapp.record") == 0
            assert await app.bulk_requeue_jobs(queue="rq_fail", function_name="tests.procapp.fail") == 10
            await app.abort_job(long.id)
            ended = await wait_terminal(app, [j.id for j in (*jobs, *broken, long) if j is not None])
            for child in children:
                assert "Traceback" not in child.output(), child.output()
        counts = await _run_counts(app)
        for job in jobs:
            assert job is not None and ended[job.id].status is JobStatus.COMPLETE
            assert counts[job.id] == (2 if job.id in requeued else 1)
        for job in broken:
            assert job is not None and ended[job.id].status is JobStatus.FAILED
            assert counts[job.id] == 2, "bulk_requeue_jobs ran the failed job again"
            assert ended[job.id].attempts == 1, "with a fresh attempt budget"
        attempts = [r["attempt"] for r in await runs(app, requeued[0])]
        assert attempts == [1, 1]


async def test_abort_stops_a_running_job_on_an_async_worker_under_load(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        args = ("--queues", "ab", "--concurrency", "4", "--sweep-interval", "600")
        async with workers(app, dsn, schema, tmp_path, *args) as children:
            long = [await app.enqueue(procapp.sleep_job, 60, _queue="ab", _retry=3) for _ in range(3)]
            load = await app.enqueue_many(
                EnqueueParams(procapp.sleep_job, (0.02,), queue="ab") for _ in range(100)
            )
            never = await app.enqueue(procapp.record, _queue="ab", _delay=3600)
            assert never and all(long)
            assert await app.abort_job(never.id) is False, (
                "not started: abort leaves it (cancel_job stops it)"
            )
            assert (await app.get_job(never.id)).status is JobStatus.SCHEDULED
            assert await app.cancel_job(never.id) is True
            delays = []
            for job in long:
                assert job is not None
                await until(lambda job=job: runs(app, job.id))
                asked = time.monotonic()
                assert await app.abort_job(job.id) is True
                await wait_for_status(app, job.id, JobStatus.ABORTED)
                delays.append(time.monotonic() - asked)
            ended = await wait_terminal(app, [j.id for j in (*long, *load) if j is not None])
            for child in children:
                assert "Traceback" not in child.output(), child.output()
        stopped = [round(d, 3) for d in delays]
        print(f"abort_job on a running async job (abort_interval 0.1 s): stopped after {stopped} s")
        assert max(delays) < 1.5
        for job in long:
            assert job is not None
            done = ended[job.id]
            assert done.status is JobStatus.ABORTED and done.attempts == 1, "an abort is not retried"
            [run] = await runs(app, job.id)
            assert run["ended_at"] is None, "the handler was stopped, it never finished"
            [execution] = await app.get_executions(job.id)
            assert execution.status is ExecutionStatus.ABORTED
        assert all(ended[j.id].status is JobStatus.COMPLETE for j in load if j is not None), "the rest ran on"
        assert await runs(app, never.id) == []


async def test_purge_under_load_deletes_only_finished_rows(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        args = ("--queues", "pg", "--concurrency", "6", "--sweep-interval", "600")
        async with workers(app, dsn, schema, tmp_path, *args) as children:
            with pytest.raises(InvalidJobState, match=r"cannot purge running jobs \(active\)") as refused:
                await app.purge_jobs(["complete", "active"])
            assert isinstance(refused.value, ConfigError)
            ids: list[Any] = []
            purged = 0
            for _ in range(6):
                batch = await app.enqueue_many(
                    EnqueueParams(procapp.sleep_job, (0.01,), queue="pg") for _ in range(50)
                )
                ids += [j.id for j in batch if j is not None]
                for _ in range(5):
                    assert await app.purge_jobs(older_than_days=1) == 0, "nothing is a day old"
                    purged += await app.purge_jobs(["complete", "failed", "aborted"])
                    await trio.sleep(0.02)

            async def drained() -> bool:
                return await _run_counts(app) != {} and set(await _run_counts(app)) == set(ids)

            await until(drained)
            await until(lambda: _no_open(app))
            purged += await app.purge_jobs()
            for child in children:
                out = child.output()
                assert "Traceback" not in out and "refused" not in out, out
        counts = await _run_counts(app)
        assert set(counts) == set(ids) and set(counts.values()) == {1}, "each job ran once; none purged early"
        assert purged == len(ids)
        assert await query(app, "SELECT count(*) FROM {jobs}") == [(0,)]
        print(f"purge_jobs during the drain of {len(ids)} jobs: {purged} purged, each job ran exactly once")


async def _no_open(app: Werk) -> bool:
    rows = await query(
        app, "SELECT count(*) FROM {jobs} WHERE status NOT IN ('complete', 'failed', 'aborted')"
    )
    return bool(rows[0][0] == 0)
