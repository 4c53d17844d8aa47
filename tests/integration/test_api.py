"""Issue 15: the REST API over real HTTP, against a real database and a live worker.

Each test serves ``werk_trio.web`` with hypercorn's Trio worker on a free
loopback port in the test's own Trio loop (``_api_support.api_server``) and
talks to it with httpx: status codes and JSON shapes of every endpoint, the
token rule, read-only mode, the bind rule, the Host/cross-site/body-size
guards, readiness, and a 4xx naming the field for bad input per endpoint.
Every response is checked to have been served on Trio.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import trio

from werk_trio import ConfigError, CronScheduler, Dependency, EnqueueParams, JobStatus, Werk
from werk_trio.sql import migrations
from werk_trio.testing import until
from werk_trio.web import check_bind, create_app, serve
from werk_trio.web.app import route_table

from ._api_support import api_server, client, job_status

TOKEN = "t0ken-for-the-api-tests-0123456789"
HERE = __name__  # "tests.integration.test_api": handlers are enqueued by this dotted path
MISSING = "00000000-0000-7000-8000-000000000000"


async def add(a: int, b: int) -> int:
    return a + b


async def boom() -> None:
    raise ValueError("boom on purpose")


async def sleepy(seconds: float) -> str:
    await trio.sleep(seconds)
    return "slept"


def _routes(app: Any = None, *, documented: bool = False) -> list[tuple[str, str]]:
    """(method, path) of every route of the API app (HEAD excluded)."""
    return route_table(documented=documented)


def _concrete(path: str, job_id: str = MISSING) -> str:
    return (path.replace("{job_id}", job_id).replace("{worker_id}", MISSING)
            .replace("{name}", "nightly"))


#: pgwerk's endpoints (pgwerk-gap.md §1.17) plus pause/resume of cron and readiness.
PGWERK_ROUTES = {
    ("GET", "/api/jobs"), ("POST", "/api/jobs"), ("GET", "/api/jobs/{job_id}"),
    ("GET", "/api/jobs/{job_id}/executions"), ("GET", "/api/jobs/{job_id}/dependencies"),
    ("POST", "/api/jobs/{job_id}/cancel"), ("POST", "/api/jobs/{job_id}/abort"),
    ("POST", "/api/jobs/{job_id}/requeue"), ("DELETE", "/api/jobs/{job_id}"),
    ("POST", "/api/jobs/requeue"), ("POST", "/api/jobs/cancel"), ("POST", "/api/jobs/purge"),
    ("GET", "/api/workers"), ("GET", "/api/workers/{worker_id}"), ("GET", "/api/workers/{worker_id}/jobs"),
    ("GET", "/api/stats"), ("GET", "/api/stats/throughput"), ("GET", "/api/stats/queue-depth"),
    ("GET", "/api/cron"), ("POST", "/api/cron/{name}/trigger"), ("POST", "/api/cron/{name}/pause"),
    ("POST", "/api/cron/{name}/resume"),
    ("GET", "/api/server"), ("POST", "/api/server/sweep"), ("POST", "/api/server/vacuum"),
    ("POST", "/api/server/truncate"),
    ("GET", "/api/health"), ("GET", "/api/ready"), ("GET", "/metrics"),
}  # fmt: skip


async def test_jobs_lifecycle_through_the_api(app: Werk) -> None:
    """Create, run (by the live worker), inspect, list with every filter, and the
    job's executions and dependencies, with pgwerk's shapes."""
    with trio.fail_after(60):
        async with api_server(app) as srv:
            http = srv.http
            r = await http.post("/api/jobs", json={"function": f"{HERE}.add", "args": [2], "kwargs": {"b": 3},
                                                   "meta": {"via": "api"}, "max_attempts": 2})
            assert r.status_code == 201, r.text
            created = r.json()
            assert created["status"] == "queued" and created["function"] == f"{HERE}.add"
            assert created["max_attempts"] == 2 and created["meta"] == {"via": "api"}
            assert created["args"] == [2] and created["kwargs"] == {"b": 3}
            done = await job_status(http, created["id"], "complete", "failed")
            assert done["status"] == "complete", done
            assert done["result"] == 5
            assert srv.worker is not None and done["worker_id"] == str(srv.worker.id)
            for key in ("id", "function", "queue", "status", "priority", "attempts", "max_attempts",
                        "scheduled_at", "enqueued_at", "key", "group_key", "error", "timeout_secs",
                        "heartbeat_secs", "started_at", "completed_at", "worker_id", "meta"):
                assert key in done, key  # every field of pgwerk's JobResponse

            r = await http.get(f"/api/jobs/{created['id']}/executions")
            assert r.status_code == 200, r.text
            [execution] = r.json()
            assert execution["job_id"] == created["id"] and execution["attempt"] == 1
            assert execution["status"] == "complete" and execution["worker_id"] == str(srv.worker.id)

            # a failing job, and a dependency
            r = await http.post("/api/jobs", json={"function": f"{HERE}.boom", "queue": "default"})
            failed = await job_status(http, r.json()["id"], "failed", "complete")
            assert failed["status"] == "failed" and "boom on purpose" in failed["error"]
            parent = await app.enqueue(add, 0, 0, _queue="later", _delay=3600)
            assert parent is not None
            child = await app.enqueue(add, 1, 1, _queue="later", _depends_on=Dependency(parent.id))
            assert child is not None
            r = await http.get(f"/api/jobs/{child.id}/dependencies")
            assert r.status_code == 200 and r.json() == [str(parent.id)], r.text
            r = await http.get(f"/api/jobs/{created['id']}/dependencies")
            assert r.status_code == 200 and r.json() == [], r.text

            # list filters
            async def ids(**params: Any) -> list[str]:
                r = await http.get("/api/jobs", params=params)
                assert r.status_code == 200, r.text
                return [j["id"] for j in r.json()]

            assert set(await ids()) == {created["id"], failed["id"], str(parent.id), str(child.id)}
            assert await ids(status="failed") == [failed["id"]]
            assert set(await ids(status="complete,failed")) == {created["id"], failed["id"]}
            assert await ids(queue="later") == [str(child.id), str(parent.id)]  # newest first
            assert await ids(status="waiting") == [str(child.id)]
            assert set(await ids(worker_id=str(srv.worker.id))) == {created["id"], failed["id"]}
            assert await ids(search="boom") == [failed["id"]]
            assert len(await ids(limit=1)) == 1
            assert await ids(limit=1, offset=1) == (await ids())[1:2]
            assert await ids(offset=4) == []

            # the worker's own endpoints
            r = await http.get("/api/workers")
            assert r.status_code == 200
            [w] = r.json()
            assert w["id"] == str(srv.worker.id) and w["queue"] == "default" and w["queues"] == ["default"]
            for key in ("name", "status", "role", "metadata", "heartbeat_at", "started_at", "expires_at"):
                assert key in w, key
            r = await http.get(f"/api/workers/{srv.worker.id}")
            assert r.status_code == 200 and r.json()["id"] == str(srv.worker.id)
            r = await http.get(f"/api/workers/{srv.worker.id}/jobs")
            assert {j["id"] for j in r.json()} == {created["id"], failed["id"]}
            r = await http.get(f"/api/workers/{srv.worker.id}/jobs", params={"limit": 1})
            assert len(r.json()) == 1
            r = await http.get(f"/api/workers/{MISSING}")
            assert r.status_code == 404 and r.json()["field"] == "worker_id"

            r = await http.get("/api/stats")
            assert r.status_code == 200
            stats = r.json()
            assert stats["total_jobs"] == 4 and stats["workers_online"] == 1
            by_queue = {q["queue"]: q for q in stats["queues"]}
            assert by_queue["default"]["complete"] == 1 and by_queue["default"]["failed"] == 1
            assert by_queue["later"]["waiting"] == 1 and by_queue["later"]["scheduled"] == 1


async def test_stats_name_the_counts_that_are_estimates(dsn: str, schema: str) -> None:
    """Issue 18: /api/stats and /api/queues carry each queue's ``estimated``
    statuses -- those over the app's estimate_limit, whose counts are the
    planner's estimate."""
    guessing = Werk(dsn, schema=schema, task_modules=["tests"], estimate_limit=2)
    with trio.fail_after(60):
        async with guessing, api_server(guessing, worker=False) as srv:
            await guessing.enqueue_many([EnqueueParams("tests.cliapp.add", (n,), queue="big")
                                         for n in range(3)])  # fmt: skip
            await guessing.enqueue("tests.cliapp.add", 1, _queue="small")
            await guessing.vacuum()  # the planner's statistics (ANALYZE)
            r = await srv.http.get("/api/stats")
            assert r.status_code == 200
            by_queue = {q["queue"]: q for q in r.json()["queues"]}
            assert by_queue["big"]["queued"] == 3 and by_queue["big"]["estimated"] == ["queued"]
            assert by_queue["small"]["queued"] == 1 and by_queue["small"]["estimated"] == []
            assert r.json()["total_jobs"] == 4
            # /api/queues (list_queues) the same
            r = await srv.http.get("/api/queues")
            assert r.status_code == 200
            listed = {q["name"]: (q["counts"], q["total"], q["estimated"]) for q in r.json()}
            assert listed == {"big": ({"queued": 3}, 3, ["queued"]), "small": ({"queued": 1}, 1, [])}


async def test_state_changes_and_their_conflicts(app: Werk) -> None:
    """cancel / abort / requeue / delete: 200 (204), then 409 in the wrong
    state and 404 for a missing job; the rows really change."""
    with trio.fail_after(60):
        async with api_server(app) as srv:
            http = srv.http
            later = await app.enqueue(add, 1, 2, _delay=3600)
            assert later is not None
            r = await http.post(f"/api/jobs/{later.id}/cancel")
            assert r.status_code == 200 and r.json() == {"cancelled": True, "job_id": str(later.id)}
            assert (await app.get_job(later.id)).status is JobStatus.ABORTED
            r = await http.post(f"/api/jobs/{later.id}/cancel")
            assert r.status_code == 409 and r.json()["field"] == "job_id", r.text

            r = await http.post(f"/api/jobs/{later.id}/requeue")
            assert r.status_code == 200 and r.json() == {"requeued": True, "job_id": str(later.id)}
            assert (await job_status(http, str(later.id), "complete"))["result"] == 3

            slow = await app.enqueue(sleepy, 60)
            assert slow is not None
            await job_status(http, str(slow.id), "active")
            r = await http.post(f"/api/jobs/{slow.id}/abort")
            assert r.status_code == 200 and r.json() == {"aborted": True, "job_id": str(slow.id)}
            assert (await job_status(http, str(slow.id), "aborted"))["status"] == "aborted"
            r = await http.post(f"/api/jobs/{slow.id}/abort")
            assert r.status_code == 409, r.text
            r = await http.post(f"/api/jobs/{slow.id}/cancel")
            assert r.status_code == 409, r.text

            r = await http.delete(f"/api/jobs/{slow.id}")
            assert r.status_code == 204 and r.content == b""
            r = await http.get(f"/api/jobs/{slow.id}")
            assert r.status_code == 404 and r.json()["field"] == "job_id"
            for method, path in _routes():
                if "{job_id}" in path:
                    r = await http.request(method, _concrete(path, str(slow.id)))
                    assert r.status_code == 404, (method, path, r.text)
                    assert str(slow.id) in r.json()["error"]


async def test_stats_history_and_server_info(app: Werk) -> None:
    """Throughput counts what the worker finished; the worker's sweeper takes a
    queue-depth sample that the history then shows; the server info names our
    tables."""
    later = [await app.enqueue(add, 0, 0, _queue="depth", _delay=3600) for _ in range(3)]
    assert all(later)
    with trio.fail_after(60):
        async with api_server(app) as srv:
            http = srv.http
            jobs = [await app.enqueue(add, i, i) for i in range(6)]
            jobs += [await app.enqueue(boom) for _ in range(2)]
            for job in jobs:
                assert job is not None
                await job_status(http, str(job.id), "complete", "failed")

            async def finished() -> list[dict[str, Any]] | None:
                r = await http.get("/api/stats/throughput", params={"minutes": 5})
                assert r.status_code == 200, r.text
                points: list[dict[str, Any]] = r.json()
                return points if sum(p["count"] for p in points) >= 6 else None

            points = await until(finished)
            assert sum(p["count"] for p in points) == 6 and sum(p["failed"] for p in points) == 2
            assert srv.worker is not None
            assert {p["worker_id"] for p in points if p["count"]} == {str(srv.worker.id)}
            assert (await http.get("/api/stats/throughput")).status_code == 200  # pgwerk's default window

            r = await http.post("/api/server/sweep")
            assert r.status_code == 200 and r.json()["swept"] == 0, r.text

            async def sampled() -> list[dict[str, Any]] | None:
                r = await http.get("/api/stats/queue-depth", params={"minutes": 5})
                assert r.status_code == 200, r.text
                return [p for p in r.json() if p["queue"] == "depth"] or None

            depth = await until(sampled)
            assert depth[-1]["scheduled"] == 3 and depth[-1]["queued"] == 0, depth
            assert depth[-1]["estimated"] == [], depth  # counts under estimate_limit are exact

            r = await http.get("/api/server")
            assert r.status_code == 200, r.text
            info = r.json()
            assert info["pg_version"].startswith("PostgreSQL") and info["db_size_bytes"] > 0
            assert any(t["name"].endswith("_werk_jobs") for t in info["tables"]), info["tables"]
            assert info["read_only"] is False and info["truncate_enabled"] is False


async def test_cron_endpoints(app: Werk) -> None:
    """List, trigger (the live worker runs the job), pause, resume; 404 for an
    unknown schedule, 422 for a bad name."""
    scheduler = CronScheduler(app, lease=2.0, standby_retry_interval=0.2)
    scheduler.register(add, interval=3600, kwargs={"a": 20, "b": 22}, name="hourly")
    with trio.fail_after(60):
        async with api_server(app) as srv, trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            http = srv.http
            r = await http.get("/api/cron")
            assert r.status_code == 200, r.text
            [hourly] = r.json()
            assert hourly["name"] == "hourly" and hourly["function"] == f"{HERE}.add"
            assert hourly["schedule"] == "every 3600s" and hourly["paused"] is False
            runs = hourly["total_runs"]
            for key in ("queue", "failed_runs", "last_status", "last_enqueued_at", "last_completed_at"):
                assert key in hourly, key  # pgwerk's CronJobStats

            r = await http.post("/api/cron/hourly/trigger")
            assert r.status_code == 200, r.text
            assert r.json()["triggered"] is True and r.json()["job"]["cron_name"] == "hourly"
            done = await job_status(http, r.json()["job"]["id"], "complete", "failed")
            assert done["result"] == 42
            r = await http.get("/api/cron")
            assert r.json()[0]["total_runs"] == runs + 1

            r = await http.post("/api/cron/hourly/pause")
            assert r.status_code == 200 and r.json() == {"paused": True, "name": "hourly"}
            assert (await http.get("/api/cron")).json()[0]["paused"] is True
            r = await http.post("/api/cron/hourly/resume")
            assert r.status_code == 200 and r.json() == {"resumed": True, "name": "hourly"}
            assert (await http.get("/api/cron")).json()[0]["paused"] is False

            for action in ("trigger", "pause", "resume"):
                r = await http.post(f"/api/cron/nightly/{action}")
                assert r.status_code == 404 and r.json()["field"] == "name", r.text
                r = await http.post(f"/api/cron/{'x' * 201}/{action}")
                assert r.status_code == 422 and r.json()["field"] == "name", r.text
            scheduler.stop()


async def test_bulk_and_server_endpoints(app: Werk) -> None:
    with trio.fail_after(60):
        async with api_server(app, queues=("work",)) as srv:
            http = srv.http
            failing = [await app.enqueue(boom, _queue="work") for _ in range(3)]
            for job in failing:
                assert job is not None
                await job_status(http, str(job.id), "failed")
            held = [await app.enqueue(add, 1, 1, _queue="held") for _ in range(4)]

            r = await http.post("/api/jobs/requeue", json={"queue": "elsewhere"})
            assert r.status_code == 200 and r.json() == {"requeued": 0}
            r = await http.post("/api/jobs/requeue", json={"queue": "work", "function_name": f"{HERE}.boom"})
            assert r.status_code == 200 and r.json() == {"requeued": 3}, r.text
            for job in failing:
                assert job is not None
                await job_status(http, str(job.id), "failed")  # ran again, failed again

            r = await http.post("/api/jobs/cancel", json={"queue": "held"})
            assert r.status_code == 200 and r.json() == {"cancelled": 4}
            r = await http.post("/api/jobs/cancel")  # no body: every queue
            assert r.status_code == 200 and r.json() == {"cancelled": 0}

            r = await http.post("/api/jobs/purge", json={"statuses": ["failed"], "older_than_days": 0})
            assert r.status_code == 200 and r.json() == {"purged": 3}
            r = await http.post("/api/jobs/purge")  # pgwerk's default: older than 30 days
            assert r.status_code == 200 and r.json() == {"purged": 0}
            assert len(await app.list_jobs()) == 4 and all(
                j.status is JobStatus.ABORTED for j in await app.list_jobs())
            assert {str(j.id) for j in await app.list_jobs()} == {str(j.id) for j in held if j}

            r = await http.post("/api/server/sweep")
            assert r.status_code == 200 and r.json()["swept"] == 0, r.text
            r = await http.post("/api/server/vacuum")
            assert r.status_code == 200 and r.json() == {"vacuumed": True}
            r = await http.post("/api/server/truncate")
            assert r.status_code == 403, r.text
            assert len(await app.list_jobs()) == 4, "a refused truncate deleted nothing"
        async with api_server(app, worker=False, allow_truncate=True) as srv:
            r = await srv.http.post("/api/server/truncate")
            assert r.status_code == 200 and r.json() == {"truncated": True}
            assert await app.list_jobs() == []


#: (method, path, body or params, status, field) -- bad input per endpoint.
BAD_INPUTS: list[tuple[str, str, Any, int, str | None]] = [
    ("GET", "/api/jobs", {"limit": 0}, 422, "limit"),
    ("GET", "/api/jobs", {"limit": 501}, 422, "limit"),
    ("GET", "/api/jobs", {"limit": "many"}, 422, "limit"),
    ("GET", "/api/jobs", {"offset": -1}, 422, "offset"),
    ("GET", "/api/jobs", {"offset": 10**9}, 422, "offset"),
    ("GET", "/api/jobs", {"status": "running"}, 422, "status"),
    ("GET", "/api/jobs", {"worker_id": "w1"}, 422, "worker_id"),
    ("GET", "/api/jobs", {"search": "x" * 201}, 422, "search"),
    ("POST", "/api/jobs", {}, 422, "function"),
    ("POST", "/api/jobs", {"function": f"{HERE}.add", "args": "1,2"}, 422, "args"),
    ("POST", "/api/jobs", {"function": f"{HERE}.add", "priority": "high"}, 422, "priority"),
    ("POST", "/api/jobs", {"function": f"{HERE}.add", "delay": -1}, 422, "delay"),
    ("POST", "/api/jobs", {"function": f"{HERE}.add", "max_attempts": 0}, 422, "max_attempts"),
    ("POST", "/api/jobs", {"function": f"{HERE}.add", "timeout_secs": 0}, 422, "timeout_secs"),
    ("POST", "/api/jobs", {"function": f"{HERE}.add", "scheduled_at": "tomorrow"}, 422, "scheduled_at"),
    ("POST", "/api/jobs", {"function": f"{HERE}.add", "kwargs": {"_queue": "x"}}, 422, "kwargs._queue"),
    ("POST", "/api/jobs", {"function": f"{HERE}.add", "cron_name": "x"}, 422, "cron_name"),
    ("POST", "/api/jobs", {"function": f"{HERE}.add", "qeue": "x"}, 422, "qeue"),
    ("POST", "/api/jobs/requeue", {"queue": 5}, 422, "queue"),
    ("POST", "/api/jobs/requeue", {"functon_name": "x"}, 422, "functon_name"),
    ("POST", "/api/jobs/cancel", {"queue": ["a"]}, 422, "queue"),
    ("POST", "/api/jobs/purge", {"statuses": ["active"]}, 422, "statuses.0"),
    ("POST", "/api/jobs/purge", {"statuses": []}, 422, "statuses"),
    ("POST", "/api/jobs/purge", {"older_than_days": -1}, 422, "older_than_days"),
    ("GET", "/api/jobs/not-a-uuid", None, 422, "job_id"),
    ("GET", "/api/jobs/not-a-uuid/executions", None, 422, "job_id"),
    ("GET", "/api/jobs/not-a-uuid/dependencies", None, 422, "job_id"),
    ("POST", "/api/jobs/not-a-uuid/cancel", None, 422, "job_id"),
    ("POST", "/api/jobs/not-a-uuid/abort", None, 422, "job_id"),
    ("POST", "/api/jobs/not-a-uuid/requeue", None, 422, "job_id"),
    ("DELETE", "/api/jobs/not-a-uuid", None, 422, "job_id"),
    ("GET", "/api/workers/w1", None, 422, "worker_id"),
    ("GET", f"/api/workers/{MISSING}/jobs", {"limit": 1000}, 422, "limit"),
    ("GET", "/api/stats/throughput", {"minutes": 0}, 422, "minutes"),
    ("GET", "/api/stats/throughput", {"minutes": 10081}, 422, "minutes"),
    ("GET", "/api/stats/queue-depth", {"minutes": "all"}, 422, "minutes"),
]


async def test_bad_input_is_a_4xx_naming_the_field(app: Werk) -> None:
    with trio.fail_after(60):
        async with api_server(app, worker=False) as srv:
            for method, path, data, status, field in BAD_INPUTS:
                if method == "GET":
                    r = await srv.http.get(path, params=data)
                else:
                    r = await srv.http.request(method, path, json=data)
                assert r.status_code == status, (method, path, data, r.text)
                body = r.json()
                assert body["field"] == field, (method, path, data, body)
                assert field is None or field.split(".")[0] in body["error"], body
                assert "Traceback" not in r.text
            # malformed JSON, a non-JSON body, a bad enqueue the app itself refuses
            r = await srv.http.post("/api/jobs", content=b"{not json",
                                    headers={"content-type": "application/json"})
            assert r.status_code == 422 and "JSON" in r.json()["error"], r.text
            r = await srv.http.post("/api/jobs", content=b"function=x")
            assert r.status_code == 422 and "JSON object" in r.json()["error"], r.text
            r = await srv.http.post("/api/jobs", json={"function": "no_dots"})
            assert r.status_code == 422 and "dotted path" in r.json()["error"], r.text
            r = await srv.http.get("/api/nowhere")
            assert r.status_code == 404 and "no route" in r.json()["error"]
            r = await srv.http.put("/api/jobs")
            assert r.status_code == 405 and r.json()["error"]
            key = {"function": f"{HERE}.add", "args": [1, 2], "key": "once"}
            assert (await srv.http.post("/api/jobs", json=key)).status_code == 201
            r = await srv.http.post("/api/jobs", json=key)
            assert r.status_code == 409 and r.json()["field"] == "key", r.text
            assert len(await app.list_jobs()) == 1, "no bad request enqueued anything"


async def test_token_protects_everything_but_health(app: Werk) -> None:
    routes = _routes()
    assert ("GET", "/api/openapi.json") in routes
    assert set(routes) >= PGWERK_ROUTES, PGWERK_ROUTES - set(routes)
    with trio.fail_after(60):
        async with api_server(app, worker=False, token=TOKEN, headers={"authorization": "none"}) as srv:
            job = await app.enqueue(add, 1, 2, _delay=3600)
            assert job is not None
            for method, path in routes:
                url = _concrete(path, str(job.id))
                for headers in ({}, {"authorization": "Bearer wrong-token-wrong-token"},
                                {"authorization": f"Basic {TOKEN}"}, {"authorization": TOKEN},
                                {"cookie": f"token={TOKEN}"}):
                    r = await srv.http.request(method, url, headers=headers or {"authorization": ""})
                    if path in ("/api/health", "/api/ready"):
                        assert r.status_code == 200, (method, path, r.text)
                    else:
                        assert r.status_code == 401, (method, path, headers, r.text)
                        assert r.headers["www-authenticate"] == "Bearer"
            assert (await app.get_job(job.id)).status is JobStatus.SCHEDULED, "nothing changed"
            good = {"authorization": f"Bearer {TOKEN}"}
            r = await srv.http.get("/api/jobs", headers=good)
            assert r.status_code == 200 and [j["id"] for j in r.json()] == [str(job.id)]
            r = await srv.http.post(f"/api/jobs/{job.id}/cancel", headers=good)
            assert r.status_code == 200, r.text
            # a token also lifts the loopback-Host rule (the API is meant to be reached then)
            r = await srv.http.get("/api/jobs", headers={**good, "host": "queue.example.com"})
            assert r.status_code == 200, r.text


async def test_read_only_refuses_every_state_change(app: Werk) -> None:
    changing = [(m, p) for m, p in _routes() if m not in ("GET", "HEAD")]
    assert len(changing) == 20  # create, 3 bulk, 4 per job, 3 cron, 3 server, 6 queue controls
    with trio.fail_after(60):
        async with api_server(app, worker=False, read_only=True, allow_truncate=True) as srv:
            job = await app.enqueue(add, 1, 2, _delay=3600)
            assert job is not None
            for method, path in changing:
                body = {"function": f"{HERE}.add"} if path == "/api/jobs" else None
                r = await srv.http.request(method, _concrete(path, str(job.id)), json=body)
                assert r.status_code == 403 and "read-only" in r.json()["error"], (method, path, r.text)
            assert [j.id for j in await app.list_jobs()] == [job.id]
            assert (await app.get_job(job.id)).status is JobStatus.SCHEDULED
            for path in ("/api/jobs", f"/api/jobs/{job.id}", "/api/stats", "/api/workers", "/api/health"):
                assert (await srv.http.get(path)).status_code == 200, path


async def test_bind_rule(app: Werk) -> None:
    assert check_bind("127.0.0.1", 0, None) == "127.0.0.1:0"
    assert check_bind("::1", 8000, None) == "[::1]:8000"
    assert check_bind("localhost", 8000, None) == "localhost:8000"
    for host in ("0.0.0.0", "::", "192.168.1.10", "api.example.com"):
        with pytest.raises(ConfigError, match="without a token"):
            check_bind(host, 8000, None)
        assert check_bind(host, 8000, TOKEN).endswith(":8000")
    for host, port in (("", 1), ("a b", 1), ("127.0.0.1", 70000), ("127.0.0.1", -1), ("127.0.0.1", True)):
        with pytest.raises(ConfigError):
            check_bind(host, port, None)  # type: ignore[arg-type]
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            with pytest.raises(ConfigError, match="without a token"):
                await nursery.start(lambda task_status: serve(
                    app, host="0.0.0.0", port=0, task_status=task_status))
            binds = await nursery.start(lambda task_status: serve(
                app, host="0.0.0.0", port=0, token=TOKEN, task_status=task_status))
            port = int(binds[0].rsplit(":", 1)[1])
            async with client(f"http://127.0.0.1:{port}") as http:
                assert (await http.get("/api/health")).status_code == 200
                assert (await http.get("/api/jobs")).status_code == 401
            nursery.cancel_scope.cancel()


async def test_create_app_validates_its_options(app: Werk) -> None:
    with pytest.raises(ConfigError, match="Werk"):
        create_app(object())  # type: ignore[arg-type]
    for token in ("", "short", "has a space in it, long enough", 12345678901234567):
        with pytest.raises(ConfigError, match="token"):
            create_app(app, token=token)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="read_only"):
        create_app(app, read_only="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_body_bytes"):
        create_app(app, max_body_bytes=10)
    with pytest.raises(ConfigError, match="allowed_hosts"):
        create_app(app, allowed_hosts="localhost")
    with pytest.raises(ConfigError, match="interval"):
        create_app(app, metrics=True, metrics_interval=0)
    with pytest.raises(ConfigError, match="metrics"):
        create_app(app, metrics="yes")  # type: ignore[arg-type]


async def test_host_cross_site_and_body_guards(app: Werk) -> None:
    with trio.fail_after(60):
        async with api_server(app, worker=False, max_body_bytes=4096) as srv:
            http = srv.http
            # DNS rebinding: a foreign Host is refused without a token, even for reads
            r = await http.get("/api/jobs", headers={"host": "evil.example:8000"})
            assert r.status_code == 400 and "Host" in r.json()["error"], r.text
            r = await http.get("/api/jobs", headers={"host": "localhost:1234"})
            assert r.status_code == 200
            host = srv.base.removeprefix("http://")
            body = {"function": f"{HERE}.add", "args": [1, 2]}
            for headers in ({"origin": "http://evil.example"}, {"origin": "null"},
                            {"origin": f"http://{host}", "sec-fetch-site": "cross-site"}):
                r = await http.post("/api/jobs", json=body, headers=headers)
                assert r.status_code == 403 and "state" in r.json()["error"], (headers, r.text)
                r = await http.post("/api/jobs/cancel", headers=headers)
                assert r.status_code == 403, headers
            assert await app.list_jobs() == []
            # the same origin (a page served by this host) may
            r = await http.post("/api/jobs", json=body, headers={"origin": f"http://{host}",
                                                                  "sec-fetch-site": "same-origin"})
            assert r.status_code == 201, r.text
            # cross-site reads stay possible: GET changes nothing
            r = await http.get("/api/jobs", headers={"origin": "http://evil.example"})
            assert r.status_code == 200

            big = {"function": f"{HERE}.add", "args": ["x" * 5000]}
            r = await http.post("/api/jobs", json=big)
            assert r.status_code == 413 and "4096" in r.json()["error"], r.text

            async def chunks() -> Any:  # no content-length: streamed, counted as it arrives
                yield b'{"function": "%s.add", "args": ["' % HERE.encode()
                for _ in range(10):
                    yield b"y" * 1000
                yield b'"]}'

            r = await http.post("/api/jobs", content=chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413, r.text
            assert len(await app.list_jobs()) == 1


async def test_health_and_readiness(app: Werk, dsn: str, schema: str) -> None:
    with trio.fail_after(60):
        async with api_server(app, worker=False) as srv:
            r = await srv.http.get("/api/health")
            assert r.status_code == 200 and r.json() == {"status": "ok"}
            r = await srv.http.get("/api/ready")
            assert r.status_code == 200, r.text
            versions = [m.version for m in migrations()]
            assert r.json()["status"] == "ready" and r.json()["migrations"]["applied"] == versions
            # a migration missing from the database: not ready, and says what to do
            async with app.connection() as conn:
                await conn.execute(f'DELETE FROM "{schema}"."_werk_migrations" WHERE version = 1')
            r = await srv.http.get("/api/ready")
            assert r.status_code == 503 and "werk migrate" in r.json()["database"], r.text
            async with app.connection() as conn:
                await conn.execute(f"""INSERT INTO "{schema}"."_werk_migrations" (version, name)
                                       VALUES (1, 'initial')""")
            assert (await srv.http.get("/api/ready")).status_code == 200
            # a version the code does not know: the schema is newer than the code
            async with app.connection() as conn:
                await conn.execute(f"""INSERT INTO "{schema}"."_werk_migrations" (version, name)
                                       VALUES (999, 'future')""")
            r = await srv.http.get("/api/ready")
            assert r.status_code == 503 and "newer" in r.json()["database"], r.text
        # a Werk that is not connected: live (200), not ready (503)
        other = Werk(dsn, schema=schema)
        async with api_server(other, worker=False) as srv:
            assert (await srv.http.get("/api/health")).status_code == 200
            r = await srv.http.get("/api/ready")
            assert r.status_code == 503 and r.json()["database"] == "not connected"
            r = await srv.http.get("/api/jobs")
            assert r.status_code == 503 and "not connected" in r.json()["error"], r.text


async def test_openapi_document_is_valid_and_lists_every_route(app: Werk) -> None:
    from openapi_spec_validator import validate

    with trio.fail_after(60):
        async with api_server(app, worker=False) as srv:
            r = await srv.http.get("/api/openapi.json")
            assert r.status_code == 200
            doc = r.json()
    validate(doc)
    listed = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert listed == set(_routes(documented=True)), set(_routes(documented=True)) ^ listed
    assert listed >= PGWERK_ROUTES
    assert doc["paths"]["/api/jobs"]["get"]["parameters"][0]["name"] in ("queue", "status", "worker_id")
    names = {p["name"] for p in doc["paths"]["/api/jobs"]["get"]["parameters"]}
    assert names == {"queue", "status", "worker_id", "search", "limit", "offset", "function"}


async def test_mounted_inside_another_trio_app(app: Werk) -> None:
    """The app mounts under a prefix of the user's own ASGI app and keeps its guards."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("my app")

    outer = Starlette(routes=[Route("/", home), Mount("/queue", create_app(app, read_only=True))])
    config = Config()
    config.bind = ["127.0.0.1:0"]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(lambda task_status: hypercorn_serve(
                outer, config, task_status=task_status))  # type: ignore[arg-type]
            job = await app.enqueue(add, 1, 2)
            assert job is not None
            async with client(binds[0]) as http:
                r = await http.get(f"/queue/api/jobs/{job.id}")
                assert r.status_code == 200 and r.json()["id"] == str(job.id)
                r = await http.post(f"/queue/api/jobs/{job.id}/cancel")
                assert r.status_code == 403
            async with httpx.AsyncClient(base_url=binds[0]) as plain:
                assert (await plain.get("/")).text == "my app"
            nursery.cancel_scope.cancel()


async def test_results_no_json_can_carry_do_not_fail_the_response(app: Werk) -> None:
    """A job row whose result/meta JSON cannot represent (NaN) still serves (repr)."""
    job = await app.enqueue(add, 1, 2, _meta={"ok": True})
    assert job is not None
    async with app.connection() as conn:
        await conn.execute(f'UPDATE "{app.config.schema}"."_werk_jobs" SET result = %s WHERE id = %s',
                           ('{"x": NaN}', job.id))
    with trio.fail_after(60):
        async with api_server(app, worker=False) as srv:
            r = await srv.http.get(f"/api/jobs/{job.id}")
            assert r.status_code == 200, r.text
            assert r.json()["result"] == "{'x': nan}" and r.json()["meta"] == {"ok": True}
            r = await srv.http.get("/api/jobs")
            assert r.status_code == 200 and r.json()[0]["result"] == "{'x': nan}"


async def test_unknown_job_ids_and_uuid_forms(app: Werk) -> None:
    with trio.fail_after(60):
        async with api_server(app, worker=False) as srv:
            r = await srv.http.get(f"/api/jobs/{uuid.uuid4()}")
            assert r.status_code == 404 and r.json()["field"] == "job_id"
            job = await app.enqueue(add, 1, 2)
            assert job is not None
            r = await srv.http.get(f"/api/jobs/{job.id.hex}")  # the hex form of the same id
            assert r.status_code == 200 and r.json()["id"] == str(job.id)
