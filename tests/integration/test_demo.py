"""`werk demo` (the README's first command), run as a real process against the
test server in a schema of its own: every job ends, and the summary says so."""

from __future__ import annotations

import sys

import trio

from werk_trio import Werk


async def test_demo_drains_every_job_and_prints_the_summary(dsn: str, schema: str) -> None:
    with trio.fail_after(120):
        argv = [sys.executable, "-m", "werk_trio.cli", "demo", "--jobs", "400", "--dsn", dsn,
                "--schema", schema]  # fmt: skip
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
        out = done.stdout.decode()
        assert done.returncode == 0, out + done.stderr.decode()
        assert "enqueued 400 jobs" in out and "400/400" in out
        assert "jobs by queue and status:" in out and "latency, enqueue -> start (ms): p50" in out
        async with Werk(dsn, schema=schema) as app:
            counts = await app.counts()
        statuses = {status for queue in counts.values() for status in queue}
        assert statuses <= {"complete", "failed"}, counts  # retries ran too: none left waiting
        assert sum(n for queue in counts.values() for n in queue.values()) == 400
        assert counts["emails"] == {"complete": counts["emails"]["complete"]}
        assert counts["reports"].get("failed", 0) > 0  # the doomed jobs failed for good
