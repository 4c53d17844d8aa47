"""Infrastructure faults: signals, cut connections, a restarted server, skewed
clocks, NOTIFY floods, sizes (scenarios 2, 4, 5, 7, 8, 9 and 11 of the
reliability issue; PgBouncer, scenario 10, is in ``test_pgbouncer.py``).

Every worker is a real ``werk worker tests.reliability.relapp:app`` process;
every fault is real (signals, ``pg_terminate_backend``, ``pg_ctl stop``, a
patched wall clock in the child); what ran is read from the history side
table the job bodies write (``infra_bodies.py``), and the checker compares it
with the jobs table. The scenarios that stop the server or kill backends run
on a dedicated embedded Postgres of their own (``PrivatePostgres``), never on
the shared test server.

Sizes: small by default; ``WERK_RELIABILITY_SIZE=full`` runs the full ones.
Each test prints a ``FIGURES`` line (``pytest -s`` shows it).
"""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from psycopg import sql

from tests._support import wait_registered
from tests.proctools import Child, child_env, describe, spawn, worker_argv
from tests.reliability import infra_bodies
from tests.reliability._infra import (
    FULL,
    PrivatePostgres,
    as_probe,
    size,
    terminate_werk_backends_async,
)
from tests.reliability.checker import check
from tests.reliability.relapp import create_history, history_table
from werk_trio import (
    AsyncWorker,
    EnqueueParams,
    ForkWorker,
    JobStatus,
    PayloadTooLarge,
    ProcessWorker,
    ThreadWorker,
    Werk,
    Worker,
)

RELAPP = "tests.reliability.relapp:app"
TYPES = ("async", "thread", "process", "fork")
FAST = ("--heartbeat-interval", "0.5", "--poll-interval", "0.5")
TERMINAL = ("complete", "failed", "aborted")


def figures(scenario: str, **values: Any) -> None:
    print(f"\nFIGURES {scenario}: " + " ".join(f"{k}={v}" for k, v in values.items()))


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    """A dedicated embedded Postgres for this module's backend-killing scenarios."""
    pg = PrivatePostgres().start()
    try:
        yield pg
    finally:
        pg.close()


@pytest.fixture
def restartable_pg() -> Iterator[PrivatePostgres]:
    """A dedicated embedded Postgres that the test stops and starts."""
    pg = PrivatePostgres().start()
    try:
        yield pg
    finally:
        pg.close()


async def history(app: Werk, schema: str) -> list[tuple[Any, ...]]:
    async with app.connection() as conn:
        cur = await conn.execute(
            sql.SQL("SELECT job_id, attempt, pid, started_at, ended_at FROM {} ORDER BY run_id").format(
                history_table(schema)
            )
        )
        return await cur.fetchall()


async def runs_of(app: Werk, schema: str, job_id: uuid.UUID) -> list[tuple[Any, ...]]:
    return [r for r in await history(app, schema) if r[0] == job_id]


async def db_clock(app: Werk) -> datetime:
    async with app.connection() as conn:
        cur = await conn.execute("SELECT clock_timestamp()")
        row = await cur.fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


async def status_counts(app: Werk, queue: str) -> dict[str, int]:
    return dict((await app.counts()).get(queue, {}))


async def terminal_count(app: Werk, queue: str) -> int:
    counts = await status_counts(app, queue)
    return sum(counts.get(s, 0) for s in TERMINAL)


async def complete_ids(app: Werk, queue: str) -> set[uuid.UUID]:
    """Ids of the complete jobs of ``queue`` (every page of them)."""
    found: set[uuid.UUID] = set()
    while True:
        page = await app.list_jobs(queue=queue, status="complete", limit=10_000, offset=len(found))
        found.update(j.id for j in page)
        if len(page) < 10_000:
            return found


async def enqueue_chunks(app: Werk, params: Sequence[EnqueueParams], chunk: int = 5000) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    for start in range(0, len(params), chunk):
        jobs = await app.enqueue_many(params[start : start + chunk])
        ids.extend(j.id for j in jobs if j is not None)
    assert len(ids) == len(params)
    return ids


async def start_workers(
    stack: AsyncExitStack,
    argvs: Sequence[list[str]],
    env: dict[str, str],
    tmp_path: Path,
    names: Sequence[str],
) -> list[Child]:
    children = []
    for argv, name in zip(argvs, names, strict=True):
        children.append(
            await stack.enter_async_context(spawn(argv, env=env, log_path=tmp_path / f"{name}.log"))
        )
    return children


async def stop_workers(children: Sequence[Child], timeout: float = 40) -> list[int]:
    for child in children:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    with trio.fail_after(timeout):
        return [await child.wait() for child in children]


# --- 2. graceful drain ----------------------------------------------------------------


def _drain_body(wtype: str) -> Any:
    # AsyncWorker gets the Trio body (really cancelled); the others the plain one
    return infra_bodies.asteady if wtype == "async" else infra_bodies.steady


class Stagger:
    """Start together, signal apart: the cases of one test start their workers at
    once, wait until all are ready, then case ``i`` goes at ``ready + i * gap``,
    so four shutdowns do not land on the machine's two cores in the same second
    (the exit bound includes the interpreter's own teardown)."""

    def __init__(self, n: int, gap: float) -> None:
        self.left = n
        self.gap = gap
        self.go = trio.Event()
        self.t0 = 0.0
        self.turns = 0

    def arrive(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.t0 = trio.current_time()
            self.go.set()

    async def turn(self) -> None:
        """Arrive, wait for everyone, then for this case's slot."""
        slot = self.turns
        self.turns += 1
        self.arrive()
        await self.go.wait()
        await trio.sleep_until(self.t0 + slot * self.gap)


async def wait_started(app: Werk, schema: str, ids: Sequence[uuid.UUID], child: Child) -> None:
    """Until every job in ``ids`` has a history row (its body runs)."""
    while not set(ids) <= {r[0] for r in await history(app, schema)}:
        if child.returncode is not None:
            raise AssertionError(
                f"worker exited ({child.returncode}) before the jobs started:\n{child.output()}"
            )
        await trio.sleep(0.02)


def _drain_argv(queue: str, wtype: str, concurrency: int, shutdown_timeout: float) -> list[str]:
    return worker_argv(
        "--queues",
        queue,
        "--worker-type",
        wtype,
        "--concurrency",
        str(concurrency),
        "--shutdown-timeout",
        str(shutdown_timeout),
        *FAST,
        app=RELAPP,
    )


async def _run_case(case: Any, stagger: Stagger, wtype: str, failures: dict[str, str], *args: Any) -> None:
    arrived = [False]
    try:
        await case(stagger, arrived, wtype, failures, *args)
    except AssertionError as ex:
        failures[wtype] = str(ex)
    finally:
        if not arrived[0]:
            stagger.arrive()


async def _graceful_case(
    stagger: Stagger,
    arrived: list[bool],
    wtype: str,
    failures: dict[str, str],
    figs: dict[str, Any],
    app: Werk,
    dsn: str,
    schema: str,
    tmp_path: Path,
) -> None:
    queue = f"drain_{wtype}"
    body = _drain_body(wtype)
    long = [await app.enqueue(body, 30_000, _queue=queue) for _ in range(2)]
    long_ids = [j.id for j in long if j is not None]
    argv = _drain_argv(queue, wtype, 4, 5)
    async with spawn(argv, env=child_env(dsn, schema), log_path=tmp_path / f"drain-{wtype}.log") as w:
        await wait_started(app, schema, long_ids, w)
        arrived[0] = True
        await stagger.turn()
        # the 1 s jobs start now, so they are mid-run when the signal comes
        short = [await app.enqueue(body, 1000, _queue=queue) for _ in range(2)]
        short_ids = [j.id for j in short if j is not None]
        await wait_started(app, schema, short_ids, w)
        signalled_at = await db_clock(app)
        sent = time.monotonic()
        w.send_signal(signal.SIGTERM)
        code = await w.wait()
        took = time.monotonic() - sent
    problems = []
    if code != 0:
        problems.append(f"exit code {code}")
    if took > 7.0:
        problems.append(f"exited {took:.2f}s after SIGTERM (limit 7 s)")
    jobs = await app.get_jobs(short_ids + long_ids)
    for jid in short_ids:
        row = jobs[jid]
        runs = await runs_of(app, schema, jid)
        if row.status is not JobStatus.COMPLETE or row.attempts != 1:
            problems.append(f"1 s job {jid}: {row.status.value} attempts={row.attempts} (want complete, 1)")
        elif not runs or runs[-1][4] is None or runs[-1][4] <= signalled_at:
            problems.append(f"1 s job {jid} was not running at the signal: runs={runs}")
    cancel_delays = []
    for jid in long_ids:
        row = jobs[jid]
        if row.status is not JobStatus.QUEUED or row.attempts != 0:
            problems.append(f"30 s job {jid}: {row.status.value} attempts={row.attempts} (want queued, 0)")
            continue
        execs = await app.get_executions(jid)
        if len(execs) != 1 or "shut down" not in (execs[0].error or "") or execs[0].finished_at is None:
            problems.append(f"30 s job {jid}: executions {execs}")
            continue
        delay = (execs[0].finished_at - signalled_at).total_seconds()
        cancel_delays.append(round(delay, 2))
        if not 4.5 <= delay <= 5.5:
            problems.append(f"30 s job {jid} cancelled {delay:.2f}s after SIGTERM (want 5 +- 0.5)")
        runs = await runs_of(app, schema, jid)
        if [r[4] for r in runs] != [None]:
            problems.append(f"30 s job {jid}: the cut run should never end, history {runs}")
    if any(row["pid"] == w.pid and row["status"] != "stopped" for row in await app.list_workers()):
        problems.append("the worker row is still registered")
    figs[wtype] = {"exit_s": round(took, 2), "cancelled_at_s": cancel_delays}
    if problems:
        failures[wtype] = "; ".join(problems) + f"\n{w.output()}"


async def test_graceful_drain_completes_short_jobs_and_requeues_long_ones(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """SIGTERM with --shutdown-timeout 5 while 1 s and 30 s jobs run, one worker of each type."""
    with trio.fail_after(120):
        await trio.to_thread.run_sync(create_history, dsn, schema)
        failures: dict[str, str] = {}
        figs: dict[str, Any] = {}
        stagger = Stagger(len(TYPES), gap=2.0)
        async with trio.open_nursery() as nursery:
            for wtype in TYPES:
                nursery.start_soon(
                    _run_case, _graceful_case, stagger, wtype, failures, figs, app, dsn, schema, tmp_path
                )
        figures("graceful-drain", workers=len(TYPES), jobs=4 * len(TYPES), signals=len(TYPES), per_type=figs)
        assert not failures, "\n\n".join(f"[{k}] {v}" for k, v in failures.items())


async def _second_signal_case(
    stagger: Stagger,
    arrived: list[bool],
    wtype: str,
    failures: dict[str, str],
    figs: dict[str, Any],
    app: Werk,
    dsn: str,
    schema: str,
    tmp_path: Path,
) -> None:
    queue = f"again_{wtype}"
    body = _drain_body(wtype)
    jobs = [await app.enqueue(body, 30_000, _queue=queue) for _ in range(2)]
    ids = [j.id for j in jobs if j is not None]
    argv = _drain_argv(queue, wtype, 2, 30)
    async with spawn(argv, env=child_env(dsn, schema), log_path=tmp_path / f"again-{wtype}.log") as w:
        await wait_started(app, schema, ids, w)
        arrived[0] = True
        await stagger.turn()
        w.send_signal(signal.SIGTERM)
        await w.wait_for_output("send it again to stop now")
        second_at = await db_clock(app)
        sent = time.monotonic()
        w.send_signal(signal.SIGTERM)
        code = await w.wait()
        took = time.monotonic() - sent
    problems = []
    if code != 0:
        problems.append(f"exit code {code}")
    # "at once": the jobs are cancelled within a second; the exit also includes
    # the interpreter's teardown, which a loaded two-core machine stretches
    if took > 4.0:
        problems.append(f"exited {took:.2f}s after the second SIGTERM (want < 4 s)")
    rows = await app.get_jobs(ids)
    delays = []
    for jid in ids:
        row = rows[jid]
        if row.status is not JobStatus.QUEUED or row.attempts != 0:
            problems.append(f"job {jid}: {row.status.value} attempts={row.attempts} (want queued, 0)")
            continue
        [execution] = await app.get_executions(jid)
        assert execution.finished_at is not None
        delays.append(round((execution.finished_at - second_at).total_seconds(), 2))
    if any(d > 1.0 for d in delays):
        problems.append(f"jobs cancelled {delays}s after the second signal (want at once, < 1 s)")
    figs[wtype] = {"exit_s": round(took, 2), "cancelled_at_s": delays}
    if problems:
        failures[wtype] = "; ".join(problems) + f"\n{w.output()}"


async def test_second_signal_cancels_at_once(app: Werk, dsn: str, schema: str, tmp_path: Path) -> None:
    with trio.fail_after(90):
        await trio.to_thread.run_sync(create_history, dsn, schema)
        failures: dict[str, str] = {}
        figs: dict[str, Any] = {}
        stagger = Stagger(len(TYPES), gap=1.0)
        async with trio.open_nursery() as nursery:
            for wtype in TYPES:
                nursery.start_soon(
                    _run_case, _second_signal_case, stagger, wtype, failures, figs, app, dsn, schema, tmp_path
                )
        figures(
            "second-signal", workers=len(TYPES), jobs=2 * len(TYPES), signals=2 * len(TYPES), per_type=figs
        )
        assert not failures, "\n\n".join(f"[{k}] {v}" for k, v in failures.items())


async def test_process_worker_stops_cleanly_when_pool_children_exit_slowly(app: Werk) -> None:
    """A loaded machine can make pool processes slower to exit than the pool's
    grace period; they are killed then, and the worker (every job already
    ended) still stops cleanly instead of raising out of run()."""
    with trio.fail_after(60):
        job = await app.enqueue(infra_bodies.linger_at_exit, 30, _queue="linger")
        assert job is not None
        worker = ProcessWorker(app, queues=["linger"], concurrency=1, burst=True, handle_signals=False)
        started = time.monotonic()
        await worker.run()
        took = time.monotonic() - started
        done = await app.get_job(job.id)
        assert done.status is JobStatus.COMPLETE, done.error
        figures("lingering-pool-children", stop_s=round(took, 2))


# --- 4. connection chaos ------------------------------------------------------------------


async def test_connection_chaos_loses_nothing(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    """pg_terminate_backend on every werk backend every couple of seconds while jobs drain."""
    n_jobs = size(1500, 10_000)
    job_ms = size(150, 500)
    period = size(1.5, 2.0)
    concurrency = 8
    schema = "chaos"
    dsn = private_pg.dsn
    with trio.fail_after(size(240, 1200)):
        await trio.to_thread.run_sync(create_history, dsn, schema)
        async with Werk(as_probe(dsn), schema=schema, task_modules=["tests"]) as app:
            ids = await enqueue_chunks(
                app,
                [EnqueueParams(infra_bodies.steady, args=(job_ms,), queue="chaos") for _ in range(n_jobs)],
            )
            env = child_env(dsn, schema)
            argvs = [
                worker_argv(
                    "--queues",
                    f"chaos,probe{i}",
                    "--worker-type",
                    wtype,
                    "--concurrency",
                    str(concurrency),
                    "--heartbeat-interval",
                    "1",
                    "--sweep-interval",
                    "1",
                    "--poll-interval",
                    "30",
                    app=RELAPP,
                )
                for i, wtype in enumerate(TYPES)
            ]
            async with AsyncExitStack() as stack:
                children = await start_workers(stack, argvs, env, tmp_path, [f"chaos-{t}" for t in TYPES])
                await wait_registered(app, children)
                started = time.monotonic()
                terminations = rounds = 0
                recoveries: list[float] = []
                while await terminal_count(app, "chaos") < n_jobs:
                    for child in children:
                        assert child.returncode is None, f"a worker exited:\n{describe(children)}"
                    before = await terminal_count(app, "chaos")
                    killed = await terminate_werk_backends_async(app)
                    cut = time.monotonic()
                    terminations += killed
                    rounds += 1
                    recovered = False
                    while time.monotonic() < cut + period:
                        done = await terminal_count(app, "chaos")
                        if not recovered and done > before:
                            recoveries.append(time.monotonic() - cut)
                            recovered = True
                        if done >= n_jobs:
                            break
                        await trio.sleep(0.05)
                drained = time.monotonic() - started
                for child in children:
                    assert child.returncode is None, f"a worker exited:\n{describe(children)}"
                # The listeners are back: a job on each worker's own queue is picked
                # up long before the 30 s poll interval would find it.
                probes = [
                    await app.enqueue(infra_bodies.steady, _queue=f"probe{i}") for i in range(len(TYPES))
                ]
                probe_started = time.monotonic()
                probe_ids = [p.id for p in probes if p is not None]
                while True:
                    rows = await app.get_jobs(probe_ids)
                    if all(r.status is JobStatus.COMPLETE for r in rows.values()):
                        break
                    assert time.monotonic() - probe_started < 5.0, (
                        f"probe jobs not picked up within 5 s (LISTEN not restored?): "
                        f"{[(str(r.queue), r.status.value) for r in rows.values()]}\n{describe(children)}"
                    )
                    await trio.sleep(0.02)
                probe_latency = time.monotonic() - probe_started
                codes = await stop_workers(children)
            logs = {c.argv[c.argv.index("--worker-type") + 1]: c.output() for c in children}
            assert codes == [0] * len(children), describe(children)
            report = await check(app, dsn, schema, ids)
            relistens = {t: log.count("LISTEN connection restored") for t, log in logs.items()}
            figures(
                "connection-chaos",
                size="full" if FULL else "small",
                jobs=n_jobs,
                job_ms=job_ms,
                workers=len(children),
                rounds=rounds,
                terminations=terminations,
                drain_s=round(drained, 1),
                lost=len(report.lost),
                stuck=len(report.stuck),
                reruns=report.reruns,
                reruns_after_finish=report.reruns_after_finish,
                recover_median_s=round(sorted(recoveries)[len(recoveries) // 2], 3) if recoveries else None,
                recover_max_s=round(max(recoveries), 3) if recoveries else None,
                relistens=relistens,
                probe_latency_s=round(probe_latency, 2),
                summary=report.summary(),
            )
            report.assert_ok(max_reruns_after_finish=terminations)
            assert rounds >= 3, f"only {rounds} rounds of terminations: the drain was too quick to test"
            for wtype, n in relistens.items():
                assert n >= 1, f"the {wtype} worker's listener never reconnected:\n{logs[wtype]}"


# --- 5. Postgres restart --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_restart_mid_drain(restartable_pg: PrivatePostgres, tmp_path: Path, mode: str) -> None:
    """Stop the (dedicated) server mid-drain, keep it down, start it: every job
    finishes. ``fast`` is a clean shutdown; ``immediate`` is a crash of the
    server: what was not flushed is gone, including the last claims (they
    commit asynchronously) and acks still in flight -- those jobs run again,
    but a job the database showed complete before the crash is complete after
    it, and none is lost or failed."""
    pg = restartable_pg
    n_jobs = size(600, 6000)
    job_ms = size(100, 100)
    downtime = size(3.0, 10.0)
    restarts = size(1, 3)
    schema = "restart"
    dsn = pg.dsn
    with trio.fail_after(size(180, 900)):
        await trio.to_thread.run_sync(create_history, dsn, schema)
        app = Werk(as_probe(dsn), schema=schema, task_modules=["tests"])
        await app.connect()
        try:
            ids = await enqueue_chunks(
                app,
                [EnqueueParams(infra_bodies.steady, args=(job_ms,), queue="restart") for _ in range(n_jobs)],
            )
            env = child_env(dsn, schema)
            argvs = [
                worker_argv(
                    "--queues",
                    "restart",
                    "--worker-type",
                    wtype,
                    "--concurrency",
                    "5",
                    "--heartbeat-interval",
                    "0.5",
                    "--sweep-interval",
                    "0.5",
                    "--poll-interval",
                    "2",
                    app=RELAPP,
                )
                for wtype in TYPES
            ]
            outages: list[dict[str, float]] = []
            async with AsyncExitStack() as stack:
                children = await start_workers(stack, argvs, env, tmp_path, [f"restart-{t}" for t in TYPES])
                await wait_registered(app, children)
                started = time.monotonic()
                for k in range(restarts):
                    target = n_jobs * (k + 1) // (restarts + 2)
                    while await terminal_count(app, "restart") < target:
                        await trio.sleep(0.05)
                    before = await terminal_count(app, "restart")
                    shown_complete = await complete_ids(app, "restart")
                    stop_s = await pg.stop_server(mode)
                    await trio.sleep(downtime)  # the outage itself: paced, not awaited on a condition
                    start_s = await pg.start_server()
                    back = time.monotonic()
                    # the probe app's own pool lost its connections too: the pool
                    # discards them on checkout, so plain retries are enough here
                    while True:
                        try:
                            done = await terminal_count(app, "restart")
                        except Exception:  # the server may still refuse for a moment
                            await trio.sleep(0.05)
                            continue
                        if done > before:
                            break
                        await trio.sleep(0.05)
                    # completions are durable: none of them was undone
                    undone = shown_complete - await complete_ids(app, "restart")
                    assert not undone, f"{len(undone)} complete jobs were not complete after the {mode} stop"
                    outages.append(
                        {
                            "stop_s": round(stop_s, 2),
                            "down_s": downtime,
                            "start_s": round(start_s, 2),
                            "first_completion_after_s": round(time.monotonic() - back, 2),
                        }
                    )
                while await terminal_count(app, "restart") < n_jobs:
                    for child in children:
                        assert child.returncode is None, f"a worker exited:\n{describe(children)}"
                    await trio.sleep(0.05)
                drained = time.monotonic() - started
                alive = [c.returncode is None for c in children]
                codes = await stop_workers(children)
            assert all(alive), f"a worker exited during the outage:\n{describe(children)}"
            assert codes == [0] * len(children), describe(children)
            report = await check(app, dsn, schema, ids)
            figures(
                f"postgres-restart ({mode})",
                size="full" if FULL else "small",
                jobs=n_jobs,
                workers=len(children),
                restarts=restarts,
                outages=outages,
                drain_s=round(drained, 1),
                lost=len(report.lost),
                stuck=len(report.stuck),
                reruns=report.reruns,
                summary=report.summary(),
            )
            # a crash undoes what was not flushed: acks in flight (their runs
            # finished) and claims of the last moments (their runs may have
            # finished too) -- at most what the workers held at each crash
            held = restarts * sum(5 if t in ("async", "thread") else 10 for t in TYPES)
            report.assert_ok(max_reruns_after_finish=0 if mode == "fast" else held)
            if report.failed:
                failed = [j for j in (await app.get_jobs(ids)).values() if j.status is JobStatus.FAILED]
                raise AssertionError(
                    f"{len(failed)} jobs failed across a restart that killed no worker; first error:\n"
                    f"{failed[0].error}\n{report.summary()}"
                )
            if mode == "fast":
                assert report.reruns == 0, (
                    f"jobs re-ran after a restart that killed no worker: {report.summary()}"
                )
            else:
                assert report.reruns <= held, report.summary()
        finally:
            with trio.CancelScope(shield=True):
                await app.disconnect()


# --- 7. no long transactions ------------------------------------------------------------------

ACTIVITY = """
SELECT pid, state, backend_xmin::text, xact_start, state_change, clock_timestamp(), left(query, 120)
FROM pg_stat_activity
WHERE application_name = 'werk_trio' AND datname = current_database()
"""


async def test_no_long_transactions_while_long_jobs_run(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    job_s = size(8, 60)
    schema = "longtx"
    dsn = private_pg.dsn
    with trio.fail_after(job_s + 120):
        await trio.to_thread.run_sync(create_history, dsn, schema)
        async with Werk(as_probe(dsn), schema=schema, task_modules=["tests"]) as app:
            ids = []
            for wtype in TYPES:
                for k in range(3):
                    job = await app.enqueue(
                        _drain_body(wtype), job_s * 1000, _queue=f"long_{wtype}", _heartbeat=1 if k else None
                    )
                    assert job is not None
                    ids.append(job.id)
            env = child_env(dsn, schema)
            argvs = [
                worker_argv(
                    "--queues",
                    f"long_{wtype}",
                    "--worker-type",
                    wtype,
                    "--concurrency",
                    "3",
                    "--heartbeat-interval",
                    "1",
                    "--sweep-interval",
                    "1",
                    "--abort-interval",
                    "1",
                    "--poll-interval",
                    "1",
                    app=RELAPP,
                )
                for wtype in TYPES
            ]
            async with AsyncExitStack() as stack:
                children = await start_workers(stack, argvs, env, tmp_path, [f"long-{t}" for t in TYPES])
                while not set(ids) <= {r[0] for r in await history(app, schema)}:
                    for child in children:
                        assert child.returncode is None, describe(children)
                    await trio.sleep(0.05)
                samples = 0
                seen: set[int] = set()
                worst_idle_tx = worst_xact = 0.0
                violations: list[str] = []
                while True:
                    async with app.connection() as conn:
                        cur = await conn.execute(ACTIVITY)
                        rows = await cur.fetchall()
                    samples += 1
                    for pid, state, xmin, xact_start, state_change, now, query in rows:
                        seen.add(pid)
                        if state and state.startswith("idle in transaction") and state_change is not None:
                            age = (now - state_change).total_seconds()
                            worst_idle_tx = max(worst_idle_tx, age)
                            if age > 1.0:
                                violations.append(f"pid {pid} {state} for {age:.2f}s: {query}")
                        if xact_start is not None:
                            age = (now - xact_start).total_seconds()
                            worst_xact = max(worst_xact, age)
                            if age > 1.0:
                                violations.append(f"pid {pid} transaction open {age:.2f}s ({state}): {query}")
                        if state == "idle" and xmin is not None:
                            violations.append(f"pid {pid} idle but holds xmin {xmin}: {query}")
                    if await terminal_count_all(app, ids):
                        break
                    await trio.sleep(0.05)
                codes = await stop_workers(children)
            assert codes == [0] * len(children), describe(children)
            report = await check(app, dsn, schema, ids)
            figures(
                "no-long-transactions",
                size="full" if FULL else "small",
                jobs=len(ids),
                job_s=job_s,
                samples=samples,
                werk_backends=len(seen),
                worst_idle_in_tx_s=round(worst_idle_tx, 3),
                worst_xact_s=round(worst_xact, 3),
                violations=len(violations),
            )
            assert not violations, "\n".join(violations[:20])
            report.assert_ok()
            assert report.reruns == 0, report.summary()


async def terminal_count_all(app: Werk, ids: list[uuid.UUID]) -> bool:
    jobs = await app.get_jobs(ids)
    return len(jobs) == len(ids) and all(j.status.terminal for j in jobs.values())


# --- 8. clock skew ------------------------------------------------------------------------

SKEWED_ENQUEUE = """
import json, sys, time
from tests.reliability.skewclock import install
install(float(sys.argv[1]))
import trio
from werk_trio import Retry
from tests.reliability import infra_bodies, relapp

async def main():
    async with relapp.app as app:
        delayed = await app.enqueue(infra_bodies.clock, _queue="skew", _delay=3)
        retried = await app.enqueue(infra_bodies.fail_first, _queue="skew", _retry=Retry(2, intervals=[2]))
        print(json.dumps({"delayed": str(delayed.id), "retried": str(retried.id), "py_time": time.time()}))

trio.run(main)
"""


def skewed_worker_argv(offset: float, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.reliability.skewclock", str(offset), "worker", RELAPP, *args]


def uuid7_time(job_id: uuid.UUID) -> float:
    return (job_id.int >> 80) / 1000.0


async def test_clock_skew_schedules_and_rescues_by_the_database_clock(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    hour = 3600.0
    with trio.fail_after(90):
        await trio.to_thread.run_sync(create_history, dsn, schema)
        env = child_env(dsn, schema)
        # A victim (true clock) runs a long job; it will be SIGKILLed.
        victim_job = await app.enqueue(infra_bodies.steady, 60_000, _queue="victim", _retry=2)
        assert victim_job is not None
        victim_argv = worker_argv("--queues", "victim", "--sweep-interval", "60", *FAST, app=RELAPP)
        async with AsyncExitStack() as stack:
            victim = await stack.enter_async_context(
                spawn(victim_argv, env=env, log_path=tmp_path / "victim.log")
            )
            while not await runs_of(app, schema, victim_job.id):
                assert victim.returncode is None, victim.output()
                await trio.sleep(0.02)
            # Two workers an hour off, one each way, sweeping every 0.2 s.
            ahead = await stack.enter_async_context(
                spawn(
                    skewed_worker_argv(
                        hour, "--queues", "skew", "--concurrency", "4", "--sweep-interval", "0.2", *FAST
                    ),
                    env=env,
                    log_path=tmp_path / "ahead.log",
                )
            )
            behind = await stack.enter_async_context(
                spawn(
                    skewed_worker_argv(
                        -hour, "--queues", "skew", "--concurrency", "4", "--sweep-interval", "0.2", *FAST
                    ),
                    env=env,
                    log_path=tmp_path / "behind.log",
                )
            )
            await wait_registered(app, [ahead, behind])
            # Live long jobs (one touching itself, one not) must never be rescued.
            live = [
                await app.enqueue(infra_bodies.clock, 4000, _queue="skew", _heartbeat=hb) for hb in (None, 1)
            ]
            # Jobs enqueued by a process an hour behind: a delay and a retry back-off.
            result = await trio.run_process(
                [sys.executable, "-c", SKEWED_ENQUEUE, str(-hour)],
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                cwd=str(Path(__file__).resolve().parents[2]),
                check=False,
            )
            assert result.returncode == 0, result.stderr.decode()
            made = json.loads(result.stdout.decode().strip().splitlines()[-1])
            delayed_id, retried_id = uuid.UUID(made["delayed"]), uuid.UUID(made["retried"])
            # SIGKILL the victim: a skewed sweeper must rescue its job after three
            # heartbeat intervals of the database clock (not at once, not never).
            killed_at = await db_clock(app)
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            # (the running attempt shows as an execution without finished_at)
            while not any(e.finished_at is not None for e in await app.get_executions(victim_job.id)):
                await trio.sleep(0.02)
            lost = (await app.get_executions(victim_job.id))[0]
            assert lost.finished_at is not None and lost.attempt == 1
            rescue_after = (lost.finished_at - killed_at).total_seconds()
            watch = [delayed_id, retried_id] + [j.id for j in live if j is not None]
            while not await terminal_count_all(app, watch):
                for child in (ahead, behind):
                    assert child.returncode is None, describe([ahead, behind])
                await trio.sleep(0.05)
            codes = await stop_workers([ahead, behind])
        assert codes == [0, 0], describe([ahead, behind])
        logs = ahead.output() + behind.output()

        # the skew is real: the enqueuer's ids carry its clock, the worker's job reports its own
        delayed = await app.get_job(delayed_id)
        id_skew = uuid7_time(delayed_id) - delayed.enqueued_at.timestamp()
        assert abs(id_skew + hour) < 60, f"the enqueuer's clock was not an hour behind: {id_skew:.1f}s"
        live_rows = await app.get_jobs([j.id for j in live if j is not None])
        worker_skews = []
        for row in live_rows.values():
            [run] = await runs_of(app, schema, row.id)
            worker_skews.append(row.result["time"] - run[4].timestamp())
        assert all(abs(abs(s) - hour) < 60 for s in worker_skews), worker_skews

        # _delay by the database clock
        assert delayed.status is JobStatus.COMPLETE, delayed.error
        [delayed_run] = await runs_of(app, schema, delayed_id)
        waited = (delayed_run[3] - delayed.enqueued_at).total_seconds()
        scheduled = (delayed.scheduled_at - delayed.enqueued_at).total_seconds()
        assert abs(scheduled - 3.0) < 0.01, scheduled
        assert 3.0 <= waited <= 6.0, f"a 3 s delay started after {waited:.2f}s"

        # retry back-off by the database clock
        retried = await app.get_job(retried_id)
        assert retried.status is JobStatus.COMPLETE and retried.attempts == 2, (retried.status, retried.error)
        first, second = await app.get_executions(retried_id)
        assert first.finished_at is not None
        backoff = (second.started_at - first.finished_at).total_seconds()
        assert 2.0 <= backoff <= 5.0, f"a 2 s back-off took {backoff:.2f}s"

        # rescue time by the database clock: dead after 3 x 0.5 s of silence
        assert 0.9 <= rescue_after <= 6.0, f"rescued {rescue_after:.2f}s after the kill"
        victim_row = await app.get_job(victim_job.id)
        assert victim_row.status is JobStatus.QUEUED and victim_row.attempts == 1, victim_row
        assert "worker lost" in (lost.error or ""), lost.error

        # no live job was rescued
        for row in live_rows.values():
            assert row.status is JobStatus.COMPLETE and row.attempts == 1, (
                row.status,
                row.attempts,
                row.error,
            )
            assert [e.attempt for e in await app.get_executions(row.id)] == [1]
        assert logs.count("rescued 1 job") == 1 and "rescued 2" not in logs, logs
        await app.cancel_job(victim_job.id)
        figures(
            "clock-skew",
            skew_s=f"+-{hour:g}",
            jobs=5,
            kills=1,
            delay_started_after_s=round(waited, 2),
            retry_backoff_s=round(backoff, 2),
            rescue_after_kill_s=round(rescue_after, 2),
            live_jobs_rescued=0,
            worker_clock_offsets_s=[round(s) for s in worker_skews],
        )


# --- 9. NOTIFY hygiene -------------------------------------------------------------------------


async def test_bulk_enqueue_sends_few_notifies_and_the_queue_stays_empty(app: Werk) -> None:
    n_jobs = size(50_000, 100_000)
    chunk = 5000
    queues = [f"bulk{i}" for i in range(4)]
    from werk_trio.db import Listener

    with trio.fail_after(180):
        send, recv = trio.open_memory_channel[Any](10_000)
        listener = Listener(app.dsn, [app.sql.jobs_channel], send)
        received: list[str] = []
        done = trio.Event()

        async def count() -> None:
            async for note in recv:
                if getattr(note, "payload", None) == "__end__":
                    done.set()
                    return
                if hasattr(note, "payload"):
                    received.append(note.payload)

        usage: list[float] = []

        async def sample_usage() -> None:
            while True:
                async with app.connection() as conn:
                    cur = await conn.execute("SELECT pg_notification_queue_usage()")
                    row = await cur.fetchone()
                usage.append(float(row[0]) if row else 0.0)
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            await nursery.start(listener.run)
            nursery.start_soon(count)
            nursery.start_soon(sample_usage)
            started = time.monotonic()
            chunks = 0
            for start in range(0, n_jobs, chunk):
                params = [
                    EnqueueParams(infra_bodies.steady, queue=queues[i % len(queues)])
                    for i in range(start, min(n_jobs, start + chunk))
                ]
                jobs = await app.enqueue_many(params)
                assert all(j is not None for j in jobs)
                chunks += 1
            elapsed = time.monotonic() - started
            # notifications arrive in commit order: once this one is here, all are
            async with app.connection() as conn:
                await conn.execute("SELECT pg_notify(%s, '__end__')", (app.sql.jobs_channel,))
            await done.wait()
            nursery.cancel_scope.cancel()
        counts = await app.counts()
        assert sum(sum(c.values()) for q, c in counts.items() if q in queues) == n_jobs
        figures(
            "notify-hygiene",
            jobs=n_jobs,
            chunks=chunks,
            notifies=len(received),
            bound=chunks * len(queues),
            max_queue_usage=max(usage, default=0.0),
            enqueue_s=round(elapsed, 2),
            jobs_per_s=round(n_jobs / elapsed),
        )
        assert len(received) <= chunks * len(queues), f"{len(received)} NOTIFYs for {chunks} statements"
        assert set(received) == set(queues), sorted(set(received))
        assert max(usage, default=0.0) < 0.001, f"pg_notification_queue_usage reached {max(usage)}"


# --- 11. sizes and serialization ------------------------------------------------------------


async def test_oversized_payload_inserts_nothing(dsn: str, schema: str) -> None:
    with trio.fail_after(30):
        async with Werk(dsn, schema=schema, task_modules=["tests"]) as app:
            limit = app.config.max_payload_bytes
            empty = app.serializer.dumps({"args": [], "kwargs": {"blob": ""}})
            fits = "x" * (limit - len(empty))
            assert len(app.serializer.dumps({"args": [], "kwargs": {"blob": fits}})) == limit

            async def rows() -> int:
                async with app.connection() as conn:
                    cur = await conn.execute(
                        sql.SQL("SELECT count(*) FROM {}").format(app.sql.idents["jobs"])
                    )
                    row = await cur.fetchone()
                return int(row[0]) if row else -1

            with pytest.raises(PayloadTooLarge):
                await app.enqueue(infra_bodies.steady, blob=fits + "x")
            with pytest.raises(PayloadTooLarge):
                await app.enqueue_many(
                    [
                        EnqueueParams(infra_bodies.steady),
                        EnqueueParams(infra_bodies.steady, kwargs={"blob": fits + "x"}),
                        EnqueueParams(infra_bodies.steady),
                    ]
                )
            assert await rows() == 0, "a refused batch must insert nothing"
            job = await app.enqueue(infra_bodies.steady, blob=fits)
            assert job is not None and await rows() == 1, "a payload of exactly the limit is accepted"


WORKER_CLASSES: dict[str, type[Worker]] = {
    "async": AsyncWorker,
    "thread": ThreadWorker,
    "process": ProcessWorker,
    "fork": ForkWorker,
}


@pytest.mark.parametrize("wtype", TYPES)
async def test_ten_megabyte_results_and_unserializable_results(app: Werk, wtype: str) -> None:
    with trio.fail_after(90):
        queue = f"size_{wtype}"
        big = [infra_bodies.big_result]
        bad = [infra_bodies.unserializable]
        if wtype == "async":
            big.append(infra_bodies.abig_result)
            bad.append(infra_bodies.aunserializable)
        big_jobs = [await app.enqueue(f, 10, _queue=queue) for f in big]
        bad_jobs = [await app.enqueue(f, _queue=queue, _retry=3) for f in bad]
        worker = WORKER_CLASSES[wtype](
            app, queues=[queue], concurrency=2, burst=True, handle_signals=False, poll_interval=0.2
        )
        started = time.monotonic()
        await worker.run()
        took = time.monotonic() - started
        for job in big_jobs:
            assert job is not None
            row = await app.get_job(job.id)
            assert row.status is JobStatus.COMPLETE, row.error
            assert isinstance(row.result, str) and len(row.result) == 10 * 1024 * 1024
        for job in bad_jobs:
            assert job is not None
            row = await app.get_job(job.id)
            assert row.status is JobStatus.FAILED, row.status
            assert row.attempts == 1, f"an unserializable result must fail at once, not retry: {row.attempts}"
            assert "SerializationError" in (row.error or ""), row.error
        figures(
            f"sizes-{wtype}",
            results_mb=10 * len(big_jobs),
            unserializable=len(bad_jobs),
            burst_s=round(took, 2),
        )
