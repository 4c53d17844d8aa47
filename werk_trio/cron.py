"""Cron: periodic jobs, enqueued by one leader among any number of schedulers.

``CronScheduler(app)`` holds schedules (:class:`CronJob`: a function with a
cron expression or a fixed interval) and ``await scheduler.run()`` enqueues
their jobs. Run one next to every worker if you like: however many run over
one schema, on however many machines, exactly one leads.

How (DESIGN.md "Cron"):

* **Shared state.** Schedules live in the ``{prefix}_cron_schedules`` table:
  definition, paused, next and last run, run count. A scheduler writes its
  registrations there when it starts (a changed cron / interval / tz takes
  effect with a fresh next run; an unchanged one keeps its place; a schedule
  it does not register any more is marked removed and never enqueued again).
  ``app.pause_cron`` / ``resume_cron`` / ``trigger_cron_job`` /
  ``list_cron_stats`` work on that table from any process.
* **One leader.** A single lease row (holder, generation, expires_at). A
  scheduler that finds it free or expired takes it (generation + 1); the
  others stay standby and try again every ``standby_retry_interval``. No
  session state -- no advisory lock, no LISTEN -- so it works through
  PgBouncer in transaction mode.
* **The round.** The leader's round is one transaction: renew the lease
  fenced by holder and generation (no row: another scheduler took it, stop
  leading; the renewal keeps the lease row locked to the commit, so nobody can
  take the lease while the round enqueues), lock the due schedules
  ``FOR UPDATE``, insert each one's job with the idempotency key
  ``cron:{name}:{tick}`` and advance its next run. A round that cannot finish
  within half the lease is cancelled and rolled back. So each tick gets
  exactly one job, across leader changes, restarts and simultaneous starts.
* **Missed ticks.** A tick up to ``2 * (lease + standby_retry_interval)``
  late (twice the longest takeover) still gets its job, so a slow round or a
  leader change loses none. Ticks older than that were missed (every
  scheduler was down): ``catch_up="one"`` (default) enqueues one run, for
  the latest of them; ``catch_up="none"`` none.
* **Time** is the database's ``now()``; ticks are computed in the schedule's
  timezone (``tz``, default UTC) with :mod:`zoneinfo`. Across DST changes
  cron expressions follow the wall clock, as Vixie cron does: a time the
  spring change skips runs at the change (once, however many ticks fell in
  the gap); a time the autumn change repeats runs once, at its first pass --
  unless the hour field is a wildcard (``*/15 * * * *``, ``@hourly``), which
  runs in both passes, so it keeps its real-time rhythm. Intervals are plain
  seconds, unaffected by DST.

Running the scheduler inside a worker process::

    async with app, trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)   # started: leader or standby
        await nursery.start(worker.run)

``werk cron APP`` runs the schedulers created for the app in APP's module.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
import trio
from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

from ._rows import RowBuilder
from .errors import ConfigError, WerkError
from .jobs import EnqueueParams, Job, _seconds
from .serializers import Serializer, decode, encode
from .tasks import function_path

if TYPE_CHECKING:
    from .app import Werk
    from .db import Connection

__all__ = ["CronJob", "CronScheduler"]

logger = logging.getLogger("werk_trio.cron")

CatchUp = Literal["one", "none"]
_CATCH_UP = ("one", "none")
_MAX_NAME = 200
#: Candidate wall-clock times examined for one tick (an hour repeated by DST
#: holds 3,600 of a seconds-field expression).
_SEARCH_LIMIT = 20_000
#: Longest a leader sleeps between rounds: schedules registered by other
#: processes and shared pause state are seen at least this often.
_MAX_ROUND_SLEEP = 1.0
#: Shortest lease accepted: a round gets half of it.
_MIN_LEASE = 0.2
#: A schedule whose row cannot be planned (edited by hand into nonsense) is
#: looked at again this much later, not in a hot loop.
_BROKEN_RETRY = timedelta(seconds=60)


# --- tick arithmetic (pure functions) -------------------------------------------


def _zone(tz: str | None) -> ZoneInfo:
    name = "UTC" if tz is None else tz
    if not isinstance(name, str) or not name:
        raise ConfigError(f"tz must be an IANA timezone name such as 'Europe/Berlin', got {tz!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown timezone {name!r}: use an IANA name such as 'UTC', 'Europe/Berlin' or "
            "'America/New_York'"
        ) from None


def _resolve(naive: datetime, tz: ZoneInfo) -> datetime:
    """The instant (UTC) at which the wall clock of ``tz`` shows ``naive``: the
    first occurrence of a repeated time; for a skipped time, the instant of the
    change (when the wall clock jumps past it)."""
    after = naive.replace(tzinfo=tz).astimezone(UTC)  # fold=0: first occurrence
    if after.astimezone(tz).replace(tzinfo=None) == naive:
        return after
    # In the gap: fold=1 reads it with the offset after the change, which
    # gives an instant before the change; fold=0 one after it.
    before = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    offset = after.astimezone(tz).utcoffset()
    while after - before > timedelta(seconds=1):
        mid = before + (after - before) // 2
        mid = mid.replace(microsecond=0)
        if mid <= before:
            break
        if mid.astimezone(tz).utcoffset() == offset:
            after = mid
        else:
            before = mid
    return after


def _check_cron(given: Any) -> str:
    if not isinstance(given, str) or not given.strip():
        raise ConfigError(f"cron must be a cron expression such as '*/5 * * * *', got {given!r}")
    expr: str = " ".join(given.split())
    fields = expr.split(" ")
    if not (expr.startswith("@") or len(fields) in (5, 6)):
        raise ConfigError(
            f"cron expression {expr!r} has {len(fields)} fields: use five (minute hour "
            "day-of-month month day-of-week), six (a sixth for seconds), or an alias such as "
            "'@hourly' or '@daily'"
        )
    try:
        valid = croniter.is_valid(expr)
    except Exception:  # croniter raises for some malformed input instead of answering
        valid = False
    if not valid:
        raise ConfigError(
            f"invalid cron expression {expr!r}: expected five fields (minute hour day-of-month "
            "month day-of-week, e.g. '0 9 * * 1-5'), an optional sixth for seconds, or an "
            "alias such as '@hourly'"
        )
    return expr


_ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
            "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
            "@hourly": "0 * * * *"}  # fmt: skip


def _follows_real_time(expr: str) -> bool:
    """Whether the hour field is a wildcard (``*``, ``*/2``): then, as in Vixie
    cron, the expression runs in both passes of an hour the autumn change
    repeats; an expression for fixed hours runs once, at the first pass."""
    return _ALIASES.get(expr, expr).split(" ")[1].startswith("*")


def _instants(naive: datetime, tz: ZoneInfo, both_passes: bool) -> list[datetime]:
    first = _resolve(naive, tz)
    if both_passes:
        second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if second != first and second.astimezone(tz).replace(tzinfo=None) == naive:
            return [first, second]
    return [first]


def _cron_search(expr: str, tz: ZoneInfo, at: datetime, forward: bool) -> datetime:
    """The first tick after ``at`` (forward) or the last at or before it."""
    # Near an offset change, wall-clock order and time order differ by up to
    # the change's size: start that much earlier (later) and keep the best.
    shift = abs((at + timedelta(hours=3)).astimezone(tz).utcoffset()  # type: ignore[operator]
                - (at - timedelta(hours=3)).astimezone(tz).utcoffset())
    both = _follows_real_time(expr)
    local = at.astimezone(tz).replace(tzinfo=None, microsecond=0)
    start = local - shift if forward else local + shift + timedelta(seconds=1)
    best: datetime | None = None
    best_naive = start
    try:
        it = croniter(expr, start)
        for _ in range(_SEARCH_LIMIT):
            naive = it.get_next(datetime) if forward else it.get_prev(datetime)
            if best is not None and abs(naive - best_naive) > shift:
                return best
            for instant in _instants(naive, tz, both):
                fits = instant > at if forward else instant <= at
                better = best is None or (instant < best if forward else instant > best)
                if fits and better:
                    best, best_naive = instant, naive
            if best is not None and not shift:
                return best
    except (CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError) as ex:
        which = "next" if forward else "earlier"
        raise ConfigError(f"cron expression {expr!r} has no {which} run: {ex}") from None
    if best is not None:
        return best
    raise ConfigError(f"cron expression {expr!r} has no run within {_SEARCH_LIMIT} candidates")


def next_cron_tick(expr: str, tz: ZoneInfo, after: datetime) -> datetime:
    """The first tick of the cron expression ``expr``, read on the wall clock
    of ``tz``, strictly after the instant ``after``; in UTC."""
    return _cron_search(expr, tz, after, forward=True)


def latest_cron_tick(expr: str, tz: ZoneInfo, at: datetime) -> datetime:
    """The last tick of ``expr`` (in ``tz``) at or before the instant ``at``; in UTC."""
    return _cron_search(expr, tz, at, forward=False)


@dataclass(frozen=True)
class Timing:
    """When a schedule runs: a cron expression in a timezone, or an interval."""

    cron: str | None
    interval: float | None
    tz: str

    def first(self, now: datetime) -> datetime:
        """The first run of a new (or re-timed) schedule registered at ``now``."""
        if self.interval is not None:
            return now + timedelta(seconds=self.interval)
        return next_cron_tick(self.cron or "", _zone(self.tz), now)

    def after(self, tick: datetime) -> datetime:
        """The tick after ``tick``."""
        if self.interval is not None:
            return tick + timedelta(seconds=self.interval)
        return next_cron_tick(self.cron or "", _zone(self.tz), tick)

    def latest(self, due: datetime, now: datetime) -> datetime:
        """The last tick at or before ``now``, given that ``due`` (<= now) is one."""
        if self.interval is not None:
            step = timedelta(seconds=self.interval)
            return due + step * math.floor((now - due) / step)
        return max(due, latest_cron_tick(self.cron or "", _zone(self.tz), now))

    def describe(self) -> str:
        if self.interval is not None:
            return f"every {self.interval:g}s"
        return str(self.cron) if self.tz == "UTC" else f"{self.cron} ({self.tz})"


#: Most ticks of one schedule enqueued in one round (the rest: next round).
_MAX_TICKS_PER_ROUND = 1000


def plan_ticks(
    timing: Timing, due: datetime, now: datetime, catch_up: CatchUp, tolerance: float
) -> tuple[list[datetime], datetime]:
    """What a round does with a schedule due at ``due`` (<= ``now``): the ticks
    to enqueue, oldest first, and the schedule's next run.

    A tick at most ``tolerance`` seconds late gets its job (a slow round or a
    leader change loses nothing). Older ticks were missed -- no scheduler ran
    -- and collapse into one catch-up run for the latest of them with
    ``catch_up="one"``, into nothing with ``"none"``. The next run is after
    ``now`` unless more than ``_MAX_TICKS_PER_ROUND`` ticks are due.
    """
    ticks: list[datetime] = []
    tick = due
    horizon = now - timedelta(seconds=tolerance)
    if tick < horizon:
        missed = timing.latest(tick, horizon)
        if catch_up == "one":
            ticks.append(missed)
        tick = timing.after(missed)
    while tick <= now and len(ticks) < _MAX_TICKS_PER_ROUND:
        ticks.append(tick)
        tick = timing.after(tick)
    return ticks, tick


def tick_key(name: str, tick: datetime) -> str:
    """The idempotency key of ``name``'s job for ``tick``."""
    return f"cron:{name}:{tick.astimezone(UTC).isoformat()}"


# --- schedules --------------------------------------------------------------------


@dataclass(eq=False)
class CronJob:
    """A function enqueued on a schedule: a cron expression (``cron``) or a
    fixed number of seconds (``interval``), exactly one of them.

    ``name`` defaults to the function's ``module.qualname``; ``tz`` (cron
    expressions only) to UTC. ``next_run_at`` / ``last_run_at`` are the
    database's, refreshed while the scheduler runs. Invalid values raise
    :class:`ConfigError`.
    """

    func: Callable[..., Any] | str
    queue: str = "default"
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    interval: float | None = None
    cron: str | None = None
    timeout: float | None = None
    result_ttl: float | None = None
    failure_ttl: float | None = None
    meta: dict[str, Any] | None = None
    name: str | None = None
    paused: bool = False
    tz: str | None = None
    next_run_at: datetime | None = field(default=None, init=False)
    last_run_at: datetime | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.function = function_path(self.func)
        if self.name is None:
            self.name = self.function
        if not isinstance(self.name, str) or not self.name.strip() or len(self.name) > _MAX_NAME:
            raise ConfigError(
                f"a cron job's name must be a non-empty string of at most {_MAX_NAME} characters, "
                f"got {self.name!r}"
            )
        if (self.cron is None) == (self.interval is None):
            raise ConfigError(
                f"cron job {self.name!r}: pass exactly one of cron= (an expression such as "
                "'0 9 * * *') and interval= (seconds)"
            )
        if self.interval is not None:
            self.interval = _seconds(f"cron job {self.name!r}: interval", self.interval)
            if self.tz is not None:
                raise ConfigError(
                    f"cron job {self.name!r}: tz= applies to cron expressions; an interval is "
                    "plain seconds"
                )
        else:
            self.cron = _check_cron(self.cron)
            # an expression that never fires ('0 0 30 2 *') is refused now, not at run()
            next_cron_tick(self.cron, _zone(self.tz), datetime.now(UTC))
        _zone(self.tz)
        if not isinstance(self.queue, str) or not self.queue or len(self.queue) > 1000:
            raise ConfigError(f"cron job {self.name!r}: queue must be a non-empty string, got {self.queue!r}")
        if not isinstance(self.args, list | tuple):
            raise ConfigError(f"cron job {self.name!r}: args must be a list or tuple, got {self.args!r}")
        if not isinstance(self.kwargs, dict):
            raise ConfigError(f"cron job {self.name!r}: kwargs must be a dict, got {self.kwargs!r}")
        if self.meta is not None and not isinstance(self.meta, dict):
            raise ConfigError(f"cron job {self.name!r}: meta must be a dict, got {self.meta!r}")
        if self.timeout is not None:
            self.timeout = _seconds(f"cron job {self.name!r}: timeout", self.timeout)
        for attr in ("result_ttl", "failure_ttl"):
            if getattr(self, attr) is not None:
                setattr(self, attr, _seconds(f"cron job {self.name!r}: {attr}", getattr(self, attr),
                                             allow_zero=True))
        if not isinstance(self.paused, bool):
            raise ConfigError(f"cron job {self.name!r}: paused must be True or False, got {self.paused!r}")

    @property
    def timing(self) -> Timing:
        return Timing(self.cron, self.interval, self.tz or "UTC")

    def __repr__(self) -> str:
        state = " paused" if self.paused else ""
        return f"<CronJob {self.name} {self.timing.describe()} -> {self.function}{state}>"


def _options(job: CronJob, serializer: Serializer) -> str:
    """The stored options of ``job`` (args/kwargs/meta encoded with the app's serializer)."""
    payload = encode(
        serializer,
        {"args": list(job.args), "kwargs": job.kwargs, "meta": job.meta},
        f"args, kwargs and meta of cron job {job.name}",
    )
    return json.dumps(
        {"payload": payload, "timeout": job.timeout, "result_ttl": job.result_ttl,
         "failure_ttl": job.failure_ttl}
    )  # fmt: skip


def params_from_row(
    name: str, function: str, queue: str, options: str, serializer: Serializer, key: str | None
) -> EnqueueParams:
    """The EnqueueParams of one run of a stored schedule."""
    opts = json.loads(options)
    payload = decode(serializer, opts["payload"], f"options of cron schedule {name}")
    return EnqueueParams(
        function, payload["args"], payload["kwargs"], queue=queue, timeout=opts["timeout"],
        result_ttl=opts["result_ttl"], failure_ttl=opts["failure_ttl"], meta=payload["meta"],
        key=key, cron_name=name,
    )  # fmt: skip


#: The schedulers created for each app, for ``werk cron APP``.
_BY_APP: weakref.WeakKeyDictionary[Any, weakref.WeakSet[CronScheduler]] = weakref.WeakKeyDictionary()


def schedulers_for(app: Werk) -> list[CronScheduler]:
    """The CronSchedulers created (and still alive) for ``app``."""
    return list(_BY_APP.get(app, ()))


class _LostLease(Exception):
    pass


class CronScheduler:
    """Enqueues the jobs of its registered schedules, as the one leader among
    all schedulers of the app's schema (see the module docstring).

    ``standby_retry_interval`` (default ``WerkConfig.cron_standby_retry_interval``,
    30 s) is how often a standby tries to take the lease; ``lease`` (default
    ``WerkConfig.cron_lease``, 30 s) how long a lease lasts unrenewed. After
    the leader dies a standby leads within ``lease + standby_retry_interval``.
    """

    def __init__(
        self,
        app: Werk,
        *,
        standby_retry_interval: float | None = None,
        lease: float | None = None,
        catch_up: CatchUp = "one",
    ) -> None:
        from .app import Werk

        if not isinstance(app, Werk):
            raise ConfigError(f"CronScheduler needs a Werk app, got {type(app).__name__}")
        self.app = app
        cfg = app.config
        self.standby_retry_interval = _seconds(
            "standby_retry_interval",
            cfg.cron_standby_retry_interval if standby_retry_interval is None else standby_retry_interval,
        )
        self.lease = _seconds("lease", cfg.cron_lease if lease is None else lease)
        if self.lease < _MIN_LEASE:
            raise ConfigError(
                f"lease must be at least {_MIN_LEASE}s (a round must fit in half of it), got {self.lease!r}"
            )
        if catch_up not in _CATCH_UP:
            raise ConfigError(f"catch_up must be 'one' or 'none', got {catch_up!r}")
        self.catch_up: CatchUp = catch_up
        self.holder = uuid.uuid4()
        self.holder_name = f"{socket.gethostname()}:{os.getpid()}"
        self._jobs: dict[str, CronJob] = {}
        #: Changes not yet written: definitions (name -> "upsert" | "remove")
        #: and pause flags (name -> paused).
        self._pending: dict[str, str] = {}
        self._pending_paused: dict[str, bool] = {}
        self._changed = trio.Event()
        self._running = False
        self._stop = False
        self._cancel: trio.CancelScope | None = None
        self.generation: int | None = None
        self._leader_until = -math.inf
        _BY_APP.setdefault(app, weakref.WeakSet()).add(self)

    # --- registrations -------------------------------------------------------

    def register(
        self,
        func: Callable[..., Any] | str | CronJob,
        *,
        cron: str | None = None,
        interval: float | None = None,
        name: str | None = None,
        queue: str = "default",
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        timeout: float | None = None,
        result_ttl: float | None = None,
        failure_ttl: float | None = None,
        meta: dict[str, Any] | None = None,
        paused: bool = False,
        tz: str | None = None,
    ) -> CronJob:
        """Add (or replace, by name) a schedule; returns its CronJob. Takes
        effect in the database when the scheduler starts, or at its next round
        if it runs. ConfigError for an invalid schedule or a function the app's
        workers may not run."""
        if isinstance(func, CronJob):
            given = (cron, interval, name, args, kwargs, timeout, result_ttl, failure_ttl, meta, tz)
            if any(v not in (None, ()) for v in given) or queue != "default" or paused:
                raise ConfigError("register(CronJob(...)) takes its options from the CronJob: pass no others")
            job = func
        else:
            job = CronJob(
                func, queue=queue, args=args, kwargs={} if kwargs is None else kwargs,
                interval=interval, cron=cron, timeout=timeout, result_ttl=result_ttl,
                failure_ttl=failure_ttl, meta=meta, name=name, paused=paused, tz=tz,
            )  # fmt: skip
        if not self.app.tasks.is_allowed(job.function):
            raise ConfigError(
                f"cron job {job.name!r}: {job.function} is not a task the app's workers may run: "
                "register it with @app.task or app.register(fn), or list its module in "
                "Werk(task_modules=[...])"
            )
        # what enqueue would refuse, refused now (payload encoding and size)
        RowBuilder(self.app.serializer, self.app.config.max_payload_bytes).add(
            params_from_row(job.name or "", job.function, job.queue, _options(job, self.app.serializer),
                            self.app.serializer, None)
        )
        assert job.name is not None
        self._jobs[job.name] = job
        self._note(job.name, "upsert")
        return job

    def unregister(self, name: str) -> None:
        """Remove a schedule: it is marked removed in the database and never
        enqueued again (until registered again). ConfigError if unknown."""
        self._known(name)
        del self._jobs[name]
        self._note(name, "remove")

    def pause(self, name: str) -> None:
        """Stop enqueueing ``name`` (shared: every process sees it) until resumed."""
        self._known(name).paused = True
        self._pending_paused[name] = True
        self._changed.set()

    def resume(self, name: str) -> None:
        """Enqueue ``name`` again from its next tick on."""
        self._known(name).paused = False
        self._pending_paused[name] = False
        self._changed.set()

    def get(self, name: str) -> CronJob | None:
        return self._jobs.get(name)

    @property
    def jobs(self) -> Mapping[str, CronJob]:
        """Registered schedules by name (read-only)."""
        return MappingProxyType(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __iter__(self) -> Iterator[str]:
        return iter(self._jobs)

    def _known(self, name: str) -> CronJob:
        try:
            return self._jobs[name]
        except (KeyError, TypeError):
            raise ConfigError(
                f"no cron job named {name!r} in this scheduler; registered: {sorted(self._jobs) or 'none'}"
            ) from None

    def _note(self, name: str, change: str) -> None:
        self._pending[name] = change
        self._pending_paused.pop(name, None)
        self._changed.set()

    # --- state ---------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Whether this scheduler holds a lease it renewed less than ``lease`` ago."""
        return self.generation is not None and trio.current_time() < self._leader_until

    @property
    def role(self) -> str | None:
        """``"leader"``, ``"standby"``, or None when not running."""
        if not self._running:
            return None
        return "leader" if self.is_leader else "standby"

    def stop(self) -> None:
        """Make :meth:`run` return (a leader gives up its lease first)."""
        self._stop = True
        if self._cancel is not None:
            self._cancel.cancel()

    # --- running -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write the registrations, then lead or stand by until stopped or
        cancelled. With ``nursery.start`` it returns once the scheduler is
        leader or standby. Database errors are logged and retried; a leader
        that stops releases its lease so a standby takes over at once.

        Raises WerkError when the app is not connected, ConfigError when this
        scheduler already runs or a registration is invalid. Cancellation: the
        lease is released (shielded, at most 5 s) so a standby leads at once;
        a tick is enqueued in one transaction with its schedule's state, so a
        cancel never leaves a tick half-recorded (it is enqueued by the next
        leader, exactly once)."""
        if self._running:
            raise ConfigError("this CronScheduler is already running")
        self.app.pool  # noqa: B018 -- WerkError when the app is not connected
        self._running, self._stop = True, False
        try:
            with trio.CancelScope() as scope:
                self._cancel = scope
                await self._start()
                await self._try_lead()
                logger.info(
                    "cron scheduler %s started as %s (%d schedule(s))",
                    self.holder_name, self.role, len(self._jobs),
                )
                task_status.started()
                await self._loop()
        finally:
            self._cancel = None
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._release()
            self._running = False
            self.generation = None

    async def _start(self) -> None:
        """Write every registration (and the changes queued before the start),
        mark the schedules this scheduler does not register as removed."""
        backoff = 0.5
        while True:
            try:
                await self._sync(initial=True)
                return
            except (psycopg.OperationalError, psycopg.InterfaceError, WerkError) as ex:
                if isinstance(ex, ConfigError):
                    raise
                logger.warning("cron: cannot write the schedules (%s); retrying in %.1fs", ex, backoff)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _loop(self) -> None:
        backoff = 0.5
        while not self._stop:
            try:
                if self._pending or self._pending_paused:
                    await self._sync(initial=False)
                if self.generation is None:
                    await self._try_lead()
                if self.generation is not None:
                    wait = await self._round()
                else:
                    wait = self.standby_retry_interval
                await self._refresh()
                backoff = 0.5
            except _LostLease:
                continue
            except (psycopg.OperationalError, psycopg.InterfaceError, WerkError) as ex:
                if isinstance(ex, ConfigError):
                    raise
                logger.warning("cron: database error (%s); retrying in %.1fs", ex, backoff)
                wait, backoff = backoff, min(backoff * 2, 10.0)
            with trio.move_on_after(max(wait, 0.0)):
                await self._changed.wait()
            self._changed = trio.Event()

    async def _try_lead(self) -> None:
        sql = self.app.sql
        async with self.app.pool.connection() as conn:
            start = trio.current_time()
            cur = await conn.execute(
                sql.CRON_TAKE_LEASE,
                {"holder": self.holder, "holder_name": self.holder_name, "lease": self.lease},
            )
            row = await cur.fetchone()
        if row is not None:
            self.generation = int(row[0])
            self._leader_until = start + self.lease
            logger.info("cron scheduler %s leads (lease generation %d)", self.holder_name, self.generation)

    async def _round(self) -> float:
        """One leader round; the seconds until the next one."""
        sql = self.app.sql
        enqueued: list[tuple[str, Job]] = []
        with trio.move_on_after(self.lease / 2) as timer:
            async with self.app.pool.connection() as conn, conn.transaction():
                start = trio.current_time()
                await conn.execute(sql.CRON_ROUND_LIMITS, {"ms": str(max(1, int(self.lease * 500)))})
                cur = await conn.execute(
                    sql.CRON_RENEW,
                    {"holder": self.holder, "generation": self.generation, "lease": self.lease},
                )
                row = await cur.fetchone()
                if row is None:
                    logger.warning(
                        "cron scheduler %s lost the lease (generation %s): standing by",
                        self.holder_name, self.generation,
                    )
                    self.generation = None
                    raise _LostLease
                now = row[0]
                cur = await conn.execute(sql.CRON_DUE_SCHEDULES)
                for due in await cur.fetchall():
                    enqueued.extend((due[0], job) for job in await self._tick(conn, now, due))
                cur = await conn.execute(sql.CRON_NEXT_DUE)
                (until_next,) = await cur.fetchone()  # type: ignore[misc]
        if timer.cancelled_caught:
            logger.warning(
                "cron: a round took over %.1fs (half the lease) and was rolled back", self.lease / 2
            )
            return 0.0
        self._leader_until = start + self.lease
        for name, job in enqueued:
            logger.info("cron: enqueued %s as job %s", name, job.id)
        wait = min(self.lease / 3, _MAX_ROUND_SLEEP)
        if until_next is not None:
            wait = min(wait, float(until_next))
        return wait

    @property
    def tolerance(self) -> float:
        """Seconds a tick may be late and still get its job: twice the longest
        takeover, so leader changes never lose one (see :func:`plan_ticks`)."""
        return 2 * (self.lease + self.standby_retry_interval)

    async def _tick(self, conn: Connection[Any], now: datetime, due: Sequence[Any]) -> list[Job]:
        """Enqueue (or skip) one due schedule's ticks and advance it, inside the round."""
        name, function, queue, cron, interval, tz, options, paused, _, next_run_at = due[:10]
        made: list[tuple[datetime, Job]] = []
        try:
            timing = Timing(cron, interval, tz)
            ticks, following = plan_ticks(timing, next_run_at, now, self.catch_up, self.tolerance)
        except Exception as ex:  # a row edited into nonsense must not stop the others
            logger.error("cron schedule %s cannot be planned (%s); looking again in 60s", name, ex)
            ticks, following = [], now + _BROKEN_RETRY
        if ticks and not paused:
            try:
                async with conn.transaction():  # a savepoint: one bad schedule rolls back alone
                    params = [params_from_row(name, function, queue, options, self.app.serializer,
                                              tick_key(name, tick)) for tick in ticks]
                    got = await self.app.enqueue_many(params, _conn=conn)
                for tick, job in zip(ticks, got, strict=True):
                    if job is None:
                        logger.info("cron: %s for %s was enqueued already (key taken)", name, tick)
                    else:
                        made.append((tick, job))
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except (WerkError, psycopg.Error, ValueError, KeyError, TypeError) as ex:
                logger.error("cron schedule %s: cannot enqueue its run(s) %s: %s", name, ticks, ex)
        last = made[-1] if made else None
        await conn.execute(
            self.app.sql.CRON_ADVANCE,
            {"name": name, "next_run_at": following, "last_run_at": last[0] if last else None,
             "job_id": last[1].id if last else None, "runs": len(made)},
        )  # fmt: skip
        return [job for _, job in made]

    async def _refresh(self) -> None:
        """Copy next/last run and paused from the database into the CronJobs."""
        if not self._jobs:
            return
        rows = await self.app._fetch(self.app.sql.CRON_SCHEDULE_TIMES, {"names": list(self._jobs)})
        for name, next_run_at, last_run_at, paused in rows:
            job = self._jobs.get(name)
            if job is not None and name not in self._pending and name not in self._pending_paused:
                job.next_run_at, job.last_run_at, job.paused = next_run_at, last_run_at, paused

    async def _sync(self, *, initial: bool) -> None:
        """Write the queued changes (at the start: every registration)."""
        pending, flags = dict(self._pending), dict(self._pending_paused)
        if initial:
            for name in self._jobs:
                pending.setdefault(name, "upsert")
        upserts = [n for n, c in pending.items() if c == "upsert" and n in self._jobs]
        removes = [n for n, c in pending.items() if c == "remove" and n not in self._jobs]
        sql = self.app.sql
        serializer = self.app.serializer
        async with self.app.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(sql.CRON_LOCK_SCHEDULES, {"names": upserts})
            current = {r[0]: r for r in await cur.fetchall()}
            cur = await conn.execute(sql.CRON_NOW)
            (now,) = await cur.fetchone()  # type: ignore[misc]
            for name in upserts:
                job = self._jobs[name]
                old = current.get(name)
                timing = job.timing
                retime = old is None or old[4] or Timing(old[1], old[2], old[3]) != timing
                await conn.execute(
                    sql.CRON_UPSERT,
                    {"name": name, "function": job.function, "queue": job.queue, "cron": job.cron,
                     "interval_secs": job.interval, "tz": timing.tz, "options": _options(job, serializer),
                     "paused": job.paused, "next_run_at": timing.first(now), "retime": retime},
                )  # fmt: skip
            await conn.execute(
                sql.CRON_MARK_REMOVED,
                {"names": removes, "others": initial, "keep": list(self._jobs)},
            )
            for name, paused in flags.items():
                await conn.execute(sql.CRON_SET_PAUSED, {"name": name, "paused": paused})
        # what changed again meanwhile stays queued
        for name, change in pending.items():
            if self._pending.get(name) == change:
                del self._pending[name]
        for name, paused in flags.items():
            if self._pending_paused.get(name) == paused:
                del self._pending_paused[name]

    async def _release(self) -> None:
        if self.generation is None or self.app._pool is None:
            return
        try:
            async with self.app.pool.connection() as conn:
                await conn.execute(
                    self.app.sql.CRON_RELEASE, {"holder": self.holder, "generation": self.generation}
                )
            logger.info("cron scheduler %s released the lease", self.holder_name)
        except (psycopg.Error, WerkError) as ex:
            logger.warning("cron: could not release the lease (%s); it expires by itself", ex)

    def __repr__(self) -> str:
        return f"<CronScheduler {len(self._jobs)} schedule(s) {self.role or 'not running'}>"
