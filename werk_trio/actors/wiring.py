"""What the actors are built from, besides their channels: the worker's
settings (:class:`WorkerSettings`, frozen, validated once), the database side
(:class:`Db`), the poller's wake-up channel (:class:`Wake`), the database
health the sweeper judges others by (:class:`DbHealth`) and the re-arming
events tests await (:class:`Pulse`). Nothing here knows the Worker.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .._rows import MAX_NAME_CHARS, check_text
from ..config import check_name
from ..errors import ConfigError
from ..jobs import DequeueStrategy, _count, _seconds

if TYPE_CHECKING:
    from ..app import Werk
    from ..config import WerkConfig
    from ..db import Pool
    from ..serializers import Serializer
    from ..sql import Statements

__all__ = ["MAX_CONCURRENCY", "Db", "DbHealth", "Pulse", "Wake", "WorkerSettings"]

#: Most runner slots (and prefetch, claim batch) one worker may have.
MAX_CONCURRENCY = 100_000


class Db:
    """The database side of one worker, read from its app: the pool (once
    connected), the rendered statements, the serializer, the config. Actors
    never change any of it."""

    __slots__ = ("_app", "config", "decode_allowed", "serializer", "sql")

    def __init__(self, app: Werk) -> None:
        self._app = app
        self.sql: Statements = app.sql
        self.serializer: Serializer = app.serializer
        self.config: WerkConfig = app.config
        self.decode_allowed = app.decode_allowed

    @property
    def pool(self) -> Pool:
        return self._app.pool

    @property
    def dsn(self) -> str:
        return self._app.dsn


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Everything a worker was configured with, checked once by :meth:`resolve`
    (every ``None`` replaced by the app's WerkConfig value there, and nowhere
    else). ``capacity`` = ``concurrency`` + ``prefetch``: the most jobs held."""

    queues: tuple[str, ...]
    concurrency: int
    prefetch: int
    claim_batch: int
    heartbeat_interval: float
    poll_interval: float
    sweep_interval: float
    abort_interval: float
    shutdown_timeout: float
    dequeue_strategy: DequeueStrategy
    burst: bool
    id: uuid.UUID
    name: str

    @property
    def capacity(self) -> int:
        return self.concurrency + self.prefetch

    @classmethod
    def resolve(
        cls,
        config: WerkConfig,
        *,
        queues: Sequence[str] | str,
        concurrency: int,
        prefetch: int | None,
        claim_batch: int | None,
        heartbeat_interval: float | None,
        poll_interval: float | None,
        sweep_interval: float | None,
        abort_interval: float | None,
        shutdown_timeout: float | None,
        dequeue_strategy: DequeueStrategy | str,
        burst: bool,
        name: str | None,
    ) -> WorkerSettings:
        """The settings, or a ConfigError naming the first bad value.
        ``prefetch`` must be resolved by the caller (it depends on the executor)."""
        names = _queues(queues)
        _count("concurrency", concurrency, maximum=MAX_CONCURRENCY)
        strategy = _strategy(dequeue_strategy)
        if prefetch is None:
            prefetch = 0
        _count("prefetch", prefetch, minimum=0, maximum=MAX_CONCURRENCY)
        if claim_batch is None:
            claim_batch = concurrency + prefetch
        _count("claim_batch", claim_batch, maximum=MAX_CONCURRENCY)
        worker_id = uuid.uuid4()
        if name is not None:
            if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
                raise ConfigError(f"worker name must be a non-empty string, got {name!r}")
            check_name("worker name", name.replace("-", "_").replace(".", "_")[:40] or "x")
        return cls(
            queues=names,
            concurrency=concurrency,
            prefetch=prefetch,
            claim_batch=claim_batch,
            heartbeat_interval=interval("heartbeat_interval", heartbeat_interval, config.heartbeat_interval),
            poll_interval=interval("poll_interval", poll_interval, config.poll_interval),
            sweep_interval=interval("sweep_interval", sweep_interval, config.sweep_interval),
            abort_interval=interval("abort_interval", abort_interval, config.abort_interval),
            shutdown_timeout=interval(
                "shutdown_timeout", shutdown_timeout, config.shutdown_timeout, allow_zero=True
            ),
            dequeue_strategy=strategy,
            burst=bool(burst),
            id=worker_id,
            name=name or f"{socket.gethostname()}-{os.getpid()}-{worker_id.hex[:6]}",
        )


def interval(name: str, given: float | None, default: float, *, allow_zero: bool = False) -> float:
    """``given`` (or the config's ``default``) as finite seconds; ConfigError otherwise.
    Finite, as in WerkConfig: an infinite heartbeat_interval in the workers table
    would make DEAD_WORKERS overflow (interval out of range) in every sweep."""
    return _seconds(name, default if given is None else given, allow_zero=allow_zero)


def _queues(queues: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(queues, str):
        queues = [queues]
    queues = list(queues)
    if not queues:
        raise ConfigError("queues must name at least one queue")
    for q in queues:
        if not isinstance(q, str) or not q or len(q) > MAX_NAME_CHARS:
            raise ConfigError(
                f"queue names must be non-empty strings of at most {MAX_NAME_CHARS} characters, got {q!r}"
            )
        check_text("queue name", q)
    return tuple(dict.fromkeys(queues))


def _strategy(value: DequeueStrategy | str) -> DequeueStrategy:
    if isinstance(value, DequeueStrategy):
        return value
    try:
        return DequeueStrategy(value)
    except ValueError:
        valid = ", ".join(f"DequeueStrategy.{s.name}" for s in DequeueStrategy)
        raise ConfigError(f"dequeue_strategy must be one of {valid}, got {value!r}") from None


class Wake:
    """The poller's wake-up: a size-1 channel, so many nudges cost one claim.
    Anyone may :meth:`nudge`; only the poller drains and waits."""

    __slots__ = ("_nudged", "_recv", "_send", "on_free")

    def __init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel[None](1)
        # a nudge not yet drained or waited for: later ones are no-ops without
        # touching the channel (a runner may nudge after every job)
        self._nudged = False
        #: Whether a runner nudges when it frees a slot (the poller sets it:
        #: Poller.slot_nudges).
        self.on_free = True

    def nudge(self) -> None:
        """Wake the poller (coalesced). Never blocks."""
        if not self._nudged:
            self._nudged = True
            try:
                self._send.send_nowait(None)
            except trio.WouldBlock:
                pass

    @property
    def pending(self) -> bool:
        """A nudge given and not yet drained or waited for."""
        return self._nudged

    def drain(self) -> None:
        self._nudged = False
        try:
            self._recv.receive_nowait()
        except trio.WouldBlock:
            pass

    async def wait(self) -> None:
        """Until the next nudge (the caller bounds it with a cancel scope)."""
        await self._recv.receive()
        self._nudged = False


class DbHealth:
    """Trio time of this worker's last database trouble (a failed heartbeat
    or sweep), or of its start. The heartbeater and sweeper call
    :meth:`trouble`; the sweeper reads :meth:`healthy_for`."""

    __slots__ = ("ok_since",)

    def __init__(self) -> None:
        self.ok_since = 0.0

    def reset(self) -> None:
        self.ok_since = trio.current_time()

    def trouble(self) -> None:
        """Note that the database could not be reached just now."""
        self.ok_since = trio.current_time()

    def healthy_for(self) -> float:
        """Seconds since this worker started or last failed to reach the database."""
        return trio.current_time() - self.ok_since


class Pulse:
    """A re-arming event: :meth:`wait` returns at the next :meth:`fire`.
    An actor fires it after each step (a claim, a written batch, a beat, a
    sweep) so tests await the cause instead of polling the table. Firing with
    nobody waiting costs one attribute test."""

    __slots__ = ("_event", "_waiting")

    def __init__(self) -> None:
        self._event: trio.Event | None = None
        self._waiting = 0

    def fire(self) -> None:
        if self._waiting:
            event, self._event = self._event, None
            assert event is not None
            event.set()

    async def wait(self) -> None:
        """Until the next fire. Cancellation: safe."""
        if self._event is None:
            self._event = trio.Event()
        event = self._event
        self._waiting += 1
        try:
            await event.wait()
        finally:
            self._waiting -= 1

    def __repr__(self) -> str:
        return f"<Pulse waiting={self._waiting}>"

