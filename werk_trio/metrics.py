"""A worker process's own Prometheus counters and histograms.

``Worker(app, metrics_port=9100)`` (or ``metrics=WorkerMetrics(...)`` to
choose the registry) counts, by queue and function: jobs started, completed,
failed (for good), retried, timed out and aborted; it observes each run's
duration (``wrk_job_run_seconds``, the worker's monotonic clock, handler
only) and how long each job waited once due (``wrk_job_wait_seconds{queue}``,
claim time minus ``scheduled_at``, both on the database clock), the size of
every claim (``wrk_claim_batch_size``, empty claims included) and database
errors the actors retried (``wrk_database_errors_total{actor}``).

The hot path pays increments only: the labelled children of each
(queue, function) are looked up once and kept.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .errors import ConfigError, JobTimeout

if TYPE_CHECKING:
    from .actors.completer import Outcome
    from .jobs import Job

__all__ = ["WorkerMetrics"]

_RUN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14_400)
_CLAIM_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class _Children:
    __slots__ = ("aborted", "completed", "failed", "retried", "run", "started", "timed_out", "wait")

    def __init__(self, m: WorkerMetrics, queue: str, function: str) -> None:
        self.started = m.jobs_started.labels(queue, function)
        self.completed = m.jobs_completed.labels(queue, function)
        self.failed = m.jobs_failed.labels(queue, function)
        self.retried = m.jobs_retried.labels(queue, function)
        self.timed_out = m.jobs_timed_out.labels(queue, function)
        self.aborted = m.jobs_aborted.labels(queue, function)
        self.run = m.run_seconds.labels(queue, function)
        self.wait = m.wait_seconds.labels(queue)


class WorkerMetrics:
    """The counters and histograms of one worker (namespace ``wrk``)."""

    def __init__(self, *, namespace: str = "wrk", registry: CollectorRegistry | None = None) -> None:
        if not isinstance(namespace, str) or not namespace.isidentifier():
            raise ConfigError(f"metrics namespace must be an identifier like 'wrk', got {namespace!r}")
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        ns, reg, by = namespace, self.registry, ["queue", "function"]
        self.jobs_started = Counter("jobs_started", "Jobs this worker started", by,
                                    namespace=ns, registry=reg)
        self.jobs_completed = Counter("jobs_completed", "Jobs that ended complete", by,
                                      namespace=ns, registry=reg)
        self.jobs_failed = Counter("jobs_failed", "Jobs that failed with no attempt left", by,
                                   namespace=ns, registry=reg)
        self.jobs_retried = Counter("jobs_retried", "Failed attempts that will be retried", by,
                                    namespace=ns, registry=reg)
        self.jobs_timed_out = Counter("jobs_timed_out", "Attempts stopped by their timeout", by,
                                      namespace=ns, registry=reg)
        self.jobs_aborted = Counter("jobs_aborted", "Jobs aborted while running", by,
                                    namespace=ns, registry=reg)
        self.run_seconds = Histogram("job_run_seconds", "Run time of each attempt", by,
                                     buckets=_RUN_BUCKETS, namespace=ns, registry=reg)
        self.wait_seconds = Histogram("job_wait_seconds", "Seconds from due to claimed", ["queue"],
                                      buckets=_WAIT_BUCKETS, namespace=ns, registry=reg)
        self.claim_batch_size = Histogram("claim_batch_size", "Jobs returned by each claim",
                                          buckets=_CLAIM_BUCKETS, namespace=ns, registry=reg)
        self.database_errors = Counter("database_errors", "Database errors an actor retried", ["actor"],
                                       namespace=ns, registry=reg)
        self._children: dict[tuple[str, str], _Children] = {}
        self._starts: dict[uuid.UUID, float] = {}

    def _of(self, job: Job) -> _Children:
        key = (job.queue, job.function)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = _Children(self, *key)
        return children

    # --- the hooks (runner, poller, completer) -----------------------------------

    def started(self, job: Job) -> None:
        children = self._of(job)
        children.started.inc()
        self._starts[job.id] = time.perf_counter()
        if job.started_at is not None:
            children.wait.observe(max(0.0, (job.started_at - job.scheduled_at).total_seconds()))

    def finished(self, job: Job, outcome: Outcome, exc: BaseException | None) -> None:
        began = self._starts.pop(job.id, None)
        children = self._of(job)
        if began is not None:
            children.run.observe(time.perf_counter() - began)
        kind = outcome.kind
        if kind == "complete":
            children.completed.inc()
        elif kind in ("fail", "fail_final"):
            if isinstance(exc, JobTimeout):
                children.timed_out.inc()
            if kind == "fail" and outcome.delay is not None:
                children.retried.inc()
            else:
                children.failed.inc()
        elif kind == "abort":
            children.aborted.inc()

    def claimed(self, n: int) -> None:
        self.claim_batch_size.observe(n)

    def database_error(self, actor: str) -> None:
        self.database_errors.labels(actor).inc()

    # --- serving ------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A minimal ASGI app: ``GET /metrics`` (404 elsewhere), and lifespan."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            status, (body, ctype) = 200, self.render()
        else:
            status, body, ctype = 404, b"only GET /metrics is served here\n", "text/plain; charset=utf-8"
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
