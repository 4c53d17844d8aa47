"""Logging contract, over every worker type and handler kind: a log record
made while a job runs -- on any logger, in the worker's loop, a thread, a
Trio task the handler started, a process-pool child or a forked child --
carries the job's id, function and attempt, and the worker's configured
format (configure_logging's, with its custom format string) is the one the
child processes use too. Outside a job, records carry nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from werk_trio import Werk, configure_logging
from werk_trio import _logging as wlog
from werk_trio.worker import worker_class

from . import log_handlers

WORKER_TYPES = ["async", "thread", "process", "fork"]
KINDS = ["trio", "sync", "asyncio"]
FMT = "%(job_id)s|%(job_function)s|%(job_attempt)s|%(message)s"


@pytest.fixture
def configured() -> Iterator[None]:
    """configure_logging with a custom format for the test; undone afterwards."""
    logger = logging.getLogger("werk_trio")
    level, propagate = logger.level, logger.propagate
    configure_logging("INFO", fmt=FMT, color=False)
    try:
        yield
    finally:
        for handler in list(logger.handlers):
            if getattr(handler, "_werk_trio_handler", False):
                logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        wlog.active_setup = None


@pytest.fixture
async def log_app(dsn: str, schema: str, configured: None) -> AsyncIterator[Werk]:
    werk = Werk(dsn, schema=schema, task_modules=["tests.contract.log_handlers"])
    async with werk:
        yield werk


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("worker_type", WORKER_TYPES)
async def test_every_record_in_a_job_carries_it(
    log_app: Werk, worker_type: str, kind: str, tmp_path: Path
) -> None:
    app = log_app
    with trio.fail_after(60):
        worker = worker_class(worker_type)(app, concurrency=1, poll_interval=0.1, handle_signals=False,
                                           burst=True)
        job = await app.enqueue(log_handlers.HANDLERS[kind], str(tmp_path), kind, _retry=2)
        assert job
        await worker.run()
        done = await app.get_job(job.id)
        assert done.status == "complete", done.error
        assert done.result == {
            "job_id": str(job.id), "job_function": job.function, "job_attempt": 2,
            "line": f"{job.id}|{job.function}|2|inside {kind}",
        }  # fmt: skip


async def test_records_outside_a_job_carry_none(log_app: Werk, tmp_path: Path) -> None:
    with trio.fail_after(30):
        job = await log_app.enqueue(log_handlers.sync_log, str(tmp_path), "x", _retry=2)
        assert job
        await worker_class("async")(log_app, burst=True, handle_signals=False).run()
        assert (await log_app.get_job(job.id)).status == "complete"
        record = logging.getLogger("tests.contract.user").makeRecord(
            "tests.contract.user", logging.INFO, __file__, 1, "after", None, None
        )
        assert not hasattr(record, "job_id")
        handlers = logging.getLogger("werk_trio").handlers
        [ours] = [h for h in handlers if getattr(h, "_werk_trio_handler", False)]
        assert ours.format(record) == "-|-|-|after", "the format's job fields default to '-'"
