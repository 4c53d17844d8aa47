"""Issue 5, waiting for results: apply, map, wait_for against worker processes.

The idle test is the point of NOTIFY: the workers poll only every 30 s and
the waiter re-checks the database only every second, so an ``apply`` that
returns in a few milliseconds was woken twice by notifications (the new job
woke a worker, the finished job woke the waiter). The fallbacks: a waiter
without LISTEN, and one whose LISTEN connection is killed, still return.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
import trio

from tests import procapp
from tests._support import runs
from werk_trio import JobError, JobNotFound, JobStatus, WaitTimeout, Werk
from werk_trio.testing import until

from ._semantics_support import listeners, make_tables, query, workers


async def test_apply_on_idle_workers_is_woken_by_notify_in_milliseconds(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        args = ("--queues", "idle", "--sweep-interval", "600", "--poll-interval", "30")
        async with workers(app, dsn, schema, tmp_path, *args) as children:
            pids = {c.pid for c in children}
            assert await app.apply(procapp.record, _queue="idle", timeout=10) in pids  # warm-up
            latencies = []
            for _ in range(10):
                start = time.monotonic()
                pid = await app.apply(procapp.record, _queue="idle", timeout=10)
                latencies.append(time.monotonic() - start)
                assert pid in pids
            start = time.monotonic()
            results = await app.map(
                procapp.maybe_fail, [{"x": i} for i in range(20)], _queue="idle", timeout=10
            )
            map_latency = time.monotonic() - start
            assert results == [2 * i for i in range(20)]
            assert await listeners(app, app.sql.done_channel) == 1, "one shared LISTEN for all waits"
        median, worst = statistics.median(latencies) * 1000, max(latencies) * 1000
        print(
            f"apply on idle workers (poll_interval 30 s): median {median:.1f} ms, max {worst:.1f} ms "
            f"over {len(latencies)}; map of 20: {map_latency * 1000:.1f} ms"
        )
        assert max(latencies) < 0.5, latencies
        assert map_latency < 0.9


async def test_waits_fall_back_to_polling_without_listen_or_when_it_breaks(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        async with workers(app, dsn, schema, tmp_path, "--queues", "poll", "--sweep-interval", "600"):
            # a waiter that never LISTENs: its re-checks (every second) find the result
            deaf = Werk(dsn, schema=schema, task_modules=["tests"], use_listen_notify=False)
            async with deaf:
                start = time.monotonic()
                assert await deaf.apply(procapp.maybe_fail, x=21, _queue="poll", timeout=10) == 42
                without_listen = time.monotonic() - start
                assert await listeners(app, deaf.sql.done_channel) == 0

            # a waiter whose LISTEN connection is killed while it waits
            assert await app.apply(procapp.record, _queue="poll", timeout=10)
            assert await listeners(app, app.sql.done_channel) == 1
            job = await app.enqueue(procapp.sleep_job, 0.5, _queue="poll")
            assert job

            async def kill_listener() -> None:
                await until(lambda: runs(app, job.id))
                killed = await query(
                    app,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %(q)s",
                    {"q": f'LISTEN "{app.sql.done_channel}"'},
                )
                assert killed == [(True,)]

            start = time.monotonic()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_listener)
                done = await app.wait_for(job.id, timeout=10)
            broken = time.monotonic() - start
            assert done.status is JobStatus.COMPLETE

            async def relistening() -> bool:
                return await listeners(app, app.sql.done_channel) == 1

            await until(relistening)  # the shared listener reconnects
            start = time.monotonic()
            assert await app.apply(procapp.record, _queue="poll", timeout=10)
            after = time.monotonic() - start
        print(
            f"apply without LISTEN: {without_listen:.2f}s; wait_for across a killed LISTEN: {broken:.2f}s; "
            f"apply after the reconnect: {after * 1000:.1f} ms"
        )
        assert without_listen < 2.5
        assert broken < 3.0
        assert after < 0.5


async def test_job_error_carries_the_terminal_job_and_map_can_return_exceptions(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        async with workers(app, dsn, schema, tmp_path, "--queues", "err", "--sweep-interval", "600"):
            with pytest.raises(JobError) as info:
                await app.apply(procapp.fail, "nope", _queue="err", _retry=2, timeout=10)
            failed = info.value.job
            assert failed.status is JobStatus.FAILED and failed.attempts == 2
            assert failed.error and "ValueError: nope" in failed.error
            assert (await app.get_job(failed.id)).status is JobStatus.FAILED

            # aborted while it runs: JobError with the aborted job
            async def abort_when_running(job_id: object) -> None:
                await until(lambda: runs(app, job_id))
                await app.abort_job(job_id)

            job = await app.enqueue(procapp.sleep_job, 60, _queue="err")
            assert job
            async with trio.open_nursery() as nursery:
                nursery.start_soon(abort_when_running, job.id)
                stopped = await app.wait_for(job.id, timeout=10)
            assert stopped.status is JobStatus.ABORTED

            xs = [1, -2, 3, -4, 5]
            mixed = await app.map(
                procapp.maybe_fail, [{"x": x} for x in xs], _queue="err", timeout=10, return_exceptions=True
            )
            assert [m if isinstance(m, int) else "error" for m in mixed] == [2, "error", 6, "error", 10]
            for x, m in zip(xs, mixed, strict=True):
                if x < 0:
                    assert isinstance(m, JobError)
                    assert m.job.status is JobStatus.FAILED and m.job.kwargs == {"x": x}
                    assert f"negative: {x}" in (m.job.error or "")
            with pytest.raises(JobError) as info:
                await app.map(procapp.maybe_fail, [{"x": 1}, {"x": -7}], _queue="err", timeout=10)
            assert info.value.job.kwargs == {"x": -7} and info.value.job.status is JobStatus.FAILED
            many = await app.map(procapp.maybe_fail, [{"x": i} for i in range(60)], _queue="err", timeout=20)
            assert many == [2 * i for i in range(60)]


async def test_wait_timeout_leaves_the_job_alone(app: Werk, dsn: str, schema: str, tmp_path: Path) -> None:
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        async with workers(
            app, dsn, schema, tmp_path, "--queues", "slow", "--sweep-interval", "600", count=1
        ):
            start = time.monotonic()
            with pytest.raises(WaitTimeout):
                await app.apply(procapp.sleep_job, 2, _queue="slow", timeout=0.3)
            waited = time.monotonic() - start
            assert 0.3 <= waited < 1.5, waited
            [running] = await app.list_jobs(queue="slow")
            assert running.status is JobStatus.ACTIVE, "a wait that times out does not touch the job"
            done = await app.wait_for(running.id, timeout=10)
            assert done.status is JobStatus.COMPLETE
            assert (await app.wait_for(running.id, timeout=0)).status is JobStatus.COMPLETE

        nobody = await app.enqueue(procapp.record, _queue="nobody")
        assert nobody
        with pytest.raises(WaitTimeout):
            await app.wait_for(nobody.id, timeout=0.2)
        with pytest.raises(WaitTimeout):
            await app.map(procapp.record, [{}, {}], _queue="nobody", timeout=0.2)
        missing = await app.enqueue(procapp.record, _queue="nobody")
        assert missing
        await app.delete_job(missing.id)
        with pytest.raises(JobNotFound):
            await app.wait_for(missing.id, timeout=1)
