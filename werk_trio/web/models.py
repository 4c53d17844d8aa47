"""The REST API's request bodies and response shapes (pydantic models).

Shapes follow pgwerk's API (``JobResponse``, ``ExecutionResponse``,
``WorkerResponse``, ``StatsResponse`` ...), field for field; where werk_trio
knows more, fields are added after pgwerk's, never renamed:

* jobs add ``args``, ``kwargs``, ``result``, ``expires_at`` and ``cron_name``
  (a client that enqueued a job wants its result; values the JSON encoder
  cannot represent are sent as their ``repr``, so a pickled result never
  fails a response);
* jobs also add ``progress`` and ``progress_message`` (``ctx.set_progress``);
* workers add ``queues`` (a list), ``hostname``, ``pid``, ``worker_type``,
  ``concurrency``, ``heartbeat_age`` and ``stopped_at`` (a werk_trio worker
  serves several queues: pgwerk's ``queue`` is them comma-separated).

Request bodies forbid unknown fields, so a typo is a 422 naming the field
instead of an option silently ignored.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..flow import QueueInfo
from ..jobs import Job, JobExecution

__all__ = [
    "BulkCancelRequest",
    "BulkRequeueRequest",
    "EnqueueRequest",
    "ErrorResponse",
    "ExecutionResponse",
    "JobResponse",
    "PurgeRequest",
    "QueueLimitRequest",
    "QueueRateRequest",
    "QueueResponse",
    "QueueStats",
    "StatsResponse",
    "WorkerResponse",
    "jsonable",
]

#: The largest page a list endpoint returns (pgwerk's bound).
MAX_LIMIT = 500
#: The deepest offset a list endpoint accepts: deeper pages cost a scan of
#: every skipped row; filter instead.
MAX_OFFSET = 100_000
#: Longest history window, in minutes (a week; pgwerk's bound).
MAX_MINUTES = 10_080


def jsonable(value: Any) -> Any:
    """``value`` if JSON can represent it, else its ``repr`` (results and
    payloads come from any serializer; a response must never fail on one)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: what was wrong, and the field when one is to blame."""

    error: str
    field: str | None = None
    detail: list[dict[str, Any]] | None = None


class JobResponse(BaseModel):
    id: str
    function: str
    queue: str
    status: str
    priority: int
    attempts: int
    max_attempts: int
    scheduled_at: datetime
    enqueued_at: datetime
    key: str | None = None
    group_key: str | None = None
    error: str | None = None
    timeout_secs: float | None = None
    heartbeat_secs: float | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    worker_id: str | None = None
    meta: dict[str, Any] | None = None
    # werk_trio's additions
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    expires_at: datetime | None = None
    cron_name: str | None = None
    #: What the handler last reported with ``ctx.set_progress``: 0..1 and a message.
    progress: float | None = None
    progress_message: str | None = None

    @classmethod
    def from_job(cls, job: Job) -> JobResponse:
        payload = job.payload if isinstance(job.payload, dict) else {}
        args = payload.get("args", [])
        kwargs = payload.get("kwargs", {})
        return cls(
            id=str(job.id),
            function=job.function,
            queue=job.queue,
            status=job.status.value,
            priority=job.priority,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            scheduled_at=job.scheduled_at,
            enqueued_at=job.enqueued_at,
            key=job.key,
            group_key=job.group_key,
            error=job.error,
            timeout_secs=job.timeout_secs,
            heartbeat_secs=job.heartbeat_secs,
            started_at=job.started_at,
            completed_at=job.completed_at,
            worker_id=None if job.worker_id is None else str(job.worker_id),
            meta=jsonable(job.meta) if isinstance(job.meta, dict) else None,
            args=[jsonable(a) for a in args] if isinstance(args, list) else [repr(args)],
            kwargs={str(k): jsonable(v) for k, v in kwargs.items()} if isinstance(kwargs, dict) else {},
            result=jsonable(job.result),
            expires_at=job.expires_at,
            cron_name=job.cron_name,
            progress=job.progress,
            progress_message=job.progress_message,
        )


class ExecutionResponse(BaseModel):
    """One attempt. pgwerk's ``id`` (an execution row id) is ``{job_id}:{attempt}``
    here: werk_trio keys executions by job and attempt."""

    id: str
    job_id: str
    attempt: int
    status: str
    worker_id: str | None = None
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @classmethod
    def from_execution(cls, e: JobExecution) -> ExecutionResponse:
        return cls(
            id=f"{e.job_id}:{e.attempt}",
            job_id=str(e.job_id),
            attempt=e.attempt,
            status=e.status.value,
            worker_id=None if e.worker_id is None else str(e.worker_id),
            error=e.error,
            started_at=e.started_at,
            completed_at=e.finished_at,
        )


class WorkerResponse(BaseModel):
    """A worker as ``Werk.list_workers()`` shows it: pgwerk's keys (``queue`` is
    the queues comma-separated), then werk_trio's."""

    id: str
    name: str
    queue: str
    status: str
    role: str = "worker"
    metadata: dict[str, Any] | None = None
    heartbeat_at: datetime | None = None
    started_at: datetime | None = None
    expires_at: datetime | None = None
    # werk_trio's additions
    queues: list[str] = Field(default_factory=list)
    hostname: str | None = None
    pid: int | None = None
    worker_type: str | None = None
    concurrency: int | None = None
    heartbeat_age: float | None = None
    stopped_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> WorkerResponse:
        fields = {k: row[k] for k in cls.model_fields if k in row}
        fields["id"] = str(row["id"])
        fields["queues"] = [str(q) for q in row.get("queues") or []]
        if isinstance(row.get("metadata"), dict):
            fields["metadata"] = {str(k): jsonable(v) for k, v in row["metadata"].items()}
        return cls(**fields)


class QueueStats(BaseModel):
    queue: str
    scheduled: int = 0
    queued: int = 0
    active: int = 0
    waiting: int = 0
    failed: int = 0
    complete: int = 0
    aborted: int = 0
    # werk_trio's addition: jobs told to stop, not yet stopped
    aborting: int = 0
    # werk_trio's addition: the statuses whose count is an estimate (more
    # than the app's estimate_limit jobs of this queue and status)
    estimated: list[str] = Field(default_factory=list)


class StatsResponse(BaseModel):
    queues: list[QueueStats]
    total_jobs: int
    workers_online: int


class EnqueueRequest(_Body):
    """``POST /api/jobs``. pgwerk's ``cron_name`` is not accepted: only the
    scheduler stamps a job with its cron name."""

    function: str = Field(min_length=1, max_length=1000)
    queue: str = "default"
    priority: int = Field(default=0, ge=-(2**31), le=2**31 - 1)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    key: str | None = Field(default=None, min_length=1, max_length=1000)
    delay: float | None = Field(default=None, ge=0)
    scheduled_at: datetime | None = None
    max_attempts: int | None = Field(default=None, ge=1)
    timeout_secs: float | None = Field(default=None, gt=0)
    meta: dict[str, Any] | None = None


class BulkRequeueRequest(_Body):
    queue: str | None = None
    function_name: str | None = None


class BulkCancelRequest(_Body):
    queue: str | None = None


Purgeable = Literal["complete", "failed", "aborted"]
_PURGEABLE: tuple[Purgeable, ...] = ("complete", "failed", "aborted")


class PurgeRequest(_Body):
    """``POST /api/jobs/purge``: finished jobs only (running or waiting ones
    are cancelled or aborted first)."""

    statuses: list[Purgeable] = Field(default_factory=lambda: list(_PURGEABLE), min_length=1, max_length=3)
    older_than_days: float = Field(default=30, ge=0, le=100_000)


# --- flow control -----------------------------------------------------------------


class QueueResponse(BaseModel):
    """A queue as ``Werk.list_queues()`` shows it: its controls and its job
    counts by status. ``limit_by`` / ``rate_by``: null (the whole queue),
    ``"_group"`` or ``"meta.<key>"``."""

    name: str
    paused: bool = False
    paused_at: datetime | None = None
    max_running: int | None = None
    limit_by: str | None = None
    rate_n: int | None = None
    rate_per_seconds: float | None = None
    rate_by: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    total: int = 0
    # the statuses whose count is an estimate (more than estimate_limit)
    estimated: list[str] = Field(default_factory=list)

    @classmethod
    def from_info(cls, q: QueueInfo) -> QueueResponse:
        rate_n, per = q.rate_limit if q.rate_limit is not None else (None, None)
        return cls(name=q.name, paused=q.paused, paused_at=q.paused_at, max_running=q.max_running,
                   limit_by=q.limit_by, rate_n=rate_n, rate_per_seconds=per, rate_by=q.rate_by,
                   counts=dict(q.counts), total=sum(q.counts.values()),
                   estimated=list(q.estimated))  # fmt: skip


_PARTITION = ("null (the whole queue), \"_group\" (per job group) or \"meta.<key>\" "
              "(per value of a meta key)")


class QueueLimitRequest(_Body):
    """``PUT /api/queues/{name}/limits``: at most ``max_running`` of the
    queue's jobs active at once across all workers; null removes the limit."""

    max_running: int | None = Field(ge=1, le=2**31 - 1)
    partition_by: str | None = Field(default=None, max_length=1005, description=_PARTITION)


class QueueRateRequest(_Body):
    """``PUT /api/queues/{name}/rate``: at most ``n`` of the queue's jobs
    started in any window of ``per_seconds`` (database clock), across all
    workers (``DELETE`` removes it)."""

    n: int = Field(ge=1, le=2**31 - 1)
    per_seconds: float = Field(gt=0, le=86400 * 366, allow_inf_nan=False)
    partition_by: str | None = Field(default=None, max_length=1005, description=_PARTITION)
