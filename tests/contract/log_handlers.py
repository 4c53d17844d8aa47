"""Handlers for the logging contract (test_logging.py): each makes a log
record while its job runs and returns what the record carries -- the job
fields the record factory put on it, and the line the worker's own werk_trio
handler (configure_logging's, copied into child processes) makes of it.

The first attempt of each job fails on purpose (a marker file in the
directory the test passes), so the record of the second shows attempt 2.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import trio

from werk_trio import asyncio_handler

_HANDLER_MARK = "_werk_trio_handler"


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _second_attempt(directory: str, tag: str) -> None:
    marker = Path(directory) / f"{tag}.first"
    if not marker.exists():
        marker.write_text("")
        raise RuntimeError("first attempt fails on purpose")


def _log(tag: str) -> dict[str, Any]:
    """Log one record on a user logger; what it carried."""
    logger = logging.getLogger("tests.contract.user")
    keep = _Keep()
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    try:
        logger.info("inside %s", tag)
    finally:
        logger.removeHandler(keep)
    [record] = keep.records
    ours = [h for h in logging.getLogger("werk_trio").handlers if getattr(h, _HANDLER_MARK, False)]
    return {
        "job_id": getattr(record, "job_id", None),
        "job_function": getattr(record, "job_function", None),
        "job_attempt": getattr(record, "job_attempt", None),
        "line": ours[0].format(record) if ours else None,
    }


async def trio_log(directory: str, tag: str) -> dict[str, Any]:
    _second_attempt(directory, tag)
    out: dict[str, Any] = {}

    async def child() -> None:  # a task the handler starts sees the job too
        out.update(_log(tag))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(child)
    return out


def sync_log(directory: str, tag: str) -> dict[str, Any]:
    _second_attempt(directory, tag)
    return _log(tag)


@asyncio_handler
async def asyncio_log(directory: str, tag: str) -> dict[str, Any]:
    _second_attempt(directory, tag)
    await asyncio.sleep(0)
    return _log(tag)


HANDLERS = {"trio": trio_log, "sync": sync_log, "asyncio": asyncio_log}
