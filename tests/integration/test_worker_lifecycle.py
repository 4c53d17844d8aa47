"""Job lifecycle in a real worker, in process: executions, retries and their
back-off on the database clock, timeouts, job heartbeats, aborts, failure mode,
the allow-list, intervals, shutdown (stop, stop now, cancelled nursery) and
fencing of late acks. Real Postgres, real workers, no mocks.
"""

import itertools
import os
import pathlib
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from psycopg import sql

from tests._support import gone, worker_ids
from werk_trio import Context, EnqueueParams, ExecutionStatus, Retry, Werk
from werk_trio.testing import make_worker, running, until, wait_for_status

from .test_db import tcp_proxy

# --- handlers ------------------------------------------------------------------

LOG: list[Any] = []
GATES: dict[int, trio.Event] = {}
FLAGS: dict[str, bool] = {}
NOTICED = threading.Event()


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    LOG.clear()
    GATES.clear()
    FLAGS.clear()
    NOTICED.clear()
    KEPT.clear()
    yield


async def noop() -> None:
    pass


async def always_fail() -> None:
    LOG.append("ran")
    raise ValueError("always fails")


async def flaky(ctx: Context, fail_times: int) -> str:
    if ctx.job.attempts <= fail_times:
        raise ValueError(f"attempt {ctx.job.attempts} fails")
    return f"done on attempt {ctx.job.attempts}"


async def lost_reply_marker() -> str:
    """A job whose name marks its claim's reply for the proxy to cut."""
    return "ran once"


async def hang(token: str) -> None:
    LOG.append(("start", token))
    try:
        await trio.sleep(60)
    except trio.Cancelled:
        LOG.append(("cancelled", token))
        raise


async def slow_first_attempt(ctx: Context) -> str:
    if ctx.job.attempts == 1:
        await hang("first")
    return "second attempt"


def sync_until_cancelled(ctx: Context) -> None:
    deadline = time.monotonic() + 20
    while not ctx.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    if ctx.cancelled:
        NOTICED.set()


async def sleep_for(seconds: float) -> None:
    await trio.sleep(seconds)


async def fail_then_hang(ctx: Context) -> str:
    if ctx.job.attempts == 1:
        raise ValueError("first attempt fails")
    if FLAGS.get("hang"):
        await hang(f"attempt {ctx.job.attempts}")
    return f"finished attempt {ctx.job.attempts}"


async def exits(code: int) -> None:
    LOG.append("exit")
    sys.exit(code)


async def gated(ctx: Context) -> str:
    attempt = ctx.job.attempts
    LOG.append(("start", ctx.worker_id, attempt))
    await GATES[attempt].wait()
    return f"attempt {attempt}"


#: The RunningJobs of jobs that have ended, kept by the jobs themselves.
KEPT: list[Any] = []


async def keeps_its_running_job(ctx: Context, abort: bool) -> str:
    kept = ctx.worker.running[ctx.job.id]
    KEPT.append(kept)
    if abort:
        # the stop reaches the job's cancel scope after its last checkpoint:
        # the job still ends complete, and that scope is spent
        kept.abort()
    return "ended first"


async def aborts_a_job_that_ended(ctx: Context) -> str:
    KEPT[-1].abort()  # that job is over: nothing to stop
    await trio.sleep(0.05)  # checkpoints, where a cancel would land
    return "not stopped"


async def after_checkpoint(ctx: Context) -> None:
    await trio.sleep(0)
    LOG.append(("after", ctx.job.id))


async def slow_before(ctx: Context) -> None:
    LOG.append(("before", "start"))
    await trio.sleep(0.3)
    LOG.append(("before", "end"))


def _seconds(later: Any, earlier: Any) -> float:
    return float((later - earlier).total_seconds())


# --- attempts, retries, timeouts ------------------------------------------------


async def test_one_execution_row_per_attempt(app: Werk) -> None:
    with trio.fail_after(10):
        recovers = await app.enqueue(flaky, 2, _retry=3)
        exhausted = await app.enqueue(always_fail, _retry=2)
        assert recovers and exhausted
        w = make_worker(app, burst=True)
        await w.run()

        job = await app.get_job(recovers.id)
        assert (job.status, job.attempts, job.result) == ("complete", 3, "done on attempt 3")
        execs = await app.get_executions(recovers.id)
        assert [e.attempt for e in execs] == [1, 2, 3]
        assert [e.status for e in execs] == [
            ExecutionStatus.FAILED,
            ExecutionStatus.FAILED,
            ExecutionStatus.COMPLETE,
        ]
        assert "ValueError: attempt 1 fails" in (execs[0].error or "")
        assert "ValueError: attempt 2 fails" in (execs[1].error or "")
        assert execs[2].error is None
        assert all(e.worker_id == w.id and e.finished_at is not None for e in execs)
        assert job.error is None  # cleared by the success

        job = await app.get_job(exhausted.id)
        assert (job.status, job.attempts) == ("failed", 2)
        execs = await app.get_executions(exhausted.id)
        assert [(e.attempt, e.status) for e in execs] == [(1, "failed"), (2, "failed")]
        assert LOG == ["ran", "ran"]


async def test_retry_intervals_are_measured_on_the_database_clock(app: Werk) -> None:
    with trio.fail_after(15):
        # the last interval is reused once the list runs out
        job = await app.enqueue(always_fail, _retry=Retry(4, intervals=[0.2, 0.5]))
        assert job
        w = make_worker(app, poll_interval=0.05)
        async with running(w):
            await wait_for_status(app, job.id, "failed")
        execs = await app.get_executions(job.id)
        assert [e.attempt for e in execs] == [1, 2, 3, 4]
        gaps = [_seconds(b.started_at, a.started_at) for a, b in itertools.pairwise(execs)]
        for gap, interval in zip(gaps, [0.2, 0.5, 0.5], strict=True):
            # never early; late by at most about one poll_interval plus a claim
            assert interval <= gap < interval + 0.5, gaps
        # the retry waits after the failure was recorded, on the database clock
        for (a, b), interval in zip(itertools.pairwise(execs), [0.2, 0.5, 0.5], strict=True):
            assert a.finished_at is not None
            assert _seconds(b.started_at, a.finished_at) >= interval


async def test_timeout_cancels_the_handler_and_retries(app: Werk) -> None:
    with trio.fail_after(10):
        retried = await app.enqueue(slow_first_attempt, _timeout=0.3, _retry=2)
        final = await app.enqueue(hang, "no retry", _timeout=0.3)
        assert retried and final
        w = make_worker(app, concurrency=2)
        t0 = trio.current_time()
        async with running(w):
            job = await wait_for_status(app, retried.id, "complete")
            last = await wait_for_status(app, final.id, "failed")
        assert trio.current_time() - t0 < 3  # not the handlers' 60 s
        assert job.result == "second attempt" and job.attempts == 2
        execs = await app.get_executions(retried.id)
        assert [e.status for e in execs] == ["failed", "complete"]
        assert "JobTimeout" in (execs[0].error or "")
        assert execs[0].finished_at is not None
        assert 0.3 <= _seconds(execs[0].finished_at, execs[0].started_at) < 1.5
        # the handler really was cancelled, not left running
        assert ("cancelled", "first") in LOG and ("cancelled", "no retry") in LOG
        assert last.attempts == 1
        assert last.error is not None and "JobTimeout" in last.error and "0.3s" in last.error


async def test_a_stop_reaches_only_its_own_job_in_a_runner_that_runs_on(app: Werk) -> None:
    """One runner runs its jobs in one cancel scope until a stop reaches it: a
    timeout, a stop that lands just after its job ended, or a kept RunningJob
    of a job that ended leave the hooks of that job and the next jobs alone."""
    with trio.fail_after(15):
        async with running(make_worker(app, concurrency=1, after_process=[after_checkpoint])):
            timed_out = await app.enqueue(hang, "timed out", _timeout=0.2)
            assert timed_out
            failed = await wait_for_status(app, timed_out.id, "failed")
            assert failed.error is not None and "JobTimeout" in failed.error
            ids = [timed_out.id]
            for abort in (True, False):
                ended = await app.enqueue(keeps_its_running_job, abort)
                assert ended
                done = await wait_for_status(app, ended.id, "complete", "aborted", "failed")
                assert (done.status, done.result) == ("complete", "ended first")
                after = await app.enqueue(aborts_a_job_that_ended)
                assert after
                done = await wait_for_status(app, after.id, "complete", "aborted", "failed")
                assert (done.status, done.result) == ("complete", "not stopped")
                ids += [ended.id, after.id]
            assert len(KEPT) == 2 and all(kept.ended for kept in KEPT)
            # every job's after-hook ran to its end
            def hooked() -> list[Any]:
                return [entry[1] for entry in LOG if entry[0] == "after"]

            await until(lambda: len(hooked()) >= len(ids))
            assert hooked() == ids


async def test_a_timeout_that_passes_in_a_before_hook_stops_the_handler_not_the_hook(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(hang, "after the hook", _timeout=0.1)
        assert job
        async with running(make_worker(app, before_process=[slow_before])):
            failed = await wait_for_status(app, job.id, "failed")
        assert failed.error is not None and "JobTimeout" in failed.error
        # the hook ran to its end; the handler was cancelled at its first checkpoint
        assert LOG == [("before", "start"), ("before", "end"), ("start", "after the hook"),
                       ("cancelled", "after the hook")]


async def test_timeout_of_a_sync_handler_sets_ctx_cancelled(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(sync_until_cancelled, _timeout=0.3)
        assert job
        async with running(make_worker(app)):
            failed = await wait_for_status(app, job.id, "failed")
            # the thread cannot be killed; it is told, and stops by itself
            await trio.to_thread.run_sync(NOTICED.wait, 5)
        assert NOTICED.is_set()
        assert failed.error is not None and "JobTimeout" in failed.error


async def test_heartbeat_jobs_are_touched_while_they_run(app: Werk) -> None:
    with trio.fail_after(10):
        beating = await app.enqueue(sleep_for, 0.8, _heartbeat=0.1)
        silent = await app.enqueue(sleep_for, 0.8)
        assert beating and silent
        touches: set[Any] = set()
        async with running(make_worker(app, concurrency=2)):
            job = await wait_for_status(app, beating.id, "active")
            started = job.started_at
            while job.status == "active":
                if job.touched_at is not None:
                    touches.add(job.touched_at)
                assert (await app.get_job(silent.id)).touched_at is None
                await trio.sleep(0.02)
                job = await app.get_job(beating.id)
            await wait_for_status(app, silent.id, "complete")
        assert job.status == "complete"
        assert len(touches) >= 3, touches  # ~7 touches in 0.8 s at 0.1 s
        assert started is not None and all(t > started for t in touches)
        assert (await app.get_job(silent.id)).touched_at is None


async def test_heartbeat_keeps_a_long_job_from_being_rescued(dsn: str, schema: str) -> None:
    # max_active_secs: a running job untouched that long counts as stuck
    with trio.fail_after(10):
        async with Werk(dsn, schema=schema, task_modules=["tests"], max_active_secs=0.4) as app:
            beating = await app.enqueue(sleep_for, 1.2, _heartbeat=0.1)
            silent = await app.enqueue(sleep_for, 1.2)
            assert beating and silent
            w = make_worker(app, concurrency=2, sweep_interval=0.1)
            async with running(w):
                rescued = await wait_for_status(app, silent.id, "failed")  # one attempt: spent by the rescue
                assert "max_active_secs" in (rescued.error or "")
                assert (await app.get_job(beating.id)).status == "active"
                done = await wait_for_status(app, beating.id, "complete")
                assert done.attempts == 1
                await until(lambda: w.stats.get("complete", 0) == 2)  # the silent one finished too
            # (the worker has stopped: every outcome is written) its late ack was refused
            late = await app.get_job(silent.id)
            assert (late.status, late.result, late.attempts) == ("failed", None, 1)


async def test_abort_job_stops_a_running_job_within_abort_interval(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(hang, "abort me", _retry=3)
        assert job
        w = make_worker(app, abort_interval=0.2)
        async with running(w):
            await wait_for_status(app, job.id, "active")
            await until(lambda: ("start", "abort me") in LOG)
            t0 = trio.current_time()
            assert await app.abort_job(job.id) is True
            aborted = await wait_for_status(app, job.id, "aborted")
            assert trio.current_time() - t0 < 0.2 + 0.4
            assert ("cancelled", "abort me") in LOG
            # no retry, though attempts were left; the worker goes on working
            after = await app.enqueue(noop)
            assert after
            await wait_for_status(app, after.id, "complete")
            assert (await app.get_job(job.id)).status == "aborted"
        assert aborted.attempts == 1 and aborted.completed_at is not None
        execs = await app.get_executions(job.id)
        assert [(e.attempt, e.status) for e in execs] == [(1, "aborted")]


async def test_failure_mode_delete_removes_the_row(app: Werk) -> None:
    with trio.fail_after(10):
        deleted = await app.enqueue(always_fail, _failure_mode="delete", _retry=2)
        held = await app.enqueue(flaky, 5)  # default "hold"
        kept = await app.enqueue(noop, _failure_mode="delete")  # only failures are deleted
        assert deleted and held and kept
        await make_worker(app, burst=True).run()
        assert await gone(app, deleted.id)
        assert LOG == ["ran", "ran"]  # every attempt ran before the row went
        assert (await app.get_job(held.id)).status == "failed"
        assert (await app.get_job(kept.id)).status == "complete"


async def test_disallowed_functions_fail_with_unknown_task_and_are_never_imported(
    app: Werk, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    pwned = tmp_path / "pwned"
    module = f"werk_unlisted_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n\n"
        f"def run():\n    pathlib.Path({str(marker)!r}).write_text('ran')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # importable, just not allowed
    with trio.fail_after(10):
        unimported = await app.enqueue(f"{module}.run", _retry=3)
        system = await app.enqueue("os.system", f"touch {pwned}", _retry=3)
        missing = await app.enqueue("tests.integration.test_worker_lifecycle.no_such_handler")
        getcwd = await app.enqueue("posix.getcwd")
        assert unimported and system and missing and getcwd
        await make_worker(app, burst=True).run()

        for job in (unimported, system, getcwd):
            failed = await app.get_job(job.id)
            assert (failed.status, failed.attempts) == ("failed", 1)  # no retry: it would fail again
            error = failed.error or ""
            assert "UnknownTask" in error and job.function in error
            assert "@app.task" in error and "task_modules" in error  # says how to allow it
        assert module not in sys.modules
        assert not marker.exists() and not pwned.exists()
        missing_job = await app.get_job(missing.id)
        assert missing_job.status == "failed"
        assert "UnknownTask" in (missing_job.error or "") and "no_such_handler" in (missing_job.error or "")

        # registering allows a function outside every allowed module
        app.register(os.getcwd)
        allowed = await app.enqueue("posix.getcwd")
        assert allowed
        await make_worker(app, burst=True).run()
        assert (await app.get_job(allowed.id)).result == os.getcwd()


# --- intervals -----------------------------------------------------------------


async def test_poll_interval_picks_up_due_scheduled_jobs(app: Werk) -> None:
    with trio.fail_after(10):
        async with running(make_worker(app, poll_interval=0.1)):
            job = await app.enqueue(noop, _delay=0.5)  # no NOTIFY when it comes due
            assert job
            done = await wait_for_status(app, job.id, "complete")
        assert done.started_at is not None
        late = _seconds(done.started_at, done.scheduled_at)
        assert 0 <= late < 0.1 + 0.4


async def test_heartbeat_interval_refreshes_the_worker_row(app: Werk) -> None:
    with trio.fail_after(10):
        w = make_worker(app, heartbeat_interval=0.1)
        async with running(w):

            async def row() -> dict[str, Any]:
                return next(r for r in await app.list_workers() if r["id"] == w.id)

            first = await row()
            assert first["heartbeat_interval"] == 0.1
            seen = {first["last_seen"]}

            async def beat() -> bool:
                seen.add((await row())["last_seen"])
                return len(seen) >= 3

            await until(beat)
            assert (await row())["heartbeat_age"] < 1


async def test_sweep_interval_runs_maintenance(app: Werk) -> None:
    with trio.fail_after(10):
        async with running(make_worker(app, queues=["busy"], sweep_interval=0.1)):
            # a job nobody consumes, past its ttl: the sweeper expires it
            job = await app.enqueue(noop, _queue="unserved", _ttl=0.3)
            assert job
            t0 = trio.current_time()
            expired = await wait_for_status(app, job.id, "aborted")
            assert trio.current_time() - t0 < 0.3 + 0.1 + 0.6
        assert "expired" in (expired.error or "")


# --- shutdown -------------------------------------------------------------------


async def test_stop_lets_short_jobs_finish_and_claims_nothing_new(app: Werk) -> None:
    with trio.fail_after(10):
        w = make_worker(app, shutdown_timeout=5)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.run)
            job = await app.enqueue(sleep_for, 0.3)
            assert job
            await wait_for_status(app, job.id, "active")
            t0 = trio.current_time()
            w.stop()
            late = await app.enqueue(noop)
            assert late
        assert trio.current_time() - t0 < 2  # returned when the job ended, not after 5 s
        assert (await app.get_job(job.id)).status == "complete"
        assert (await app.get_job(late.id)).status == "queued"
        assert w.id not in await worker_ids(app)


async def test_stop_requeues_a_long_job_after_shutdown_timeout_without_spending_an_attempt(
    app: Werk,
) -> None:
    FLAGS["hang"] = True
    with trio.fail_after(15):
        job = await app.enqueue(fail_then_hang, _retry=2)
        assert job
        w = make_worker(app, shutdown_timeout=0.5)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.run)
            await until(lambda: ("start", "attempt 2") in LOG)
            active = await app.get_job(job.id)
            assert (active.status, active.attempts) == ("active", 2)
            t0 = trio.current_time()
            w.stop()
            await w.stopped.wait()
            elapsed = trio.current_time() - t0
        assert 0.5 <= elapsed < 2.0, elapsed
        assert ("cancelled", "attempt 2") in LOG
        back = await app.get_job(job.id)
        assert (back.status, back.attempts, back.worker_id) == ("queued", 1, None)
        assert w.id not in await worker_ids(app)

        # the interrupted attempt is run again as attempt 2: the last one allowed
        FLAGS["hang"] = False
        await make_worker(app, burst=True).run()
        done = await app.get_job(job.id)
        assert (done.status, done.attempts, done.result) == ("complete", 2, "finished attempt 2")
        execs = await app.get_executions(job.id)
        assert [(e.attempt, e.status) for e in execs] == [
            (1, "failed"), (2, "complete"),
        ]  # fmt: skip
        # the completed attempt is read off the job row, which hides the row the
        # shutdown wrote for the interrupted run of attempt 2
        assert (execs[1].finished_at, execs[1].worker_id) == (done.completed_at, done.worker_id)
        assert execs[1].started_at == done.started_at and execs[1].error is None


async def test_stop_now_requeues_at_once(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(hang, "now")
        assert job
        w = make_worker(app, shutdown_timeout=30)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.run)
            await until(lambda: ("start", "now") in LOG)
            t0 = trio.current_time()
            w.stop(now=True)
        assert trio.current_time() - t0 < 1.5
        back = await app.get_job(job.id)
        assert (back.status, back.attempts) == ("queued", 0)


async def test_an_abort_the_worker_has_not_seen_yet_wins_over_its_shutdown(app: Werk) -> None:
    """abort_job on a running job, then its worker stops before the abort-watcher
    looks (abort_interval an hour): the job ends aborted, as asked -- not queued
    to run again -- the same as the sweeper does with an aborting job of a dead worker."""
    with trio.fail_after(10):
        job = await app.enqueue(hang, "abort, then stop", _retry=3)
        assert job
        w = make_worker(app, abort_interval=3600, shutdown_timeout=30)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.run)
            await until(lambda: ("start", "abort, then stop") in LOG)
            assert await app.abort_job(job.id) is True
            w.stop(now=True)
        back = await app.get_job(job.id)
        assert (back.status, back.attempts) == ("aborted", 1), (back.status, back.attempts)
        assert back.completed_at is not None and back.error is not None
        assert back.error.startswith("aborted by request (abort_job)"), back.error
        execs = await app.get_executions(job.id)
        assert [(e.attempt, e.status, e.error) for e in execs] == [(1, "aborted", back.error)]


async def test_an_abort_committed_while_the_completion_waits_for_the_row_wins(app: Werk) -> None:
    """abort_job's update holds the job's row when the handler finishes: the
    completion, its snapshot taken before the abort committed, waits for the
    row and then judges the job as the abort left it -- aborted, not complete."""
    GATES[1] = trio.Event()
    with trio.fail_after(15):
        job = await app.enqueue(gated, _queue="race", _retry=3)
        assert job
        w = make_worker(app, queues=["race"], concurrency=1, abort_interval=3600)
        async with running(w), app.connection() as aborter, app.connection() as watcher:
            await until(lambda: ("start", w.id, 1) in LOG)
            async with aborter.transaction():
                cur = await aborter.execute(app.sql.ABORT_JOB, {"id": job.id})
                assert len(await cur.fetchall()) == 1  # aborting, not committed yet
                cur = await aborter.execute("SELECT pg_current_xact_id()::text")
                xid = (await cur.fetchone() or [None])[0]
                GATES[1].set()  # the handler returns; its completion waits for the row

                async def completion_waits() -> bool:
                    cur = await watcher.execute(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
                        " AND transactionid::text = %s",
                        (xid,),
                    )
                    row = await cur.fetchone()
                    return row is not None and row[0] == 1

                await until(completion_waits)
            done = await wait_for_status(app, job.id, "complete", "aborted")
        assert (done.status, done.attempts, done.completed_at is not None) == ("aborted", 1, True)


async def test_cancelling_the_nursery_requeues_at_once_and_deregisters(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(hang, "cancel")  # one attempt only: a spent one would fail it
        assert job
        w = make_worker(app, shutdown_timeout=30)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.run)
            assert w.id in await worker_ids(app)
            await until(lambda: ("start", "cancel") in LOG)
            t0 = trio.current_time()
            nursery.cancel_scope.cancel()
        assert trio.current_time() - t0 < 1.0  # no shutdown_timeout wait
        assert w.stopped.is_set()
        assert ("cancelled", "cancel") in LOG
        back = await app.get_job(job.id)
        assert (back.status, back.attempts, back.worker_id) == ("queued", 0, None)
        assert w.id not in await worker_ids(app)


async def test_cancelling_requeues_a_heartbeat_job_too(app: Werk) -> None:
    # the job's touch loop runs in a nursery beside it: the cancel comes out wrapped
    with trio.fail_after(10):
        job = await app.enqueue(hang, "beating", _heartbeat=0.05)
        assert job
        w = make_worker(app)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.run)
            await until(lambda: ("start", "beating") in LOG)
            await wait_for_status(app, job.id, "active")
            nursery.cancel_scope.cancel()
        back = await app.get_job(job.id)
        assert (back.status, back.attempts, back.worker_id) == ("queued", 0, None)
        assert ("cancelled", "beating") in LOG


async def test_a_handler_that_exits_the_worker_spends_its_attempts(app: Werk) -> None:
    # SystemExit out of a handler takes the worker down; the attempt still
    # counts, so such a job cannot crash worker after worker forever
    with trio.fail_after(10):
        job = await app.enqueue(exits, 3, _retry=2)
        assert job
        for attempt in (1, 2):
            w = make_worker(app, burst=True)
            with pytest.raises(BaseException) as info:
                await w.run()
            exc = info.value
            assert isinstance(exc, SystemExit) or (
                isinstance(exc, BaseExceptionGroup) and exc.split(SystemExit)[0] is not None
            )
            after = await app.get_job(job.id)
            assert after.attempts == attempt
            assert after.status == ("queued" if attempt == 1 else "failed")
            assert "SystemExit: 3" in (after.error or "")
            assert w.id not in await worker_ids(app)
        assert LOG == ["exit", "exit"]
        assert [(e.attempt, e.status) for e in await app.get_executions(job.id)] == [
            (1, "failed"),
            (2, "failed"),
        ]


# --- fencing --------------------------------------------------------------------


async def test_late_ack_from_a_worker_that_lost_its_job_changes_nothing(app: Werk) -> None:
    GATES[1] = trio.Event()
    GATES[2] = trio.Event()
    with trio.fail_after(15):
        a = make_worker(app, queues=["fence"], concurrency=1, heartbeat_interval=60, shutdown_timeout=10)
        b = make_worker(app, queues=["fence"], concurrency=1)
        async with trio.open_nursery() as nursery:
            await nursery.start(a.run)
            job = await app.enqueue(gated, _queue="fence", _retry=3)
            assert job
            await until(lambda: ("start", a.id, 1) in LOG)

            # Simulate the sweeper's verdict that A is dead (its heartbeat
            # stopped) by deleting A's worker row. Only the worker row: the job
            # row is left alone, and the real sweep below rescues it.
            async with app.connection() as conn:
                await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE id = %s").format(app.sql.idents["workers"]), (a.id,)
                )
            swept = await app.sweep()
            assert swept == [job.id]
            rescued = await app.get_job(job.id)
            assert (rescued.status, rescued.attempts, rescued.worker_id) == ("queued", 1, None)

            # B picks the job up: attempt 2 is B's
            await nursery.start(b.run)
            await until(lambda: ("start", b.id, 2) in LOG)

            # A's handler now finishes and A acks attempt 1: refused
            a.stop()
            GATES[1].set()
            await a.stopped.wait()
            assert a.stats == {"complete": 1}  # A did try to complete it
            now = await app.get_job(job.id)
            assert (now.status, now.attempts, now.worker_id, now.result) == ("active", 2, b.id, None)
            execs = await app.get_executions(job.id)
            assert [(e.attempt, e.status, e.worker_id) for e in execs] == [
                (1, "failed", a.id), (2, "running", b.id),
            ]  # fmt: skip
            assert str(a.id) in (execs[0].error or "")  # the rescue names the lost worker

            GATES[2].set()
            done = await wait_for_status(app, job.id, "complete")
            assert (done.result, done.worker_id, done.attempts) == ("attempt 2", b.id, 2)
            b.stop(now=True)


@pytest.mark.parametrize("how", ["stop", "stop_now", "cancel"])
async def test_stopping_at_any_moment_leaves_no_job_claimed(app: Werk, how: str) -> None:
    # A stop can land while a claim is in flight: the server may have committed
    # it (rows active for this worker) when the poller is cancelled. Those
    # jobs never ran and must go back to queued, unspent -- not wait for a
    # sweep that would spend their only attempt.
    with trio.fail_after(30):
        await app.enqueue_many([EnqueueParams(noop) for _ in range(300)])
        for i in range(10):
            w = make_worker(app, concurrency=5)
            async with trio.open_nursery() as nursery:
                await nursery.start(w.run)
                await trio.sleep(0.002 * i)  # where in the claim/run/complete cycle the stop lands
                if how == "stop":
                    w.stop()
                elif how == "stop_now":
                    w.stop(now=True)
                else:
                    nursery.cancel_scope.cancel()
            assert await app.list_jobs(status=["active", "aborting"]) == []
            assert w.id not in await worker_ids(app)
        counts = (await app.counts())["default"]
        assert set(counts) <= {"complete", "queued"} and sum(counts.values()) == 300
        assert all(j.attempts == 0 for j in await app.list_jobs(status="queued", limit=300))


# --- a claim whose reply was lost ---------------------------------------------------


async def test_jobs_of_a_claim_whose_reply_was_lost_are_given_back(dsn: str, schema: str) -> None:
    """The claim commits on the server, but the connection dies before its reply
    arrives (a real proxy drops the reply and cuts the connection): the job is
    active for a live worker that never got it. The heartbeater finds it after
    ``grace`` and queues it again with the attempt unspent; it then runs once."""
    with trio.fail_after(30):
        async with (
            tcp_proxy(dsn) as (proxied, proxy),
            Werk(proxied, schema=schema, task_modules=["tests"]) as app,
        ):
            proxy.cut_reply_containing = b"lost_reply_marker"
            job = await app.enqueue(lost_reply_marker)
            assert job
            w = make_worker(app, heartbeat_interval=0.2)
            w.heartbeater.grace = 1.0
            async with running(w):
                await until(lambda: proxy.cuts == 1)  # the claim's reply was dropped
                lost = await app.get_job(job.id)  # ... but the claim had committed
                assert lost.status == "active"
                assert lost.worker_id == w.id and lost.attempts == 1
                assert not w.ledger.is_held(job.id)
                done = await wait_for_status(app, job.id, "complete")
            assert w.heartbeater.released == 1
            assert (done.attempts, done.result) == (1, "ran once")  # the lost attempt unspent
            # given back only after the grace, not by the first beat that saw it
            assert done.started_at is not None and lost.started_at is not None
            assert (done.started_at - lost.started_at).total_seconds() >= 1.0
            assert [(e.attempt, e.status) for e in await app.get_executions(job.id)] == [(1, "complete")]
