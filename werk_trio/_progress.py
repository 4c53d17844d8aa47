"""Where ``ctx.set_progress`` writes: the job row's ``progress`` and
``progress_message`` (SET_PROGRESS, fenced by worker and attempt).

* :class:`WorkerProgress` -- handlers in the worker process. In the worker's
  own Trio loop the async form writes through the app's pool; from anywhere
  else (a thread of the pool, a Trio or asyncio loop of a thread, an asyncio
  coroutine through trio-asyncio) the write is handed to the worker's loop
  with ``trio.from_thread.run`` (from a helper thread where the caller runs an
  event loop of its own).
* :class:`ChildProgress` -- handlers in process and fork children, which have
  no pool: a plain (sync) psycopg connection of their own, opened at the
  first report and kept for the child's life. Both forms block the child
  for that one statement.

A report that cannot be written (the database is unreachable) is logged and
dropped: progress is advisory and never fails the job.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import psycopg
import sniffio
import trio

from .errors import WerkError

if TYPE_CHECKING:
    import uuid

    from .actors.wiring import Db
    from .jobs import Job

__all__ = ["ChildProgress", "WorkerProgress"]

logger = logging.getLogger("werk_trio.worker")


def _params(job: Job, worker_id: Any, fraction: float, message: str | None) -> dict[str, Any]:
    return {"progress": fraction, "message": message, "id": job.id, "worker_id": worker_id,
            "attempt": job.attempts}  # fmt: skip


class WorkerProgress:
    def __init__(self, db: Db, worker_id: uuid.UUID) -> None:
        self.db = db
        self.worker_id = worker_id
        self.token: trio.lowlevel.TrioToken | None = None  # the worker's loop, set by the runner

    async def _write(self, job: Job, fraction: float, message: str | None) -> None:
        db = self.db
        try:
            async with db.pool.connection() as conn:
                await conn.execute(db.sql.SET_PROGRESS, _params(job, self.worker_id, fraction, message))
        except psycopg.OperationalError as ex:
            logger.warning("could not store the progress of job %s (%s)", job.id, ex)

    async def set(self, job: Job, fraction: float, message: str | None) -> None:
        library = sniffio.current_async_library()
        if library == "trio":
            if trio.lowlevel.current_trio_token() is self.token:
                await self._write(job, fraction, message)
            else:  # a Trio loop of a ThreadWorker thread
                await trio.to_thread.run_sync(self.set_sync, job, fraction, message)
        elif library == "asyncio":
            await asyncio.get_running_loop().run_in_executor(None, self.set_sync, job, fraction, message)
        else:
            self.set_sync(job, fraction, message)

    def set_sync(self, job: Job, fraction: float, message: str | None) -> None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            raise WerkError(
                "ctx.set_progress_sync() blocks: in an async handler use `await ctx.set_progress(...)`"
            )
        assert self.token is not None
        trio.from_thread.run(self._write, job, fraction, message, trio_token=self.token)

    def for_child(self) -> ChildProgress:
        return ChildProgress(self.db.dsn, self.db.sql.SET_PROGRESS, self.worker_id)


_child_conn: dict[str, psycopg.Connection[Any]] = {}


class _ChildStatements:
    """The one named statement a child needs, as the app rendered it."""

    def __init__(self, set_progress: str) -> None:
        self.SET_PROGRESS = set_progress


class ChildProgress:
    """Picklable: travels to the child inside its Context snapshot."""

    def __init__(self, dsn: str, statement: str, worker_id: Any) -> None:
        self.dsn = dsn
        self.sql = _ChildStatements(statement)
        self.worker_id = worker_id

    async def set(self, job: Job, fraction: float, message: str | None) -> None:
        self.set_sync(job, fraction, message)

    def set_sync(self, job: Job, fraction: float, message: str | None) -> None:
        params = _params(job, self.worker_id, fraction, message)
        for _ in range(2):  # a connection lost since the last report: reconnect once
            conn = _child_conn.get(self.dsn)
            try:
                if conn is None or conn.closed:
                    conn = _child_conn[self.dsn] = psycopg.connect(self.dsn, autocommit=True)
                conn.execute(self.sql.SET_PROGRESS, params)
                return
            except psycopg.OperationalError as ex:
                _child_conn.pop(self.dsn, None)
                error = ex
        logger.warning("could not store the progress of job %s (%s)", job.id, error)
