"""Issue 10: an outcome Postgres cannot store as it is fails (or is stored
escaped) for that job alone -- in every worker type, beside a bystander job of
the same batch that must complete, and the worker keeps running.

* An error with a NUL or a lone surrogate is stored with the character
  replaced visibly (``\\x00``, ``\\udcff``): the handler's message stays
  readable, the job ends ``failed``.
* A result with a lone surrogate (JSON): stored as its ``\\uXXXX`` escape, so
  it decodes to the very same string; the job completes. A result from
  ``os.listdir`` of a directory holding a non-UTF-8 name is the real case.
* A result over ``max_result_bytes``: the job fails, final, saying so.
* An error text over the cap keeps its start and end, the middle cut out.

Without the fixes the completer died on ``UntranslatableCharacter`` /
``UnicodeEncodeError`` and the bystander ended ``failed: worker lost``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from werk_trio import JobStatus, Werk
from werk_trio.actors.runner import MAX_ERROR_CHARS
from werk_trio.testing import running, wait_for_status

from . import outcome_handlers as oh
from .test_executors import WORKER_TYPES, make_worker

RESULT_LIMIT = 4096


@pytest.fixture(params=WORKER_TYPES)
def worker_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def small_app(dsn: str, schema: str) -> Werk:  # type: ignore[misc]
    werk = Werk(dsn, schema=schema, task_modules=["tests.contract"], max_result_bytes=RESULT_LIMIT)
    async with werk:
        yield werk


async def test_unstorable_outcomes_fail_alone(small_app: Werk, worker_type: str, tmp_path: Path) -> None:
    app = small_app
    odd = tmp_path / "names"
    odd.mkdir()
    (odd / os.fsdecode(b"caf\xe9.txt")).write_text("x")  # a Latin-1 name: not UTF-8
    with trio.fail_after(90):
        # all enqueued before the worker starts, so claims and batches mix them
        cases = {
            "raise_nul": await app.enqueue(oh.raise_nul, 1),
            "raise_surrogate": await app.enqueue(oh.raise_surrogate, 2),
            "return_nul": await app.enqueue(oh.return_nul, 3),
            "return_surrogate": await app.enqueue(oh.return_surrogate, 4),
            "listdir": await app.enqueue(oh.surrogate_from_listdir, str(odd)),
            "oversize_result": await app.enqueue(oh.oversize_result, RESULT_LIMIT * 2),
            "oversize_error": await app.enqueue(oh.oversize_error, MAX_ERROR_CHARS * 3),
        }
        bystanders = [await app.enqueue(oh.bystander, i) for i in range(6)]
        worker = make_worker(app, worker_type, concurrency=4)
        async with running(worker):
            done = {name: await wait_for_status(app, job.id, "complete", "failed")  # type: ignore[union-attr]
                    for name, job in cases.items()}
            ends = [await wait_for_status(app, job.id, "complete", "failed") for job in bystanders]  # type: ignore[union-attr]
            # the worker is still alive and claiming
            late = await app.enqueue(oh.bystander, 100)
            assert late is not None
            assert (await wait_for_status(app, late.id, "complete", "failed")).result == 200
    for i, end in enumerate(ends):
        assert end.status is JobStatus.COMPLETE, end.error
        assert end.result == 2 * i
    nul = done["raise_nul"]
    assert nul.status is JobStatus.FAILED
    assert "ValueError: byte \\x00 in the error of 1" in (nul.error or "")
    sur = done["raise_surrogate"]
    assert sur.status is JobStatus.FAILED
    assert "file x\\udcff2 is not UTF-8" in (sur.error or "")
    assert done["return_nul"].status is JobStatus.COMPLETE
    assert done["return_nul"].result == "a\x00b3"  # JSON escapes NUL itself
    assert done["return_surrogate"].status is JobStatus.COMPLETE, done["return_surrogate"].error
    assert done["return_surrogate"].result == "x\udcff4"  # the very same string back
    listed = done["listdir"]
    assert listed.status is JobStatus.COMPLETE, listed.error
    assert listed.result == [os.fsdecode(b"caf\xe9.txt")]
    big = done["oversize_result"]
    assert big.status is JobStatus.FAILED
    assert f"over max_result_bytes ({RESULT_LIMIT})" in (big.error or "")
    assert big.attempts == 1
    long = done["oversize_error"]
    assert long.status is JobStatus.FAILED
    error = long.error or ""
    assert len(error) < MAX_ERROR_CHARS + 200
    assert "characters cut" in error
    assert error.startswith("Traceback") or "RuntimeError" in error[:200] or "RuntimeError" in error[-200:]
    assert error.rstrip().endswith("e" * 50)
