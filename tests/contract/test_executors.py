"""The executor contract, run against every worker type (async, thread,
process, fork) the way trio-parallel runs one suite over every start method.

Real Postgres, real threads and processes, no mocks. Every test runs under an
absolute ``trio.fail_after`` and waits on conditions (a job's status, a file a
handler wrote, a pid that is gone). Where a test must show that something did
*not* happen (a marker that a stopped handler would have written), it first
proves the handler can no longer write it (its process is gone, or it was
cancelled at the point before), and only then looks.

Handlers live in ``tests/contract/handlers.py``; they report through their
result, their error, or files in the test's ``tmp_path``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio

from werk_trio import EnqueueParams, Retry, Werk, Worker, testing
from werk_trio.executors.thread import ThreadExecutor
from werk_trio.testing import running, until, wait_for_status

from . import handlers as h

WORKER_TYPES = ["async", "thread", "process", "fork"]
CHILD_TYPES = ["process", "fork"]  # the handler runs in another process
KINDS = ["trio", "sync", "asyncio"]

ABORT_INTERVAL = 0.1
SIGTERM_GRACE = 0.3


# --- helpers ----------------------------------------------------------------------------


async def read_pid(path: Path) -> int:
    """The pid a handler wrote to ``path``, once it is there."""
    await until(path.exists, interval=0.005)
    return int(path.read_text())


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has stopped running)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def make_worker(app: Werk, worker_type: str, **kwargs: Any) -> Worker:
    """werk_trio.testing's test worker with the contract's settings (two slots,
    a slower poll, the abort interval and SIGTERM grace the tests count with)."""
    kwargs.setdefault("concurrency", 2)
    kwargs.setdefault("poll_interval", 0.2)
    kwargs.setdefault("abort_interval", ABORT_INTERVAL)
    if worker_type == "fork":
        kwargs.setdefault("sigterm_grace", SIGTERM_GRACE)
    return testing.make_worker(app, worker_type, **kwargs)


async def runs_normally(app: Werk) -> None:
    """The worker still takes and completes an ordinary job."""
    job = await app.enqueue(h.trio_add, 20, 22)
    assert job
    done = await wait_for_status(app, job.id, "complete", "failed")
    assert done.status == "complete", done.error
    assert done.result["sum"] == 42


def hang_handler(worker_type: str) -> Callable[..., Any]:
    """A handler that runs until stopped, in the way each executor can stop it:
    cancelled at a Trio checkpoint (async), told through ``ctx.cancelled``
    (thread: the only way), or never cooperating at all (process, fork:
    only killing the process ends it)."""
    return {
        "async": h.trio_hang,
        "thread": h.until_cancelled,
        "process": h.blocking_hang,
        "fork": h.blocking_hang,
    }[worker_type]


def child_processes() -> set[int]:
    """Our child processes, except multiprocessing's resource tracker (started
    with the first spawned process, it lives as long as this one)."""
    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(p.cmdline()):
                out.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(params=WORKER_TYPES)
def worker_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=CHILD_TYPES)
def child_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- every handler kind, results, Context ------------------------------------------------------


async def test_every_handler_kind_runs_and_returns_its_result(app: Werk, worker_type: str, kind: str) -> None:
    with trio.fail_after(20):
        job = await app.enqueue(h.ADD[kind], 40, 2, label="étiquette", values=[1, None])
        assert job
        async with running(make_worker(app, worker_type)):
            done = await wait_for_status(app, job.id, "complete", "failed")
        assert done.status == "complete", done.error
        result = done.result
        assert result["kind"] == kind and result["sum"] == 42
        assert result["nested"] == {
            "list": [1, 2.5, None, True, "zwölf"],
            "extra": {"label": "étiquette", "values": [1, None]},
        }
        if worker_type in CHILD_TYPES:
            assert result["pid"] != os.getpid()
        else:
            assert result["pid"] == os.getpid()


async def test_context_is_injected_when_asked_for(app: Werk, worker_type: str, kind: str) -> None:
    with trio.fail_after(20):
        by_name = await app.enqueue(h.CTX[kind], "by-name", _queue="contract", _retry=3)
        by_annotation = await app.enqueue(h.ANNOTATED[kind], tag="by-annotation", _queue="contract")
        plain = await app.enqueue(h.ADD[kind], 1, 2, _queue="contract")  # asks for none: gets none
        assert by_name and by_annotation and plain
        worker = make_worker(app, worker_type, queues=["contract"])
        async with running(worker):
            jobs = [await wait_for_status(app, j.id, "complete", "failed")
                    for j in (by_name, by_annotation, plain)]
        for job in jobs:
            assert job.status == "complete", job.error
        seen_by_name, seen_by_annotation = jobs[0].result, jobs[1].result
        assert seen_by_name == {
            "kind": kind,
            "tag": "by-name",
            "is_context": True,
            "job_id": str(by_name.id),
            "function": by_name.function,
            "queue": "contract",
            "attempts": 1,
            "max_attempts": 3,
            "args": ["by-name"],
            "kwargs": {},
            "worker_id": str(worker.id),
            "worker_name": worker.name,
            "cancelled": False,
            "pid": seen_by_name["pid"],
        }
        assert seen_by_name["function"].endswith(f"handlers.{h.CTX[kind].__name__}")
        assert seen_by_annotation["job_id"] == str(by_annotation.id)
        assert seen_by_annotation["kwargs"] == {"tag": "by-annotation"}
        assert seen_by_annotation["args"] == []
        assert seen_by_annotation["worker_id"] == str(worker.id)
        assert seen_by_annotation["worker_name"] == worker.name
        assert jobs[2].result["sum"] == 3


# --- errors ---------------------------------------------------------------------------------


async def test_errors_keep_their_type_and_full_traceback(app: Werk, worker_type: str, kind: str) -> None:
    with trio.fail_after(20):
        job = await app.enqueue(h.RAISES[kind], 7)
        assert job
        async with running(make_worker(app, worker_type)):
            failed = await wait_for_status(app, job.id, "complete", "failed")
            await runs_normally(app)
        assert failed.status == "failed"
        error = failed.error
        assert error is not None
        lines = error.strip().splitlines()
        assert lines[0] == "Traceback (most recent call last):", error
        assert lines[-1] == f"tests.contract.handlers.HandlerBoom: boom from {kind} with n=8", error
        # the handler's own frames, outermost to innermost, with their file
        frames = [h.RAISES[kind].__name__, "middle_helper_frame", "deepest_helper_frame"]
        positions = [error.find(f"in {name}\n") for name in frames]
        assert all(p >= 0 for p in positions), error
        assert positions == sorted(positions), error
        assert error.count(h.__file__) >= 3, error
        execs = await app.get_executions(job.id)
        assert [(e.attempt, e.status) for e in execs] == [(1, "failed")]
        assert execs[0].error is not None and "HandlerBoom: boom from" in execs[0].error


# --- timeouts -------------------------------------------------------------------------------

# (worker type, handler kind) pairs whose work can really be stopped: Trio and
# asyncio coroutines in the worker's loop are cancelled; anything in a child
# process is killed. ThreadWorker (and a plain function under AsyncWorker) can
# only be abandoned: see test_thread_timeout_abandons_the_thread_on_time.
STOPPABLE = [("async", "trio"), ("async", "asyncio")] + [(t, k) for t in CHILD_TYPES for k in KINDS]


@pytest.mark.parametrize(("worker_type", "kind"), STOPPABLE)
async def test_timeout_really_stops_the_work(app: Werk, tmp_path: Path, worker_type: str, kind: str) -> None:
    timeout, sleep = 0.4, 1.2
    with trio.fail_after(20):
        job = await app.enqueue(h.SLEEP_THEN_MARK[kind], str(tmp_path), "job", sleep, _timeout=timeout)
        assert job
        marker = tmp_path / "job.marker"
        async with running(make_worker(app, worker_type)):
            pid = await read_pid(tmp_path / "job.pid")
            started = trio.current_time()
            failed = await wait_for_status(app, job.id, "failed", "complete")
            failed_after = trio.current_time() - started
            if worker_type in CHILD_TYPES:
                # the process that ran the handler is gone: it can never write the marker
                assert pid != os.getpid()
                await until(lambda: not alive(pid))
            else:
                # cancelled at the sleep, the line before the marker
                await until((tmp_path / "job.interrupted").exists)
            await runs_normally(app)
            # and, to be literal, past the time the handler would have written it
            await trio.sleep_until(started + sleep + 0.2)
            assert not marker.exists()
        assert failed.status == "failed"
        assert failed.error is not None and "JobTimeout" in failed.error, failed.error
        assert f"{timeout:g}s" in failed.error
        assert failed_after < timeout + 0.6, failed_after
        execs = await app.get_executions(job.id)
        assert [(e.attempt, e.status) for e in execs] == [(1, "failed")]
        assert execs[0].finished_at is not None
        ran = (execs[0].finished_at - execs[0].started_at).total_seconds()
        assert timeout <= ran < timeout + 0.6, ran
        assert not marker.exists()


@pytest.fixture
def thread_state() -> Any:
    h.Gauge.reset()
    h.SAW_CANCELLED.clear()
    h.RELEASE.clear()
    yield
    h.RELEASE.set()  # never leave a thread stuck behind a test


async def test_thread_timeout_abandons_the_thread_on_time_and_keeps_the_limit(
    app: Werk, thread_state: Any
) -> None:
    timeout, concurrency = 0.3, 2
    with trio.fail_after(20):
        stuck = [
            await app.enqueue(h.stuck_thread, f"stuck-{i}", _timeout=timeout) for i in range(concurrency)
        ]
        assert all(stuck)
        worker = make_worker(app, "thread", concurrency=concurrency)
        executor = worker.executor
        assert isinstance(executor, ThreadExecutor)
        async with running(worker):
            failed = [await wait_for_status(app, j.id, "failed", "complete") for j in stuck if j]
            # the jobs ended on time, while their threads are still inside the handler
            assert h.Gauge.active == concurrency
            assert executor.stuck == concurrency
            for job in failed:
                assert job.status == "failed"
                assert job.error is not None and "JobTimeout" in job.error
                (execution,) = await app.get_executions(job.id)
                assert execution.finished_at is not None
                ran = (execution.finished_at - execution.started_at).total_seconds()
                assert timeout <= ran < timeout + 0.6, ran
            # the handlers were told: ctx.cancelled became true
            await until(lambda: len(h.SAW_CANCELLED) == concurrency)

            # new jobs are claimed but cannot start while the abandoned threads hold the slots
            waiting = [await app.enqueue(h.counted_thread, f"next-{i}") for i in range(4)]
            assert all(waiting)
            claimed = await until(
                lambda: _count(app, [j.id for j in waiting if j], "active", at_least=concurrency)
            )
            assert claimed
            with trio.move_on_after(0.5):  # negative proof: nothing may start in this window
                await until(lambda: len(h.Gauge.started) > concurrency)
            assert sorted(h.Gauge.started) == [f"stuck-{i}" for i in range(concurrency)]
            assert h.Gauge.peak == concurrency

            h.RELEASE.set()
            for job in waiting:
                assert job
                done = await wait_for_status(app, job.id, "complete", "failed")
                assert done.status == "complete", done.error
            await until(lambda: executor.stuck == 0)
        assert h.Gauge.peak == concurrency
        assert sorted(h.Gauge.started[concurrency:]) == [f"next-{i}" for i in range(4)]


async def test_thread_call_that_times_out_before_a_thread_is_free_never_starts(
    app: Werk, thread_state: Any
) -> None:
    with trio.fail_after(20):
        holder = await app.enqueue(h.stuck_thread, "holder", _timeout=0.2)
        assert holder
        worker = make_worker(app, "thread", concurrency=1, prefetch=1)
        executor = worker.executor
        assert isinstance(executor, ThreadExecutor)
        async with running(worker):
            await wait_for_status(app, holder.id, "failed")
            assert executor.stuck == 1  # the only thread is still inside the handler
            # claimed and handed to the pool, but no thread is free to take it
            late = await app.enqueue(h.counted_thread, "late", _timeout=0.3)
            assert late
            failed = await wait_for_status(app, late.id, "failed", "complete")
            assert failed.status == "failed" and "JobTimeout" in (failed.error or "")
            h.RELEASE.set()  # the thread comes back and reads the queue
            await until(lambda: executor.stuck == 0)
            after = await app.enqueue(h.counted_thread, "after")
            assert after
            assert (await wait_for_status(app, after.id, "complete")).result == "after"
        # the call whose job had ended was dropped, not run late
        assert h.Gauge.started == ["holder", "after"]


async def _count(app: Werk, ids: list[Any], status: str, *, at_least: int) -> bool:
    jobs = await app.get_jobs(ids)
    return sum(1 for j in jobs.values() if j.status == status) >= at_least


# --- aborts ---------------------------------------------------------------------------------


async def test_abort_job_stops_a_running_job_within_abort_interval(
    app: Werk, tmp_path: Path, worker_type: str
) -> None:
    with trio.fail_after(20):
        job = await app.enqueue(hang_handler(worker_type), str(tmp_path), "job", _retry=3)
        assert job
        async with running(make_worker(app, worker_type)):
            pid = await read_pid(tmp_path / "job.pid")
            started = trio.current_time()
            assert await app.abort_job(job.id) is True
            aborted = await wait_for_status(app, job.id, "aborted", "failed", "complete")
            took = trio.current_time() - started
            if worker_type in CHILD_TYPES:
                await until(lambda: not alive(pid))
            else:  # cancelled (async) or told through ctx.cancelled (thread)
                await until((tmp_path / "job.cancelled").exists)
            await runs_normally(app)
            assert (await app.get_job(job.id)).status == "aborted"
        assert aborted.status == "aborted", aborted.error
        assert took < ABORT_INTERVAL + 0.7, took
        assert aborted.attempts == 1  # no retry although attempts were left
        execs = await app.get_executions(job.id)
        assert [(e.attempt, e.status) for e in execs] == [(1, "aborted")]


# --- crashes --------------------------------------------------------------------------------

CRASHES = {
    "exit3": "exited with code 3",
    "segfault": "killed by signal SIGSEGV (11)",
    "sigkill": "killed by signal SIGKILL (9)",
}


@pytest.mark.parametrize("how", list(CRASHES))
async def test_a_child_that_dies_fails_only_that_attempt(
    app: Werk, tmp_path: Path, child_type: str, how: str
) -> None:
    with trio.fail_after(30):
        job = await app.enqueue(h.crash, how, str(tmp_path), _retry=2)
        assert job
        worker = make_worker(app, child_type)
        async with running(worker):
            pid = await read_pid(tmp_path / f"{how}.pid")
            assert pid != os.getpid()
            if how == "sigkill":  # as the OOM killer would
                os.kill(pid, signal.SIGKILL)
            done = await wait_for_status(app, job.id, "complete", "failed")
            assert not alive(pid)
            await runs_normally(app)
            assert worker.started.is_set() and not worker.stopped.is_set()
        assert done.status == "complete", done.error
        assert done.result.startswith("attempt 2 ran normally")
        first, second = await app.get_executions(job.id)
        assert (first.attempt, first.status, second.attempt, second.status) == (1, "failed", 2, "complete")
        assert first.error is not None and CRASHES[how] in first.error, first.error


# --- sizes and serialization ----------------------------------------------------------------


async def test_a_ten_megabyte_result_completes(app: Werk, worker_type: str) -> None:
    size = 10 * 1024 * 1024
    with trio.fail_after(30):
        job = await app.enqueue(h.big_result, size)
        assert job
        async with running(make_worker(app, worker_type)):
            done = await wait_for_status(app, job.id, "complete", "failed")
            await runs_normally(app)
        assert done.status == "complete", (done.error or "")[-2000:]
        assert isinstance(done.result, str) and len(done.result) == size
        assert done.result.endswith("x!")


async def test_an_unserializable_result_fails_at_once_without_retry(app: Werk, worker_type: str) -> None:
    with trio.fail_after(20):
        jobs = [await app.enqueue(h.UNSERIALIZABLE[kind], _retry=3) for kind in KINDS]
        async with running(make_worker(app, worker_type, concurrency=3)):
            t0 = trio.current_time()
            ended = [await wait_for_status(app, j.id, "failed", "complete") for j in jobs if j]
            took = trio.current_time() - t0
            await runs_normally(app)
        assert took < 3, took
        for job in ended:
            assert (job.status, job.attempts) == ("failed", 1), (job.status, job.error)
            assert job.error is not None
            assert "SerializationError" in job.error and "Opaque" in job.error, job.error
            execs = await app.get_executions(job.id)
            assert [(e.attempt, e.status) for e in execs] == [(1, "failed")]


async def test_a_handler_raising_serialization_error_itself_is_retried(app: Werk, worker_type: str) -> None:
    """Only a result the executor cannot encode is final; the same exception
    type raised by the handler is retried like any error."""
    with trio.fail_after(20):
        jobs = [await app.enqueue(h.RAISES_SERIALIZATION_ERROR[kind], _retry=Retry(2, 0)) for kind in KINDS]
        async with running(make_worker(app, worker_type, concurrency=3)):
            ended = [await wait_for_status(app, j.id, "failed", "complete") for j in jobs if j]
        for job in ended:
            assert (job.status, job.attempts) == ("failed", 2), (job.status, job.attempts, job.error)
            assert job.error is not None
            assert "SerializationError" in job.error and "did not decode" in job.error, job.error
            execs = await app.get_executions(job.id)
            assert [(e.attempt, e.status) for e in execs] == [(1, "failed"), (2, "failed")]


# --- shutdown -------------------------------------------------------------------------------


async def test_shutdown_obeys_shutdown_timeout_and_requeues_unspent(
    app: Werk, tmp_path: Path, worker_type: str
) -> None:
    shutdown_timeout = 0.5
    with trio.fail_after(20):
        before = child_processes()
        job = await app.enqueue(hang_handler(worker_type), str(tmp_path), "job")
        assert job
        worker = make_worker(app, worker_type, shutdown_timeout=shutdown_timeout)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            pid = await read_pid(tmp_path / "job.pid")
            active = await app.get_job(job.id)
            assert (active.status, active.attempts) == ("active", 1)
            t0 = trio.current_time()
            worker.stop()
            await worker.stopped.wait()
            elapsed = trio.current_time() - t0
        assert shutdown_timeout <= elapsed < shutdown_timeout + 1.5, elapsed
        if worker_type in CHILD_TYPES:
            assert not alive(pid), "the job's process outlived the shutdown"
            # the pool's processes / the fork server are gone too
            await until(lambda: child_processes() <= before)
        else:
            await until((tmp_path / "job.cancelled").exists)
        back = await app.get_job(job.id)
        assert (back.status, back.attempts, back.worker_id) == ("queued", 0, None)
        assert (await app.get_worker(worker.id) or {}).get("status") == "stopped", "deregistered"


# --- ForkWorker -----------------------------------------------------------------------------


async def test_fork_child_ignoring_sigterm_is_gone_at_timeout_plus_grace(app: Werk, tmp_path: Path) -> None:
    timeout, grace = 0.5, 0.5
    with trio.fail_after(20):
        job = await app.enqueue(h.ignore_sigterm_then_sleep, str(tmp_path), "job", 30, _timeout=timeout)
        assert job
        worker = make_worker(app, "fork", sigterm_grace=grace)
        async with running(worker):
            pid = await read_pid(tmp_path / "job.pid")
            # the runner's own deadline for this attempt (same Trio clock as ours)
            started = worker.running[job.id].timeout_at - timeout
            await until(lambda: not alive(pid), interval=0.005)
            gone_after = trio.current_time() - started
            failed = await wait_for_status(app, job.id, "failed", "complete")
            await runs_normally(app)
        print(
            f"\nForkWorker: a child ignoring SIGTERM was gone {gone_after:.3f} s after its job started "
            f"(timeout {timeout} s + sigterm_grace {grace} s)"
        )
        # it outlived the SIGTERM at `timeout`, and was killed once the grace ran out
        assert timeout + grace <= gone_after < timeout + grace + 0.5, gone_after
        assert failed.status == "failed"
        assert failed.error is not None and "JobTimeout" in failed.error
        assert not (tmp_path / "job.marker").exists()


async def test_fork_shutdown_kills_a_child_ignoring_sigterm_after_the_grace(
    app: Werk, tmp_path: Path
) -> None:
    shutdown_timeout, grace = 0.4, 0.4
    with trio.fail_after(20):
        job = await app.enqueue(h.ignore_sigterm_then_sleep, str(tmp_path), "job", 30)
        assert job
        worker = make_worker(app, "fork", shutdown_timeout=shutdown_timeout, sigterm_grace=grace)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            pid = await read_pid(tmp_path / "job.pid")
            t0 = trio.current_time()
            worker.stop()
            await worker.stopped.wait()
            elapsed = trio.current_time() - t0
        assert not alive(pid)
        # SIGTERM at shutdown_timeout, ignored; SIGKILL once the grace ran out
        assert shutdown_timeout + grace - 0.05 <= elapsed < shutdown_timeout + grace + 1.0, elapsed
        back = await app.get_job(job.id)
        assert (back.status, back.attempts) == ("queued", 0)
        assert not (tmp_path / "job.marker").exists()


def _fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _fork_server() -> psutil.Process:
    (server,) = [
        p for p in psutil.Process().children() if "werk_trio.executors._forkserver" in " ".join(p.cmdline())
    ]
    return server


async def _drain(app: Werk, func: Callable[..., Any], n: int, *, within: float = 30) -> None:
    """Enqueue ``n`` jobs of ``func(i)`` and wait until all are complete
    (an AssertionError saying where things stand after ``within`` seconds)."""
    before = (await app.counts()).get("default", {}).get("complete", 0)
    await app.enqueue_many([EnqueueParams(func, (i,), {}) for i in range(n)])

    async def finished() -> bool:
        counts = (await app.counts()).get("default", {})
        assert counts.get("failed", 0) == 0, counts
        return counts.get("complete", 0) >= before + n

    with trio.move_on_after(within):
        await until(finished, interval=0.05)
        return
    raise AssertionError(
        f"{n} jobs of {func.__name__} not done after {within} s: {await app.counts()}; "
        f"child processes {[(p.pid, p.status()) for p in psutil.Process().children(recursive=True)]}"
    )


async def test_fork_leaves_no_zombie_process_or_descriptor_after_300_jobs(dsn: str, schema: str) -> None:
    # a pool of fixed size (opened in full at connect), so that the descriptors
    # counted here change only if the executor leaks one
    app = Werk(dsn, schema=schema, task_modules=["tests.contract.handlers"], min_pool_size=8, max_pool_size=8)
    with trio.fail_after(60):
        async with app, running(worker := make_worker(app, "fork", concurrency=4)):
            await _drain(app, h.noop, 20)  # warm up: imports, caches, prepared statements
            server = _fork_server()
            parent_fds, server_fds, pool_size = _fds(), _fds(server.pid), app.pool.size
            processes = child_processes()
            await _drain(app, h.noop, 300)
            # every child was reaped by the server the moment it exited
            await until(lambda: not server.children())
            assert child_processes() == processes
            assert app.pool.size == pool_size == 8
            assert _fds() == parent_fds
            assert _fds(server.pid) == server_fds
            assert worker.executor.forks >= 320  # type: ignore[attr-defined]


async def test_fork_does_not_deadlock_while_other_threads_log(app: Werk) -> None:
    """Forking a process whose other thread holds a lock (logging's, say) can
    leave the child waiting on it forever. 500 jobs, each taking logging's
    locks in the child, while threads here hammer the same logger and locks."""
    log, sink = h.CHILD_LOG, h.CHILD_LOG_SINK
    stop = threading.Event()
    counts = [0, 0]

    def hammer_logging() -> None:
        while not stop.is_set():
            for _ in range(20):
                log.warning("parent thread logging %d", counts[0])
                logging.getLogger(f"tests.contract.hammer.{counts[0] % 50}")  # logging's module lock
                counts[0] += 1
            time.sleep(0)  # let the worker's own thread have the GIL too

    def hammer_lock() -> None:
        while not stop.is_set():
            with sink.lock:  # type: ignore[union-attr]
                counts[1] += 1
                time.sleep(0.0002)  # hold the handler's lock most of the time

    threads = [threading.Thread(target=f, daemon=True) for f in (hammer_logging, hammer_lock)]
    for t in threads:
        t.start()
    try:
        with trio.fail_after(60):
            async with running(make_worker(app, "fork", concurrency=4)):
                await _drain(app, h.logs_in_the_child, 500)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert counts[0] > 1000 and counts[1] > 1000, counts  # the threads really were busy


# --- ProcessWorker --------------------------------------------------------------------------


async def test_process_worker_runs_cpu_bound_jobs_in_parallel(app: Werk) -> None:
    # Parallelism shown by behaviour, not by a timed ratio (that is
    # benchmarks/bench_executors.py): with concurrency=2, two CPU-bound jobs
    # (pure Python, holding their own GIL) run in two different processes at
    # the same time -- each starts before the other one ends, on the database
    # clock.
    t0 = time.perf_counter()
    h.cpu_burn(200_000)
    rounds = max(50_000, int(200_000 * 0.5 / max(time.perf_counter() - t0, 1e-3)))
    with trio.fail_after(90):
        async with running(make_worker(app, "process", concurrency=2, queues=["cpu"])):
            batch = await app.enqueue_many(
                [EnqueueParams(h.cpu_burn_pid, (rounds,), {}, queue="cpu") for _ in range(2)]
            )
            ids = [j.id for j in batch if j]

            async def finished() -> bool:
                return all(j.status == "complete" for j in (await app.get_jobs(ids)).values())

            await until(finished, interval=0.1)
        jobs = await app.get_jobs(ids)
        pids = {jobs[i].result for i in ids}
        assert len(pids) == 2, f"both jobs ran in one process: {pids}"
        a, b = [(await app.get_executions(i))[0] for i in ids]
        assert a.finished_at is not None and b.finished_at is not None
        assert a.started_at < b.finished_at and b.started_at < a.finished_at, (
            f"the two CPU-bound jobs did not overlap: {a.started_at}..{a.finished_at} and "
            f"{b.started_at}..{b.finished_at}"
        )
