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
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import pq

from ._rows import RowBuilder
from .db import Connection
from .sql import Statements

#: Smallest batch sent by COPY (benchmarks set it past any batch to measure INSERT_JOBS).
COPY_MIN_ROWS = 200

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


def copy_rows(builder: RowBuilder) -> tuple[bool, list[tuple[Any, ...]], list[str]] | None:
    """(whether any row sets an option, the COPY rows, the queues to notify) for a
    copyable builder; None when the batch is too small for COPY to pay, or a row
    sets an option COPY_JOBS has no column for (INSERT_JOBS takes it then)."""
    plain = builder.plain
    if len(plain) < COPY_MIN_ROWS or not builder.copyable:
        return None
    if not any(row[3] for row in plain):
        return False, [row[:3] for row in plain], ["default"]
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    queues: set[str] = set()
    for job_id, path, payload, extra, _ in plain:
        if not extra:
            append((job_id, path, payload, *_DEFAULTS))
            queues.add("default")
            continue
        if not extra.keys() <= _KEYS:
            return None
        get = extra.get
        append((job_id, path, payload, *[get(key, default) for key, default in _COLUMNS]))
        queues.add(get("q", "default"))
    return True, rows, sorted(queues)


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
