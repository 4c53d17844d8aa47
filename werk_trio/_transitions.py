"""Job-state transitions: what happens, in the database, when jobs end.

"These jobs just ended" is written once, here, below both the app and the
actors: :func:`jobs_ended` wakes their waiters on the done channel, resolves
their waiting dependents (queued, or failed with DependencyFailed, cascading
to every level), deletes the failed ones with ``failure_mode="delete"``
(after their dependents saw them failed) and, when asked, returns the failed
jobs that have an ``_on_failure`` callback for the worker to run. Its
callers: ``Werk`` (cancel, delete, bulk cancel), the sweeper (rescued and
expired jobs) and the completer (jobs its batch failed through a
dependency; the batch's own first level is pipelined in its write).

Every function runs inside the caller's transaction and raises what the
database raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._rows import job_from_row
from .errors import SerializationError

if TYPE_CHECKING:
    from .jobs import Job
    from .serializers import Serializer
    from .sql import Statements

__all__ = ["jobs_ended", "notify_done", "resolve_dependents"]

logger = logging.getLogger("werk_trio.worker")

#: Longest NOTIFY payload of comma-joined ids (Postgres allows 8000 bytes).
MAX_DONE_PAYLOAD = 7000


async def jobs_ended(
    conn: Any, sql: Statements, ids: list[Any], *, may_be_failed: bool = True,
    decode: tuple[Serializer, Callable[[str], bool] | None] | None = None,
) -> list[Job]:
    """``ids`` just ended, in the transaction that ended them. ``may_be_failed``:
    some of them may be ``failed`` (False for cancels and deletes: the
    failure_mode="delete" pass then only covers their failed dependents).
    ``decode`` (serializer, decode allow-list): return the jobs failed here --
    ``ids`` and their failed dependents -- that have an ``_on_failure``
    callback (a row that does not decode has none); otherwise return []."""
    await notify_done(conn, sql, ids)
    failed = await resolve_dependents(conn, sql, ids)
    with_callbacks: list[Job] = []
    if decode is not None:
        with_callbacks = await _failure_callbacks(conn, sql, ids + failed, *decode)
    doomed = ids + failed if may_be_failed else failed
    if doomed:  # after the dependents saw them failed
        await conn.execute(sql.DELETE_FAILED, {"ids": doomed})
    return with_callbacks


async def _failure_callbacks(
    conn: Any, sql: Statements, ids: list[Any], serializer: Serializer,
    allowed: Callable[[str], bool] | None,
) -> list[Job]:
    cur = await conn.execute(sql.GET_JOBS, {"ids": ids})
    jobs = []
    for row in await cur.fetchall():
        try:
            job = job_from_row(row, serializer, allowed)
        except SerializationError as ex:
            logger.warning("job %s failed (a dependency failed); its row does not decode: %s", row[0], ex)
            continue
        if job.on_failure is not None:
            jobs.append(job)
    return jobs


async def resolve_dependents(conn: Any, sql: Statements, parents: list[Any]) -> list[Any]:
    """Queue (or fail) the waiting dependents of ``parents``, cascading failures;
    return the ids of the jobs it failed (DependencyFailed), at every level.

    Runs inside the caller's transaction: the dependents are locked first, then
    resolved by a new statement, which sees every committed parent status. The
    caller deletes the failed ``failure_mode="delete"`` ones (DELETE_FAILED)
    once this returns: their own dependents must see them failed first."""
    failed: list[Any] = []
    ids = parents
    while ids:
        cur = await conn.execute(sql.LOCK_DEPENDENTS, {"ids": ids})
        dependents = [r[0] for r in await cur.fetchall()]
        if not dependents:
            break
        cur = await conn.execute(sql.RESOLVE_WAITING, {"ids": dependents})
        ids = [r[0] for r in await cur.fetchall() if r[1] == "failed"]
        if ids:
            failed += ids
            await notify_done(conn, sql, ids)
    return failed


async def notify_done(conn: Any, sql: Statements, ids: list[Any]) -> None:
    """One NOTIFY for a batch of finished jobs: comma-joined ids, or ``*`` when
    they would not fit in a payload."""
    text = ",".join(str(i) for i in ids)
    if len(text) > MAX_DONE_PAYLOAD:
        text = "*"
    await conn.execute(sql.NOTIFY_DONE, {"payload": text})

