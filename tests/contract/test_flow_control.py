"""Handler-side flow control in every executor (async, thread, process, fork)
and every handler kind (Trio, plain, asyncio): ``Snooze``, ``Cancel`` and
``ctx.set_progress`` / ``set_progress_sync``.

Real workers, real child processes, a real Postgres. A child reports progress
over a connection of its own, so these also prove that path works from a
spawned process and from a fork.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import trio

from werk_trio import JobStatus, Werk
from werk_trio.testing import running, until, wait_for_status

from . import handlers as h
from .test_executors import KINDS, WORKER_TYPES, make_worker

every_executor_and_kind = pytest.mark.parametrize(
    ("worker_type", "kind"), [(w, k) for w in WORKER_TYPES for k in KINDS]
)


@every_executor_and_kind
async def test_snooze_reschedules_without_spending_an_attempt(
    app: Werk, tmp_path: Path, worker_type: str, kind: str
) -> None:
    with trio.fail_after(30):
        job = await app.enqueue(h.SNOOZE[kind], str(tmp_path), 0.4)  # one attempt only
        assert job
        async with running(make_worker(app, worker_type)):
            done = await wait_for_status(app, job.id, "complete", "failed", "aborted")
        assert done.status is JobStatus.COMPLETE, done.error
        # it ran twice (the marker of the first run is there), both as attempt 1:
        # with max_attempts=1 a spent attempt would have left nothing to run
        assert (tmp_path / "snoozed").exists()
        assert done.result == {"kind": kind, "attempts": 1}
        assert done.attempts == 1
        # the second run waited the snooze out, from the database's clock
        assert done.started_at is not None
        assert done.started_at - done.enqueued_at >= timedelta(seconds=0.4)
        # a snooze is no failed attempt: no execution row for it
        executions = await app.get_executions(job.id)
        assert [(e.attempt, e.status.value) for e in executions] == [(1, "complete")]


@every_executor_and_kind
async def test_cancel_ends_the_job_aborted_without_retry(
    app: Werk, tmp_path: Path, worker_type: str, kind: str
) -> None:
    with trio.fail_after(30):
        job = await app.enqueue(h.CANCEL[kind], str(tmp_path), "customer left", _retry=3)
        assert job
        async with running(make_worker(app, worker_type)):
            done = await wait_for_status(app, job.id, "complete", "failed", "aborted")
        assert done.status is JobStatus.ABORTED
        assert done.attempts == 1, "Cancel must not retry"
        assert "Cancel" in (done.error or "") and "customer left" in (done.error or "")
        assert (tmp_path / "ran").exists()


@every_executor_and_kind
async def test_progress_is_visible_while_running_and_after(
    app: Werk, tmp_path: Path, worker_type: str, kind: str
) -> None:
    with trio.fail_after(30):
        job = await app.enqueue(h.PROGRESS[kind], str(tmp_path))
        assert job
        async with running(make_worker(app, worker_type)):

            async def halfway() -> bool:
                seen = await app.get_job(job.id)
                return seen.status is JobStatus.ACTIVE and seen.progress == 0.5

            await until(halfway)
            seen = await app.get_job(job.id)
            assert seen.progress_message == "halfway"
            (tmp_path / "go").write_text("")
            done = await wait_for_status(app, job.id, "complete", "failed")
        assert done.status is JobStatus.COMPLETE, done.error
        assert done.result == kind
        assert (done.progress, done.progress_message) == (1.0, "done")
