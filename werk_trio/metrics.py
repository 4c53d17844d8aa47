"""A worker process's own Prometheus counters and histograms.

``Worker(app, metrics_port=9100)`` (or ``metrics=WorkerMetrics(...)`` to
choose the registry) counts, by queue and function: jobs started, completed,
failed (for good), retried, timed out and aborted; it observes each run's
duration (``wrk_job_run_seconds``, the worker's monotonic clock, handler
only) and how long each job waited once due (``wrk_job_wait_seconds{queue}``,
claim time minus ``scheduled_at``, both on the database clock), the size of
every claim (``wrk_claim_batch_size``, empty claims included) and database
errors the actors retried (``wrk_database_errors_total{actor}``).

The hot path pays increments only: plain integers and bucket counts in one
dict entry per (queue, function), turned into Prometheus samples by a
collector when scraped (prometheus-client's own Counter/Histogram took ~15 us
of CPU per job, a lock and a label lookup per call; these take ~2 us).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .errors import ConfigError, JobTimeout

if TYPE_CHECKING:
    from .actors.completer import Outcome
    from .jobs import Job

__all__ = ["WorkerMetrics"]

_RUN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14_400)
_CLAIM_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
_COUNTERS = (
    ("started", "jobs_started", "Jobs this worker started"),
    ("completed", "jobs_completed", "Jobs that ended complete"),
    ("failed", "jobs_failed", "Jobs that failed with no attempt left"),
    ("retried", "jobs_retried", "Failed attempts that will be retried"),
    ("timed_out", "jobs_timed_out", "Attempts stopped by their timeout"),
    ("aborted", "jobs_aborted", "Jobs aborted while running"),
)


class _Histogram:
    """Bucket counts and a sum, in plain numbers (one Trio thread updates them)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            total += n
            out.append((repr(float(bound)), float(total)))
        out.append(("+Inf", float(total + self.counts[-1])))
        return out


class _Stats:
    __slots__ = ("aborted", "completed", "failed", "retried", "run", "started", "timed_out")

    def __init__(self) -> None:
        self.started = self.completed = self.failed = self.retried = self.timed_out = self.aborted = 0
        self.run = _Histogram(_RUN_BUCKETS)


class WorkerMetrics:
    """The counters and histograms of one worker (namespace ``wrk``).

    The hooks add to plain numbers; the registry's collector turns them into
    Prometheus samples when scraped, so a job costs a few integer additions
    and no lock."""

    def __init__(self, *, namespace: str = "wrk", registry: CollectorRegistry | None = None) -> None:
        if not isinstance(namespace, str) or not namespace.isidentifier():
            raise ConfigError(f"metrics namespace must be an identifier like 'wrk', got {namespace!r}")
        self.namespace = namespace
        self._stats: dict[tuple[str, str], _Stats] = {}
        self._wait: dict[str, _Histogram] = {}
        self._claims = _Histogram(_CLAIM_BUCKETS)
        self._db_errors: dict[str, int] = {}
        # by id() of the Job object, which the runner holds from started() to
        # finished() (a UUID's hash is computed in Python: 1 us per lookup)
        self._starts: dict[int, float] = {}
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    # --- the hooks (runner, poller, completer) -----------------------------------

    def started(self, job: Job) -> None:
        stats = self._stats.get((job.queue, job.function))
        if stats is None:
            stats = self._stats[(job.queue, job.function)] = _Stats()
        stats.started += 1
        self._starts[id(job)] = time.perf_counter()
        if job.started_at is not None:
            wait = self._wait.get(job.queue)
            if wait is None:
                wait = self._wait[job.queue] = _Histogram(_WAIT_BUCKETS)
            seconds = (job.started_at - job.scheduled_at).total_seconds()
            if seconds < 0.0:
                seconds = 0.0
            wait.counts[bisect_left(wait.bounds, seconds)] += 1  # _Histogram.observe, inlined
            wait.sum += seconds

    def finished(self, job: Job, outcome: Outcome, exc: BaseException | None) -> None:
        stats = self._stats.get((job.queue, job.function))
        if stats is None:
            stats = self._stats[(job.queue, job.function)] = _Stats()
        began = self._starts.pop(id(job), None)
        if began is not None:
            seconds = time.perf_counter() - began
            run = stats.run
            run.counts[bisect_left(run.bounds, seconds)] += 1
            run.sum += seconds
        kind = outcome.kind
        if kind == "complete":
            stats.completed += 1
        elif kind == "fail" or kind == "fail_final":
            if isinstance(exc, JobTimeout):
                stats.timed_out += 1
            if kind == "fail" and outcome.delay is not None:
                stats.retried += 1
            else:
                stats.failed += 1
        elif kind == "abort":
            stats.aborted += 1

    def claimed(self, n: int) -> None:
        self._claims.observe(n)

    def database_error(self, actor: str) -> None:
        self._db_errors[actor] = self._db_errors.get(actor, 0) + 1

    # --- the collector ------------------------------------------------------------

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        ns, by = self.namespace, ["queue", "function"]
        items = list(self._stats.items())
        for attr, name, doc in _COUNTERS:
            family = CounterMetricFamily(f"{ns}_{name}", doc, labels=by)
            for labels, stats in items:
                family.add_metric(list(labels), getattr(stats, attr))
            yield family
        run = HistogramMetricFamily(f"{ns}_job_run_seconds", "Run time of each attempt", labels=by)
        for labels, stats in items:
            run.add_metric(list(labels), stats.run.buckets(), stats.run.sum)
        yield run
        wait = HistogramMetricFamily(f"{ns}_job_wait_seconds", "Seconds from due to claimed",
                                     labels=["queue"])
        for queue, hist in list(self._wait.items()):
            wait.add_metric([queue], hist.buckets(), hist.sum)
        yield wait
        claims = HistogramMetricFamily(f"{ns}_claim_batch_size", "Jobs returned by each claim")
        claims.add_metric([], self._claims.buckets(), self._claims.sum)
        yield claims
        errors = CounterMetricFamily(f"{ns}_database_errors", "Database errors an actor retried",
                                     labels=["actor"])
        for actor, n in list(self._db_errors.items()):
            errors.add_metric([actor], n)
        yield errors

    # --- serving ------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A minimal ASGI app: ``GET /metrics`` (404 elsewhere), and lifespan.
        Raises nothing for a request. Cancellation: safe, it only reads the
        in-memory counters."""
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
