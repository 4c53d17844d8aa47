"""Real worker processes: signals, kill -9, many processes on one queue, the CLI.

Every worker here is ``python -m werk_trio.cli worker tests.procapp:app`` in a
child process, pointed at this test's schema through the environment. What a
job did is read from the side table its handler writes in a transaction of its
own (``tests/procapp.py``), never inferred from the jobs table alone; crashes
are real ``SIGKILL``s and ``os._exit``s, never edited rows.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from psycopg import sql

from tests import procapp
from tests._support import runs, wait_registered
from tests.proctools import Child, child_env, describe, spawn, worker_argv
from werk_trio import EnqueueParams, JobStatus, Werk
from werk_trio.testing import until, wait_for_status

FAST = ("--heartbeat-interval", "0.5", "--poll-interval", "0.5")


def says_worker_lost(error: str | None) -> bool:
    """The error of a rescued attempt names the lost worker (WorkerLost / "worker lost")."""
    return re.search(r"worker ?lost", error or "", re.IGNORECASE) is not None


async def make_runs_table(dsn: str, schema: str) -> None:
    await trio.to_thread.run_sync(procapp.create_runs_table, dsn, schema)


async def wait_for_run(app: Werk, job_id: Any, attempt: int) -> dict[str, Any]:
    """The side-table row of ``attempt`` of ``job_id``, once the handler started."""

    async def found() -> dict[str, Any] | None:
        for row in await runs(app, job_id):
            if row["attempt"] == attempt:
                return row
        return None

    return await until(found)


# --- a. SIGTERM shutdown, exactly ---------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_sigterm_gives_running_jobs_shutdown_timeout_then_requeues_them(
    signum: signal.Signals, app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_runs_table(dsn, schema)
        job = await app.enqueue(procapp.sleep_job, 60, _queue="term")
        assert job is not None
        argv = worker_argv("--queues", "term", "--shutdown-timeout", "2", *FAST)
        async with spawn(argv, env=child_env(dsn, schema), log_path=tmp_path / "w.log") as w:
            run = await wait_for_run(app, job.id, 1)
            assert run["pid"] == w.pid
            sent = time.monotonic()
            w.send_signal(signum)
            code = await w.wait()
            delay = time.monotonic() - sent
        print(f"{signum.name} with shutdown_timeout=2: exited {delay:.3f}s later")
        out = w.output()
        assert code == 0, out
        assert 2.0 <= delay <= 3.0, f"exited {delay:.3f}s after {signum.name}\n{out}"
        back = await app.get_job(job.id)
        assert back.status is JobStatus.QUEUED
        assert back.attempts == 0, "a shutdown must not spend an attempt"
        # the handler really started and was cut off: its run never ended
        [only] = await runs(app, job.id)
        assert only["ended_at"] is None
        [execution] = await app.get_executions(job.id)
        assert execution.attempt == 1
        assert "shut down" in (execution.error or "")
        assert [w["status"] for w in await app.list_workers()] == ["stopped"], (
            "the worker deregisters on its way out (listed as stopped)")
        assert "Traceback" not in out
        assert "refused" not in out, f"a clean shutdown writes each outcome once\n{out}"


async def test_second_sigterm_cancels_at_once(app: Werk, dsn: str, schema: str, tmp_path: Path) -> None:
    with trio.fail_after(60):
        await make_runs_table(dsn, schema)
        job = await app.enqueue(procapp.sleep_job, 60, _queue="term")
        assert job is not None
        argv = worker_argv("--queues", "term", "--shutdown-timeout", "30", *FAST)
        async with spawn(argv, env=child_env(dsn, schema), log_path=tmp_path / "w.log") as w:
            await wait_for_run(app, job.id, 1)
            sent = time.monotonic()
            w.send_signal(signal.SIGTERM)
            await w.wait_for_output("send it again to stop now")
            w.send_signal(signal.SIGTERM)
            code = await w.wait()
            delay = time.monotonic() - sent
        print(f"two SIGTERMs with shutdown_timeout=30: exited {delay:.3f}s after the first")
        assert code == 0, w.output()
        assert delay < 3.0, f"exited {delay:.3f}s after the first SIGTERM\n{w.output()}"
        back = await app.get_job(job.id)
        assert back.status is JobStatus.QUEUED
        assert back.attempts == 0


# --- b. crash recovery with fencing ---------------------------------------------------


async def test_kill_9_job_is_rescued_by_a_live_workers_sweeper(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_runs_table(dsn, schema)
        env = child_env(dsn, schema)
        # The first attempt hangs; a rescued attempt finishes at once.
        job = await app.enqueue(procapp.sleep_job, 60, first_attempt_only=True, _queue="crash", _retry=3)
        assert job is not None
        victim_argv = worker_argv("--queues", "crash", "--sweep-interval", "60", *FAST)
        live_argv = worker_argv("--queues", "crash", "--sweep-interval", "0.2", *FAST)
        async with spawn(victim_argv, env=env, log_path=tmp_path / "victim.log") as victim:
            first = await wait_for_run(app, job.id, 1)
            assert first["pid"] == victim.pid
            async with spawn(live_argv, env=env, log_path=tmp_path / "live.log") as live:
                await wait_registered(app, [live])
                killed = time.monotonic()
                os.kill(victim.pid, signal.SIGKILL)
                assert await victim.wait() == -signal.SIGKILL
                done = await wait_for_status(app, job.id, JobStatus.COMPLETE, JobStatus.FAILED)
                recovery = time.monotonic() - killed
                print(f"kill -9: job completed on the live worker {recovery:.3f}s later")
                assert done.status is JobStatus.COMPLETE, done.error
                assert done.attempts == 2, "the rescue spends the killed attempt"
                assert done.result == {"pid": live.pid, "attempt": 2}
                # dead after 3 heartbeats of 0.5 s, swept every 0.2 s
                assert 0.9 <= recovery <= 10, recovery
                live.send_signal(signal.SIGTERM)
                assert await live.wait() == 0, live.output()
        attempts = await runs(app, job.id)
        assert [(r["attempt"], r["pid"]) for r in attempts] == [(1, victim.pid), (2, live.pid)]
        assert attempts[0]["ended_at"] is None, "the killed run never finished"
        assert attempts[1]["ended_at"] is not None
        executions = await app.get_executions(job.id)
        assert [e.attempt for e in executions] == [1, 2]
        assert says_worker_lost(executions[0].error)
        assert "rescued 1 job" in live.output()


async def test_late_ack_of_a_frozen_worker_is_refused(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """SIGSTOP a worker mid-job until another worker has rescued and finished the
    job, then SIGCONT it: its handler finishes and acks, and the ack changes nothing."""
    with trio.fail_after(60):
        await make_runs_table(dsn, schema)
        env = child_env(dsn, schema)
        job = await app.enqueue(procapp.sleep_job, 2.0, first_attempt_only=True, _queue="fence", _retry=3)
        assert job is not None
        frozen_argv = worker_argv("--queues", "fence", "--sweep-interval", "60", *FAST)
        live_argv = worker_argv("--queues", "fence", "--sweep-interval", "0.2", *FAST)
        async with spawn(frozen_argv, env=env, log_path=tmp_path / "frozen.log") as frozen:
            first = await wait_for_run(app, job.id, 1)
            assert first["pid"] == frozen.pid
            frozen.send_signal(signal.SIGSTOP)
            try:
                async with spawn(live_argv, env=env, log_path=tmp_path / "live.log") as live:
                    done = await wait_for_status(app, job.id, JobStatus.COMPLETE, JobStatus.FAILED)
                    assert done.status is JobStatus.COMPLETE, done.error
                    assert done.result == {"pid": live.pid, "attempt": 2}
                    frozen.send_signal(signal.SIGCONT)
                    # the frozen run wakes up, finishes (its side-table row ends)...
                    ended = await until(lambda: _ended(app, job.id, 1))
                    assert ended
                    # ...and its ack reaches the database and is refused
                    await frozen.wait_for_output("late outcome(s) refused")
                    await frozen.wait_for_output("was taken for dead; registering again")
                    after = await app.get_job(job.id)
                    assert after.status is JobStatus.COMPLETE
                    assert after.attempts == 2
                    assert after.result == {"pid": live.pid, "attempt": 2}
                    executions = await app.get_executions(job.id)
                    assert [(e.attempt, e.status.value) for e in executions] == [
                        (1, "failed"),
                        (2, "complete"),
                    ]
                    assert says_worker_lost(executions[0].error)
                    for child in (frozen, live):
                        child.send_signal(signal.SIGTERM)
                    assert await live.wait() == 0, live.output()
                    assert await frozen.wait() == 0, frozen.output()
            finally:
                if frozen.returncode is None:
                    frozen.send_signal(signal.SIGCONT)


async def _ended(app: Werk, job_id: Any, attempt: int) -> bool:
    return any(r["attempt"] == attempt and r["ended_at"] is not None for r in await runs(app, job_id))


async def test_job_that_kills_its_worker_fails_after_max_attempts(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """A supervisor restarts the worker after every death; after the third death
    the job is failed (by the next worker's sweeper) and never runs a fourth time."""
    with trio.fail_after(90):
        await make_runs_table(dsn, schema)
        env = child_env(dsn, schema)
        job = await app.enqueue(procapp.die, _queue="doomed", _retry=3)
        assert job is not None
        argv = worker_argv("--queues", "doomed", "--sweep-interval", "0.2", *FAST)
        deaths: list[Child] = []
        for n in range(1, 4):
            async with spawn(argv, env=env, log_path=tmp_path / f"w{n}.log") as w:
                code = await w.wait()
            assert code == 17, f"death {n}: exit code {code}\n{w.output()}"
            deaths.append(w)
            run = await wait_for_run(app, job.id, n)
            assert run["pid"] == w.pid
        async with spawn(argv, env=env, log_path=tmp_path / "w4.log") as last:
            failed = await wait_for_status(app, job.id, JobStatus.FAILED, JobStatus.COMPLETE)
            last.send_signal(signal.SIGTERM)
            assert await last.wait() == 0, last.output()
        assert failed.status is JobStatus.FAILED
        assert failed.attempts == 3
        assert says_worker_lost(failed.error) and "died" in (failed.error or ""), failed.error
        side = await runs(app, job.id)
        assert [(r["attempt"], r["pid"]) for r in side] == [(n, w.pid) for n, w in enumerate(deaths, 1)]
        assert all(r["ended_at"] is None for r in side)
        executions = await app.get_executions(job.id)
        assert [(e.attempt, e.status.value) for e in executions] == [
            (1, "failed"),
            (2, "failed"),
            (3, "failed"),
        ]
        assert all(says_worker_lost(e.error) for e in executions), executions


# --- c. many processes, one queue -----------------------------------------------------

DRAIN_JOBS = 20_000


async def test_four_processes_run_each_of_20000_jobs_exactly_once(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(240):
        await make_runs_table(dsn, schema)
        jobs = await app.enqueue_many(EnqueueParams(procapp.record, queue="drain") for _ in range(DRAIN_JOBS))
        assert all(j is not None for j in jobs)
        env = child_env(dsn, schema)
        argv = worker_argv("--queues", "drain", "--concurrency", "50", "--burst", "--log-level", "WARNING")
        started = time.monotonic()
        async with (
            spawn(argv, env=env, log_path=tmp_path / "w1.log") as w1,
            spawn(argv, env=env, log_path=tmp_path / "w2.log") as w2,
            spawn(argv, env=env, log_path=tmp_path / "w3.log") as w3,
            spawn(argv, env=env, log_path=tmp_path / "w4.log") as w4,
        ):
            workers = [w1, w2, w3, w4]
            codes = [await w.wait() for w in workers]
        elapsed = time.monotonic() - started
        assert codes == [0, 0, 0, 0], describe(workers)
        async with app.connection() as conn:
            cur = await conn.execute(
                sql.SQL(
                    "SELECT count(*), count(DISTINCT job_id), count(DISTINCT pid),"
                    " extract(epoch FROM max(ended_at) - min(started_at)) FROM {}"
                ).format(procapp.runs_table(schema))
            )
            total, distinct, pids, span = await cur.fetchone()  # type: ignore[misc]
            cur = await conn.execute(
                sql.SQL("SELECT pid, count(*) FROM {} GROUP BY pid ORDER BY pid").format(
                    procapp.runs_table(schema)
                )
            )
            per_pid = dict(await cur.fetchall())
        print(
            f"4 processes x concurrency 50 drained {DRAIN_JOBS} jobs: {elapsed:.2f}s wall "
            f"(processes started to all exited), {span:.2f}s first start to last end, "
            f"{DRAIN_JOBS / float(span):.0f} jobs/s; per process {per_pid}"
        )
        assert total == DRAIN_JOBS, f"{total} runs for {DRAIN_JOBS} jobs"
        assert distinct == DRAIN_JOBS
        assert set(per_pid) <= {w.pid for w in workers}
        assert pids >= 2, f"one process did all the work: {per_pid}"
        counts = await app.counts()
        assert counts == {"drain": {"complete": DRAIN_JOBS}}
        ids = {j.id for j in jobs if j is not None}
        async with app.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT DISTINCT job_id FROM {}").format(procapp.runs_table(schema))
            )
            assert {r[0] for r in await cur.fetchall()} == ids


# --- d. the CLI -----------------------------------------------------------------------


async def test_cli_queues_and_burst(app: Werk, dsn: str, schema: str, tmp_path: Path) -> None:
    with trio.fail_after(60):
        await make_runs_table(dsn, schema)
        by_queue = {
            q: [await app.enqueue(procapp.record, _queue=q) for _ in range(3)] for q in ("a", "b", "c")
        }
        argv = worker_argv("--queues", "a,b", "--burst", *FAST)
        async with spawn(argv, env=child_env(dsn, schema), log_path=tmp_path / "w.log") as w:
            code = await w.wait()
        assert code == 0, w.output()
        assert "burst: nothing left to claim" in w.output()
        ran = {r["job_id"] for r in await runs(app)}
        assert ran == {j.id for q in ("a", "b") for j in by_queue[q] if j is not None}
        counts = await app.counts()
        assert counts == {"a": {"complete": 3}, "b": {"complete": 3}, "c": {"queued": 3}}

        # burst on an empty queue exits 0 at once
        async with spawn(
            worker_argv("--queues", "empty", "--burst"),
            env=child_env(dsn, schema),
            log_path=tmp_path / "e.log",
        ) as empty:
            assert await empty.wait() == 0, empty.output()


async def test_cli_concurrency(app: Werk, dsn: str, schema: str, tmp_path: Path) -> None:
    with trio.fail_after(60):
        await make_runs_table(dsn, schema)
        for _ in range(6):
            await app.enqueue(procapp.sleep_job, 0.4, _queue="conc")
        argv = worker_argv("--queues", "conc", "--concurrency", "2", "--heartbeat-interval", "0.7")
        async with spawn(argv, env=child_env(dsn, schema), log_path=tmp_path / "w.log") as w:
            await wait_registered(app, [w])
            [row] = await app.list_workers()
            assert row["concurrency"] == 2
            assert row["worker_type"] == "async"
            assert row["queues"] == ["conc"]
            assert row["heartbeat_interval"] == 0.7

            async def all_done() -> bool:
                return (await app.counts()).get("conc") == {"complete": 6}

            await until(all_done)
            w.send_signal(signal.SIGTERM)
            assert await w.wait() == 0, w.output()
        side = await runs(app)
        assert len(side) == 6
        # at most two runs overlap at any moment, and two did
        events = sorted([(r["started_at"], 1) for r in side] + [(r["ended_at"], -1) for r in side])
        level = peak = 0
        for _, step in events:
            level += step
            peak = max(peak, level)
        assert peak == 2, side


async def test_cli_worker_type_thread(app: Werk, dsn: str, schema: str, tmp_path: Path) -> None:
    with trio.fail_after(60):
        await make_runs_table(dsn, schema)
        jobs = [await app.enqueue(procapp.record_sync, _queue="threads") for _ in range(4)]
        argv = worker_argv("--queues", "threads", "--worker-type", "thread", "--concurrency", "3", *FAST)
        async with spawn(argv, env=child_env(dsn, schema), log_path=tmp_path / "w.log") as w:
            await wait_registered(app, [w])
            [row] = await app.list_workers()
            assert row["worker_type"] == "thread"
            assert row["concurrency"] == 3

            async def all_done() -> bool:
                return (await app.counts()).get("threads") == {"complete": 4}

            await until(all_done)
            w.send_signal(signal.SIGTERM)
            assert await w.wait() == 0, w.output()
        assert "executor=thread" in w.output()
        assert {r["job_id"] for r in await runs(app)} == {j.id for j in jobs if j is not None}
        for j in jobs:
            assert j is not None
            done = await app.get_job(j.id)
            assert done.result["pid"] == w.pid
            assert done.result["thread"] != "MainThread"


async def test_cli_log_format_json_and_log_level(app: Werk, dsn: str, schema: str, tmp_path: Path) -> None:
    with trio.fail_after(60):
        await make_runs_table(dsn, schema)
        await app.enqueue(procapp.record, _queue="logs")
        env = child_env(dsn, schema)
        argv = worker_argv("--queues", "logs", "--burst", "--log-format", "json", "--log-level", "DEBUG")
        async with spawn(argv, env=env, log_path=tmp_path / "json.log") as w:
            assert await w.wait() == 0, w.output()
        lines = [line for line in w.output().splitlines() if line.strip()]
        assert lines, "no log lines"
        records = [json.loads(line) for line in lines]  # every line is one JSON object
        assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
        msgs = [r["msg"] for r in records]
        assert any(m.startswith("worker ") and " started: queues=logs" in m for m in msgs), msgs
        assert any("stopped (complete=1)" in m for m in msgs), msgs

        await app.enqueue(procapp.record, _queue="quiet")
        argv = worker_argv("--queues", "quiet", "--burst", "--log-level", "WARNING")
        async with spawn(argv, env=env, log_path=tmp_path / "quiet.log") as q:
            assert await q.wait() == 0, q.output()
        assert " INFO " not in q.output() and "started" not in q.output(), q.output()
        assert (await app.counts())["quiet"] == {"complete": 1}


async def test_cli_bad_app_exits_nonzero_with_a_clear_message(dsn: str, schema: str, tmp_path: Path) -> None:
    with trio.fail_after(60):
        env = child_env(dsn, schema)
        cases = {
            "bad:app": "cannot import 'bad'",
            "tests.procapp:nope": "has no attribute 'nope'",
            "tests.procapp": "APP must be 'module:attribute'",
            "tests.procapp:RUNS_TABLE": "not a Werk",
        }
        for n, (spec, message) in enumerate(cases.items()):
            async with spawn(worker_argv(app=spec), env=env, log_path=tmp_path / f"bad{n}.log") as w:
                code = await w.wait()
            out = w.output()
            assert code != 0, f"{spec}: exit 0\n{out}"
            assert "werk: error:" in out and message in out, f"{spec}:\n{out}"
            assert "Traceback" not in out, f"{spec}:\n{out}"

        # a database that is not there: the same, and the password is not printed
        env = child_env("postgresql://werk:s3cret@127.0.0.1:1/nowhere", schema)
        async with spawn(worker_argv(), env=env, log_path=tmp_path / "nodb.log") as w:
            code = await w.wait()
        out = w.output()
        assert code != 0, out
        assert "werk: error: cannot connect" in out, out
        assert "Traceback" not in out and "s3cret" not in out, out
