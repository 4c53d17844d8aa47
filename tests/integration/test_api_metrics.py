"""Issue 15: the API server's ``/metrics``, scraped over real HTTP and parsed
with prometheus-client's own parser.

The gauges must equal what the test put in the database and what the live
worker ran; they are read from the database by the sampler on its interval,
never per scrape; a sampler that cannot read the database counts its failures
and keeps the server up.
"""

from __future__ import annotations

from typing import Any

import trio
from prometheus_client.parser import text_string_to_metric_families

from werk_trio import Dependency, EnqueueParams, Werk
from werk_trio.testing import until
from werk_trio.web import DatabaseMetrics

from ._api_support import api_server, job_status

HERE = __name__


async def add(a: int, b: int) -> int:
    return a + b


async def boom() -> None:
    raise ValueError("boom")


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of a scrape."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def scrape(http: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await http.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def jobs(queue: str, status: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("wrk_jobs", (("queue", queue), ("status", status)))


async def test_gauges_equal_the_database_and_the_worker(app: Werk) -> None:
    with trio.fail_after(60):
        async with api_server(app, queues=("work",), metrics=True, metrics_interval=0.1) as srv:
            http = srv.http
            ran = [await app.enqueue(add, i, 1, _queue="work") for i in range(8)]
            ran += [await app.enqueue(boom, _queue="work") for _ in range(2)]
            for job in ran:
                assert job is not None
                await job_status(http, str(job.id), "complete", "failed")
            for _ in range(5):
                await app.enqueue(add, 1, 1, _queue="backlog")  # nobody serves it
            parent = await app.enqueue(add, 0, 0, _queue="later", _delay=3600)
            for _ in range(3):
                await app.enqueue(add, 0, 0, _queue="later", _delay=3600)
            for _ in range(2):
                await app.enqueue(add, 1, 2, _queue="later", _depends_on=Dependency(parent))  # type: ignore[arg-type]

            expected = {
                jobs("work", "complete"): 8, jobs("work", "failed"): 2, jobs("work", "queued"): 0,
                jobs("backlog", "queued"): 5, jobs("later", "scheduled"): 4, jobs("later", "waiting"): 2,
                ("wrk_scheduled_jobs", ()): 4, ("wrk_waiting_jobs", ()): 2,
                ("wrk_workers_online", ()): 1, ("wrk_workers_total", ()): 1,
                ("wrk_oldest_claimable_job_age_seconds", (("queue", "later"),)): 0,
                ("wrk_oldest_claimable_job_age_seconds", (("queue", "work"),)): 0,
            }  # fmt: skip

            async def matches() -> dict[Any, float] | None:
                seen = await scrape(http)
                return seen if all(seen.get(k) == v for k, v in expected.items()) else None

            seen = await until(matches)
            backlog_age = seen[("wrk_oldest_claimable_job_age_seconds", (("queue", "backlog"),))]
            assert backlog_age > 0
            assert seen[("wrk_metrics_refresh_errors_total", ())] == 0
            assert seen[("wrk_metrics_refresh_timestamp_seconds", ())] > 0
            # every status of every queue is a sample (zeros included), nothing else
            statuses = {dict(labels)["status"] for (name, labels) in seen if name == "wrk_jobs"}
            assert statuses == {"scheduled", "queued", "waiting", "active", "aborting", "complete",
                                "failed", "aborted"}
            queues = {dict(labels)["queue"] for (name, labels) in seen if name == "wrk_jobs"}
            assert queues == {"work", "backlog", "later"}

            # the backlog drains elsewhere: its age falls back to 0 and the counts follow
            await app.bulk_cancel_jobs(queue="backlog")
            expected = {jobs("backlog", "queued"): 0, jobs("backlog", "aborted"): 5,
                        ("wrk_oldest_claimable_job_age_seconds", (("queue", "backlog"),)): 0}
            await until(matches)


async def test_estimated_counts_are_marked_by_a_gauge(dsn: str, schema: str) -> None:
    """Issue 18: above the app's estimate_limit a job count is the planner's
    estimate; ``wrk_jobs_estimated`` says which (1), beside every exact one (0)."""
    guessing = Werk(dsn, schema=schema, task_modules=["tests"], estimate_limit=2)
    sampler = DatabaseMetrics(guessing, interval=3600, namespace="wrk")
    with trio.fail_after(60):
        async with guessing, api_server(guessing, worker=False, metrics=sampler) as srv:
            await guessing.enqueue_many([EnqueueParams(add, (n, 1), queue="big") for n in range(3)])
            await guessing.enqueue(add, 1, 1, _queue="small")
            await guessing.vacuum()  # the planner's statistics (ANALYZE)
            await sampler.refresh()
            seen = await scrape(srv.http)
            assert (seen[jobs("big", "queued")], seen[jobs("small", "queued")]) == (3, 1)
            marks = {(dict(labels)["queue"], dict(labels)["status"]): v
                     for (name, labels), v in seen.items() if name == "wrk_jobs_estimated"}  # fmt: skip
            assert marks == {k: float(k == ("big", "queued")) for k in marks}
            assert {q for q, _ in marks} == {"big", "small"} and len(marks) == 16, marks


async def test_gauges_are_read_on_the_interval_never_per_scrape(app: Werk) -> None:
    sampler = DatabaseMetrics(app, interval=3600, namespace="wrk")
    with trio.fail_after(60):
        async with api_server(app, worker=False, metrics=sampler) as srv:
            assert sampler.refreshes == 1, "the first read happens at startup"
            assert (await scrape(srv.http)).get(jobs("q", "queued")) is None
            for _ in range(3):
                await app.enqueue(add, 1, 1, _queue="q")
            for _ in range(20):
                assert (await scrape(srv.http)).get(jobs("q", "queued")) is None
            assert sampler.refreshes == 1, "scrapes did not read the database"
            await sampler.refresh()
            assert (await scrape(srv.http))[jobs("q", "queued")] == 3


async def test_a_failing_refresh_is_counted_and_the_server_stays_up(dsn: str, schema: str) -> None:
    offline = Werk(dsn, schema=schema)  # never connected: every refresh fails
    with trio.fail_after(60):
        async with api_server(offline, worker=False, metrics=True, metrics_interval=0.05) as srv:

            async def failures() -> float | None:
                seen = await scrape(srv.http)
                n = seen[("wrk_metrics_refresh_errors_total", ())]
                return n if n >= 3 else None

            await until(failures)
            assert (await srv.http.get("/api/health")).status_code == 200
            assert (await srv.http.get("/api/ready")).status_code == 503


async def test_metrics_off_is_a_503_saying_how_to_turn_them_on(app: Werk) -> None:
    with trio.fail_after(30):
        async with api_server(app, worker=False) as srv:
            r = await srv.http.get("/metrics")
            assert r.status_code == 503 and "--metrics" in r.json()["error"]
