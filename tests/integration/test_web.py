"""The web examples as real processes: a web app and a worker in one program.

``examples/web_trio.py`` (ASGI on hypercorn's Trio worker) and
``examples/web_asyncio.py`` (an asyncio server under trio-asyncio) each run
as a child process on a free port of 127.0.0.1, pointed at this test's
schema. Over real HTTP: POST /jobs enqueues, the in-process worker runs the
job, GET /jobs/{id} reports it complete; then SIGTERM must stop server and
worker cleanly (exit 0, worker deregistered, port closed) within a bound.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.proctools import child_env, spawn
from werk_trio import JobStatus, Werk

EXAMPLES = {
    "web_trio": "hello, Ada",
    "web_asyncio": "HELLO, ADA",
}


def request(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    """One HTTP request with the stdlib (blocking: run it in a thread)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, parts.path, body=data, headers={"content-type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


async def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    return await trio.to_thread.run_sync(request, method, url, body)


@pytest.mark.parametrize("example", sorted(EXAMPLES))
async def test_web_app_and_worker_in_one_process(
    example: str, app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        argv = [sys.executable, f"examples/{example}.py", "--host", "127.0.0.1", "--port", "0"]
        async with spawn(argv, env=child_env(dsn, schema), log_path=tmp_path / f"{example}.log") as child:
            out = await child.wait_for_output("listening on http://")
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", out)
            assert match, out
            base = match.group(1)

            status, created = await call("POST", f"{base}/jobs", {"name": "Ada"})
            assert status == 201, created
            job_id = created["id"]
            assert created["status"] == "queued"

            # the worker in the same process runs it; the API reports it
            while True:
                status, seen = await call("GET", f"{base}/jobs/{job_id}")
                assert status == 200, seen
                if seen["status"] in ("complete", "failed"):
                    break
                await trio.sleep(0.02)
            assert seen["status"] == "complete", seen
            assert seen["result"] == EXAMPLES[example]

            status, missing = await call("GET", f"{base}/jobs/00000000-0000-7000-8000-000000000000")
            assert status == 404, missing
            status, missing = await call("GET", f"{base}/jobs/not-a-job-id")
            assert status == 404, missing

            [worker_row] = await app.list_workers()
            assert worker_row["pid"] == child.pid

            sent = time.monotonic()
            child.send_signal(signal.SIGTERM)
            code = await child.wait()
            delay = time.monotonic() - sent
        print(f"{example}: exited {code} {delay:.3f}s after SIGTERM")
        out = child.output()
        assert code == 0, out
        assert delay < 5.0, f"{delay:.3f}s to stop\n{out}"
        assert "Traceback" not in out, out
        assert out.rstrip().endswith("stopped"), out
        job = await app.get_job(job_id)
        assert job.status is JobStatus.COMPLETE
        assert job.result == EXAMPLES[example]
        assert [w["status"] for w in await app.list_workers()] == ["stopped"], "the worker deregistered"
        with pytest.raises(ConnectionRefusedError):
            await call("GET", f"{base}/jobs/{job_id}")
