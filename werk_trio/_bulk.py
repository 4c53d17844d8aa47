"""Bulk enqueue through binary COPY.

A batch of plain jobs -- no ``_key``, no dependency, no time computed from
``now()`` (:attr:`RowBuilder.copyable`) -- is inserted with ``COPY ... FROM
STDIN (FORMAT BINARY)`` instead of INSERT_JOBS: the server skips parsing one
JSON array of the whole batch, and the client sends typed binary values. The
result is the same rows and the same Jobs as INSERT_JOBS gives: status and times
are the column defaults (``queued``, the transaction's ``now()``, which is the
``now()`` read back in the same transaction), and one NOTIFY per queue wakes the
workers when the transaction commits.

Below :data:`COPY_MIN_ROWS` rows the single INSERT_JOBS round trip is cheaper
than COPY's four (BEGIN, COPY, the NOTIFY, COMMIT; inside the caller's transaction two).

On a connection of its own (no ``_conn=``), :func:`stream_jobs` validates and
encodes the batch in steps of :data:`STREAM_ROWS` while the COPY is open, so
the server inserts one step's rows while the next step is built here (the
building is about as long as the server's insert: done one after the other,
each waited for the other). A validation error in any step ends the COPY and
rolls its transaction back: nothing is inserted, as before. A batch that turns
out to need INSERT_JOBS (a row with an option the chosen column set lacks) is
rolled back the same way and enqueued again by the general path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import pq

from ._rows import RowBuilder, gc_paused
from .db import Connection
from .sql import Statements

if TYPE_CHECKING:
    from .jobs import EnqueueParams

#: Smallest batch sent by COPY (benchmarks set it past any batch to measure INSERT_JOBS).
COPY_MIN_ROWS = 200
#: Jobs validated and encoded per step of a streamed COPY (:func:`stream_jobs`).
STREAM_ROWS = 2000

#: RowBuilder row keys in COPY_JOBS column order (after id, function, payload),
#: with the column default a row without the option gets (None: NULL).
_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("q", "default"), ("p", 0), ("ma", 1), ("ri", None), ("to_", None), ("hb", None), ("g", None),
    ("m", None), ("rttl", None), ("fttl", None), ("fm", "hold"), ("on_s", None), ("on_f", None),
    ("on_x", None), ("rr", 0), ("rs", None), ("rv", None), ("cron", None),
)  # fmt: skip
_IDLE = pq.TransactionStatus.IDLE
_KEYS = frozenset(key for key, _ in _COLUMNS)
_DEFAULTS = tuple(default for _, default in _COLUMNS)
_TYPES = (
    "uuid", "text", "text", "text", "int4", "int4", "float8[]", "float8", "float8", "text", "text",
    "float8", "float8", "text", "jsonb", "jsonb", "jsonb", "int4", "float8", "float8[]", "text",
)  # fmt: skip


class _NotCopyable(Exception):
    """A row of a streamed batch needs INSERT_JOBS (or another column set)."""


def _tuples(plain: Sequence[tuple[Any, ...]], options: bool, queues: set[str]) -> list[tuple[Any, ...]]:
    """The COPY rows of ``plain`` (RowBuilder rows) for COPY_JOBS (``options``) or
    COPY_JOBS_PLAIN, adding their queues to ``queues``; _NotCopyable when a row
    sets an option that column set has no column for."""
    if not options:
        if any(row[3] for row in plain):
            raise _NotCopyable
        if plain:
            queues.add("default")
        return [row[:3] for row in plain]
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for job_id, path, payload, extra, _ in plain:
        if not extra:
            append((job_id, path, payload, *_DEFAULTS))
            queues.add("default")
            continue
        if not extra.keys() <= _KEYS:
            raise _NotCopyable
        get = extra.get
        append((job_id, path, payload, *[get(key, default) for key, default in _COLUMNS]))
        queues.add(get("q", "default"))
    return rows


def copy_rows(builder: RowBuilder) -> tuple[bool, list[tuple[Any, ...]], list[str]] | None:
    """(whether any row sets an option, the COPY rows, the queues to notify) for a
    copyable builder; None when the batch is too small for COPY to pay, or a row
    sets an option COPY_JOBS has no column for (INSERT_JOBS takes it then)."""
    plain = builder.plain
    if len(plain) < COPY_MIN_ROWS or not builder.copyable:
        return None
    options = any(row[3] for row in plain)
    queues: set[str] = set()
    try:
        rows = _tuples(plain, options, queues)
    except _NotCopyable:
        return None
    return options, rows, sorted(queues)


def streamable(items: Sequence[EnqueueParams]) -> bool:
    """Whether :func:`stream_jobs` may take the batch: large enough, and no job
    with what only INSERT_JOBS does (``_key``, ``depends_on``, ``_delay``, ``_at``,
    ``_ttl``) -- a cheap look at the arguments; the rows built are checked again."""
    return len(items) >= COPY_MIN_ROWS and all(
        p.key is None and p.depends_on is None and not p.delay and p.at is None and p.ttl is None
        for p in items
    )


async def stream_jobs(
    conn: Connection[Any], sql: Statements, builder: RowBuilder, items: Sequence[EnqueueParams]
) -> datetime | None:
    """Build and COPY ``items`` in steps of STREAM_ROWS, in a transaction of its
    own on ``conn`` (idle, autocommit); return the ``now()`` the rows got, or None
    when a row needs INSERT_JOBS after all (rolled back: nothing inserted; start
    over with a new builder). The column set follows the first step (COPY_JOBS if
    any of its jobs sets an option). RowBuilder's errors propagate (rolled back)."""
    queues: set[str] = set()
    first = items[:STREAM_ROWS]
    with gc_paused(len(items)):
        builder.add_all(first)
        options = any(row[3] for row in builder.plain)
        statement, types = (sql.COPY_JOBS, _TYPES) if options else (sql.COPY_JOBS_PLAIN, _TYPES[:3])
        try:
            async with conn.transaction(), conn.cursor() as cur:
                async with cur.copy(statement) as copy:
                    copy.set_types(types)
                    write_row = copy.write_row
                    done = 0
                    while True:
                        if not builder.copyable:
                            raise _NotCopyable
                        for row in _tuples(builder.plain[done:], options, queues):
                            await write_row(row)
                        done = len(builder.plain)
                        if done == len(items):
                            break
                        builder.add_all(items[done : done + STREAM_ROWS])
                await cur.execute(sql.COPY_JOBS_NOTIFY, {"queues": sorted(queues)})
                now: datetime = (await cur.fetchone())[0]  # type: ignore[index]
        except _NotCopyable:
            return None
    return now


async def copy_jobs(
    conn: Connection[Any], sql: Statements, options: bool, rows: list[tuple[Any, ...]],
    queues: list[str],
) -> datetime:
    """COPY ``rows`` in (all COPY_JOBS columns if ``options``, else COPY_JOBS_PLAIN's)
    and notify ``queues``; return the ``now()`` the rows got. On an idle
    autocommit connection in a transaction of its own; inside the caller's
    transaction (``_conn=``) as part of it, as the one INSERT_JOBS would be."""
    if conn.autocommit and conn.info.transaction_status is _IDLE:
        async with conn.transaction():
            return await _copy(conn, sql, options, rows, queues)
    return await _copy(conn, sql, options, rows, queues)


async def _copy(
    conn: Connection[Any], sql: Statements, options: bool, rows: list[tuple[Any, ...]],
    queues: list[str],
) -> datetime:
    statement, types = (sql.COPY_JOBS, _TYPES) if options else (sql.COPY_JOBS_PLAIN, _TYPES[:3])
    async with conn.cursor() as cur:
        async with cur.copy(statement) as copy:
            copy.set_types(types)
            write_row = copy.write_row
            for row in rows:
                await write_row(row)
        await cur.execute(sql.COPY_JOBS_NOTIFY, {"queues": queues})
        now: datetime = (await cur.fetchone())[0]  # type: ignore[index]
    return now
