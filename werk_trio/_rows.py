"""Turning enqueue arguments into job rows, and rows back into Jobs.

Validation happens here, before anything touches the database: a bad option
raises ConfigError (or SerializationError / PayloadTooLarge) and nothing is
inserted.
"""

from __future__ import annotations

import gc
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import FunctionType
from typing import Any

from ._ids import uuid7
from .errors import ConfigError, PayloadTooLarge, SerializationError
from .jobs import (
    ENQUEUE_OPTIONS,
    MAX_SECONDS,
    Callback,
    Dependency,
    EnqueueParams,
    ExecutionStatus,
    Job,
    JobExecution,
    JobStatus,
    Repeat,
    Retry,
    _seconds,
    as_job_id,
)
from .serializers import JSONSerializer, Serializer, encode
from .tasks import function_path

_STATUS = {s.value: s for s in JobStatus}
_RUNNING = frozenset({"active", "aborting"})
_EXEC_STATUS = {s.value: s for s in ExecutionStatus}


def split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``enqueue`` keywords into (options without ``_``, payload kwargs)."""
    options: dict[str, Any] = {}
    payload: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name.startswith("_"):
            option = name[1:]
            if option not in ENQUEUE_OPTIONS:
                valid = ", ".join("_" + o for o in (*ENQUEUE_OPTIONS, "conn"))
                raise ConfigError(f"unknown enqueue option {name!r}; valid options: {valid}")
            options[option] = value
        else:
            payload[name] = value
    return options, payload


#: Longest queue name, ``_key``, ``_group`` and function path, in characters.
MAX_NAME_CHARS = 1000
#: Largest encoded ``_meta``, in bytes (64 KiB): meta travels with every claim.
MAX_META_BYTES = 64 * 1024


def unstorable(text: str) -> str | None:
    """Why Postgres text cannot hold ``text`` (a NUL, or a lone surrogate, which
    has no UTF-8 form), or None when it can."""
    if "\x00" in text:
        return f"a NUL character (at index {text.index(chr(0))})"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as ex:
            return f"a lone surrogate {text[ex.start]!r} (at index {ex.start})"
    return None


def check_text(name: str, value: Any) -> str:
    """``value`` if it is a string Postgres can store; ConfigError naming ``name`` otherwise."""
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    bad = unstorable(value)
    if bad is not None:
        shown = repr(value) if len(value) <= 80 else repr(value[:80]) + "..."
        raise ConfigError(f"{name} contains {bad}, which Postgres text cannot store: {shown}")
    return value


def storable_encoded(serializer: Serializer, text: str, what: str) -> str:
    """Serializer output ``text`` in a form Postgres text can store.

    JSON text can only hold a lone surrogate raw inside a string literal
    (NULs are always escaped), so JSONSerializer output gets the surrogate's
    ``\\uXXXX`` escape instead: it decodes to the very same value. Another
    serializer's output that Postgres cannot store is a SerializationError."""
    bad = unstorable(text)
    if bad is None:
        return text
    if isinstance(serializer, JSONSerializer) and "\x00" not in text:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    raise SerializationError(
        f"the {what} encoded with {serializer!r} contains {bad}, which Postgres text cannot "
        "store; make the serializer produce UTF-8-encodable text without NUL characters"
    )


def storable(text: str) -> str:
    """``text`` with NUL characters and lone surrogates replaced visibly (by the
    escapes ``\\x00`` and ``\\udcff``), so Postgres can store it. For error
    texts: what the handler said stays readable."""
    if unstorable(text) is None:
        return text
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _text(name: str, value: Any, *, allow_none: bool = True) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise ConfigError(
            f"{name} must be a non-empty string (at most {MAX_NAME_CHARS} characters), got {value!r}"
        )
    return check_text(name, value)


def dependencies(value: Any) -> list[Dependency]:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    deps = []
    for item in items:
        dep = item if isinstance(item, Dependency) else Dependency(item)
        as_job_id(dep.job)  # validates
        if not isinstance(dep.allow_failure, bool):
            raise ConfigError(f"Dependency allow_failure must be a bool, got {dep.allow_failure!r}")
        deps.append(dep)
    return deps


_DEFAULT_RETRY = Retry(1)
_INT32 = 2**31
_QUEUED, _SCHEDULED, _WAITING = JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.WAITING
_quote = json.encoder.encode_basestring_ascii  # a str as a JSON string literal (C)
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_UTC = UTC
#: Function (or dotted path) -> (the path stored, as a JSON string), shared by
#: all builders: resolving the path is a fifth of a single enqueue's own work.
_PATHS: dict[Any, tuple[str, str]] = {}
_PATHS_MAX = 4096
#: Smallest batch that RowBuilder.add_all builds with the garbage collector paused.
_GC_PAUSE_ROWS = 1000


def _micros(seconds: float) -> int:
    """Whole microseconds: the database adds them to now() exactly as Python does."""
    return round(seconds * 1_000_000)


@contextmanager
def gc_paused(rows: int) -> Iterator[None]:
    """Pause the cyclic garbage collector while ``rows`` (at least _GC_PAUSE_ROWS)
    jobs are built: the rows and Jobs hold no cycles, yet each collection they
    would trigger walks every one made so far (about two fifths of the time of
    20,000 adds, measured). Nested pauses leave it to the outermost."""
    pause = rows >= _GC_PAUSE_ROWS and gc.isenabled()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if pause:
            gc.enable()


class RowBuilder:
    """Validates enqueue arguments and collects what one INSERT_JOBS needs.

    ``plain`` holds the rows, which :meth:`rows_json` turns into the statement's
    one JSON array of objects with short keys, an absent key meaning the column default; each starts with the
    id, function and payload, and carries the other options only when they are
    set. ``jobs`` are the Jobs to return, complete except for the times the
    database fills in; :meth:`finish` sets those from the statement's ``now()``.
    Delays and ttls travel as whole microseconds, so that computing
    ``now + delay`` here gives exactly the ``scheduled_at`` the row got.
    """

    def __init__(self, serializer: Serializer, max_payload_bytes: int) -> None:
        self.serializer = serializer
        self.max_payload_bytes = max_payload_bytes
        self.jobs: list[Job] = []
        #: (job id, parent id, allow_failure) for every dependency.
        self.deps: list[tuple[uuid.UUID, uuid.UUID, bool]] = []
        #: Jobs whose times are not simply now(): (job, delay µs, at, ttl µs).
        self._timed: list[tuple[Job, int | None, datetime | None, int | None]] = []
        #: Whether any job has a ``_key`` (only those can collide).
        self.keyed = False
        #: Per row: id, function path, payload text, the options set (short
        #: keys), the path as a JSON string. INSERT_JOBS gets them as JSON
        #: (:meth:`rows_json`), COPY as they are (werk_trio/_bulk.py).
        self.plain: list[tuple[uuid.UUID, str, str, dict[str, Any], str]] = []

    @property
    def copyable(self) -> bool:
        """Whether COPY can insert these rows as they are: no ``_key`` (ON CONFLICT),
        no dependency (the deps table) and no time the statement computes from
        ``now()`` (``_delay``, ``_at``, ``_ttl``): every row queued, its times the
        column defaults."""
        return not self.keyed and not self.deps and not self._timed

    def add_all(self, items: Sequence[EnqueueParams]) -> None:
        """:meth:`add` each item (a large batch with the collector paused: :func:`gc_paused`)."""
        with gc_paused(len(items)):
            for item in items:
                self.add(item)

    def rows_json(self) -> str:
        """The rows as INSERT_JOBS's one JSON array."""
        rows: list[str] = []
        append = rows.append
        for job_id, _, payload, extra, path_json in self.plain:
            # Postgres reads a uuid from its 32 hex digits.
            head = f'{{"id":"{job_id.int:032x}","f":{path_json},"pl":{_quote(payload)}'
            append(head + "," + _dumps(extra)[1:] if extra else head + "}")
        return "[" + ",".join(rows) + "]"

    def add(self, p: EnqueueParams) -> None:
        func = p.func
        try:
            path, path_json = _PATHS[func]
        except (KeyError, TypeError):
            path = function_path(func)
            path_json = _quote(path)
            if type(func) is FunctionType or type(func) is str:  # no bound methods: they hold objects
                if len(_PATHS) >= _PATHS_MAX:
                    _PATHS.clear()
                _PATHS[func] = (path, path_json)
        # Options that are set go to ``extra`` (row keys) and ``rare`` (Job
        # fields); a job with none of them skips both.
        extra: dict[str, Any] = {}
        rare: dict[str, Any] = {}
        queue = p.queue
        if queue != "default":
            _text("_queue", queue, allow_none=False)
            extra["q"] = queue
        priority = p.priority
        if priority != 0 or type(priority) is not int:
            if (isinstance(priority, bool) or not isinstance(priority, int)
                    or not -_INT32 <= priority < _INT32):
                raise ConfigError(f"_priority must be an int (32-bit), got {priority!r}")
            extra["p"] = priority
        delay, at = p.delay, p.at
        delay_us: int | None = None
        if delay is not None:
            if at is not None:
                raise ConfigError("pass at most one of _delay (seconds from now) and _at (a datetime)")
            delay = _seconds("_delay", delay, allow_zero=True)
            if delay:
                delay_us = extra["d"] = _micros(delay)
        if at is not None:
            if not isinstance(at, datetime):
                raise ConfigError(f"_at must be a timezone-aware datetime, got {at!r}")
            if at.tzinfo is None or at.tzinfo.utcoffset(at) is None:
                raise ConfigError(
                    f"_at={at!r} is a naive datetime: pass an aware one, e.g. "
                    "datetime.now(timezone.utc) + timedelta(minutes=5)"
                )
            extra["at"] = at.isoformat()
        retry = p.retry
        if retry is None:
            retry_obj = _DEFAULT_RETRY
        elif isinstance(retry, Retry):
            retry_obj = retry
        elif isinstance(retry, int) and not isinstance(retry, bool):
            # pgwerk's reading: _retry=0 (no retries) is one attempt, as is 1
            retry_obj = _DEFAULT_RETRY if retry == 0 else Retry(retry)
        else:
            raise ConfigError(f"_retry must be an int (total attempts) or Retry(...), got {retry!r}")
        if retry_obj.max > 1:
            extra["ma"] = retry_obj.max
            extra["ri"] = rare["retry_intervals"] = list(retry_obj.intervals)  # type: ignore[arg-type]
        if p.timeout is not None:
            extra["to_"] = rare["timeout_secs"] = _seconds("_timeout", p.timeout)
        if p.heartbeat is not None:
            extra["hb"] = rare["heartbeat_secs"] = _seconds("_heartbeat", p.heartbeat)
        if p.key is not None:
            extra["k"] = rare["key"] = _text("_key", p.key)
            self.keyed = True
        if p.group is not None:
            extra["g"] = rare["group_key"] = _text("_group", p.group)
        meta = p.meta
        if meta is not None:
            if not isinstance(meta, dict):
                raise ConfigError(f"_meta must be a dict, got {type(meta).__name__}")
            extra["m"] = text = encode(self.serializer, meta, f"_meta of {path}")
            size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
            if size > MAX_META_BYTES:
                raise ConfigError(
                    f"_meta of {path} is {size} bytes encoded, over the limit of {MAX_META_BYTES}: "
                    "keep meta small (it travels with every claim) and put data in the payload"
                )
            extra["m"] = storable_encoded(self.serializer, text, f"_meta of {path}")
            if meta:
                rare["meta"] = dict(meta)
        ttl_us: int | None = None
        if p.ttl is not None:
            ttl = extra["ttl"] = rare["ttl"] = _seconds("_ttl", p.ttl)
            ttl_us = extra["tu"] = _micros(ttl)
        if p.result_ttl is not None:
            extra["rttl"] = rare["result_ttl"] = _seconds("_result_ttl", p.result_ttl, allow_zero=True)
        if p.failure_ttl is not None:
            extra["fttl"] = rare["failure_ttl"] = _seconds("_failure_ttl", p.failure_ttl, allow_zero=True)
        if p.failure_mode != "hold":
            if p.failure_mode != "delete":
                raise ConfigError(f"_failure_mode must be 'hold' or 'delete', got {p.failure_mode!r}")
            extra["fm"] = rare["failure_mode"] = "delete"
        if p.on_success is not None or p.on_failure is not None or p.on_stopped is not None:
            for short, field, value in (
                ("on_s", "on_success", p.on_success),
                ("on_f", "on_failure", p.on_failure),
                ("on_x", "on_stopped", p.on_stopped),
            ):
                if value is not None:
                    cb = value if isinstance(value, Callback) else Callback(value)
                    cb = rare[field] = Callback(function_path(cb.func), cb.timeout)
                    extra[short] = {"func": cb.func, "timeout": cb.timeout}
        repeat = p.repeat
        if repeat is not None:
            if not isinstance(repeat, Repeat):
                raise ConfigError(
                    f"_repeat must be Repeat(times, interval=... | intervals=[...]), got {repeat!r}"
                )
            extra["rr"] = rare["repeat_remaining"] = repeat.times
            if repeat.intervals is None:
                extra["rs"] = rare["repeat_interval_secs"] = repeat.interval
            else:
                # one delay per repeat (the last value reused), so the next
                # delay is always rep_iv[len - remaining]
                given = list(repeat.intervals or ())
                extra["rv"] = rare["repeat_intervals"] = (given + given[-1:] * repeat.times)[: repeat.times]
        if p.cron_name is not None:
            extra["cron"] = rare["cron_name"] = _text("_cron_name", p.cron_name)
        args, kwargs = p.args, p.kwargs
        if not isinstance(args, list | tuple):
            raise ConfigError(f"args must be a list or tuple, got {type(args).__name__}")
        if not isinstance(kwargs, dict):
            raise ConfigError(f"kwargs must be a dict, got {type(kwargs).__name__}")
        deps = dependencies(p.depends_on) if p.depends_on is not None else ()

        payload_obj = {"args": list(args), "kwargs": kwargs}
        payload = encode(self.serializer, payload_obj, f"payload of {path}")
        if payload.isascii():
            size = len(payload)
            if "\x00" in payload:
                storable_encoded(self.serializer, payload, f"payload of {path}")  # raises
        else:
            payload = storable_encoded(self.serializer, payload, f"payload of {path}")
            size = len(payload.encode("utf-8"))
        if size > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"the payload of {path} is {size} bytes encoded, over max_payload_bytes "
                f"({self.max_payload_bytes}); store large data elsewhere and pass a reference, "
                "or raise Werk(max_payload_bytes=...)"
            )

        job_id = uuid7()
        if deps:
            status = _WAITING
            extra["s"] = "waiting"
        elif delay or at is not None:
            status = _SCHEDULED
            extra["s"] = "scheduled"
        else:
            status = _QUEUED
        self.plain.append((job_id, path, payload, extra, path_json))
        for dep in deps:
            self.deps.append((job_id, dep.job_id, dep.allow_failure))
        job = Job(
            job_id, path, queue, status, priority, 0, retry_obj.max, None, None,  # type: ignore[arg-type]
            payload=payload_obj, **rare,
        )
        self.jobs.append(job)
        if delay_us is not None or at is not None or ttl_us is not None:
            self._timed.append((job, delay_us, at, ttl_us))

    def inserted(self, keyed_ids: Sequence[uuid.UUID] | None) -> list[Job]:
        """The jobs INSERT_JOBS inserted, given the ids of the keyed rows it inserted."""
        if not self.keyed:
            return self.jobs
        got = set(keyed_ids or ())
        return [job for job in self.jobs if job.key is None or job.id in got]

    def finish(self, now: datetime | None, keyed_ids: Sequence[uuid.UUID] | None) -> list[Job | None]:
        """The result of enqueueing: each Job with the times the database gave it
        (``now`` is the statement's ``now()``), or None where its key was taken.
        ``now`` None: nothing was inserted (INSERT_JOB's one keyed job lost its key)."""
        if now is None:
            return [None] * len(self.jobs)
        for job in self.jobs:
            job.enqueued_at = job.scheduled_at = now
        if self._timed:
            tz, now_utc = now.tzinfo, now.astimezone(_UTC)
            for job, delay_us, at, ttl_us in self._timed:
                # UTC arithmetic, as the database's: no wall-clock (DST) jumps.
                if at is not None:
                    run_utc = at.astimezone(_UTC)
                elif delay_us is not None:
                    run_utc = now_utc + timedelta(microseconds=delay_us)
                else:
                    run_utc = now_utc
                job.scheduled_at = run_utc.astimezone(tz)
                if job.status is _SCHEDULED and run_utc <= now_utc:
                    job.status = _QUEUED  # an _at already passed: queued at once (INSERT_JOBS)
                if ttl_us is not None:
                    job.expires_at = (run_utc + timedelta(microseconds=ttl_us)).astimezone(tz)
        if not self.keyed:
            return self.jobs  # type: ignore[return-value]
        got = set(keyed_ids or ())
        return [job if job.key is None or job.id in got else None for job in self.jobs]


def _bad_column(column: str, problem: str) -> SerializationError:
    return SerializationError(f"the job row does not decode: column {column} {problem}")


def _decode_callback(column: str, value: Any) -> Callback | None:
    if value is None:
        return None
    try:
        if isinstance(value, str):
            value = json.loads(value)
        func, timeout = value["func"], value.get("timeout", 10.0)
        if not isinstance(func, str) or not func:
            raise ValueError(f"func must be a dotted path, got {func!r}")
        return Callback(func, timeout)
    except Exception as ex:
        shape = "{'func': 'pkg.mod.fn', 'timeout': seconds}"
        raise _bad_column(column, f"is not a callback ({shape}): {type(ex).__name__}: {ex}") from None


def _decode_column(serializer: Serializer, data: str | None, column: str) -> Any:
    if data is None:
        return None
    try:
        return serializer.loads(data)
    except Exception as ex:
        raise _bad_column(column, f"does not decode with {serializer!r}: {type(ex).__name__}: {ex}") from None


#: Row positions (JOB_COLUMNS order) of the seconds columns, and of the interval arrays.
_SECONDS_AT = {18: "timeout_secs", 19: "heartbeat_secs", 22: "ttl", 23: "result_ttl",
               24: "failure_ttl", 30: "repeat_interval_secs"}  # fmt: skip
_INTERVALS_AT = {28: "retry_intervals", 31: "repeat_intervals"}


def _check_numbers(row: Sequence[Any]) -> None:
    """Every seconds column finite and within 0..MAX_SECONDS (a row written
    past the API may hold NaN, Infinity or 1e300: each would break a worker
    once added to a clock)."""
    if (row[18] is None and row[19] is None and row[22] is None and row[23] is None
            and row[24] is None and row[30] is None and not row[28] and not row[31]):
        return  # the common row (no timeouts, TTLs or intervals): nothing to check
    for at, column in _SECONDS_AT.items():
        value = row[at]
        if value is not None and not 0 <= value <= MAX_SECONDS:
            raise _bad_column(column, f"holds {value!r}: expected seconds from 0 to {MAX_SECONDS:.0f}")
    for at, column in _INTERVALS_AT.items():
        values = row[at]
        if values:
            for value in values:
                if value is None or not 0 <= value <= MAX_SECONDS:
                    raise _bad_column(
                        column, f"holds {value!r}: expected seconds from 0 to {MAX_SECONDS:.0f}"
                    )


def _payload(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        kwargs: Any = None
    else:
        kwargs = value.get("kwargs", {})
    if (
        kwargs is None
        or not isinstance(value.get("args", []), list)
        or not isinstance(kwargs, dict)
        or (kwargs and not all(isinstance(k, str) for k in kwargs))
    ):
        raise _bad_column("payload", f"is not {{'args': [...], 'kwargs': {{...}}}}: {type(value).__name__}")
    return value


#: The payload of a job enqueued without arguments, as JSONSerializer writes it.
_NO_ARGUMENTS_JSON = '{"args":[],"kwargs":{}}'


def _decoded_payload(serializer: Serializer, data: str | None) -> Any:
    """The payload column decoded and checked (SerializationError otherwise)."""
    if data == _NO_ARGUMENTS_JSON and type(serializer) is JSONSerializer:
        # the commonest payload, known good: a fresh dict costs a tenth of decoding it
        return {"args": [], "kwargs": {}}
    return _payload(_decode_column(serializer, data, "payload"))


def bare_job(row: Sequence[Any], error: str | None = None) -> Job:
    """A Job from the row's typed columns only (nothing decoded: payload, result,
    meta and callbacks empty), for failing or listing a row that does not decode."""
    return Job(
        id=row[0], function=row[1], queue=row[2], status=_STATUS[row[3]], priority=row[4],
        attempts=row[5], max_attempts=row[6], scheduled_at=row[7], enqueued_at=row[8],
        started_at=row[9], completed_at=row[10], touched_at=row[11], expires_at=row[12],
        key=row[13], group_key=row[14], worker_id=row[20], repeat_remaining=row[29],
        cron_name=row[32], failure_mode=row[33], error=error,
    )  # fmt: skip


def job_from_row(
    row: Sequence[Any], serializer: Serializer, allowed: Callable[[str], bool] | None = None
) -> Job:
    """A Job from a row in JOB_COLUMNS order; SerializationError naming the
    column when one does not decode.

    ``allowed``: with a serializer whose ``loads`` can run code (PickleSerializer),
    the allowlist -- payload, result and meta of a row whose function it does
    not allow are not decoded at all (they come back None / ``{}``)."""
    (id_, function, queue, status, priority, attempts, max_attempts, scheduled_at, enqueued_at,
     started_at, completed_at, touched_at, expires_at, key, group_key, payload, result, error,
     timeout_secs, heartbeat_secs, worker_id, meta, ttl, result_ttl, failure_ttl, on_success,
     on_failure, on_stopped, retry_intervals, repeat_remaining, repeat_interval_secs,
     repeat_intervals, cron_name, failure_mode, progress, progress_message) = row[:36]  # fmt: skip
    _check_numbers(row)
    if allowed is not None and not allowed(function):
        payload = result = meta = None
    decoded_meta = None if meta is None else _decode_column(serializer, meta, "meta")
    if decoded_meta is not None and not isinstance(decoded_meta, dict):
        raise _bad_column("meta", f"is not a dict: {type(decoded_meta).__name__}")
    return Job(
        id=id_, function=function, queue=queue, status=_STATUS[status], priority=priority,
        attempts=attempts, max_attempts=max_attempts, scheduled_at=scheduled_at,
        enqueued_at=enqueued_at, started_at=started_at, completed_at=completed_at,
        touched_at=touched_at, expires_at=expires_at, key=key, group_key=group_key,
        payload=_decoded_payload(serializer, payload),
        # a running job has no result yet (a claimed repeat's is its last run's):
        # the worker never decodes it, so a bad one cannot fail the run
        result=_decode_column(serializer, result, "result") if status not in _RUNNING else None,
        error=error, timeout_secs=timeout_secs, heartbeat_secs=heartbeat_secs, worker_id=worker_id,
        meta=decoded_meta or {}, ttl=ttl, result_ttl=result_ttl,
        failure_ttl=failure_ttl,
        # most jobs have no callbacks: no call for a NULL column
        on_success=None if on_success is None else _decode_callback("on_success", on_success),
        on_failure=None if on_failure is None else _decode_callback("on_failure", on_failure),
        on_stopped=None if on_stopped is None else _decode_callback("on_stopped", on_stopped),
        retry_intervals=retry_intervals, repeat_remaining=repeat_remaining,
        repeat_interval_secs=repeat_interval_secs, repeat_intervals=repeat_intervals,
        cron_name=cron_name, failure_mode=failure_mode,
        progress=progress, progress_message=progress_message,
    )  # fmt: skip


def execution_from_row(
    row: Sequence[Any], serializer: Serializer | None = None, allowed: Callable[[str], bool] | None = None
) -> JobExecution:
    """A JobExecution from a GET_EXECUTIONS row (the result decoded with
    ``serializer``, unless ``allowed`` refuses the job's function: then the
    result stays None -- a serializer that runs code never sees such a row)."""
    job_id, attempt, worker_id, status, started_at, finished_at, error = row[:7]
    result = row[7] if len(row) > 7 else None
    if result is not None and allowed is not None and not allowed(row[8]):
        result = None
    if result is not None and serializer is not None:
        result = _decode_column(serializer, result, "result")
    return JobExecution(
        job_id, attempt, worker_id, _EXEC_STATUS[status], started_at, finished_at, error, result
    )
