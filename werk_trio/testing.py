"""Helpers for your own test suites.

``run_until_idle(app)`` drains the queue with a burst worker in-process and
returns it (its ``stats`` say what happened). ``temporary_schema(dsn)`` gives a
Werk on a fresh schema that is dropped afterwards, so tests never share state.
Both talk to a real Postgres: werk_trio has no in-memory fake on purpose.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .app import Werk
from .tasks import caller_package
from .worker import Worker, worker_class

__all__ = ["run_until_idle", "temporary_schema"]


async def run_until_idle(app: Werk, *, worker_type: str = "async", **worker_kwargs: Any) -> Worker:
    """Run a burst worker until nothing is claimable and nothing runs; return it.

    ``worker_type`` is async, thread, process or fork (ConfigError otherwise);
    ``worker_kwargs`` go to the worker class. Cancellation: as the worker's
    ``run`` -- running jobs go back to the queue without spending an attempt.
    """
    worker_kwargs.setdefault("handle_signals", False)
    worker_kwargs.setdefault("poll_interval", 0.1)
    worker = worker_class(worker_type)(app, burst=True, **worker_kwargs)
    await worker.run()
    return worker


@asynccontextmanager
async def temporary_schema(dsn: str | None = None, **settings: Any) -> AsyncIterator[Werk]:
    """A connected Werk on a new schema ``werk_test_<random>``, dropped on exit.

    ``settings`` go to :class:`~werk_trio.Werk`; ConfigError if the database
    cannot be reached. The schema is dropped on exit whatever the body raised;
    if the exit is cancelled, the DROP may not run and the schema is left
    behind (its name starts with ``werk_test_``, safe to drop).
    """
    schema = f"werk_test_{uuid.uuid4().hex[:10]}"
    # the home package is the caller's (the test suite's), not werk_trio's
    settings.setdefault("home_package", caller_package() or "")
    app = Werk(dsn, schema=schema, **settings)
    async with app:
        try:
            yield app
        finally:
            async with app.connection() as conn:
                await conn.execute(app.sql.DROP_SCHEMA)
