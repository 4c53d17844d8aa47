"""Flow control: paused queues, global and partitioned limits, rate limits,
and the handler-side controls :class:`Snooze` and :class:`Cancel`.

Controls are rows of the ``queues`` table (migration 0002), read by the claim
statement itself, so they hold across every worker process and machine and
survive restarts. A queue with no control has no row and is claimed by the
plain statements unchanged (one primary-key probe per queue); a worker whose
queues have controls claims through ``CLAIM_LIMITED`` under a per-queue
advisory lock (``LOCK_QUEUES``), which makes a concurrency limit exact even
when many workers claim at the same instant. Every change NOTIFYs the
control channel, and workers reload their queues' controls at once.

:class:`FlowControl` holds the app methods (``Werk`` inherits them);
:class:`QueueControls` is a worker's view of its own queues' controls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from .errors import ConfigError

if TYPE_CHECKING:
    from .app import Werk

__all__ = ["Cancel", "FlowControl", "QueueControls", "QueueInfo", "Snooze"]

#: Candidates a claim reads per partitioned queue before it judges partitions.
PARTITION_SCAN = 100


class Snooze(Exception):  # a control, not an error
    """Raise ``Snooze(seconds)`` in a handler: the job goes back to its queue,
    due ``seconds`` from now, without spending an attempt."""

    def __init__(self, seconds: float = 0) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) \
                or seconds < 0:
            raise ConfigError(f"Snooze(seconds) needs a finite number of seconds >= 0, got {seconds!r}")
        super().__init__(seconds)
        self.seconds = float(seconds)

    def __str__(self) -> str:
        return f"snoozed for {self.seconds:g}s"


class Cancel(Exception):  # a control, not an error
    """Raise ``Cancel(reason)`` in a handler: the job ends ``aborted`` with
    ``reason`` as its error, and is not retried."""

    def __init__(self, reason: str = "cancelled by its handler") -> None:
        if not isinstance(reason, str):
            raise ConfigError(f"Cancel(reason) needs a string, got {reason!r}")
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue as ``list_queues`` shows it: its controls and its job counts
    by status (the statuses it has jobs in). ``limit_by`` / ``rate_by``: None
    (the whole queue), ``"_group"`` or ``"meta.<key>"``. ``estimated``: the
    statuses whose count is an estimate, as in ``get_queue_stats`` (empty
    when every count is exact)."""

    name: str
    paused: bool = False
    paused_at: datetime | None = None
    max_running: int | None = None
    limit_by: str | None = None
    rate_limit: tuple[int, float] | None = None
    rate_by: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    estimated: tuple[str, ...] = ()


def _queue_name(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > 1000:
        raise ConfigError(f"queue name must be a non-empty string (at most 1000 characters), got {name!r}")
    return name


def _partition(value: Any) -> str | None:
    if value is None or value == "_group":
        return value  # type: ignore[no-any-return]
    if isinstance(value, str) and value.startswith("meta.") and len(value) > 5:
        return value
    raise ConfigError(
        f"partition_by must be None (the whole queue), '_group' (per job group) or "
        f"'meta.<key>' (per value of a meta key, e.g. 'meta.customer'), got {value!r}"
    )


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
        raise ConfigError(f"{name} must be an int >= 1 (or None to remove it), got {value!r}")
    return value


def _app(obj: Any) -> Werk:
    return cast("Werk", obj)


class FlowControl:
    """The app's flow-control methods (mixed into :class:`werk_trio.Werk`)."""

    async def _control(self, statement: str, params: dict[str, Any]) -> None:
        app = _app(self)
        sql = app.sql
        async with app.pool.connection() as conn, conn.transaction():
            await conn.execute(statement, params)
            await conn.execute(
                sql.DROP_UNUSED_CONTROLS, {"name": params["name"]}
            )

    async def pause_queue(self, name: str) -> None:
        """Stop every worker from starting jobs of queue ``name`` (running ones
        finish). Persisted: it holds for workers started later. Once this
        returns, no claim of that queue starts a job. ConfigError for a bad
        name. Cancellation: one transaction, paused or not."""
        app = _app(self)
        await app._control(app.sql.PAUSE_QUEUE, {"name": _queue_name(name), "paused": True})

    async def resume_queue(self, name: str) -> None:
        """Undo :meth:`pause_queue`; workers claim the queue's jobs at once.
        Cancellation: one transaction, resumed or not."""
        app = _app(self)
        await app._control(app.sql.PAUSE_QUEUE, {"name": _queue_name(name), "paused": False})

    async def set_queue_limit(
        self, name: str, max_running: int | None, *, partition_by: str | None = None
    ) -> None:
        """At most ``max_running`` jobs of queue ``name`` active at once across
        all workers -- per value of ``partition_by`` (``"_group"`` or
        ``"meta.<key>"``) when given; ``None`` removes the limit. ConfigError
        for a bad name, count or partition. Cancellation: one transaction, set or not."""
        name = _queue_name(name)
        by = _partition(partition_by)
        if max_running is None:
            by = None
        else:
            max_running = _count("max_running", max_running)
        params = {"name": name, "max_running": max_running, "by": by}
        app = _app(self)
        await app._control(app.sql.SET_QUEUE_LIMIT, params)

    async def set_rate_limit(
        self, name: str, n: int | None, per_seconds: float | None = None, *,
        partition_by: str | None = None,
    ) -> None:
        """At most ``n`` jobs of queue ``name`` started in any window of
        ``per_seconds`` (on the database clock), across all workers -- per
        value of ``partition_by`` when given; ``n=None`` removes the limit.
        ConfigError for a bad name, count, window or partition. Cancellation:
        one transaction, set or not."""
        name = _queue_name(name)
        by = _partition(partition_by)
        per: float | None = None
        if n is None:
            by = None
        else:
            n = _count("n (jobs per window)", n)
            if isinstance(per_seconds, bool) or not isinstance(per_seconds, int | float) \
                    or not math.isfinite(per_seconds) or not 0 < per_seconds <= 86400 * 366:
                raise ConfigError(
                    "per_seconds must be a finite number of seconds > 0 (at most a year), "
                    f"got {per_seconds!r}"
                )
            per = float(per_seconds)
        app = _app(self)
        await app._control(app.sql.SET_RATE_LIMIT, {"name": name, "n": n, "per": per, "by": by})

    async def list_queues(self) -> list[QueueInfo]:
        """Every queue that has jobs or controls: its controls and its counts by status.

        The counts are those of :meth:`~werk_trio.Werk.get_queue_stats`: live
        jobs exact up to ``estimate_limit`` per queue and status and the
        planner's estimate above it (those statuses are in ``estimated``);
        finished ones the sweeper's last recount plus the jobs finished
        since. :meth:`~werk_trio.Werk.counts` counts every row exactly.

        Cancellation: safe, it only reads.
        """
        app = _app(self)
        controls = {row[0]: row for row in await app._fetch(app.sql.QUEUE_CONTROLS, {"queues": None})}
        counts: dict[str, dict[str, int]] = {}
        guessed: dict[str, list[str]] = {}
        rows = await app._fetch(app.sql.QUEUE_COUNTS, {"limit": app.config.estimate_limit})
        for queue, status, count, estimated in rows:
            counts.setdefault(queue, {})[status] = count
            if estimated:
                guessed.setdefault(queue, []).append(status)
        out = []
        for name in sorted(set(controls) | set(counts)):
            row = controls.get(name)
            found, estimated = counts.get(name, {}), tuple(guessed.get(name, ()))
            if row is None:
                out.append(QueueInfo(name, counts=found, estimated=estimated))
                continue
            _, paused, paused_at, max_running, limit_by, rate_n, rate_secs, rate_by = row
            out.append(QueueInfo(
                name, paused, paused_at, max_running, limit_by,
                (rate_n, rate_secs) if rate_n is not None else None, rate_by, found, estimated,
            ))  # fmt: skip
        return out


class QueueControls:
    """A worker's view of its queues' controls: which are paused, which are
    limited (their claims take the queue lock and go through CLAIM_LIMITED)."""

    def __init__(self, queues: list[str]) -> None:
        self.queues = queues
        self.controlled: set[str] = set()
        self.limited: list[str] = []  # sorted: the lock order

    def load(self, rows: list[Any]) -> None:
        self.controlled = {row[0] for row in rows}
        self.limited = sorted(
            row[0] for row in rows if not row[1] and (row[3] is not None or row[5] is not None)
        )
