"""Turning enqueue arguments into job rows, and rows back into Jobs.

Validation happens here, before anything touches the database: a bad option
raises ConfigError (or SerializationError / PayloadTooLarge) and nothing is
inserted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import FunctionType
from typing import Any

from ._ids import uuid7
from .errors import ConfigError, PayloadTooLarge
from .jobs import (
    ENQUEUE_OPTIONS,
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
from .serializers import Serializer, decode, encode
from .tasks import function_path

_STATUS = {s.value: s for s in JobStatus}
_EXEC_STATUS = {s.value: s for s in ExecutionStatus}


def split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``enqueue`` keywords into (options without ``_``, payload kwargs)."""
    options: dict[str, Any] = {}
    payload: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name.startswith("_"):
            option = name[1:]
            if option not in ENQUEUE_OPTIONS:
                valid = ", ".join("_" + o for o in ENQUEUE_OPTIONS + ("conn",))
                raise ConfigError(f"unknown enqueue option {name!r}; valid options: {valid}")
            options[option] = value
        else:
            payload[name] = value
    return options, payload


def _text(name: str, value: Any, *, allow_none: bool = True) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value or len(value) > 1000:
        raise ConfigError(f"{name} must be a non-empty string (at most 1000 characters), got {value!r}")
    return value


def _callback(name: str, value: Any) -> str | None:
    if value is None:
        return None
    cb = value if isinstance(value, Callback) else Callback(value)
    return json.dumps({"func": function_path(cb.func), "timeout": cb.timeout})


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


def _micros(seconds: float) -> int:
    """Whole microseconds: the database adds them to now() exactly as Python does."""
    return round(seconds * 1_000_000)


class RowBuilder:
    """Validates enqueue arguments and collects what one INSERT_JOBS needs.

    ``rows`` are the JSON objects (as text) of the statement's one JSON array:
    short keys, an absent key meaning the column default; each starts with the
    id, function and payload, and carries the other options only when they are
    set. ``jobs`` are the Jobs to return, complete except for the times the
    database fills in; :meth:`finish` sets those from the statement's ``now()``.
    Delays and ttls travel as whole microseconds, so that computing
    ``now + delay`` here gives exactly the ``scheduled_at`` the row got.
    """

    def __init__(self, serializer: Serializer, max_payload_bytes: int) -> None:
        self.serializer = serializer
        self.max_payload_bytes = max_payload_bytes
        self.rows: list[str] = []
        self.jobs: list[Job] = []
        #: (job id, parent id, allow_failure) for every dependency.
        self.deps: list[tuple[uuid.UUID, uuid.UUID, bool]] = []
        #: Jobs whose times are not simply now(): (job, delay µs, at, ttl µs).
        self._timed: list[tuple[Job, int | None, datetime | None, int | None]] = []
        #: Whether any job has a ``_key`` (only those can collide).
        self.keyed = False

    def rows_json(self) -> str:
        return "[" + ",".join(self.rows) + "]"

    def add(self, p: EnqueueParams, cron_name: str | None = None) -> None:
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
            if isinstance(priority, bool) or not isinstance(priority, int) or not -_INT32 <= priority < _INT32:
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
            retry_obj = Retry(retry)
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
            extra["m"] = encode(self.serializer, meta, f"_meta of {path}")
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
            if repeat.interval is not None:
                extra["rs"] = rare["repeat_interval_secs"] = repeat.interval
            else:
                # one delay per repeat (the last value reused), so the next
                # delay is always rep_iv[len - remaining]
                given = list(repeat.intervals or ())
                extra["rv"] = rare["repeat_intervals"] = (given + given[-1:] * repeat.times)[: repeat.times]
        if cron_name is not None:
            extra["cron"] = rare["cron_name"] = cron_name
        args, kwargs = p.args, p.kwargs
        if not isinstance(args, list | tuple):
            raise ConfigError(f"args must be a list or tuple, got {type(args).__name__}")
        if not isinstance(kwargs, dict):
            raise ConfigError(f"kwargs must be a dict, got {type(kwargs).__name__}")
        deps = dependencies(p.depends_on) if p.depends_on is not None else ()

        payload_obj = {"args": list(args), "kwargs": kwargs}
        payload = encode(self.serializer, payload_obj, f"payload of {path}")
        size = len(payload) if payload.isascii() else len(payload.encode("utf-8"))
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
        # Postgres reads a uuid from its 32 hex digits.
        head = f'{{"id":"{job_id.int:032x}","f":{path_json},"pl":{_quote(payload)}'
        self.rows.append(head + "," + _dumps(extra)[1:] if extra else head + "}")
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

    def finish(self, now: datetime, keyed_ids: Sequence[uuid.UUID] | None) -> list[Job | None]:
        """The result of enqueueing: each Job with the times the database gave it
        (``now`` is the statement's ``now()``), or None where its key was taken."""
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


def _decode_callback(value: Any) -> Callback | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    return Callback(value["func"], value["timeout"])


def job_from_row(row: Sequence[Any], serializer: Serializer) -> Job:
    """A Job from a row in JOB_COLUMNS order."""
    (id_, function, queue, status, priority, attempts, max_attempts, scheduled_at, enqueued_at,
     started_at, completed_at, touched_at, expires_at, key, group_key, payload, result, error,
     timeout_secs, heartbeat_secs, worker_id, meta, ttl, result_ttl, failure_ttl, on_success,
     on_failure, on_stopped, retry_intervals, repeat_remaining, repeat_interval_secs,
     repeat_intervals, cron_name, failure_mode, progress, progress_message) = row[:36]  # fmt: skip
    return Job(
        id=id_, function=function, queue=queue, status=_STATUS[status], priority=priority,
        attempts=attempts, max_attempts=max_attempts, scheduled_at=scheduled_at,
        enqueued_at=enqueued_at, started_at=started_at, completed_at=completed_at,
        touched_at=touched_at, expires_at=expires_at, key=key, group_key=group_key,
        payload=decode(serializer, payload, "payload"), result=decode(serializer, result, "result"),
        error=error, timeout_secs=timeout_secs, heartbeat_secs=heartbeat_secs, worker_id=worker_id,
        meta=decode(serializer, meta, "meta") or {}, ttl=ttl, result_ttl=result_ttl,
        failure_ttl=failure_ttl, on_success=_decode_callback(on_success),
        on_failure=_decode_callback(on_failure), on_stopped=_decode_callback(on_stopped),
        retry_intervals=retry_intervals, repeat_remaining=repeat_remaining,
        repeat_interval_secs=repeat_interval_secs, repeat_intervals=repeat_intervals,
        cron_name=cron_name, failure_mode=failure_mode,
        progress=progress, progress_message=progress_message,
    )  # fmt: skip


def execution_from_row(row: Sequence[Any]) -> JobExecution:
    job_id, attempt, worker_id, status, started_at, finished_at, error = row
    return JobExecution(job_id, attempt, worker_id, _EXEC_STATUS[status], started_at, finished_at, error)
