"""Database gauges for the API server's ``/metrics`` (prometheus-client).

:class:`DatabaseMetrics` reads the database every ``interval`` seconds and
sets gauges in its own registry; a scrape only renders what the last
refresh found, so scrapes cost the database nothing and a scrape storm cannot
load it. The gauges (namespace ``wrk`` by default, pgwerk's):

* ``wrk_jobs{queue,status}``: job rows by queue and status;
* ``wrk_oldest_claimable_job_age_seconds{queue}``: how long the oldest due,
  unclaimed job of the queue has waited (0 when none is due) — the SLO number;
* ``wrk_workers_online`` / ``wrk_workers_total``: running workers heard from
  within three heartbeat intervals / all worker rows not stopped;
* ``wrk_scheduled_jobs`` / ``wrk_waiting_jobs``: jobs due later / waiting for
  dependencies, over all queues;
* ``wrk_metrics_refresh_timestamp_seconds`` and
  ``wrk_metrics_refresh_errors_total``: when the gauges were last read, and
  how many refreshes failed (a failed refresh keeps the previous values and is
  logged; it never stops the sampler or the server).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..config import mask_dsn
from ..errors import ConfigError
from ..jobs import JobStatus

if TYPE_CHECKING:
    from ..app import Werk

__all__ = ["CONTENT_TYPE_LATEST", "DatabaseMetrics"]

logger = logging.getLogger("werk_trio.web")


class DatabaseMetrics:
    """Gauges read from the database every ``interval`` seconds, never per scrape.

    Run :meth:`run` in a nursery (``create_app(metrics=True)`` does it in the
    app's lifespan); :meth:`render` is the scrape.
    """

    def __init__(self, werk: Werk, *, interval: float = 15.0, namespace: str = "wrk",
                 registry: CollectorRegistry | None = None) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not (
            math.isfinite(interval) and 0 < interval <= 86_400
        ):
            raise ConfigError(f"metrics interval must be a number of seconds in (0, 86400], got {interval!r}")
        if not isinstance(namespace, str) or not namespace.isidentifier():
            raise ConfigError(f"metrics namespace must be an identifier like 'wrk', got {namespace!r}")
        self.werk = werk
        self.interval = float(interval)
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        ns, reg = namespace, self.registry
        self.jobs = Gauge("jobs", "Job rows by queue and status", ["queue", "status"],
                          namespace=ns, registry=reg)
        self.estimated = Gauge("jobs_estimated",
                               "1 where the jobs gauge of that queue and status is the planner's "
                               "estimate (more than estimate_limit jobs), 0 where it is exact",
                               ["queue", "status"], namespace=ns, registry=reg)
        self.oldest = Gauge("oldest_claimable_job_age_seconds",
                            "Seconds the oldest due, unclaimed job of the queue has waited",
                            ["queue"], namespace=ns, registry=reg)
        self.workers_online = Gauge("workers_online",
                                    "Running workers heard from within 3 heartbeat intervals",
                                    namespace=ns, registry=reg)
        self.workers_total = Gauge("workers_total", "Worker rows not stopped", namespace=ns, registry=reg)
        self.scheduled = Gauge("scheduled_jobs", "Jobs due later, over all queues",
                               namespace=ns, registry=reg)
        self.waiting = Gauge("waiting_jobs", "Jobs waiting for their dependencies, over all queues",
                             namespace=ns, registry=reg)
        self.refreshed = Gauge("metrics_refresh_timestamp_seconds",
                               "Unix time of the last successful read of the gauges",
                               namespace=ns, registry=reg)
        self.errors = Counter("metrics_refresh_errors", "Refreshes of the gauges that failed",
                              namespace=ns, registry=reg)
        self.refreshes = 0  # successful refreshes, for callers waiting on one

    async def refresh(self) -> None:
        """Read everything, then set every gauge at once (no await in between,
        so a scrape never sees half a refresh). Raises what the reads raise
        (PoolTimeout, psycopg errors). Cancellation: safe -- the gauges keep
        their old values, since nothing is set until every read is done."""
        queues, _total, online = await self.werk.get_queue_stats()
        oldest = await self.werk._fetch(self.werk.sql.OLDEST_CLAIMABLE)
        workers = await self.werk.list_workers()
        statuses = [s.value for s in JobStatus]
        totals = dict.fromkeys(statuses, 0)
        self.jobs.clear()
        self.estimated.clear()
        for row in queues:
            guessed = row.get("estimated", ())
            for status in statuses:
                n = int(row.get(status, 0))
                self.jobs.labels(queue=row["queue"], status=status).set(n)
                self.estimated.labels(queue=row["queue"], status=status).set(int(status in guessed))
                totals[status] += n
        ages = {str(q): float(age or 0.0) for q, age in oldest}
        self.oldest.clear()
        for queue in sorted({row["queue"] for row in queues} | set(ages)):
            self.oldest.labels(queue=queue).set(max(0.0, ages.get(queue, 0.0)))
        self.workers_online.set(online)
        self.workers_total.set(sum(1 for w in workers if w.get("status") != "stopped"))
        self.scheduled.set(totals[JobStatus.SCHEDULED.value])
        self.waiting.set(totals[JobStatus.WAITING.value])
        self.refreshed.set(time.time())
        self.refreshes += 1

    async def refresh_logged(self) -> bool:
        """:meth:`refresh`; a failure is counted and logged, the old values stay.
        Returns whether it succeeded. Cancellation: as :meth:`refresh`."""
        try:
            await self.refresh()
        except Exception as ex:  # the database is down, the pool is busy...
            self.errors.inc()
            logger.warning("metrics refresh failed: %s", mask_dsn(str(ex)))
            return False
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Refresh now (started once the first attempt is done), then every ``interval``.

        Never raises for a failed refresh (logged and counted, see
        :meth:`refresh_logged`). Cancellation: safe, the gauges keep their values.
        """
        await self.refresh_logged()
        task_status.started()
        while True:
            await trio.sleep(self.interval)
            await self.refresh_logged()

    def render(self) -> tuple[bytes, str]:
        """The scrape: (body, content type) in Prometheus' text format."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
