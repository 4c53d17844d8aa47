"""Real faults against real worker processes: the promise is at-least-once
delivery -- a job is never lost, never stuck ``active``, and re-runs only
after a fault.

Scenarios (numbers as in issue 6; the table with sizes and figures is in
README.md): 1 SIGKILL storm (every worker type), 3 poison pill, 6 lost ack,
12 no duplicates without faults, 13 sweeper safety.

Every worker is ``python -m werk_trio.cli worker tests.reliability.relapp:app``
in a child process. Faults are real: SIGKILL, ``os._exit``,
``pg_terminate_backend`` -- never an edited row standing in for a crash. What
ran is read from the side table every job body writes in its own transaction
(relapp.py) and compared with the jobs table by the checker (checker.py).
The normal run is small; ``WERK_RELIABILITY_SIZE=full`` runs the full size.
"""

from __future__ import annotations

import itertools
import random
import re
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio
from psycopg import sql

from tests.proctools import describe
from werk_trio import EnqueueParams, JobStatus, Werk
from werk_trio.testing import until

from . import relapp
from ._faults_support import (
    WORKER_TYPES,
    Fleet,
    Stopwatch,
    active_of,
    argv_for,
    history,
    record_figures,
    size,
    wait_all_terminal,
)
from .checker import check

FAST = ("--heartbeat-interval", "0.5", "--sweep-interval", "0.2", "--poll-interval", "0.5")


def says_worker_lost(error: str | None) -> bool:
    return re.search(r"worker ?lost", error or "", re.IGNORECASE) is not None


async def make_history(dsn: str, schema: str) -> None:
    await trio.to_thread.run_sync(relapp.create_history, dsn, schema)


# --- 1. SIGKILL storm -----------------------------------------------------------------

#: worker processes, runner slots per worker, kills, seconds between kills, jobs
STORM_WORKERS = size(3, 4)
STORM_KILLS = size(4, 20)
STORM_PACE = size(1.5, 2.0)
STORM_JOBS = size(400, 4000)
STORM_CONCURRENCY = {"async": 8, "thread": 8, "process": 3, "fork": 4}
#: a job body of 50 ms; each batch of jobs arrives STORM_LEAD seconds before a kill
STORM_MS = 50
# A batch is ~100-200 jobs of STORM_MS over 24-32 slots: 200-300 ms of work. The
# kill comes this soon after it arrives, so it finds jobs in flight however fast
# the fleet claims (at 0.3 s a faster drain had finished the batch: no one busy).
STORM_LEAD = 0.1


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
async def test_sigkill_storm_loses_nothing(
    worker_type: str, app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """SIGKILL a random worker every STORM_PACE seconds and restart it, while
    jobs keep arriving; afterwards every job is complete (or failed with every
    attempt spent), none lost or active, and every re-run follows a kill."""
    rng = random.Random(f"storm-{worker_type}")
    with trio.fail_after(size(240, 900)):
        await make_history(dsn, schema)
        argv = argv_for(worker_type, "--concurrency", str(STORM_CONCURRENCY[worker_type]), *FAST)
        ids: list[Any] = []
        kills: list[dict[str, Any]] = []
        recoveries: list[float] = []
        per_kill = STORM_JOBS // STORM_KILLS
        clock = Stopwatch()

        async def enqueue(n: int) -> None:
            jobs = await app.enqueue_many(
                EnqueueParams(relapp.work, kwargs={"ms": STORM_MS}, queue="rel", retry=8) for _ in range(n)
            )
            ids.extend(j.id for j in jobs if j is not None)

        async def recovered(worker_id: Any, killed_at: float) -> None:
            # rescued: nothing is active any more for the dead worker's id
            await until(lambda: _none_active(app, worker_id), interval=0.05)
            recoveries.append(round(time.monotonic() - killed_at, 3))

        async with Fleet(app, dsn, schema, tmp_path, argv, slots=STORM_WORKERS) as fleet:
            await fleet.wait_registered()
            async with trio.open_nursery() as watchers:
                for _ in range(STORM_KILLS):
                    # the fault schedule (not an assertion): a kill every STORM_PACE
                    # seconds, each shortly after a batch of jobs arrived, so it
                    # finds the fleet busy
                    await trio.sleep(STORM_PACE - STORM_LEAD)
                    await enqueue(per_kill)
                    await trio.sleep(STORM_LEAD)
                    # a random worker among those running jobs (a worker still
                    # starting up, e.g. warming its process pool, has none yet)
                    busy = await until(lambda: _busy_workers(app, fleet), interval=0.05)
                    slot = rng.choice(sorted(busy))
                    victim = fleet.slots[slot]
                    assert victim is not None
                    worker_id, in_flight = busy[slot]
                    await fleet.kill(slot)
                    killed_at = time.monotonic()
                    kills.append({"slot": slot, "pid": victim.pid, "in_flight": in_flight, "at": clock()})
                    watchers.start_soon(recovered, worker_id, killed_at)
                    await fleet.start(slot)
                await enqueue(STORM_JOBS - per_kill * STORM_KILLS)
                # the last kill's jobs are rescued, everything drains
                counts = await wait_all_terminal(app, ids)
            drained = clock()
            # what the killed workers had started (pool children, fork servers) ends with them
            await until(lambda: _no_orphans(fleet), interval=0.1)
            await fleet.wait_registered()  # a worker still starting up has no SIGTERM handler yet
            codes = await fleet.stop()
            assert codes == [0] * len(codes), fleet.outputs()
            taken_for_dead = fleet.outputs().count("was taken for dead")

        report = await check(app, dsn, schema, ids, fleet.killed_pids)
        runs = await history(app, schema)
        last_run = {r["job_id"]: i for i, r in enumerate(runs)}
        # earlier runs a pool or fork child finished for a worker that was then
        # killed before the ack committed: the ack died with the worker
        acks_lost_with_worker = sum(
            1 for i, r in enumerate(runs)
            if last_run[r["job_id"]] != i and r["ended_at"] is not None
            and r["worker_pid"] in fleet.killed_pids and r["pid"] != r["worker_pid"]
        )  # fmt: skip
        record_figures(
            f"1 storm {worker_type}", workers=STORM_WORKERS, jobs=len(ids), kills=len(kills),
            jobs_in_flight_at_kills=sum(k["in_flight"] for k in kills), lost=len(report.lost),
            stuck=len(report.stuck), reruns=report.reruns, reruns_after_kill=report.reruns_after_kill,
            reruns_after_finish=report.reruns_after_finish, failed=report.failed,
            recovery_max_s=max(recoveries, default=None),
            recovery_mean_s=round(sum(recoveries) / len(recoveries), 3) if recoveries else None,
            drained_s=drained, counts=counts, live_workers_taken_for_dead=taken_for_dead,
            children_of_killed_workers=len(fleet.killed_children),
            finished_runs_whose_ack_died_with_the_worker=acks_lost_with_worker,
        )  # fmt: skip
        assert len(ids) == STORM_JOBS
        if report.reruns_after_finish:
            await _explain_reruns(app, schema, report.finished_rerun_jobs[:5], fleet)
        report.assert_ok(max_reruns_after_finish=0)
        assert taken_for_dead == 0, "a live worker was taken for dead: its jobs re-ran without a fault"
        assert all(k["in_flight"] > 0 for k in kills), f"every kill hits running jobs: {kills}"
        assert report.reruns_after_kill >= 1, report.summary()
        # dead after 3 heartbeats of 0.5 s, swept every 0.2 s; a loaded machine may add seconds
        assert recoveries and max(recoveries) < 15, recoveries
        # every failed attempt is a rescue (the only fault here is a lost worker)
        async with app.connection() as conn:
            cur = await conn.execute(
                sql.SQL(
                    "SELECT count(*), count(*) FILTER (WHERE error ~* 'worker ?lost') FROM {}"
                    " WHERE status = 'failed'"
                ).format(app.sql.idents["executions"])
            )
            failed_attempts, lost_attempts = await cur.fetchone()  # type: ignore[misc]
        assert failed_attempts == lost_attempts, (failed_attempts, lost_attempts)


async def _explain_reruns(app: Werk, schema: str, job_ids: list[Any], fleet: Fleet) -> None:
    """Print what is known of re-runs that followed a finished run (for a failure)."""
    runs = await history(app, schema)
    for jid in job_ids:
        print(f"--- re-run job {jid}; killed worker pids {sorted(fleet.killed_pids)}")
        for r in runs:
            if r["job_id"] == jid:
                print("   run", r)
        for e in await app.get_executions(jid):
            print(
                "   execution",
                e.attempt,
                e.status.value,
                e.worker_id,
                e.started_at,
                e.finished_at,
                (e.error or "")[:200],
            )


async def _no_orphans(fleet: Fleet) -> bool:
    return not fleet.orphans()


async def _none_active(app: Werk, worker_id: Any) -> bool:
    return not await active_of(app, worker_id)


async def _busy_workers(app: Werk, fleet: Fleet) -> dict[int, tuple[Any, int]] | None:
    """slot -> (worker id, jobs active) of the live workers running jobs (None while none is)."""
    pids = await fleet.registered()
    found = {}
    for i, child in enumerate(fleet.slots):
        if child is not None and child.returncode is None and child.pid in pids:
            active = len(await active_of(app, pids[child.pid]))
            if active:
                found[i] = (pids[child.pid], active)
    return found or None


# --- 3. poison pill -------------------------------------------------------------------

PILL_BYSTANDERS = size(300, 2000)


async def test_poison_pill_kills_three_workers_then_fails(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """A job that os._exit()s its AsyncWorker, with _retry=3, beside hundreds of
    bystanders, on two workers a supervisor restarts: exactly three deaths,
    then the pill is failed with an error saying the worker was lost; every
    bystander completes."""
    with trio.fail_after(size(120, 300)):
        await make_history(dsn, schema)
        half = PILL_BYSTANDERS // 2
        bystander = EnqueueParams(relapp.awork, kwargs={"ms": 30}, queue="rel", retry=5)
        first = await app.enqueue_many([bystander] * half)
        pill = await app.enqueue(relapp.kill_my_worker, _queue="rel", _retry=3)
        assert pill is not None
        second = await app.enqueue_many([bystander] * (PILL_BYSTANDERS - half))
        bystanders = [j.id for j in first + second if j is not None]
        argv = argv_for("async", "--concurrency", "4", *FAST)
        deaths: list[dict[str, Any]] = []
        clock = Stopwatch()
        async with Fleet(app, dsn, schema, tmp_path, argv, slots=2) as fleet:

            async def supervise() -> bool:
                """Restart a dead worker (as a supervisor would); True once all is done."""
                for i, child in enumerate(fleet.slots):
                    assert child is not None
                    if child.returncode is not None:
                        assert child.returncode == 13, (
                            f"worker died with {child.returncode}\n{describe([child])}"
                        )
                        fleet.killed_pids.add(child.pid)
                        deaths.append({"slot": i, "pid": child.pid, "at": clock()})
                        await fleet.start(i)
                job = await app.get_job(pill.id)
                if job.status not in (JobStatus.FAILED, JobStatus.COMPLETE):
                    return False
                return bool(await _all_terminal(app, bystanders))

            await until(supervise, interval=0.05)
            settled = clock()
            await fleet.wait_registered()
            codes = await fleet.stop()
            assert codes == [0, 0], fleet.outputs()

        done = await app.get_job(pill.id)
        assert done.status is JobStatus.FAILED, done
        assert done.attempts == 3 == done.max_attempts
        assert says_worker_lost(done.error), done.error
        assert len(deaths) == 3, deaths
        runs = [r for r in await history(app, schema) if r["job_id"] == pill.id]
        assert [r["attempt"] for r in runs] == [1, 2, 3]
        assert {r["worker_pid"] for r in runs} == {d["pid"] for d in deaths}, "each run killed its own worker"
        executions = await app.get_executions(pill.id)
        assert [(e.attempt, e.status.value) for e in executions] == [
            (1, "failed"),
            (2, "failed"),
            (3, "failed"),
        ]
        assert all(says_worker_lost(e.error) for e in executions), executions
        report = await check(app, dsn, schema, bystanders, fleet.killed_pids)
        record_figures(
            "3 poison pill", jobs=len(bystanders) + 1, worker_deaths=len(deaths), pill_attempts=done.attempts,
            lost=len(report.lost), bystanders_complete=report.complete, reruns=report.reruns,
            reruns_after_kill=report.reruns_after_kill, reruns_after_finish=report.reruns_after_finish,
            settled_s=settled,
        )  # fmt: skip
        report.assert_ok(max_reruns_after_finish=0)
        assert report.complete == len(bystanders), report.summary()


async def _all_terminal(app: Werk, ids: list[Any]) -> bool:
    jobs = await app.get_jobs(ids)
    return len(jobs) == len(ids) and all(
        j.status in (JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.ABORTED) for j in jobs.values()
    )


# --- 6. lost ack ----------------------------------------------------------------------


async def _blocked_backends(app: Werk, app_name: str, locker_pid: int) -> list[int]:
    """Backends of the worker named ``app_name`` waiting for the lock ``locker_pid`` holds."""
    async with app.connection() as conn:
        cur = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
            " AND %s = ANY(pg_blocking_pids(pid))",
            (app_name, locker_pid),
        )
        return [r[0] for r in await cur.fetchall()]


async def _terminate(app: Werk, pid: int) -> None:
    """pg_terminate_backend(pid) and wait until that backend is gone."""
    async with app.connection() as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

    async def gone() -> bool:
        async with app.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
            row = await cur.fetchone()
        return row is not None and row[0] == 0

    await until(gone, interval=0.02)


async def _run_of(app: Werk, schema: str, job_id: Any, attempt: int, *, ended: bool) -> dict[str, Any] | None:
    for r in await history(app, schema):
        if r["job_id"] == job_id and r["attempt"] == attempt and (r["ended_at"] is not None or not ended):
            return r
    return None


async def _hold_ack(app: Werk, schema: str, fleet: Fleet, job_id: Any, conn: Any) -> tuple[int, int]:
    """With ``conn`` holding the job row's lock: wait until the handler has
    returned (its end recorded) and its ack is in flight, blocked on that lock.
    Returns (locker pid, the ack's backend pid)."""
    locker = conn.info.backend_pid
    await until(lambda: _run_of(app, schema, job_id, 1, ended=True), interval=0.02)
    [ack] = await until(lambda: _blocked_backends(app, fleet.app_name(0), locker), interval=0.02)
    return locker, ack


async def _lock_row(conn: Any, app: Werk, job_id: Any) -> None:
    await conn.execute(
        sql.SQL("SELECT 1 FROM {} WHERE id = %s FOR UPDATE").format(app.sql.idents["jobs"]), (job_id,)
    )


@pytest.mark.parametrize("worker_type", ["async", "process"])
async def test_ack_lost_with_its_worker_reruns_once(
    worker_type: str, app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """The handler returned and its ack is on the wire (held up by a row lock)
    when the worker is SIGKILLed and the ack's backend terminated: the ack never
    commits. The restarted worker's sweep rescues the job, it runs again and
    ends complete once: two runs, one complete execution, attempts 2 of 3."""
    with trio.fail_after(90):
        await make_history(dsn, schema)
        job = await app.enqueue(relapp.work, ms=200, _queue="rel", _retry=3)
        assert job is not None
        argv = argv_for(worker_type, "--concurrency", "2", *FAST)
        async with Fleet(app, dsn, schema, tmp_path, argv, slots=1, app_names=True) as fleet:
            await until(lambda: _run_of(app, schema, job.id, 1, ended=False), interval=0.02)
            async with app.connection() as conn, conn.transaction():
                await _lock_row(conn, app, job.id)
                _, ack = await _hold_ack(app, schema, fleet, job.id, conn)
                victim = await fleet.kill(0)
                killed_at = time.monotonic()
                await _terminate(app, ack)  # the ack's transaction dies uncommitted
            # the lock is released: nothing of the first attempt's outcome is left
            mid = await app.get_job(job.id)
            assert mid.status is JobStatus.ACTIVE and mid.attempts == 1, mid
            await fleet.start(0)  # the supervisor restarts it
            done = await until(lambda: _terminal(app, job.id), interval=0.05)
            recovered = round(time.monotonic() - killed_at, 3)
            await fleet.wait_registered()
            assert await fleet.stop() == [0], fleet.outputs()
        assert done.status is JobStatus.COMPLETE, done
        assert done.attempts == 2, done
        runs = [r for r in await history(app, schema) if r["job_id"] == job.id]
        assert [(r["attempt"], r["ended_at"] is not None) for r in runs] == [(1, True), (2, True)]
        assert runs[0]["worker_pid"] == victim.pid != runs[1]["worker_pid"]
        executions = await app.get_executions(job.id)
        assert [(e.attempt, e.status.value) for e in executions] == [(1, "failed"), (2, "complete")]
        assert says_worker_lost(executions[0].error)
        report = await check(app, dsn, schema, [job.id], fleet.killed_pids)
        record_figures(
            f"6 lost ack, worker killed ({worker_type})",
            jobs=1,
            faults=2,
            lost=len(report.lost),
            reruns=report.reruns,
            attempts=done.attempts,
            recovery_s=recovered,
        )
        report.assert_ok(max_reruns_after_finish=0)
        assert report.reruns == report.reruns_after_kill == 1


ACK_CUTS = 3


async def test_ack_cut_by_backend_termination_is_retried_without_rerun(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """The ack's backend is terminated mid-commit three times in a row (the
    worker stays alive): the completer keeps the outcome and writes it on a new
    connection; the job ran once and completes with attempts 1."""
    with trio.fail_after(90):
        await make_history(dsn, schema)
        job = await app.enqueue(relapp.work, ms=200, _queue="rel", _retry=3)
        assert job is not None
        argv = argv_for("async", "--concurrency", "2", *FAST)
        async with Fleet(app, dsn, schema, tmp_path, argv, slots=1, app_names=True) as fleet:
            await until(lambda: _run_of(app, schema, job.id, 1, ended=False), interval=0.02)
            cut: list[int] = []
            async with app.connection() as conn, conn.transaction():
                await _lock_row(conn, app, job.id)
                locker, ack = await _hold_ack(app, schema, fleet, job.id, conn)
                while True:
                    await _terminate(app, ack)
                    cut.append(ack)
                    cut_at = time.monotonic()
                    if len(cut) == ACK_CUTS:
                        break
                    # the completer retries on a new connection and blocks again
                    [ack] = await until(
                        lambda: _blocked_backends(app, fleet.app_name(0), locker), interval=0.02
                    )
                    assert ack not in cut
            done = await until(lambda: _terminal(app, job.id), interval=0.02)
            recovered = round(time.monotonic() - cut_at, 3)
            worker = fleet.slots[0]
            assert worker is not None and worker.returncode is None, fleet.outputs()
            assert await fleet.stop() == [0], fleet.outputs()
        assert "completer: database unavailable" in fleet.outputs()
        assert done.status is JobStatus.COMPLETE and done.attempts == 1, done
        runs = [r for r in await history(app, schema) if r["job_id"] == job.id]
        assert len(runs) == 1 and runs[0]["ended_at"] is not None
        executions = await app.get_executions(job.id)
        assert [(e.attempt, e.status.value) for e in executions] == [(1, "complete")]
        record_figures(
            "6 lost ack, backend cut",
            jobs=1,
            faults=len(cut),
            lost=0,
            reruns=len(runs) - 1,
            attempts=done.attempts,
            recovery_s=recovered,
        )


CUTTERS = size(20, 100)
CUT_BYSTANDERS = size(200, 2000)


async def test_handlers_cutting_their_workers_connections_lose_nothing(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """Jobs whose handler terminates every backend of its own worker (pool and
    LISTEN) just before it returns, among bystanders, on two workers: all
    complete, none lost, no worker exits, re-runs at most the cuts."""
    with trio.fail_after(size(120, 400)):
        await make_history(dsn, schema)
        params = [EnqueueParams(relapp.work, kwargs={"ms": 20}, queue="rel", retry=5)] * CUT_BYSTANDERS
        cutter = EnqueueParams(relapp.cut_my_worker_connections, queue="rel", retry=5)
        step = CUT_BYSTANDERS // CUTTERS
        for k in range(CUTTERS):
            params.insert(k * (step + 1), cutter)
        jobs = await app.enqueue_many(params)
        ids = [j.id for j in jobs if j is not None]
        argv = argv_for("async", "--concurrency", "4", *FAST)
        clock = Stopwatch()
        async with Fleet(app, dsn, schema, tmp_path, argv, slots=2, app_names=True) as fleet:
            counts = await wait_all_terminal(app, ids)
            drained = clock()
            assert all(c.returncode is None for c in fleet.children), fleet.outputs()
            assert await fleet.stop() == [0, 0], fleet.outputs()
        report = await check(app, dsn, schema, ids, set())
        async with app.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT coalesce(sum((result)::int), 0) FROM {} WHERE function LIKE %s").format(
                    app.sql.idents["jobs"]
                ),
                ("%cut_my_worker_connections",),
            )
            row = await cur.fetchone()
        terminated = int(row[0]) if row else 0
        record_figures(
            "6 handlers cut their worker's connections",
            jobs=len(ids),
            cutter_jobs=CUTTERS,
            backends_terminated=terminated,
            lost=len(report.lost),
            reruns=report.reruns,
            reruns_after_finish=report.reruns_after_finish,
            drained_s=drained,
            counts=counts,
        )
        report.assert_ok(max_reruns_after_finish=CUTTERS)
        assert report.complete == len(ids), report.summary()
        assert terminated >= CUTTERS, "every cutter terminated at least one backend"


async def _terminal(app: Werk, job_id: Any) -> Any:
    job = await app.get_job(job_id)
    return job if job.status in (JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.ABORTED) else None


# --- 12. no duplicates without faults --------------------------------------------------

DRAIN_JOBS = size(2_000, 20_000)
#: every 5th job is in one of 10 concurrency groups
GROUP_EVERY, GROUPS = 5, 10
#: 8 worker processes: two of each type
DRAIN_FLEET = [("async", 8), ("thread", 8), ("process", 2), ("fork", 3)] * 2


async def test_eight_workers_run_every_job_exactly_once(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """8 worker processes of all four types drain DRAIN_JOBS jobs, a fifth of
    them in concurrency groups: exactly one run per job, attempts 1 each, and
    the runs of one group never overlap."""
    with trio.fail_after(size(150, 900)):
        await make_history(dsn, schema)
        params = [
            EnqueueParams(relapp.work, kwargs={"ms": 2}, queue="rel",
                          group=f"g{n % GROUPS}" if n % GROUP_EVERY == 0 else None)
            for n in range(DRAIN_JOBS)
        ]  # fmt: skip
        jobs = await app.enqueue_many(params)
        ids = [j.id for j in jobs if j is not None]
        assert len(ids) == DRAIN_JOBS
        clock = Stopwatch()
        async with AsyncExitStack() as stack:
            fleets = []
            for n, (worker_type, concurrency) in enumerate(DRAIN_FLEET):
                argv = argv_for(worker_type, "--concurrency", str(concurrency), "--log-level", "WARNING")
                fleets.append(await stack.enter_async_context(
                    Fleet(app, dsn, schema, tmp_path / f"f{n}", argv, slots=1)))  # fmt: skip
            peak = 0

            async def drained() -> dict[str, int] | None:
                nonlocal peak
                peak = max(peak, await _backends(app, schema))
                return await _counts_if_done(app, ids)

            counts = await until(drained, interval=0.5)
            took = clock()
            for fleet in fleets:
                assert fleet.slots[0] is not None and fleet.slots[0].returncode is None, fleet.outputs()
                assert await fleet.stop() == [0], fleet.outputs()
        runs = await history(app, schema)
        report = await check(app, dsn, schema, ids, set())
        per_type: dict[str, int] = {}
        pids = {f.slots[0].pid: t for f, (t, _) in zip(fleets, DRAIN_FLEET, strict=True) if f.slots[0]}
        for r in runs:
            t = pids.get(r["worker_pid"], "?")
            per_type[t] = per_type.get(t, 0) + 1
        overlaps = await _group_overlaps(app, schema)
        record_figures(
            "12 no duplicates",
            workers=len(DRAIN_FLEET),
            jobs=len(ids),
            runs=len(runs),
            reruns=report.reruns,
            lost=len(report.lost),
            group_overlaps=len(overlaps),
            drained_s=took,
            jobs_per_s=round(len(ids) / took, 1),
            runs_per_type=per_type,
            peak_backends=peak,
            counts=counts,
        )
        report.assert_ok(max_reruns_after_finish=0)
        assert len(runs) == len(ids) == report.complete, report.summary()
        assert len({r["job_id"] for r in runs}) == len(ids)
        assert report.reruns == 0
        assert not overlaps, overlaps[:5]
        assert all(n > 0 for n in per_type.values()) and "?" not in per_type, per_type
        async with app.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT max(attempts), min(attempts) FROM {}").format(app.sql.idents["jobs"])
            )
            assert await cur.fetchone() == (1, 1)


async def _counts_if_done(app: Werk, ids: list[Any]) -> dict[str, int] | None:
    counts = (await app.counts()).get("rel", {})
    return counts if sum(counts.get(s, 0) for s in ("complete", "failed", "aborted")) == len(ids) else None


async def _backends(app: Werk, schema: str) -> int:
    """Backends of this test's workers (and their side connections) right now."""
    async with app.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s", (f"%{schema}%",)
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _group_overlaps(app: Werk, schema: str) -> list[tuple[Any, ...]]:
    """Pairs of runs of one concurrency group that overlap in time."""
    async with app.connection() as conn:
        cur = await conn.execute(
            sql.SQL(
                "SELECT j.group_key, h.job_id, h.started_at, h.ended_at FROM {} h JOIN {} j"
                " ON j.id = h.job_id WHERE j.group_key IS NOT NULL ORDER BY j.group_key, h.started_at"
            ).format(relapp.history_table(schema), app.sql.idents["jobs"])
        )
        rows = await cur.fetchall()
    bad = []
    for prev, cur_row in itertools.pairwise(rows):
        if prev[0] == cur_row[0] and (prev[3] is None or cur_row[2] < prev[3]):
            bad.append((prev, cur_row))
    return bad


# --- 13. sweeper safety -----------------------------------------------------------------

SWEEPY = ("--heartbeat-interval", "0.5", "--sweep-interval", "0.1", "--poll-interval", "0.5")
SAFE_SHORT = size(200, 2000)


async def test_sweeper_leaves_heartbeating_jobs_and_live_workers_alone(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """Two workers sweeping every 0.1 s with max_active_secs=2: jobs of 5 s that
    heartbeat (_heartbeat=0.5) and hundreds of short jobs are never rescued;
    a 5 s job that does not heartbeat is (the sweep is armed: it is stuck)."""
    with trio.fail_after(90):
        await make_history(dsn, schema)
        long_hb = await app.enqueue_many(
            [EnqueueParams(relapp.awork, kwargs={"ms": 5000}, queue="rel", heartbeat=0.5, retry=3)] * 3
        )
        control = await app.enqueue(relapp.awork, ms=5000, _queue="rel", _retry=1)
        short = await app.enqueue_many(
            [EnqueueParams(relapp.awork, kwargs={"ms": 20}, queue="rel", retry=3)] * SAFE_SHORT
        )
        assert control is not None
        hb_ids = [j.id for j in long_hb if j is not None]
        short_ids = [j.id for j in short if j is not None]
        argv = argv_for("async", "--concurrency", "6", *SWEEPY)
        env = {"WERK_REL_MAX_ACTIVE_SECS": "2"}
        async with Fleet(app, dsn, schema, tmp_path, argv, slots=2, env=env) as fleet:
            await wait_all_terminal(app, [*hb_ids, *short_ids, control.id])
            await fleet.wait_registered()  # both alive all along
            assert await fleet.stop() == [0, 0], fleet.outputs()
        out = fleet.outputs()
        assert out.count("rescued 1 job(s)") == 1 and "rescued 2" not in out, out
        stuck = await app.get_job(control.id)
        assert stuck.status is JobStatus.FAILED and "stuck" in (stuck.error or ""), stuck
        for jid in hb_ids:
            job = await app.get_job(jid)
            assert job.status is JobStatus.COMPLETE and job.attempts == 1, job
            assert job.touched_at is not None
            [execution] = await app.get_executions(jid)
            assert execution.status.value == "complete"
        report = await check(app, dsn, schema, [*hb_ids, *short_ids, control.id], set())
        record_figures(
            "13 sweeper safety: heartbeats and live workers",
            jobs=report.jobs,
            heartbeating_long_jobs=len(hb_ids),
            rescued=1,
            reruns=report.reruns,
            lost=len(report.lost),
        )
        report.assert_ok(max_reruns_after_finish=0)
        assert report.reruns == 0
        assert report.complete == len(hb_ids) + len(short_ids)


async def test_jobs_of_a_dead_worker_whose_row_was_deleted_are_rescued(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """A worker with a 30 s heartbeat interval (taken for dead only after 90 s)
    is SIGKILLed mid-jobs and its worker row deleted (an operator's cleanup): the
    next worker's first sweeps rescue its jobs at once, which then complete."""
    with trio.fail_after(90):
        await make_history(dsn, schema)
        jobs = await app.enqueue_many([EnqueueParams(relapp.slow_first, kwargs={"ms": 60_000}, queue="rel",
                                                     retry=3)] * 3)  # fmt: skip
        ids = [j.id for j in jobs if j is not None]
        slow = argv_for("async", "--concurrency", "3", "--heartbeat-interval", "30", "--sweep-interval", "60")
        async with Fleet(app, dsn, schema, tmp_path / "a", slow, slots=1) as first:
            for jid in ids:
                await until(lambda jid=jid: _run_of(app, schema, jid, 1, ended=False), interval=0.05)
            victim = first.slots[0]
            assert victim is not None
            [(worker_id, _)] = (await _busy_workers(app, first) or {}).values()
            await first.kill(0)
        async with app.connection() as conn:
            cur = await conn.execute(
                sql.SQL("DELETE FROM {} WHERE id = %s RETURNING id").format(app.sql.idents["workers"]),
                (worker_id,),
            )
            assert await cur.fetchall() == [(worker_id,)]
        assert len(await active_of(app, worker_id)) == 3, "still active for a worker that is gone"
        argv = argv_for("async", "--concurrency", "3", *SWEEPY)
        async with Fleet(app, dsn, schema, tmp_path / "b", argv, slots=1) as second:
            started = time.monotonic()
            await wait_all_terminal(app, ids, interval=0.05)
            recovered = round(time.monotonic() - started, 3)
            await second.wait_registered()
            assert await second.stop() == [0], second.outputs()
        for jid in ids:
            job = await app.get_job(jid)
            assert job.status is JobStatus.COMPLETE and job.attempts == 2, job
            first_attempt = (await app.get_executions(jid))[0]
            assert first_attempt.status.value == "failed" and says_worker_lost(first_attempt.error)
        report = await check(app, dsn, schema, ids, first.killed_pids)
        record_figures(
            "13 sweeper safety: deleted worker row",
            jobs=len(ids),
            faults=1,
            lost=len(report.lost),
            reruns=report.reruns,
            recovery_s=recovered,
        )
        report.assert_ok(max_reruns_after_finish=0)
        # a process start plus a sweep or two: far below the 90 s a heartbeat check would need
        assert recovered < 30, recovered


async def test_a_restarted_process_registers_as_a_new_worker(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """After SIGKILL or SIGTERM the restarted process has a new worker id; the
    killed one's row is swept as dead, the stopped one's is gone at exit."""
    with trio.fail_after(90):
        argv = argv_for("async", "--concurrency", "2", *FAST)
        async with Fleet(app, dsn, schema, tmp_path, argv, slots=1) as fleet:
            ids = []
            for how in ("kill", "term", "end"):
                await fleet.wait_registered()
                child = fleet.slots[0]
                assert child is not None
                pids = await fleet.registered()
                ids.append(pids[child.pid])
                if how == "kill":
                    await fleet.kill(0)
                elif how == "term":
                    assert await fleet.stop() == [0]
                    assert ids[-1] not in (await fleet.registered()).values(), "deregistered at exit"
                else:
                    break
                await fleet.start(0)
            assert len(set(ids)) == 3, ids
            # the SIGKILLed worker's row goes with the next sweep after 3 missed heartbeats
            await until(lambda: _gone(app, ids[0]), interval=0.1)
            assert list((await fleet.registered()).values()) == [ids[2]]
            assert await fleet.stop() == [0]


async def _gone(app: Werk, worker_id: Any) -> bool:
    return worker_id not in {w["id"] for w in await app.list_workers()}


async def test_sigterm_while_a_worker_starts_exits_promptly(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """SIGTERM right after a ProcessWorker registered, while its process pool
    is still starting: it exits in seconds, not after shutdown_timeout (30 s)
    -- it has no job to wait for."""
    with trio.fail_after(90):
        argv = argv_for("process", "--concurrency", "3", *FAST)
        async with Fleet(app, dsn, schema, tmp_path, argv, slots=1) as fleet:
            await fleet.wait_registered()
            assert await fleet.stop(within=10) == [0], fleet.outputs()
        assert "stopped (no jobs)" in fleet.outputs()
