"""Issue 15: a worker's own counters and histograms on ``Worker(metrics_port=)``,
scraped over real HTTP and parsed with prometheus-client's parser; every count
is what the test ran (45 succeed, 7 fail for good after 2 retries, 1 times out,
1 is aborted)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from werk_trio import AsyncWorker, ConfigError, JobStatus, Werk
from werk_trio.testing import make_worker, wait_for_status


async def add(a: int, b: int) -> int:
    return a + b


async def boom() -> None:
    raise ValueError("boom")


async def sleepy(seconds: float) -> None:
    await trio.sleep(seconds)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def by(function: str) -> tuple[tuple[str, str], ...]:
    return (("function", f"{__name__}.{function}"), ("queue", "m"))


async def test_worker_counters_match_what_ran(app: Werk) -> None:
    worker = make_worker(app, queues=["m"], concurrency=10, metrics_port=0)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            assert worker.metrics_url is not None and worker.metrics_url.startswith("http://127.0.0.1:")
            jobs: list[Any] = [await app.enqueue(add, i, 1, _queue="m") for i in range(45)]
            jobs += [await app.enqueue(boom, _queue="m") for _ in range(5)]
            jobs += [await app.enqueue(boom, _queue="m", _retry=2) for _ in range(2)]
            jobs.append(await app.enqueue(sleepy, 30, _queue="m", _timeout=0.2))
            for job in jobs:
                await app.wait_for(job.id, timeout=60)
            slow = await app.enqueue(sleepy, 60, _queue="m")
            assert slow is not None
            await wait_for_status(app, slow.id, "active")
            await app.abort_job(slow.id)
            assert (await app.wait_for(slow.id, timeout=30)).status is JobStatus.ABORTED
            async with httpx.AsyncClient(timeout=20) as http:
                r = await http.get(worker.metrics_url)
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
                other = worker.metrics_url.removesuffix("/metrics") + "/other"
                assert (await http.get(other)).status_code == 404
            worker.stop()
    seen = samples(r.text)
    expected = {
        ("wrk_jobs_started_total", by("add")): 45, ("wrk_jobs_completed_total", by("add")): 45,
        ("wrk_jobs_started_total", by("boom")): 9, ("wrk_jobs_failed_total", by("boom")): 7,
        ("wrk_jobs_retried_total", by("boom")): 2, ("wrk_jobs_completed_total", by("boom")): 0,
        ("wrk_jobs_started_total", by("sleepy")): 2, ("wrk_jobs_timed_out_total", by("sleepy")): 1,
        ("wrk_jobs_failed_total", by("sleepy")): 1, ("wrk_jobs_aborted_total", by("sleepy")): 1,
        ("wrk_job_run_seconds_count", by("add")): 45, ("wrk_job_run_seconds_count", by("boom")): 9,
        ("wrk_job_wait_seconds_count", (("queue", "m"),)): 56,
        ("wrk_claim_batch_size_sum", ()): 56,
    }  # fmt: skip
    for key, value in expected.items():
        assert seen.get(key) == value, (key, seen.get(key), value)
    assert seen[("wrk_job_run_seconds_sum", by("sleepy"))] >= 0.2  # the timed-out run lasted its timeout
    assert not [k for k in seen if k[0] == "wrk_database_errors_total" and seen[k]]


async def test_no_metrics_port_no_metrics(app: Werk) -> None:
    worker = AsyncWorker(app, handle_signals=False)
    assert worker.metrics is None and worker.metrics_url is None
    for port in (-1, 70000, "9100", True):
        with pytest.raises(ConfigError, match="metrics_port"):
            AsyncWorker(app, metrics_port=port)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="metrics_host"):
        AsyncWorker(app, metrics_port=0, metrics_host="")


async def test_werk_worker_metrics_port_serves_the_counters(dsn: str, schema: str, tmp_path: Any) -> None:
    """``werk worker --metrics-port 0`` (a real process): the log names the
    address, and a scrape counts the jobs the process ran."""
    import re

    from tests.procapp import noop_job
    from tests.proctools import child_env, spawn, worker_argv

    app = Werk(dsn, schema=schema, task_modules=["tests"])
    async with app:
        argv = worker_argv("-q", "mq", "--metrics-port", "0", "--poll-interval", "0.2")
        with trio.fail_after(90):
            async with spawn(argv, env=child_env(dsn, schema), log_path=tmp_path / "w.log") as child:
                line = await child.wait_for_output("/metrics")
                match = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", line)
                assert match, line
                jobs = [await app.enqueue(noop_job, _queue="mq") for _ in range(3)]
                for job in jobs:
                    assert job is not None
                    assert (await app.wait_for(job.id, timeout=60)).status is JobStatus.COMPLETE
                async with httpx.AsyncClient() as client:
                    body = (await client.get(match[1] + "/metrics")).text
                got = samples(body)
                key = ("wrk_jobs_completed_total", (("function", "tests.procapp.noop_job"), ("queue", "mq")))
                assert got[key] == 3
