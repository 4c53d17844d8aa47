"""Issue 12: pgwerk's documented signatures, returns and behaviours, one test each,
and the error a pgwerk program gets where werk_trio is deliberately stricter
(each difference claimed in docs/porting-from-pgwerk.md)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
import trio

from werk_trio import (
    ConfigError,
    EnqueueParams,
    JobStatus,
    Repeat,
    UnknownTask,
    Werk,
)
from werk_trio.jobs import Context
from werk_trio.testing import make_worker, running, wait_for_status

# --- handlers (this module is in the test app's task_modules) -------------------------------------


async def add(x: int, y: int) -> int:  # no **kwargs: an option leaking into the payload breaks it
    return x + y


def echo(value: Any) -> Any:
    return value


async def boom() -> None:
    raise ValueError("boom")


async def count_run(ctx: Context) -> int:
    return ctx.job.repeat_remaining


# --- signatures and returns ---------------------------------------------------------------------


async def test_apply_map_wait_for_take_poll_interval_and_it_never_reaches_the_handler(app: Werk) -> None:
    with trio.fail_after(20):
        async with running(make_worker(app)):
            assert await app.apply(add, 1, 2, timeout=10, poll_interval=0.5) == 3
            assert await app.map(
                add, [{"x": 1, "y": 1}, {"x": 2, "y": 2}], timeout=10, poll_interval=0.5
            ) == [2, 4]
            job = await app.enqueue(add, 5, 5)
            assert job is not None
            done = await app.wait_for(job.id, timeout=10, poll_interval=0.2)
            assert done.result == 10 and done.payload == {"args": [5, 5], "kwargs": {}}
        for bad in (0, -1, "1", float("inf")):
            with pytest.raises(ConfigError, match="poll_interval"):
                await app.wait_for(job.id, timeout=1, poll_interval=bad)
            with pytest.raises(ConfigError, match="poll_interval"):
                await app.apply(add, 1, 2, poll_interval=bad)
        assert await app.list_jobs(function=f"{__name__}.add", limit=100) != []
        assert len(await app.list_jobs(function=f"{__name__}.add")) == 4, "a refused apply enqueued nothing"


async def test_enqueue_many_takes_specs_and_a_keyword_conn(app: Werk) -> None:
    with trio.fail_after(10):
        async with app.connection() as conn, conn.transaction():
            jobs = await app.enqueue_many(specs=[EnqueueParams(func=echo, args=(1,))], _conn=conn)
        assert [j.status for j in jobs if j] == [JobStatus.Queued]
        with pytest.raises(TypeError):
            await app.enqueue_many([EnqueueParams(echo)], conn)  # type: ignore[misc]
        with pytest.raises(ConfigError, match="a list of EnqueueParams"):
            await app.enqueue_many(EnqueueParams(echo))  # type: ignore[arg-type]


async def test_retry_zero_is_one_attempt_and_repeat_without_interval_runs_at_once(app: Werk) -> None:
    with trio.fail_after(20):
        once = await app.enqueue(boom, _retry=0)
        assert once is not None and once.max_attempts == 1
        first = await app.enqueue(count_run, _repeat=Repeat(times=2))
        assert first is not None and first.repeat_interval_secs == 0
        async with running(make_worker(app)):
            assert (await app.wait_for(once.id, timeout=10)).status is JobStatus.Failed
            await app.wait_for(first.id, timeout=10)

            async def all_runs() -> list[Any]:
                rows = await app.list_jobs(function=f"{__name__}.count_run")
                return rows if len(rows) == 3 and all(r.is_terminal for r in rows) else []

            while not (rows := await all_runs()):
                await trio.sleep(0.02)
        assert (await app.get_job(once.id)).attempts == 1
        assert sorted(r.result for r in rows) == [0, 1, 2], "each run keeps its own result"
        assert all(r.status is JobStatus.Complete and r.attempts == 1 for r in rows)


async def test_a_dependent_of_a_repeating_job_waits_for_its_first_run_only(app: Werk) -> None:
    with trio.fail_after(20):
        first = await app.enqueue(count_run, _repeat=Repeat(times=2, interval=60))
        assert first is not None
        child = await app.enqueue(echo, "after the first run", _depends_on=first)
        assert child is not None
        async with running(make_worker(app)):
            done = await app.wait_for(child.id, timeout=10)
        assert done.result == "after the first run"
        assert (await app.get_job(first.id)).status is JobStatus.Complete
        rows = await app.list_jobs(function=f"{__name__}.count_run")
        nxt = [r for r in rows if r.id != first.id]
        assert len(nxt) == 1 and nxt[0].status is JobStatus.Scheduled and nxt[0].repeat_remaining == 1
        assert nxt[0].scheduled_at >= (await app.get_job(first.id)).completed_at + timedelta(seconds=59)
        assert await app.get_job_dependencies(nxt[0].id) == [], "later runs depend on nothing"


async def test_sweep_returns_the_ids_it_rescued(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(echo, 1, _retry=2)
        assert job is not None
        async with app.connection() as conn:  # active for a worker that does not exist
            await conn.execute(
                psycopg.sql.SQL(
                    "UPDATE {} SET status = 'active', attempts = 1, started_at = now(),"
                    " worker_id = gen_random_uuid() WHERE id = %s"
                ).format(app.sql.idents["jobs"]),
                (job.id,),
            )
        assert await app.sweep() == [job.id]
        assert (await app.get_job(job.id)).status is JobStatus.Queued
        assert await app.sweep() == []
        assert (await app.sweep_counts())["rescued"] == 0


async def test_app_run_runs_a_worker_of_the_given_type(app: Werk) -> None:
    with trio.fail_after(20):
        job = await app.enqueue(echo, "via app.run", _queue="run_q")
        assert job is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: app.run(["run_q"], 2, "thread", handle_signals=False, poll_interval=0.05)
            )
            done = await app.wait_for(job.id, timeout=10)
            nursery.cancel_scope.cancel()
        assert done.result == "via app.run"
        with pytest.raises(ConfigError, match="unknown worker type"):
            await app.run(["run_q"], 1, "greenlet")


async def test_ephemeral_tables_make_the_worker_registry_unlogged(dsn: str, schema: str) -> None:
    query = "SELECT relpersistence FROM pg_class WHERE oid = %s::regclass"
    with trio.fail_after(20):
        async with Werk(dsn, schema=schema, prefix="durable") as plain, plain.connection() as conn:
            cur = await conn.execute(query, (f"{schema}.durable_workers",))
            assert await cur.fetchone() == ("p",)
        async with Werk(dsn, schema=schema, prefix="eph", ephemeral_tables=True) as eph:
            async with eph.connection() as conn:
                cur = await conn.execute(query, (f"{schema}.eph_workers",))
                assert await cur.fetchone() == ("u",)
                cur = await conn.execute(query, (f"{schema}.eph_jobs",))
                assert await cur.fetchone() == ("p",), "jobs stay logged"
            await eph.migrate()  # again: already unlogged, nothing to do
            job = await eph.enqueue(echo, 1)
            assert job is not None
            async with running(make_worker(eph)):
                assert (await eph.wait_for(job.id, timeout=10)).result == 1


# --- behaviours pgwerk's own integration suite expects ---------------------------------------------


async def test_a_raising_before_process_hook_is_logged_and_the_job_still_runs(
    app: Werk, caplog: pytest.LogCaptureFixture
) -> None:
    def before(ctx: Context) -> None:
        raise RuntimeError("before hook broke")

    def after(ctx: Context) -> None:
        raise RuntimeError("after hook broke")

    with trio.fail_after(20):
        ok = await app.enqueue(echo, "ran")
        failing = await app.enqueue(boom)
        assert ok and failing
        with caplog.at_level(logging.ERROR, logger="werk_trio"):
            async with running(make_worker(app, before_process=[before], after_process=[after])):
                done = await app.wait_for(ok.id, timeout=10)
                failed = await app.wait_for(failing.id, timeout=10)
    assert (done.status, done.result) == (JobStatus.Complete, "ran")
    assert failed.status is JobStatus.Failed and failed.error and "ValueError: boom" in failed.error
    messages = [r.getMessage() for r in caplog.records]
    assert any("before_process hook" in m and str(ok.id) in m for m in messages), messages
    assert any("after_process hook" in m and str(failing.id) in m for m in messages), messages


async def test_result_and_failure_ttl_set_expires_at_of_the_finished_job(app: Werk) -> None:
    with trio.fail_after(20):
        ok = await app.enqueue(echo, 1, _result_ttl=3600)
        bad = await app.enqueue(boom, _failure_ttl=60)
        plain = await app.enqueue(echo, 2)
        assert ok and bad and plain
        async with running(make_worker(app)):
            done = {j.id: await app.wait_for(j.id, timeout=10) for j in (ok, bad, plain)}
    for job, ttl in ((ok, 3600), (bad, 60)):
        row = done[job.id]
        assert row.completed_at is not None and row.expires_at is not None
        assert row.expires_at - row.completed_at == timedelta(seconds=ttl)
    assert done[plain.id].expires_at is None


async def test_list_jobs_search_matches_the_queue(app: Werk) -> None:
    with trio.fail_after(10):
        mail = await app.enqueue(echo, 1, _queue="emails_high")
        await app.enqueue(echo, 2, _queue="reports")
        assert mail is not None
        assert [j.id for j in await app.list_jobs(search="emails")] == [mail.id]


# --- where werk_trio is stricter: the error a pgwerk program gets ------------------------------------


async def test_the_errors_of_the_deliberate_differences(app: Werk, dsn: str) -> None:
    with trio.fail_after(20):
        # a naive _at (pgwerk took it as UTC)
        with pytest.raises(ConfigError, match="naive datetime: pass an aware one"):
            await app.enqueue(echo, 1, _at=datetime(2030, 1, 1))
        # a job id given as a string that is not a UUID
        with pytest.raises(ConfigError, match=r"job ids are uuid\.UUID values"):
            await app.get_job("job-42")
        # an unknown _option (pgwerk put it into the payload)
        with pytest.raises(ConfigError, match="unknown enqueue option '_sync'"):
            await app.enqueue(echo, 1, _sync=True)
        # _conn from the program's own psycopg connection
        with psycopg.connect(dsn) as own, pytest.raises(ConfigError, match=r"from app\.connection\(\)"):
            await app.enqueue(echo, 1, _conn=own)
        # a function outside the allow-list (pgwerk imported any dotted path)
        with pytest.raises(UnknownTask, match=r"register it with @app.task or app.register\(fn\)"):
            app.tasks.resolve("os.getcwd")
        # WerkConfig is frozen: settings are given to Werk(...), not assigned
        with pytest.raises(AttributeError):
            app.config.max_active_secs = 10  # type: ignore[misc]
        # an unknown Werk setting
        with pytest.raises(ConfigError, match="unknown setting"):
            Werk(dsn, auto_vacuum=True)
        # a before-enqueue callback written for pgwerk's (inserted) Job
        def audit(job: Any) -> None:
            print(job.id)

        app.register_before_enqueue(audit)
        with pytest.raises(ConfigError, match="called with the EnqueueParams before the insert"):
            await app.enqueue(echo, "audited")
        app.unregister_before_enqueue(audit)
        assert await app.list_jobs(search="audited") == [], "nothing was enqueued"
        # Job.id is a uuid.UUID: compare with str(job.id)
        job = await app.enqueue(echo, 1)
        assert job is not None and job.id != str(job.id)
        assert (await app.get_job(str(job.id))).id == job.id
        # a worker refuses to run a row naming a function outside the allow-list: failed, UnknownTask
        async with app.connection() as conn:
            await conn.execute(
                psycopg.sql.SQL("UPDATE {} SET function = 'os.getcwd' WHERE id = %s").format(
                    app.sql.idents["jobs"]
                ),
                (job.id,),
            )
        async with running(make_worker(app)):
            failed = await wait_for_status(app, job.id, "failed")
        assert failed.error and "UnknownTask" in failed.error and "app.register" in failed.error


async def test_every_way_a_job_ends_sets_expires_at_from_its_failure_ttl(app: Werk) -> None:
    with trio.fail_after(10):
        cancelled = await app.enqueue(echo, 1, _failure_ttl=120, _ttl=3600)
        bulk = await app.enqueue(echo, 2, _failure_ttl=30, _queue="bulk_cancel")
        parent = await app.enqueue(echo, 3)
        child = await app.enqueue(echo, 4, _depends_on=parent, _failure_ttl=45)
        assert cancelled and bulk and parent and child
        assert await app.cancel_job(cancelled.id) is True
        assert await app.bulk_cancel_jobs(queue="bulk_cancel") == 1
        assert await app.cancel_job(parent.id) is True  # fails the child (DependencyFailed)
        for job, ttl in ((cancelled, 120), (bulk, 30), (child, 45)):
            row = await app.get_job(job.id)
            assert row.is_terminal and row.completed_at is not None
            assert row.expires_at == row.completed_at + timedelta(seconds=ttl), (row, ttl)
        # a requeued job's expiry is its own _ttl again, not the failure's
        assert await app.bulk_requeue_jobs() == 4  # the three and the cancelled parent
        again = await app.get_job(cancelled.id)
        assert again.expires_at == again.scheduled_at + timedelta(seconds=3600)
        assert (await app.get_job(bulk.id)).expires_at is None
