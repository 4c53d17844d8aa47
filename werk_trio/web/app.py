"""The REST API: pgwerk's ``/api`` endpoints as a FastAPI (Starlette, anyio) app.

One function per endpoint, each a thin call of a :class:`~werk_trio.Werk`
method; validation at the edge (FastAPI/pydantic: 422 naming the field),
errors mapped to status codes in :mod:`werk_trio.web.errors`, the checks
every request passes in :mod:`werk_trio.web.guard`. Starlette runs on anyio,
so under hypercorn's Trio worker every request is a Trio task sharing the
event loop (and the Werk pool) with whatever else the program runs.

Unauthenticated: ``GET /api/health`` (the process is up) and ``GET
/api/ready`` (database reachable, migrations current: 200 or 503), for
orchestrator probes. Everything else, ``/metrics`` and the OpenAPI document
(``/api/openapi.json``) included, takes the bearer token when one is set.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
import trio
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from .. import __version__
from .. import sql as sqlmod
from ..errors import ConfigError, WerkError
from ..flow import QueueInfo
from ..jobs import JobStatus
from .errors import ApiError, error_response, install_handlers
from .guard import LOOPBACK_HOSTS, Guard
from .metrics import DatabaseMetrics
from .models import (
    MAX_LIMIT,
    MAX_MINUTES,
    MAX_OFFSET,
    BulkCancelRequest,
    BulkRequeueRequest,
    EnqueueRequest,
    ErrorResponse,
    ExecutionResponse,
    JobResponse,
    PurgeRequest,
    QueueLimitRequest,
    QueueRateRequest,
    QueueResponse,
    QueueStats,
    StatsResponse,
    WorkerResponse,
)

if TYPE_CHECKING:
    from ..app import Werk

__all__ = ["create_app", "route_table"]

#: Seconds the readiness check waits for the database.
READY_TIMEOUT = 5.0

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 413, 422, 503)
}

_bearer = HTTPBearer(auto_error=False, description="the API token (`werk api --token-file`)")
_credentials = Depends(_bearer)


def _werk(request: Request) -> Werk:
    werk: Werk = request.app.state.werk
    return werk


async def _authorize(request: Request,
                     credentials: HTTPAuthorizationCredentials | None = _credentials) -> None:
    """The bearer token, compared in constant time (as digests: not even the
    length of the token leaks)."""
    expected: bytes | None = request.app.state.werk_token_digest
    if expected is None:
        return
    given = hashlib.sha256(credentials.credentials.encode() if credentials else b"").digest()
    if credentials is None or not hmac.compare_digest(given, expected):
        raise ApiError(401, "a valid bearer token is required: send 'Authorization: Bearer <token>'",
                       field="authorization", headers={"WWW-Authenticate": "Bearer"})


WerkDep = Depends(_werk)
public = APIRouter(prefix="/api", tags=["health"])
api = APIRouter(prefix="/api", dependencies=[Depends(_authorize)], responses=_ERRORS)
root = APIRouter(dependencies=[Depends(_authorize)])


def _statuses(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    names = [s.strip() for s in value.split(",") if s.strip()]
    known = {s.value for s in JobStatus}
    bad = [s for s in names if s not in known]
    if bad:
        raise ApiError(422, f"status: unknown status {bad[0]!r}; one of {', '.join(sorted(known))}",
                       field="status")
    return names


# --- health -------------------------------------------------------------------


class Health(BaseModel):
    status: str


@public.get("/health", summary="The process is up (liveness)")
async def health() -> Health:
    return Health(status="ok")


class Readiness(BaseModel):
    status: str
    database: str
    migrations: dict[str, list[int]] = Field(default_factory=dict)


@public.get("/ready", summary="Database reachable and migrations current (readiness): 200 or 503",
            responses={503: {"model": Readiness}})
async def ready(werk: Werk = WerkDep) -> JSONResponse:
    expected = [m.version for m in sqlmod.migrations()]

    def not_ready(reason: str, applied: list[int] | None = None) -> JSONResponse:
        body = Readiness(status="unavailable", database=reason,
                         migrations={"applied": applied or [], "expected": expected})
        return JSONResponse(body.model_dump(), status_code=503)

    if not werk.connected:
        return not_ready("not connected")
    rows = None
    with trio.move_on_after(READY_TIMEOUT):
        try:
            rows = await werk._fetch(werk.sql.APPLIED_MIGRATIONS)
        except psycopg.errors.UndefinedTable:
            return not_ready("no migrations applied: run `werk migrate`")
        except (psycopg.Error, WerkError) as ex:
            return not_ready(f"unreachable: {type(ex).__name__}")
    if rows is None:
        return not_ready(f"no answer within {READY_TIMEOUT:g}s")
    applied = sorted(int(r[0]) for r in rows)
    if applied != expected:
        missing = sorted(set(expected) - set(applied))
        if missing:
            return not_ready(f"migrations {missing} pending: run `werk migrate`", applied)
        return not_ready("the schema is newer than this werk_trio: upgrade it", applied)
    return JSONResponse(Readiness(status="ready", database="ok",
                                  migrations={"applied": applied, "expected": expected}).model_dump())


# --- jobs ---------------------------------------------------------------------


@api.get("/jobs", tags=["jobs"], summary="List jobs, newest first")
async def list_jobs(
    werk: Werk = WerkDep,
    queue: str | None = Query(None, max_length=200),
    status: str | None = Query(None, max_length=200, description="a status, or several comma-separated"),
    worker_id: uuid.UUID | None = None,
    search: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    function: str | None = Query(None, max_length=1000, description="the function's dotted path"),
) -> list[JobResponse]:
    jobs = await werk.list_jobs(queue=queue, status=_statuses(status), worker_id=worker_id,
                                search=search, limit=limit, offset=offset, function=function)
    return [JobResponse.from_job(j) for j in jobs]


@api.post("/jobs", tags=["jobs"], status_code=201, summary="Enqueue a job")
async def create_job(data: EnqueueRequest, werk: Werk = WerkDep) -> JobResponse:
    bad = [k for k in data.kwargs if k.startswith("_")]
    if bad:
        raise ApiError(422, f"kwargs.{bad[0]}: payload keys may not start with '_' (those are enqueue "
                       "options: use the body's own fields)", field=f"kwargs.{bad[0]}")
    options: dict[str, Any] = {"_queue": data.queue, "_priority": data.priority}
    for name, value in (("_key", data.key), ("_delay", data.delay), ("_at", data.scheduled_at),
                        ("_retry", data.max_attempts), ("_timeout", data.timeout_secs),
                        ("_meta", data.meta)):
        if value is not None:
            options[name] = value
    job = await werk.enqueue(data.function, *data.args, **options, **data.kwargs)
    if job is None:
        raise ApiError(409, f"key: a job with key {data.key!r} exists already", field="key")
    return JobResponse.from_job(job)


@api.post("/jobs/requeue", tags=["jobs"],
          summary="Requeue every failed or aborted job (of a queue/function)")
async def bulk_requeue(data: BulkRequeueRequest | None = None, werk: Werk = WerkDep) -> dict[str, int]:
    data = data or BulkRequeueRequest()
    return {"requeued": await werk.bulk_requeue_jobs(queue=data.queue, function_name=data.function_name)}


@api.post("/jobs/cancel", tags=["jobs"],
          summary="Cancel every queued, scheduled or waiting job (of a queue)")
async def bulk_cancel(data: BulkCancelRequest | None = None, werk: Werk = WerkDep) -> dict[str, int]:
    data = data or BulkCancelRequest()
    return {"cancelled": await werk.bulk_cancel_jobs(queue=data.queue)}


@api.post("/jobs/purge", tags=["jobs"], summary="Delete finished jobs older than a number of days")
async def purge(data: PurgeRequest | None = None, werk: Werk = WerkDep) -> dict[str, int]:
    data = data or PurgeRequest()
    return {"purged": await werk.purge_jobs(statuses=list(data.statuses),
                                            older_than_days=data.older_than_days)}


@api.get("/jobs/{job_id}", tags=["jobs"], summary="One job")
async def get_job(job_id: uuid.UUID, werk: Werk = WerkDep) -> JobResponse:
    return JobResponse.from_job(await werk.get_job(job_id))


@api.get("/jobs/{job_id}/executions", tags=["jobs"], summary="The job's attempts, oldest first")
async def get_executions(job_id: uuid.UUID, werk: Werk = WerkDep) -> list[ExecutionResponse]:
    await werk.get_job(job_id)
    return [ExecutionResponse.from_execution(e) for e in await werk.get_executions(job_id)]


@api.get("/jobs/{job_id}/dependencies", tags=["jobs"], summary="Ids of the jobs this one depends on")
async def get_dependencies(job_id: uuid.UUID, werk: Werk = WerkDep) -> list[str]:
    await werk.get_job(job_id)
    return [str(d) for d in await werk.get_job_dependencies(job_id)]


async def _state_change(
    werk: Werk, job_id: uuid.UUID, method: Callable[[Any], Awaitable[bool]], verb: str
) -> None:
    """A state change: 404 for no job, 409 for a job in a state the call does
    not apply to (the Werk method answers False and changes nothing)."""
    job = await werk.get_job(job_id)
    if not await method(job_id):
        raise ApiError(409, f"cannot {verb} job {job_id}: it is {job.status.value}", field="job_id")


@api.post("/jobs/{job_id}/cancel", tags=["jobs"], summary="Cancel a job that has not started")
async def cancel_job(job_id: uuid.UUID, werk: Werk = WerkDep) -> dict[str, Any]:
    await _state_change(werk, job_id, werk.cancel_job, "cancel")
    return {"cancelled": True, "job_id": str(job_id)}


@api.post("/jobs/{job_id}/abort", tags=["jobs"],
          summary="Abort a job (a running one stops within abort_interval)")
async def abort_job(job_id: uuid.UUID, werk: Werk = WerkDep) -> dict[str, Any]:
    await _state_change(werk, job_id, werk.abort_job, "abort")
    return {"aborted": True, "job_id": str(job_id)}


@api.post("/jobs/{job_id}/requeue", tags=["jobs"], summary="Queue a finished job again")
async def requeue_job(job_id: uuid.UUID, werk: Werk = WerkDep) -> dict[str, Any]:
    await _state_change(werk, job_id, werk.requeue_job, "requeue")
    return {"requeued": True, "job_id": str(job_id)}


@api.delete("/jobs/{job_id}", tags=["jobs"], status_code=204, response_class=Response,
            summary="Delete a job row")
async def delete_job(job_id: uuid.UUID, werk: Werk = WerkDep) -> Response:
    await werk.get_job(job_id)  # 404 for a missing job (delete_job itself is silent, as pgwerk's)
    await werk.delete_job(job_id)
    return Response(status_code=204)


# --- workers ------------------------------------------------------------------


@api.get("/workers", tags=["workers"], summary="Registered workers")
async def list_workers(werk: Werk = WerkDep) -> list[WorkerResponse]:
    return [WorkerResponse.from_row(w) for w in await werk.list_workers()]


@api.get("/workers/{worker_id}", tags=["workers"], summary="One worker")
async def get_worker(worker_id: uuid.UUID, werk: Werk = WerkDep) -> WorkerResponse:
    row = await werk.get_worker(worker_id)
    if row is None:
        raise ApiError(404, f"no worker with id {worker_id}: it never registered, or stopped long ago",
                       field="worker_id")
    return WorkerResponse.from_row(row)


@api.get("/workers/{worker_id}/jobs", tags=["workers"],
         summary="The jobs a worker holds, then those it ran last")
async def list_worker_jobs(
    worker_id: uuid.UUID,
    werk: Werk = WerkDep,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> list[JobResponse]:
    jobs = await werk.list_worker_jobs(worker_id, limit=limit, offset=offset)
    return [JobResponse.from_job(j) for j in jobs]


# --- stats --------------------------------------------------------------------


@api.get("/stats", tags=["stats"], summary="Job counts per queue and status, workers online")
async def get_stats(werk: Werk = WerkDep) -> StatsResponse:
    queues, total, online = await werk.get_queue_stats()
    return StatsResponse(queues=[QueueStats(**q) for q in queues], total_jobs=total, workers_online=online)


Minutes = Query(1440, ge=1, le=MAX_MINUTES, description="the window, in minutes (1..10080)")


class ThroughputPoint(BaseModel):
    """pgwerk's ``WorkerThroughputPoint`` (``time``, ``worker_id``,
    ``worker_name``, ``count``) with werk_trio's ``queue``, ``completed``,
    ``failed``."""

    time: datetime
    worker_id: str | None
    worker_name: str | None
    count: int
    queue: str | None = None
    completed: int = 0
    failed: int = 0


class QueueDepthPoint(BaseModel):
    """pgwerk's ``QueueDepthPoint`` (``time``, ``queued``, ``active``) per
    queue, with werk_trio's ``queue``, ``scheduled``, ``waiting`` and
    ``estimated`` (which of the counts are the planner's estimate)."""

    time: datetime
    queued: int
    active: int
    queue: str | None = None
    scheduled: int = 0
    waiting: int = 0
    estimated: list[str] = []


@api.get("/stats/throughput", tags=["stats"], summary="Jobs finished per minute, queue and worker")
async def get_throughput(minutes: int = Minutes, werk: Werk = WerkDep) -> list[ThroughputPoint]:
    rows = await werk.get_throughput_history(minutes)
    return [ThroughputPoint(**{**r, "worker_id": None if r["worker_id"] is None else str(r["worker_id"])})
            for r in rows]


@api.get("/stats/queue-depth", tags=["stats"], summary="Queue depth samples over time, per queue")
async def get_queue_depth(minutes: int = Minutes, werk: Werk = WerkDep) -> list[QueueDepthPoint]:
    return [QueueDepthPoint(**r) for r in await werk.get_queue_depth_history(minutes)]


# --- cron ---------------------------------------------------------------------


class CronStats(BaseModel):
    """pgwerk's ``CronJobStats`` (``last_enqueued_at`` falls back to werk_trio's
    ``last_run_at``), then werk_trio's schedule fields."""

    name: str
    function: str
    queue: str
    total_runs: int
    failed_runs: int
    last_status: str | None = None
    last_enqueued_at: datetime | None = None
    last_completed_at: datetime | None = None
    schedule: str | None = None
    cron: str | None = None
    interval: float | None = None
    tz: str | None = None
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_job_id: str | None = None
    paused: bool = False
    removed: bool = False

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CronStats:
        fields = {k: row[k] for k in cls.model_fields if k in row}
        for key in ("last_status", "last_job_id"):
            fields[key] = None if row.get(key) is None else str(row[key])
        fields.setdefault("last_enqueued_at", row.get("last_run_at"))
        return cls(**fields)


CronName = Path(min_length=1, max_length=200, description="the cron schedule's name")


@api.get("/cron", tags=["cron"], summary="Cron schedules and their run statistics")
async def list_cron(werk: Werk = WerkDep) -> list[CronStats]:
    return [CronStats.from_row(r) for r in await werk.list_cron_stats()]


async def _cron(werk: Werk, name: str, change: Callable[[str], Awaitable[Any]]) -> Any:
    """404 for no such schedule; 409 when the app refuses (a removed schedule)."""
    if name not in {r["name"] for r in await werk.list_cron_stats()}:
        raise ApiError(404, f"no cron schedule named {name!r}", field="name")
    try:
        return await change(name)
    except ConfigError as ex:
        raise ApiError(409, str(ex), field="name") from None


@api.post("/cron/{name:path}/trigger", tags=["cron"], summary="Enqueue one run of a cron schedule now")
async def trigger_cron(name: str = CronName, werk: Werk = WerkDep) -> dict[str, Any]:
    job = await _cron(werk, name, werk.trigger_cron_job)
    return {"triggered": True, "name": name, "job": JobResponse.from_job(job).model_dump(mode="json")}


@api.post("/cron/{name:path}/pause", tags=["cron"], summary="Pause a cron schedule")
async def pause_cron(name: str = CronName, werk: Werk = WerkDep) -> dict[str, Any]:
    await _cron(werk, name, werk.pause_cron)
    return {"paused": True, "name": name}


@api.post("/cron/{name:path}/resume", tags=["cron"], summary="Resume a paused cron schedule")
async def resume_cron(name: str = CronName, werk: Werk = WerkDep) -> dict[str, Any]:
    await _cron(werk, name, werk.resume_cron)
    return {"resumed": True, "name": name}


# --- queues (flow control) ------------------------------------------------------

QueueName = Path(min_length=1, max_length=1000, description="the queue's name")


@api.get("/queues", tags=["queues"],
         summary="Every queue with jobs or controls: paused, limits, rate, counts by status")
async def list_queues(werk: Werk = WerkDep) -> list[QueueResponse]:
    return [QueueResponse.from_info(q) for q in await werk.list_queues()]


async def _queue_change(werk: Werk, name: str, change: Awaitable[None], field: str | None) -> QueueResponse:
    """Apply a control change; the app's refusal (ConfigError) is a 422 naming
    ``field``; answer the queue as it is now."""
    try:
        await change
    except ConfigError as ex:
        raise ApiError(422, f"{field}: {ex}" if field else str(ex), field=field) from None
    found = {q.name: q for q in await werk.list_queues()}
    return QueueResponse.from_info(found.get(name) or QueueInfo(name))


@api.post("/queues/{name:path}/pause", tags=["queues"],
          summary="Pause a queue: no worker starts its jobs (running ones finish)")
async def pause_queue(name: str = QueueName, werk: Werk = WerkDep) -> QueueResponse:
    return await _queue_change(werk, name, werk.pause_queue(name), None)


@api.post("/queues/{name:path}/resume", tags=["queues"], summary="Resume a paused queue")
async def resume_queue(name: str = QueueName, werk: Werk = WerkDep) -> QueueResponse:
    return await _queue_change(werk, name, werk.resume_queue(name), None)


@api.put("/queues/{name:path}/limits", tags=["queues"],
         summary="Set a queue's global concurrency limit (max_running null removes it)")
async def set_queue_limit(data: QueueLimitRequest, name: str = QueueName,
                          werk: Werk = WerkDep) -> QueueResponse:
    if data.max_running is None and data.partition_by is not None:
        raise ApiError(422, "partition_by: goes with a limit (max_running null removes the limit)",
                       field="partition_by")
    change = werk.set_queue_limit(name, data.max_running, partition_by=data.partition_by)
    return await _queue_change(werk, name, change, "partition_by")


@api.delete("/queues/{name:path}/limits", tags=["queues"], summary="Remove a queue's concurrency limit")
async def clear_queue_limit(name: str = QueueName, werk: Werk = WerkDep) -> QueueResponse:
    return await _queue_change(werk, name, werk.set_queue_limit(name, None), None)


@api.put("/queues/{name:path}/rate", tags=["queues"],
         summary="Set a queue's rate limit: at most n jobs started per per_seconds")
async def set_rate_limit(data: QueueRateRequest, name: str = QueueName,
                         werk: Werk = WerkDep) -> QueueResponse:
    change = werk.set_rate_limit(name, data.n, data.per_seconds, partition_by=data.partition_by)
    return await _queue_change(werk, name, change, "partition_by")


@api.delete("/queues/{name:path}/rate", tags=["queues"], summary="Remove a queue's rate limit")
async def clear_rate_limit(name: str = QueueName, werk: Werk = WerkDep) -> QueueResponse:
    return await _queue_change(werk, name, werk.set_rate_limit(name, None), None)


# --- server -------------------------------------------------------------------


class TableInfo(BaseModel):
    name: str
    size_bytes: int
    row_count: int


class ServerInfo(BaseModel):
    """pgwerk's ``ServerInfo`` with werk_trio's version and the API's modes."""

    pg_version: str
    db_size_bytes: int
    tables: list[TableInfo]
    werk_trio_version: str
    read_only: bool
    truncate_enabled: bool


@api.get("/server", tags=["server"], summary="Postgres version, database and table sizes")
async def get_server(request: Request, werk: Werk = WerkDep) -> ServerInfo:
    pg_version, size, tables = await werk.get_server_info()
    return ServerInfo(pg_version=pg_version, db_size_bytes=size, tables=[TableInfo(**t) for t in tables],
                      werk_trio_version=__version__, read_only=request.app.state.werk_read_only,
                      truncate_enabled=request.app.state.werk_allow_truncate)


@api.post("/server/sweep", tags=["server"], summary="One maintenance pass: rescue, expire, delete")
async def sweep(werk: Werk = WerkDep) -> dict[str, Any]:
    result: Any = await werk.sweep()
    if isinstance(result, dict):
        return {"swept": int(result.get("rescued", 0)), **{str(k): int(v) for k, v in result.items()}}
    ids = [str(i) for i in result]
    return {"swept": len(ids), "job_ids": ids}


@api.post("/server/vacuum", tags=["server"], summary="Vacuum and analyze the werk tables")
async def vacuum(werk: Werk = WerkDep) -> dict[str, bool]:
    await werk.vacuum()
    return {"vacuumed": True}


@api.post("/server/truncate", tags=["server"], summary="Delete every werk row (needs allow_truncate)")
async def truncate(request: Request, werk: Werk = WerkDep) -> dict[str, bool]:
    if not request.app.state.werk_allow_truncate:
        raise ApiError(403, "truncate is off: start the API with allow_truncate=True "
                       "(werk api --allow-truncate)")
    await werk.truncate()
    return {"truncated": True}


# --- metrics and the document ---------------------------------------------------


@root.get("/metrics", tags=["metrics"], summary="Prometheus metrics (with metrics=True / --metrics)",
          response_class=Response, responses={503: {"model": ErrorResponse}})
async def metrics(request: Request) -> Response:
    sampler: DatabaseMetrics | None = request.app.state.werk_metrics
    if sampler is None:
        return error_response(503, "metrics are off: start the API with metrics=True (werk api --metrics)")
    body, content_type = sampler.render()
    return Response(content=body, media_type=content_type)


@api.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


# --- the app --------------------------------------------------------------------

ROUTERS = (public, api, root)


def route_table(*, documented: bool = False) -> list[tuple[str, str]]:
    """``(method, path)`` of every endpoint, paths as the OpenAPI document writes them
    (``{name}``, not ``{name:path}``; ``documented``: only those in the
    OpenAPI document)."""
    out: list[tuple[str, str]] = []
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and (route.include_in_schema or not documented):
                out.extend((m, route.path_format) for m in sorted(set(route.methods or ()) - {"HEAD"}))
    return out



def create_app(
    werk: Werk,
    *,
    token: str | None = None,
    read_only: bool = False,
    metrics: bool | DatabaseMetrics = False,
    metrics_interval: float = 15.0,
    allow_truncate: bool = False,
    allowed_hosts: Collection[str] | None = None,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """The ASGI app of the REST API over ``werk`` (connected by the caller).

    ``token``: the bearer token every endpoint but ``/api/health`` and
    ``/api/ready`` requires (None: no token, and only loopback ``Host`` headers
    are served). ``read_only``: every state change is refused (403).
    ``metrics``: serve ``/metrics`` from a :class:`DatabaseMetrics` refreshed
    every ``metrics_interval`` seconds in the app's lifespan (pass your own
    instance to choose its registry or namespace). ``allow_truncate``:
    ``POST /api/server/truncate`` works (off: 403). ``allowed_hosts``: the
    ``Host`` names served (default: any with a token, loopback without).
    ``max_body_bytes``: the largest request body (default: the app's
    ``max_payload_bytes`` plus 64 KiB).
    """
    from ..app import Werk

    if not isinstance(werk, Werk):
        raise ConfigError(f"create_app needs a Werk, got {type(werk).__name__}")
    if token is not None and (not isinstance(token, str) or len(token) < 16 or len(token) > 4096
                              or any(c.isspace() for c in token)):
        raise ConfigError("token must be a string of 16..4096 characters without spaces, e.g. "
                          "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    for name, flag in (("read_only", read_only), ("allow_truncate", allow_truncate)):
        if not isinstance(flag, bool):
            raise ConfigError(f"{name} must be True or False, got {flag!r}")
    if max_body_bytes is None:
        max_body_bytes = werk.config.max_payload_bytes + 64 * 1024
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1024:
        raise ConfigError(f"max_body_bytes must be an int >= 1024, got {max_body_bytes!r}")
    if allowed_hosts is not None and (isinstance(allowed_hosts, str)
                                      or not all(isinstance(h, str) and h for h in allowed_hosts)):
        raise ConfigError(f"allowed_hosts must be a list of host names, got {allowed_hosts!r}")
    hosts = allowed_hosts if allowed_hosts is not None else (None if token else LOOPBACK_HOSTS)
    if isinstance(metrics, DatabaseMetrics):
        sampler: DatabaseMetrics | None = metrics
    elif metrics is True:
        sampler = DatabaseMetrics(werk, interval=metrics_interval)
    elif metrics is False:
        sampler = None
    else:
        raise ConfigError(f"metrics must be True, False or a DatabaseMetrics, got {metrics!r}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if sampler is None:
            yield
            return
        async with trio.open_nursery() as nursery:
            await nursery.start(sampler.run)
            yield
            nursery.cancel_scope.cancel()

    app = FastAPI(
        title="werk_trio",
        version=__version__,
        description="The REST API of a werk_trio job queue (pgwerk's endpoints).",
        openapi_url=None,  # served by the token-protected route /api/openapi.json
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.werk = werk
    app.state.werk_token_digest = None if token is None else hashlib.sha256(token.encode()).digest()
    app.state.werk_read_only = read_only
    app.state.werk_allow_truncate = allow_truncate
    app.state.werk_metrics = sampler
    install_handlers(app)
    app.include_router(public)
    app.include_router(api)
    app.include_router(root)
    from .dashboard import mount as mount_dashboard

    mount_dashboard(app, _authorize)  # the web dashboard at / (werk_trio/web/dashboard)
    app.add_middleware(Guard, read_only=read_only, allowed_hosts=hosts, max_body_bytes=max_body_bytes)
    return app
