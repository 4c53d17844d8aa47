"""Jobs and the values that describe them.

:class:`Job` is one row of the jobs table, decoded. :class:`Retry`,
:class:`Repeat`, :class:`Dependency`, :class:`Callback` and
:class:`EnqueueParams` are the option values of ``enqueue``; each validates
itself on construction and raises :class:`~werk_trio.errors.ConfigError`.
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .app import Werk

__all__ = [
    "Callback",
    "Context",
    "Dependency",
    "DequeueStrategy",
    "EnqueueParams",
    "ExecutionStatus",
    "FailureMode",
    "Job",
    "JobExecution",
    "JobStatus",
    "Repeat",
    "Retry",
]


class JobStatus(str, enum.Enum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    WAITING = "waiting"
    ACTIVE = "active"
    ABORTING = "aborting"
    COMPLETE = "complete"
    FAILED = "failed"
    ABORTED = "aborted"
    # pgwerk's spelling of the same members (aliases: JobStatus.Complete is JobStatus.COMPLETE)
    Scheduled = "scheduled"
    Queued = "queued"
    Waiting = "waiting"
    Active = "active"
    Aborting = "aborting"
    Complete = "complete"
    Failed = "failed"
    Aborted = "aborted"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset({JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.ABORTED})
TERMINAL_STATUSES: tuple[str, ...] = ("complete", "failed", "aborted")


class ExecutionStatus(str, enum.Enum):
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    ABORTED = "aborted"
    # pgwerk's spelling (aliases)
    Running = "running"
    Complete = "complete"
    Failed = "failed"
    Aborted = "aborted"

    def __str__(self) -> str:
        return self.value


class DequeueStrategy(str, enum.Enum):
    """How a worker orders its queues when it claims jobs.

    * ``Priority`` -- highest ``priority`` first across all the worker's queues.
    * ``RoundRobin`` -- the queues take turns: each claim starts with the next one.
    * ``Random`` -- each claim starts with a queue picked at random.
    """

    Priority = "priority"
    RoundRobin = "round_robin"
    Random = "random"
    # the upper-case spelling of the other enums (aliases)
    PRIORITY = "priority"
    ROUND_ROBIN = "round_robin"
    RANDOM = "random"


class FailureMode(str, enum.Enum):
    """What happens to a job's row when it fails for good (``_failure_mode=``).

    * ``Hold`` -- keep the failed row (default), to inspect and requeue it.
    * ``Delete`` -- delete the row once its failure is final.
    """

    Hold = "hold"
    Delete = "delete"
    HOLD = "hold"
    DELETE = "delete"

    def __str__(self) -> str:
        return self.value


#: The longest time werk_trio accepts anywhere (delays, timeouts, ttls,
#: intervals, settings): 100 years, in seconds. Larger values would overflow
#: Postgres timestamps once added to now(); every number of seconds is checked
#: against it where it enters (ConfigError naming the option).
MAX_SECONDS = 100 * 365.25 * 86400
#: Integers stored in ``integer`` columns (priority, attempts, repeats): 32-bit.
INT32_MAX = 2**31 - 1
#: Most entries of a Retry / Repeat interval list.
MAX_INTERVALS = 1000


def _seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int too large for a float
        value = math.inf
    if not (0 <= value <= MAX_SECONDS) or (value == 0 and not allow_zero):
        low = "0" if allow_zero else "more than 0"
        raise ConfigError(
            f"{name} must be a finite number of seconds from {low} to {MAX_SECONDS:.0f} (100 years), "
            f"got {value!r}"
        )
    return float(value)


def _count(name: str, value: Any, *, minimum: int = 1, maximum: int = INT32_MAX) -> int:
    """``value`` as an int in ``minimum..maximum``; ConfigError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be an int from {minimum} to {maximum}, got {value!r}")
    return value


def _intervals(name: str, value: Any) -> list[float]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [_seconds(name, value, allow_zero=True)]
    if isinstance(value, Sequence) and not isinstance(value, str | bytes) and 0 < len(value) <= MAX_INTERVALS:
        return [_seconds(name, v, allow_zero=True) for v in value]
    raise ConfigError(
        f"{name} must be seconds or a list of 1 to {MAX_INTERVALS} numbers of seconds, got {value!r}"
    )


@dataclass(frozen=True, slots=True)
class Retry:
    """``Retry(max, intervals)``: ``max`` total attempts (>= 1); between attempts
    wait ``intervals`` seconds -- one number, or a list whose last value is
    reused once the list runs out."""

    max: int
    intervals: float | Sequence[float] = 0
    #: True when ``intervals`` was given as one number (pgwerk's "uniform").
    uniform: bool = field(default=True, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max, bool) or not isinstance(self.max, int) or not 1 <= self.max <= INT32_MAX:
            raise ConfigError(
                f"Retry(max=...) is the total number of attempts and must be an int from 1 to "
                f"{INT32_MAX}, got {self.max!r}"
            )
        object.__setattr__(self, "uniform", isinstance(self.intervals, int | float))
        object.__setattr__(self, "intervals", tuple(_intervals("Retry intervals", self.intervals)))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        seq = tuple(self.intervals)  # type: ignore[arg-type]
        return seq[min(attempt - 1, len(seq) - 1)]

    def get_interval(self, attempt: int) -> float:
        """pgwerk's name for :meth:`delay`: the wait after failed attempt ``attempt`` (1-based)."""
        return self.delay(attempt)

    def to_intervals_list(self) -> list[float] | None:
        """The per-attempt delays as a list, or None when one uniform delay was given."""
        return None if self.uniform else list(self.intervals)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Repeat:
    """``Repeat(times, interval=0, intervals=None)``: after each success, run the
    job again, ``times`` more times, ``interval`` seconds later (``intervals``,
    a list with its last value reused, overrides ``interval``). Every run is a
    row of its own (see :meth:`werk_trio.Werk.enqueue`)."""

    times: int
    interval: float = 0.0
    intervals: Sequence[float] | None = None

    def __post_init__(self) -> None:
        _count("Repeat(times=...)", self.times)
        object.__setattr__(self, "interval", _seconds("Repeat interval", self.interval, allow_zero=True))
        if self.intervals is not None:
            object.__setattr__(self, "intervals", tuple(_intervals("Repeat intervals", self.intervals)))
            # the row stores one delay per repeat: the list is as long as ``times``
            _count("Repeat(times=...) with intervals=", self.times, maximum=MAX_INTERVALS)

    def get_interval(self, run: int) -> float:
        """Seconds before repeat number ``run`` (0 = the first repeat after the first run)."""
        if self.intervals:
            seq = tuple(self.intervals)
            return seq[min(max(run, 0), len(seq) - 1)]
        return float(self.interval)


@dataclass(frozen=True, slots=True)
class Dependency:
    """``Dependency(job, allow_failure=False)``: wait for ``job`` (a Job or an id)
    to end. Without ``allow_failure``, its failure or abort fails this job."""

    job: Any
    allow_failure: bool = False

    @property
    def job_id(self) -> uuid.UUID:
        return as_job_id(self.job)


@dataclass(frozen=True, slots=True)
class Callback:
    """``Callback(func, timeout=None)``: a callable or dotted path run after the
    job's terminal outcome with the Job (or a Context, when its first parameter
    is named ``ctx`` or annotated ``Context``), cut off after ``timeout``
    seconds (None: no limit)."""

    func: Callable[..., Any] | str
    timeout: float | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None:
            _seconds("Callback timeout", self.timeout)
        if not (callable(self.func) or (isinstance(self.func, str) and self.func)):
            raise ConfigError(f"Callback func must be a callable or a dotted path, got {self.func!r}")


def as_job_id(value: Any) -> uuid.UUID:
    """A job id from a Job, a UUID or its string form; ConfigError otherwise."""
    if isinstance(value, Job):
        return value.id
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ConfigError(
        f"expected a Job or a job id (UUID), got {value!r}: job ids are uuid.UUID values "
        "(str(job.id) is the text form, uuid.UUID(text) reads it back)"
    )


@dataclass(slots=True)
class EnqueueParams:
    """One job for ``enqueue_many``; the fields are the ``_`` options of ``enqueue``
    without the underscore."""

    func: Callable[..., Any] | str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 0
    delay: float | None = None
    at: datetime | None = None
    retry: int | Retry | None = None
    timeout: float | None = None
    heartbeat: float | None = None
    key: str | None = None
    group: str | None = None
    meta: dict[str, Any] | None = None
    ttl: float | None = None
    result_ttl: float | None = None
    failure_ttl: float | None = None
    failure_mode: str = "hold"
    on_success: Any = None
    on_failure: Any = None
    on_stopped: Any = None
    repeat: Repeat | None = None
    depends_on: Any = None
    #: The cron schedule that made this job (set by CronScheduler; ``Job.cron_name``).
    cron_name: str | None = None


#: The ``_`` options of ``enqueue`` (besides ``_conn``), in the order of SPEC §2.
ENQUEUE_OPTIONS: tuple[str, ...] = (
    "queue", "priority", "delay", "at", "retry", "timeout", "heartbeat", "key", "group",
    "meta", "ttl", "result_ttl", "failure_ttl", "failure_mode", "on_success", "on_failure",
    "on_stopped", "repeat", "depends_on", "cron_name",
)  # fmt: skip


@dataclass(slots=True)
class Job:
    """One job row, decoded. ``payload`` is ``{"args": [...], "kwargs": {...}}``."""

    id: uuid.UUID
    function: str
    queue: str
    status: JobStatus
    priority: int
    attempts: int
    max_attempts: int
    scheduled_at: datetime
    enqueued_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    touched_at: datetime | None = None
    expires_at: datetime | None = None
    key: str | None = None
    group_key: str | None = None
    payload: Any = None
    result: Any = None
    error: str | None = None
    timeout_secs: float | None = None
    heartbeat_secs: float | None = None
    worker_id: uuid.UUID | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    ttl: float | None = None
    result_ttl: float | None = None
    failure_ttl: float | None = None
    on_success: Callback | None = None
    on_failure: Callback | None = None
    on_stopped: Callback | None = None
    retry_intervals: list[float] | None = None
    repeat_remaining: int = 0
    repeat_interval_secs: float | None = None
    repeat_intervals: list[float] | None = None
    cron_name: str | None = None
    failure_mode: str = "hold"
    #: What the handler last reported with ``ctx.set_progress`` (0..1, and a message).
    progress: float | None = None
    progress_message: str | None = None

    @property
    def args(self) -> list[Any]:
        return list((self.payload or {}).get("args", []))

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict((self.payload or {}).get("kwargs", {}))

    @property
    def is_terminal(self) -> bool:
        return self.status.terminal

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.function} {self.status.value} queue={self.queue!r}>"


@dataclass(frozen=True, slots=True)
class JobExecution:
    """One attempt of a job. ``id`` is derived from (job id, attempt), so it is
    stable across reads; ``result`` is set on the complete attempt."""

    job_id: uuid.UUID
    attempt: int
    worker_id: uuid.UUID | None
    status: ExecutionStatus
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    result: Any = None

    @property
    def id(self) -> uuid.UUID:
        return uuid.uuid5(self.job_id, str(self.attempt))

    @property
    def completed_at(self) -> datetime | None:
        """pgwerk's name of :attr:`finished_at`."""
        return self.finished_at


class Context:
    """What a handler, hook or callback gets when it asks for one.

    ``app`` and ``worker`` are live objects in the worker process and ``None``
    in process and fork children (which get a snapshot: ``job``,
    ``worker_id``, ``worker_name``). ``exception`` is set in after-hooks and
    failure callbacks. ``cancelled`` becomes true when the attempt was given up
    (timeout, abort, shutdown): a thread handler that cannot be killed should
    check it and return.

    ``await ctx.set_progress(fraction, message)`` (``set_progress_sync`` in
    plain functions, threads and children) stores the running job's progress,
    visible in ``get_job``.
    """

    __slots__ = ("_cancelled", "_progress", "app", "exception", "job", "worker", "worker_id", "worker_name")

    def __init__(
        self,
        *,
        job: Job,
        app: Werk | None = None,
        worker: Any = None,
        worker_id: uuid.UUID | None = None,
        worker_name: str | None = None,
        exception: BaseException | None = None,
    ) -> None:
        self.job = job
        self.app = app
        self.worker = worker
        self.worker_id = worker_id
        self.worker_name = worker_name
        self.exception = exception
        self._cancelled: Any = None
        self._progress: Any = None  # where set_progress writes (werk_trio._progress)

    @property
    def cancelled(self) -> bool:
        flag = self._cancelled
        if flag is None:
            return False
        if callable(flag):
            return bool(flag())
        return bool(flag.is_set())

    def _progress_sink(self, fraction: Any, message: Any) -> Any:
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) \
                or not 0 <= fraction <= 1:
            raise ConfigError(f"progress must be a fraction from 0 to 1, got {fraction!r}")
        if message is not None and (not isinstance(message, str) or len(message) > 10_000):
            raise ConfigError(
                f"progress message must be a string (at most 10,000 characters), got {message!r}"
            )
        if self._progress is None:
            from .errors import WerkError

            raise WerkError("set_progress needs the Context of a running job (a handler's ctx)")
        return self._progress

    async def set_progress(self, fraction: float, message: str | None = None) -> None:
        """Store the job's progress (0..1) and an optional message.

        ConfigError for a fraction outside 0..1 or a message that is not a
        string (at most 10,000 characters); WerkError outside a running job's
        Context. Cancellation: one UPDATE of the job row, stored or not (the
        previous progress stays).
        """
        await self._progress_sink(fraction, message).set(self.job, float(fraction), message)

    def set_progress_sync(self, fraction: float, message: str | None = None) -> None:
        """:meth:`set_progress` for plain functions (threads, children); blocks until stored."""
        self._progress_sink(fraction, message).set_sync(self.job, float(fraction), message)

    def __repr__(self) -> str:
        return f"<Context job={self.job.id} worker={self.worker_name!r}>"
