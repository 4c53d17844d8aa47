"""Issue 5, what happens around a job's runs: Repeat, TTLs, failure mode, callbacks.

Two worker processes serve each test's queue; runs are read from the side
table (``proc_runs``, written by the handlers) and callback runs from
``proc_events`` (written by the callbacks), both on the database clock.
"""

from __future__ import annotations

import itertools
import signal
from pathlib import Path
from typing import Any

import trio

from tests import procapp
from tests._support import runs
from tests.proctools import describe
from werk_trio import Callback, Dependency, ExecutionStatus, JobNotFound, JobStatus, Repeat, Retry, Werk
from werk_trio.testing import until, wait_for_status

from ._semantics_support import (
    events,
    make_tables,
    query,
    status_of,
    wait_terminal,
    workers,
)

POLL = 0.1  # the workers' poll_interval (FAST)


async def _series(app: Werk, queue: str, n: int) -> list[Any]:
    """The ``n`` rows of a repeating job's runs (one queue each), once all ended, oldest first."""
    while True:
        rows = sorted(await app.list_jobs(queue=queue), key=lambda j: (j.enqueued_at, j.id))
        if len(rows) >= n and all(j.is_terminal for j in rows):
            return rows
        await trio.sleep(0.05)


async def test_repeat_runs_again_after_each_success_at_the_given_delays(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """pgwerk's form: every run is a row of its own, complete with its own
    result and execution, and the next run is a new row scheduled at the
    delay."""
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        async with workers(
            app, dsn, schema, tmp_path, "--queues", "rep_a,rep_b,rep_c", "--sweep-interval", "600"
        ) as children:
            fixed = await app.enqueue(procapp.record, _queue="rep_a", _repeat=Repeat(3, interval=0.3))
            listed = await app.enqueue(
                procapp.record, _queue="rep_b", _repeat=Repeat(3, intervals=[0.2, 0.5])
            )
            failing = await app.enqueue(procapp.fail, _queue="rep_c", _repeat=Repeat(2, interval=0))
            assert fixed and listed and failing
            assert fixed.repeat_remaining == 3
            first = await app.wait_for(fixed.id, timeout=30)
            series = {q: await _series(app, q, 4) for q in ("rep_a", "rep_b")}
            ended = await wait_terminal(app, [failing.id])
            for child in children:
                assert "Traceback" not in child.output(), child.output()
        pids = {c.pid for c in children}
        # wait_for on the first id returns when the first run ends
        assert first.status is JobStatus.COMPLETE and first.repeat_remaining == 3
        for (queue, rows), delays in zip(series.items(), ([0.3, 0.3, 0.3], [0.2, 0.5, 0.5]), strict=True):
            assert rows[0].id == (fixed if queue == "rep_a" else listed).id
            assert len(rows) == 1 + len(delays), f"{len(rows)} runs"
            assert [r.repeat_remaining for r in rows] == [3, 2, 1, 0]
            side = []
            for row in rows:
                assert row.status is JobStatus.COMPLETE and row.attempts == 1
                assert row.result in pids, "each run keeps its own result"
                executions = await app.get_executions(row.id)
                assert [e.status for e in executions] == [ExecutionStatus.COMPLETE]
                assert executions[0].result == row.result
                (run,) = await runs(app, row.id)
                side.append(run)
            gaps = [(b["started_at"] - a["ended_at"]).total_seconds() for a, b in itertools.pairwise(side)]
            measured = [round(g, 3) for g in gaps]
            print(f"Repeat delays {delays}: measured {measured} s, on pids {[r['pid'] for r in side]}")
            for gap, delay in zip(gaps, delays, strict=True):
                assert delay <= gap <= delay + POLL + 0.4, (gaps, delays)
        # a failure ends the repeats: one run, failed, no more rows
        assert ended[failing.id].status is JobStatus.FAILED
        assert len(await runs(app, failing.id)) == 1
        assert len(await app.list_jobs(queue="rep_c")) == 1


async def test_ttl_expires_a_job_that_could_not_start_in_time(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """A job stuck behind its group's running job past its _ttl never runs,
    even once the group is free; the sweeper marks it aborted."""
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        async with workers(
            app, dsn, schema, tmp_path, "--queues", "ttl", "--sweep-interval", "0.2"
        ) as children:
            blocker = await app.enqueue(procapp.sleep_job, 1.0, _queue="ttl", _group="g")
            assert blocker
            await until(lambda: runs(app, blocker.id))
            expiring = await app.enqueue(procapp.record, _queue="ttl", _group="g", _ttl=0.3)
            survivor = await app.enqueue(procapp.record, _queue="ttl", _group="g", _ttl=30)
            assert expiring and survivor and expiring.expires_at is not None
            expired = await wait_for_status(app, expiring.id, JobStatus.ABORTED, JobStatus.COMPLETE)
            ended = await wait_terminal(app, [blocker.id, survivor.id])
            for child in children:
                assert "Traceback" not in child.output(), child.output()
        assert expired.status is JobStatus.ABORTED
        assert "expired" in (expired.error or "")
        assert expired.completed_at is not None and expired.completed_at >= expiring.expires_at
        assert expired.attempts == 0
        assert ended[survivor.id].status is JobStatus.COMPLETE
        ran = {r["job_id"] for r in await runs(app)}
        assert expiring.id not in ran, "an expired job ran"
        assert {blocker.id, survivor.id} <= ran
        assert await app.get_executions(expiring.id) == []


async def _seen_gone(app: Werk, ended: dict[Any, Any], job_ids: list[Any]) -> dict[Any, float]:
    """Poll until every row is gone; for each, how long after its completed_at
    (database clock) it was first seen gone."""
    out: dict[Any, float] = {}
    while len(out) < len(job_ids):
        [(now,)] = await query(app, "SELECT now()")
        for job_id in job_ids:
            if job_id not in out and await status_of(app, job_id) is None:
                out[job_id] = float((now - ended[job_id].completed_at).total_seconds())
        await trio.sleep(0.02)
    return out


async def test_result_and_failure_ttl_rows_are_deleted_by_the_sweeper(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        async with workers(
            app, dsn, schema, tmp_path, "--queues", "keep", "--sweep-interval", "0.2"
        ) as children:
            short = await app.enqueue(procapp.record, _queue="keep", _result_ttl=0.6)
            zero = await app.enqueue(procapp.record, _queue="keep", _result_ttl=0)
            broke = await app.enqueue(procapp.fail, _queue="keep", _failure_ttl=0.6)
            kept = await app.enqueue(procapp.record, _queue="keep")
            kept_failed = await app.enqueue(procapp.fail, _queue="keep")
            long = await app.enqueue(procapp.record, _queue="keep", _result_ttl=3600)
            assert short and zero and broke and kept and kept_failed and long
            ended = await wait_terminal(app, [short.id, broke.id, kept.id, kept_failed.id, long.id])
            assert ended[short.id].status is JobStatus.COMPLETE
            assert ended[broke.id].status is JobStatus.FAILED
            gone = await _seen_gone(app, ended, [short.id, broke.id])
            after_short, after_broke = gone[short.id], gone[broke.id]

            async def zero_gone() -> bool:
                return await status_of(app, zero.id) is None

            await until(zero_gone)
            for child in children:
                assert "Traceback" not in child.output(), child.output()
        print(
            f"_result_ttl=0.6 row seen gone {after_short:.2f}s after completion, "
            f"_failure_ttl=0.6 {after_broke:.2f}s"
        )
        # deleted no earlier than the ttl (we saw the row after completion) and
        # within a few sweeps after it
        assert 0.6 <= after_short <= 0.6 + 1.5
        assert 0.6 <= after_broke <= 0.6 + 1.5
        assert {r["job_id"] for r in await runs(app)} >= {short.id, zero.id, broke.id}
        for job in (kept, kept_failed, long):
            assert await status_of(app, job.id) is not None, "rows without a (due) ttl stay"


async def test_failure_mode_delete_removes_the_row_when_it_fails_for_good(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        async with workers(
            app, dsn, schema, tmp_path, "--queues", "fm", "--sweep-interval", "600"
        ) as children:
            doomed = await app.enqueue(
                procapp.fail, _queue="fm", _retry=Retry(2, 0.5), _failure_mode="delete"
            )
            held = await app.enqueue(procapp.fail, _queue="fm")
            fine = await app.enqueue(procapp.record, _queue="fm", _failure_mode="delete")
            assert doomed and held and fine
            child = await app.enqueue(procapp.record, _queue="fm", _depends_on=doomed)
            lenient = await app.enqueue(
                procapp.record, _queue="fm", _depends_on=Dependency(doomed, allow_failure=True)
            )
            assert child and lenient
            # a dependent that fails with DependencyFailed is deleted too, and so is its own
            # delete-mode dependent, while a hold-mode one after it stays failed
            gone_child = await app.enqueue(
                procapp.record, _queue="fm", _depends_on=doomed, _failure_mode="delete"
            )
            gone_grandchild = await app.enqueue(
                procapp.record, _queue="fm", _depends_on=gone_child, _failure_mode="delete"
            )
            kept_grandchild = await app.enqueue(procapp.record, _queue="fm", _depends_on=gone_child)
            assert gone_child and gone_grandchild and kept_grandchild
            dependents = await app.get_jobs(
                [j.id for j in (child, lenient, gone_child, gone_grandchild, kept_grandchild)]
            )
            assert all(j.status is JobStatus.WAITING for j in dependents.values()), "doomed ended too soon"
            # between its attempts the row is there, waiting for the retry
            between = await wait_for_status(app, doomed.id, JobStatus.SCHEDULED)
            assert between.attempts == 1
            seen: set[JobStatus | None] = set()
            while True:
                status = await status_of(app, doomed.id)
                seen.add(status)
                if status is None:
                    break
                await trio.sleep(0.005)
            ended = await wait_terminal(app, [held.id, fine.id, child.id, lenient.id, kept_grandchild.id])
            for c in children:
                assert "Traceback" not in c.output(), c.output()
        assert JobStatus.FAILED not in seen, "the failed row was visible before its deletion"
        assert [r["attempt"] for r in await runs(app, doomed.id)] == [1, 2]
        assert await app.get_executions(doomed.id) == []
        try:
            await app.get_job(doomed.id)
            raise AssertionError("the row is still there")
        except JobNotFound:
            pass
        assert ended[held.id].status is JobStatus.FAILED, "the default mode holds failed rows"
        assert ended[fine.id].status is JobStatus.COMPLETE, "delete mode keeps successful rows"
        assert ended[child.id].status is JobStatus.FAILED and "DependencyFailed" in (
            ended[child.id].error or ""
        )
        assert ended[lenient.id].status is JobStatus.COMPLETE
        assert await status_of(app, gone_child.id) is None
        assert await status_of(app, gone_grandchild.id) is None
        kept = ended[kept_grandchild.id]
        assert kept.status is JobStatus.FAILED and str(gone_child.id) in (kept.error or "")
        ran = {r["job_id"] for r in await runs(app)}
        assert not ran & {gone_child.id, gone_grandchild.id, kept_grandchild.id}


async def test_failure_mode_delete_for_dependents_of_a_cancelled_job(app: Werk) -> None:
    """No worker involved: cancelling a parent fails its dependents at once,
    and the delete-mode ones are deleted in that transaction."""
    with trio.fail_after(30):
        parent = await app.enqueue(procapp.record, _queue="idle")
        assert parent
        gone = await app.enqueue(procapp.record, _queue="idle", _depends_on=parent, _failure_mode="delete")
        held = await app.enqueue(procapp.record, _queue="idle", _depends_on=parent)
        assert gone and held
        await app.cancel_job(parent.id)
        assert await status_of(app, gone.id) is None
        row = await app.get_job(held.id)
        assert row.status is JobStatus.FAILED and "DependencyFailed" in (row.error or "")


async def test_callbacks_run_once_per_terminal_outcome_and_never_change_it(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        async with workers(
            app, dsn, schema, tmp_path, "--queues", "cb", "--sweep-interval", "600"
        ) as children:
            successes = [
                await app.enqueue(procapp.record, _queue="cb", _on_success=procapp.cb_record)
                for _ in range(20)
            ]
            failures = [
                await app.enqueue(
                    procapp.fail, "cb boom", _queue="cb", _retry=2, _on_failure="tests.procapp.cb_record"
                )
                for _ in range(5)
            ]
            all_three = await app.enqueue(
                procapp.record,
                _queue="cb",
                _on_success=procapp.cb_record,
                _on_failure=procapp.cb_raise,
                _on_stopped=procapp.cb_raise,
            )
            sync = await app.enqueue(
                procapp.record, _queue="cb", _on_success=Callback(procapp.cb_record_sync, 5)
            )
            slow = await app.enqueue(
                procapp.record, _queue="cb", _on_success=Callback(procapp.cb_slow, timeout=0.5)
            )
            raising = await app.enqueue(procapp.record, _queue="cb", _on_success=procapp.cb_raise)
            # (delayed, so that the dependents below are enqueued while it is pending)
            raising_failure = await app.enqueue(
                procapp.fail, _queue="cb", _on_failure=procapp.cb_raise, _delay=0.5
            )
            stopped = await app.enqueue(
                procapp.sleep_job, 60, _queue="cb", _on_stopped=Callback(procapp.cb_record, timeout=5)
            )
            # failed by a dependency (and by that failure in turn): on_failure runs too
            orphan = await app.enqueue(
                procapp.record, _queue="cb", _depends_on=raising_failure, _on_failure=procapp.cb_record
            )
            grand_orphan = await app.enqueue(
                procapp.record, _queue="cb", _depends_on=orphan, _on_failure=procapp.cb_record
            )
            assert orphan and grand_orphan
            assert (await app.get_job(raising_failure.id)).status is JobStatus.SCHEDULED, (
                "too slow to enqueue"
            )
            jobs = [*successes, *failures, all_three, sync, slow, raising, raising_failure, stopped, orphan]
            jobs.append(grand_orphan)
            assert all(jobs)
            await until(lambda: runs(app, stopped.id))
            await app.abort_job(stopped.id)
            ended = await wait_terminal(app, [j.id for j in jobs if j])

            expected = {j.id: 1 for j in jobs if j}

            async def all_ran() -> bool:
                got = await events(app)
                have = {e["job_id"] for e in got}
                return set(expected) <= have and any(e["kind"] == "cb_slow_start" for e in got)

            await until(all_ran)

            async def logged() -> bool:  # the slow one cut off, the raising ones logged
                text = "".join(c.output() for c in children)
                return "cut off after 0.5s" in text and text.count("callback exploded") >= 2

            await until(logged)
            for child in children:  # then stop them: anything still pending would be flushed
                child.send_signal(signal.SIGTERM)
            codes = [await c.wait() for c in children]
            assert codes == [0, 0], describe(children)
        logs = "".join(c.output() for c in children)

        got = await events(app)
        per_job: dict[Any, list[str]] = {}
        for e in got:
            per_job.setdefault(e["job_id"], []).append(e["kind"])
        assert {k: len(v) for k, v in per_job.items()} == expected, "each callback ran exactly once per job"
        for job in successes:
            assert job and ended[job.id].status is JobStatus.COMPLETE
            [e] = [e for e in got if e["job_id"] == job.id]
            assert (
                e["kind"] == "cb_record" and "app=True" in e["detail"] and e["detail"].endswith("exception=")
            )
            assert e["pid"] == _ran_on(ended, job.id), "the callback runs in the worker that ran the job"
            # the Context's job is the job as it ended: complete, with its result
            assert e["detail"].startswith(f"status=complete result={ended[job.id].result!r} "), e["detail"]
        for job in failures:
            assert job and ended[job.id].status is JobStatus.FAILED and ended[job.id].attempts == 2
            [e] = [e for e in got if e["job_id"] == job.id]
            assert "cb boom" in e["detail"] and e["detail"].startswith("status=failed result=None"), e
        assert per_job[all_three.id] == ["cb_record"]  # only the outcome's own callback
        assert per_job[sync.id] == ["cb_record_sync"]
        assert per_job[slow.id] == ["cb_slow_start"], "the slow callback was cut off before its end"
        assert per_job[stopped.id] == ["cb_record"]
        [e] = [e for e in got if e["job_id"] == stopped.id]
        assert e["detail"].startswith("status=aborted"), e
        for job in (orphan, grand_orphan):
            assert job and ended[job.id].status is JobStatus.FAILED
            [e] = [e for e in got if e["job_id"] == job.id]
            assert e["detail"].startswith("status=failed") and "DependencyFailed" in e["detail"], e
        assert ended[stopped.id].status is JobStatus.ABORTED
        for job in (all_three, sync, slow, raising):
            assert job and ended[job.id].status is JobStatus.COMPLETE, ended[job.id]
        assert ended[raising_failure.id].status is JobStatus.FAILED
        assert "callback exploded" in logs and "raised" in logs
        assert "cut off after 0.5s" in logs


def _ran_on(ended: dict[Any, Any], job_id: Any) -> int | None:
    """The pid of the worker that completed the job (record returns it)."""
    result = ended[job_id].result
    return result if isinstance(result, int) else None
