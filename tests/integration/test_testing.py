"""werk_trio.testing, the helpers for users' own test suites, on the real database.

Each helper is shown doing its job (the wait returns what it waited for, the
worker runs jobs, the assertion passes on a match) and failing the way it
promises (AssertionError showing what was found, ConfigError for bad input).
"""

from __future__ import annotations

import signal
import uuid
from typing import Any

import pytest
import trio
from psycopg import sql

from werk_trio import ConfigError, JobNotFound, JobStatus, ThreadWorker, Werk
from werk_trio.testing import (
    assert_enqueued,
    assert_not_enqueued,
    make_worker,
    run_until_idle,
    running,
    temporary_schema,
    until,
    wait_for_status,
)


async def add(a: int, b: int) -> int:
    return a + b


async def hang() -> None:
    await trio.sleep_forever()


async def send_mail(to: str, *, subject: str = "") -> str:
    return f"{to}: {subject}"


# --- until -------------------------------------------------------------------------------


async def test_until_returns_the_first_truthy_value_of_a_sync_or_async_predicate(app: Werk) -> None:
    with trio.fail_after(10):
        calls: list[int] = []

        def third() -> int | None:
            calls.append(1)
            return len(calls) * 10 if len(calls) >= 3 else None

        assert await until(third, interval=0.001) == 30
        assert len(calls) == 3

        job = await app.enqueue(add, 1, 2)
        assert job is not None

        async def listed() -> list[Any]:
            return await app.list_jobs()

        found = await until(listed)
        assert [j.id for j in found] == [job.id]


async def test_until_raises_what_the_predicate_raises() -> None:
    def broken() -> bool:
        raise KeyError("from the predicate")

    with trio.fail_after(10), pytest.raises(KeyError, match="from the predicate"):
        await until(broken)


async def test_until_with_a_timeout_fails_naming_the_predicate_and_its_last_value() -> None:
    def never() -> list[int]:
        return []

    expected = r"never\(\) was still not true after 0\.2s; its last value: \[\]"
    with trio.fail_after(10), pytest.raises(AssertionError, match=expected):
        await until(never, timeout=0.2)


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"interval": -1}, {"interval": "1"},
                                    {"timeout": 0}, {"timeout": float("nan")}, {"interval": True}])
async def test_until_refuses_bad_intervals(kwargs: dict[str, Any]) -> None:
    with trio.fail_after(10), pytest.raises(ConfigError, match="seconds"):
        await until(lambda: True, **kwargs)


async def test_until_refuses_what_it_cannot_call() -> None:
    with trio.fail_after(10), pytest.raises(ConfigError, match="function to call"):
        await until(True)  # type: ignore[arg-type]


# --- wait_for_status, make_worker, running ------------------------------------------------


async def test_wait_for_status_returns_the_job_in_any_status_asked_for(app: Werk) -> None:
    with trio.fail_after(30):
        stuck = await app.enqueue(hang)
        quick = await app.enqueue(add, 2, 3)
        assert stuck is not None and quick is not None
        async with running(make_worker(app)):
            active = await wait_for_status(app, stuck.id, "active")
            assert active.status is JobStatus.ACTIVE and active.id == stuck.id
            done = await wait_for_status(app, quick.id, JobStatus.COMPLETE, "failed")
            assert done.status is JobStatus.COMPLETE and done.result == 5
        # running()'s exit stops the worker at once: the hanging job is back, its attempt unspent
        back = await wait_for_status(app, stuck.id, "queued")
        assert back.attempts == 0


async def test_wait_for_status_with_a_timeout_fails_when_the_status_never_comes(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(add, 1, 1)
        assert job is not None
        with pytest.raises(AssertionError, match=r"still not true after 0\.3s"):
            await wait_for_status(app, job.id, "complete", timeout=0.3)
        assert (await app.get_job(job.id)).status is JobStatus.QUEUED


async def test_wait_for_status_validates_its_input(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(add, 1, 1)
        assert job is not None
        with pytest.raises(ConfigError, match="at least one status"):
            await wait_for_status(app, job.id)
        with pytest.raises(ConfigError, match=r"unknown job status 'done'.*complete"):
            await wait_for_status(app, job.id, "done")
        with pytest.raises(JobNotFound):
            await wait_for_status(app, uuid.uuid4(), "complete")


async def test_make_worker_builds_the_type_asked_for_with_the_settings_given(app: Werk) -> None:
    with trio.fail_after(30):
        assert type(make_worker(app, "thread")) is ThreadWorker
        worker = make_worker(app, ThreadWorker, concurrency=3, queues=["mail"])
        assert type(worker) is ThreadWorker
        before = signal.getsignal(signal.SIGTERM)
        async with running(worker):
            [row] = [w for w in await app.list_workers() if w["status"] != "stopped"]
            assert (row["worker_type"], row["concurrency"], row["queues"]) == ("thread", 3, ["mail"])
            # a test worker leaves the test runner's signal handlers alone
            assert signal.getsignal(signal.SIGTERM) == before
        [row] = await app.list_workers()
        assert row["status"] == "stopped"


@pytest.mark.parametrize("worker_type", ["warp", 3, dict])
async def test_make_worker_refuses_unknown_worker_types(app: Werk, worker_type: Any) -> None:
    with pytest.raises(ConfigError, match=r"worker type|worker_type"):
        make_worker(app, worker_type)


async def test_running_stops_the_worker_when_the_block_raises(app: Werk) -> None:
    with trio.fail_after(30):
        job = await app.enqueue(hang)
        assert job is not None
        with pytest.raises(ExceptionGroup) as info:
            async with running(make_worker(app)):
                await wait_for_status(app, job.id, "active")
                raise KeyError("from the block")
        assert [repr(e) for e in info.value.exceptions] == ["KeyError('from the block')"]
        [row] = await app.list_workers()
        assert row["status"] == "stopped"
        back = await app.get_job(job.id)
        assert (back.status, back.attempts) == (JobStatus.QUEUED, 0)


async def test_running_refuses_what_is_not_a_worker(app: Werk) -> None:
    with trio.fail_after(10), pytest.raises(ConfigError, match="running\\(\\) takes a worker"):
        async with running(app):  # type: ignore[arg-type]
            pass


async def test_run_until_idle_drains_the_queue_and_returns(app: Werk) -> None:
    with trio.fail_after(30):
        jobs = [await app.enqueue(add, i, i) for i in range(5)]
        later = await app.enqueue(add, 0, 0, _queue="elsewhere")
        await run_until_idle(app)
        for i, job in enumerate(jobs):
            assert job is not None
            done = await app.get_job(job.id)
            assert (done.status, done.result) == (JobStatus.COMPLETE, 2 * i)
        assert later is not None
        assert (await app.get_job(later.id)).status is JobStatus.QUEUED
        await run_until_idle(app, worker_type="thread", queues=["elsewhere"])
        assert (await app.get_job(later.id)).status is JobStatus.COMPLETE


async def test_temporary_schema_is_a_schema_of_its_own_dropped_on_exit(dsn: str, app: Werk) -> None:
    query = sql.SQL("SELECT count(*) FROM pg_namespace WHERE nspname = %s")
    with trio.fail_after(30):
        async with temporary_schema(dsn) as temp:
            name = temp.config.schema
            assert name is not None and name.startswith("werk_test_") and name != app.config.schema
            job = await temp.enqueue(add, 1, 2)
            assert job is not None
            assert await app.list_jobs() == []  # not the other schema's jobs
            async with app.connection() as conn:
                cur = await conn.execute(query, (name,))
                assert await cur.fetchone() == (1,)
        async with app.connection() as conn:
            cur = await conn.execute(query, (name,))
            assert await cur.fetchone() == (0,)


# --- assert_enqueued / assert_not_enqueued -------------------------------------------------


async def test_assert_enqueued_finds_the_jobs_that_match_every_filter(app: Werk) -> None:
    with trio.fail_after(10):
        first = await app.enqueue(send_mail, "ann", subject="hi")
        second = await app.enqueue(send_mail, "bob", subject="hi", _queue="mail")
        third = await app.enqueue(send_mail, "bob", subject="yo", _queue="mail")
        assert first is not None and second is not None and third is not None
        everything = await assert_enqueued(app, send_mail)
        assert [j.id for j in everything] == [first.id, second.id, third.id]  # oldest first
        bobs = await assert_enqueued(app, send_mail, args=["bob"], count=2)
        assert [j.id for j in bobs] == [second.id, third.id]
        [only] = await assert_enqueued(app, send_mail, args=("bob",), kwargs={"subject": "yo"})
        assert only.id == third.id
        [ann] = await assert_enqueued(app, send_mail, queue="default")
        assert ann.id == first.id
        # by dotted path, and by status
        path = f"{__name__}.send_mail"
        assert len(await assert_enqueued(app, path, status="queued", count=3)) == 3
        await assert_not_enqueued(app, path, status=["active", JobStatus.COMPLETE])


async def test_assert_enqueued_shows_the_jobs_found_instead(app: Werk) -> None:
    with trio.fail_after(10):
        with pytest.raises(AssertionError, match=r"expected a job of .*send_mail args=\['ann'\], "
                                                 r"found no job of .*send_mail at all"):
            await assert_enqueued(app, send_mail, args=["ann"])
        job = await app.enqueue(send_mail, "bob", subject="hi")
        assert job is not None
        with pytest.raises(AssertionError) as info:
            await assert_enqueued(app, send_mail, args=["ann"], queue="default")
        text = str(info.value)
        assert "expected a job of" in text and "args=['ann'] queue='default'" in text, text
        assert "found none that match" in text, text
        assert f"{job.id} queued queue='default' args=['bob'] kwargs={{'subject': 'hi'}}" in text, text
        with pytest.raises(AssertionError, match=r"expected 2 jobs of .*send_mail, found 1 that match"):
            await assert_enqueued(app, send_mail, count=2)
        with pytest.raises(AssertionError, match="status=complete"):
            await assert_enqueued(app, send_mail, status=JobStatus.COMPLETE)


async def test_assert_enqueued_lists_at_most_ten_jobs(app: Werk) -> None:
    with trio.fail_after(10):
        for i in range(12):
            await app.enqueue(add, i, 0)
        with pytest.raises(AssertionError) as info:
            await assert_enqueued(app, add, args=[99, 0])
        text = str(info.value)
        assert text.count(" queued queue=") == 10 and "... and 2 more" in text, text


async def test_assert_not_enqueued_fails_listing_what_matched(app: Werk) -> None:
    with trio.fail_after(10):
        await assert_not_enqueued(app, add)
        job = await app.enqueue(add, 1, 2, _queue="math")
        assert job is not None
        await assert_not_enqueued(app, add, args=[2, 1])
        await assert_not_enqueued(app, add, queue="default")
        await assert_not_enqueued(app, hang)
        expected = rf"expected no job of .*add queue='math', found 1:\n  {job.id} "
        with pytest.raises(AssertionError, match=expected):
            await assert_not_enqueued(app, add, queue="math")
        with pytest.raises(AssertionError, match="found 1"):
            await assert_not_enqueued(app, add, kwargs={})


@pytest.mark.parametrize(("filters", "message"), [
    ({"count": 0}, "count must be an int >= 1.*assert_not_enqueued"),
    ({"count": True}, "count must be an int"),
    ({"args": "ann"}, "args must be a list or tuple"),
    ({"args": 3}, "args must be a list or tuple"),
    ({"kwargs": ["subject"]}, "kwargs must be a dict"),
    ({"status": "done"}, "unknown job status 'done'"),
    ({"queue": "bad\x00queue"}, "queue"),
    ({"queues": ["mail"]}, "unknown filter queues; the filters are args, kwargs, queue, status"),
])
async def test_assert_enqueued_refuses_bad_filters(app: Werk, filters: dict[str, Any], message: str) -> None:
    with trio.fail_after(10), pytest.raises(ConfigError, match=message):
        await assert_enqueued(app, send_mail, **filters)


async def test_the_assertions_refuse_what_no_worker_could_run(app: Werk) -> None:
    with trio.fail_after(10):
        with pytest.raises(ConfigError, match="lambda"):
            await assert_enqueued(app, lambda: None)
        with pytest.raises(ConfigError, match="dotted path"):
            await assert_not_enqueued(app, "not a path")
        with pytest.raises(ConfigError, match="Werk instance"):
            await assert_not_enqueued("app", add)  # type: ignore[arg-type]
