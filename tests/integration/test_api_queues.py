"""Flow control through the REST API (issue 17), over real HTTP against a real
database and a live worker: ``/api/queues`` and each queue's pause, resume,
limits and rate; bad bodies as 422s naming the field; and a job's progress
(``ctx.set_progress``) in the job endpoint. The token and read-only rules
cover these routes in test_api.py (they walk every route)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests._support import claims_reach
from werk_trio import JobStatus, Werk

from ._api_support import api_server, job_status, until

HERE = __name__
GATES: dict[str, trio.Event] = {}


async def add(a: int, b: int) -> int:
    return a + b


async def reporting(ctx: Any) -> str:
    await ctx.set_progress(0.4, "two of five")
    await GATES["report"].wait()
    return "done"


async def test_pause_limits_rate_and_their_removal(app: Werk) -> None:
    with trio.fail_after(60):
        async with api_server(app) as srv:
            assert srv.worker is not None
            for i in range(2):
                await app.enqueue(add, i, 1, _queue="mail")
            r = await srv.http.get("/api/queues")
            assert r.status_code == 200 and r.json() == [{
                "name": "mail", "paused": False, "paused_at": None, "max_running": None,
                "limit_by": None, "rate_n": None, "rate_per_seconds": None, "rate_by": None,
                "counts": {"queued": 2}, "total": 2, "estimated": [],
            }], r.text  # fmt: skip

            r = await srv.http.post("/api/queues/mail/pause")
            assert r.status_code == 200 and r.json()["paused"] and r.json()["paused_at"], r.text
            limits = {"max_running": 3, "partition_by": "_group"}
            r = await srv.http.put("/api/queues/mail/limits", json=limits)
            assert r.status_code == 200, r.text
            assert (r.json()["max_running"], r.json()["limit_by"], r.json()["paused"]) == (3, "_group", True)
            r = await srv.http.put("/api/queues/mail/rate",
                                   json={"n": 10, "per_seconds": 2.5, "partition_by": "meta.customer"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["rate_n"], body["rate_per_seconds"], body["rate_by"]) == (10, 2.5, "meta.customer")
            [mail] = await app.list_queues()
            assert mail.paused and (mail.max_running, mail.limit_by) == (3, "_group")
            assert (mail.rate_limit, mail.rate_by) == ((10, 2.5), "meta.customer")
            r = await srv.http.get("/api/queues")
            assert [q["name"] for q in r.json()] == ["mail"] and r.json()[0] == body

            r = await srv.http.delete("/api/queues/mail/rate")
            assert r.status_code == 200 and r.json()["rate_n"] is None and r.json()["max_running"] == 3
            r = await srv.http.put("/api/queues/mail/limits", json={"max_running": None})
            assert r.status_code == 200 and r.json()["max_running"] is None and r.json()["limit_by"] is None
            r = await srv.http.post("/api/queues/mail/resume")
            assert r.status_code == 200 and not r.json()["paused"] and r.json()["paused_at"] is None
            [mail] = await app.list_queues()
            assert (mail.paused, mail.max_running, mail.rate_limit) == (False, None, None)
            r = await srv.http.put("/api/queues/mail/limits", json={"max_running": 1})
            assert r.status_code == 200 and r.json()["max_running"] == 1
            r = await srv.http.delete("/api/queues/mail/limits")
            assert r.status_code == 200 and r.json()["max_running"] is None
            # a queue without jobs or controls answers as such
            r = await srv.http.post("/api/queues/empty/resume")
            assert r.status_code == 200 and r.json()["name"] == "empty" and r.json()["total"] == 0

            # the live worker serves "default": paused through the API, it starts nothing
            r = await srv.http.post("/api/queues/default/pause")
            assert r.status_code == 200
            job = await app.enqueue(add, 2, 3)
            assert job is not None
            before = srv.worker.poller.claims
            # the second claim from here began after the enqueue committed
            await claims_reach(srv.worker, before + 2)
            assert (await app.get_job(job.id)).status is JobStatus.QUEUED
            r = await srv.http.post("/api/queues/default/resume")
            assert r.status_code == 200
            done = await job_status(srv.http, str(job.id), "complete")
            assert done["result"] == 5


@pytest.mark.parametrize(("method", "path", "body", "field", "needle"), [
    ("PUT", "limits", {"max_running": 0}, "max_running", "greater than or equal to 1"),
    ("PUT", "limits", {"max_running": 2.5}, "max_running", "valid integer"),
    ("PUT", "limits", {}, "max_running", "Field required"),
    ("PUT", "limits", {"max_running": 2, "partition_by": "customer"}, "partition_by", "'meta.<key>'"),
    ("PUT", "limits", {"max_running": None, "partition_by": "_group"}, "partition_by", "goes with a limit"),
    ("PUT", "limits", {"max_running": 2, "max": 3}, "max", "Extra inputs"),
    ("PUT", "rate", {"n": 5}, "per_seconds", "Field required"),
    ("PUT", "rate", {"n": 0, "per_seconds": 1}, "n", "greater than or equal to 1"),
    ("PUT", "rate", {"n": 5, "per_seconds": 0}, "per_seconds", "greater than 0"),
    ("PUT", "rate", {"n": 5, "per_seconds": 1e9}, "per_seconds", "less than or equal to"),
    ("PUT", "rate", {"n": 5, "per_seconds": 1, "partition_by": "meta."}, "partition_by", "'meta.<key>'"),
    ("POST", "pause", None, None, None),
])  # fmt: skip
async def test_bad_bodies_are_422s_naming_the_field(
    app: Werk, method: str, path: str, body: Any, field: str | None, needle: str | None
) -> None:
    with trio.fail_after(30):
        async with api_server(app, worker=False) as srv:
            if field is None:  # a name too long for the path
                r = await srv.http.request(method, f"/api/queues/{'q' * 1001}/{path}")
                assert r.status_code == 422 and r.json()["field"] == "name", r.text
            else:
                r = await srv.http.request(method, f"/api/queues/q/{path}", json=body)
                assert r.status_code == 422, r.text
                assert r.json()["field"] == field and needle in r.json()["error"], r.text
                assert r.json()["error"].startswith(f"{field}: "), r.text
            assert await app.list_queues() == [], "a refused change changed nothing"


async def test_queue_and_cron_names_with_a_slash_are_reachable(app: Werk) -> None:
    """A name may hold "/": the name is the rest of the path before the action,
    sent raw or percent-encoded."""
    with trio.fail_after(30):
        async with api_server(app, worker=False) as srv:
            r = await srv.http.post("/api/queues/team%2Fmail/pause")
            assert r.status_code == 200 and r.json()["name"] == "team/mail" and r.json()["paused"], r.text
            r = await srv.http.put("/api/queues/team/mail/limits", json={"max_running": 2})
            assert r.status_code == 200 and r.json()["name"] == "team/mail", r.text
            [queue] = await app.list_queues()
            assert (queue.name, queue.paused, queue.max_running) == ("team/mail", True, 2)
            r = await srv.http.post("/api/cron/no/such/schedule/pause")
            assert r.status_code == 404 and "no/such/schedule" in r.text, r.text


async def test_job_endpoint_shows_progress(app: Werk) -> None:
    GATES["report"] = trio.Event()
    with trio.fail_after(30):
        async with api_server(app) as srv:
            job = await app.enqueue(reporting)
            assert job is not None

            async def reported() -> dict[str, Any] | None:
                body: dict[str, Any] = (await srv.http.get(f"/api/jobs/{job.id}")).json()
                return body if body["progress"] is not None else None

            body = await until(reported)
            assert (body["status"], body["progress"], body["progress_message"]) == ("active", 0.4,
                                                                                    "two of five")
            listed = (await srv.http.get("/api/jobs")).json()
            assert (listed[0]["progress"], listed[0]["progress_message"]) == (0.4, "two of five")
            GATES["report"].set()
            done = await job_status(srv.http, str(job.id), "complete")
            # the last report stays
            assert (done["progress"], done["progress_message"]) == (0.4, "two of five")
