"""The thread executor (ThreadWorker): every handler in a worker thread.

A pool of up to ``concurrency`` long-lived threads (all started with the
pool, or, for AsyncWorker's plain functions, as calls need them) serves one
queue of calls;
async handlers (Trio or asyncio) run in the thread's own event loop. A thread
cannot be killed: on timeout, abort or shutdown the job is ended on time, the
thread is abandoned (``ctx.cancelled`` becomes true for the handler to
notice) and counted in ``stuck``. An abandoned thread keeps its place in the
pool until its handler really returns, so no more than ``concurrency``
handlers ever run at once.

Why not ``trio.to_thread.run_sync`` under a ``CapacityLimiter`` (which gives
the same guarantees): each of its calls copies the context, hands the call to
a cached thread and reports back with one ``run_sync_soon`` -- one wake-up of
the Trio loop, a byte through its wake-up socket, per job. Here a thread that
finishes while others' results wait to be delivered adds its own to them, and
one callback in the Trio thread delivers the lot (the measurements:
benchmarks/README.md, "Measurements behind the runtime's choices").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import outcome
import trio

from .._logging import current_job
from ..errors import WerkError
from . import HandlerKind, JobCall, encoded

logger = logging.getLogger("werk_trio.worker")

__all__ = ["ThreadExecutor"]


def _in_thread(call: JobCall, job: tuple[str, str, int] | None, serializer: Any) -> outcome.Outcome[str]:
    """One attempt, in a pool thread: the result encoded here, or the error
    (a BaseException too: ``run`` raises it in the Trio task)."""
    # the runner's current job, for the log records made in this thread (a
    # Trio or asyncio handler's loop copies it into its tasks)
    token = current_job.set(job)
    try:
        value = _call(call)
    except BaseException as exc:
        return outcome.Error(exc)
    finally:
        current_job.reset(token)
    return encoded(serializer, value, call.function)


def _call(call: JobCall) -> Any:
    args = call.positional()
    if call.kind == HandlerKind.TRIO:
        return trio.run(functools.partial(call.func, *args, **call.kwargs))
    if call.kind == HandlerKind.ASYNCIO:
        return asyncio.run(call.func(*args, **call.kwargs))
    return call.func(*args, **call.kwargs)


class _Call:
    """One call in the pool: who waits for it, and whether it was abandoned."""

    __slots__ = ("abandoned", "call", "done", "job", "started", "task")

    def __init__(self, call: JobCall, task: trio.lowlevel.Task) -> None:
        self.call = call
        self.job = current_job.get()
        self.task = task
        self.started = False
        self.done = False
        self.abandoned = False

    def cancelled(self) -> bool:  # ctx.cancelled, read from the handler's thread
        return self.abandoned


class ThreadExecutor:
    name = "thread"

    def __init__(self, concurrency: int, serializer: Any = None, *, eager: bool = True) -> None:
        self.concurrency = concurrency
        #: Encodes results, in the handler's thread (the app's serializer: a
        #: Worker sets it when not given).
        self.serializer: Any = serializer
        #: Start every thread with the pool (ThreadWorker: the threads will be
        #: needed), or only as calls need them (AsyncWorker's plain functions).
        self.eager = eager
        #: Threads abandoned after a timeout/abort/shutdown that have not returned yet.
        self.stuck = 0
        self._lock = threading.Lock()
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._results: list[tuple[_Call, outcome.Outcome[Any]]] = []
        self._delivery_due = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call
        self._queued = 0  # calls no thread has taken yet

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self._token = trio.lowlevel.current_trio_token()
        # a queue per run: a thread still stuck in a handler from an earlier run
        # takes its stop signal from that run's queue, not from this one
        calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._calls = calls
        self._threads = []
        self._idle = self._queued = 0
        if self.eager:
            for _ in range(self.concurrency):
                self._start_thread()
        try:
            yield
        finally:
            # threads exit once they reach the end of the queue; an abandoned
            # one only when its handler returns (daemon threads: never waited for)
            for _ in self._threads:
                calls.put(None)
            self._threads = []
            self._token = None

    @property
    def threads_started(self) -> int:
        """Pool threads started in this run (they start as calls need them)."""
        return len(self._threads)

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._serve, args=(self._calls,), name=f"werk-thread-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _serve(self, calls: queue.SimpleQueue[_Call | None]) -> None:
        """A pool thread: run calls until told to stop."""
        token = self._token
        assert token is not None
        while True:
            with self._lock:
                self._idle += 1
            item = calls.get()
            with self._lock:
                self._idle -= 1
                if item is None:
                    return
                self._queued -= 1
                if item.abandoned:  # its job ended while it waited: never start it
                    continue
                item.started = True
            result = _in_thread(item.call, item.job, self.serializer)
            # the waiting task is woken with the attempt's outcome as its value;
            # a BaseException (SystemExit out of the handler) is raised in it
            wake: outcome.Outcome[Any] = (
                result if type(result) is outcome.Error and not isinstance(result.error, Exception)
                else outcome.Value(result)
            )
            with self._lock:
                item.done = True
                if item.abandoned:  # its job already ended: nobody waits
                    self.stuck -= 1
                    continue
                self._results.append((item, wake))
                if self._delivery_due:
                    continue  # a delivery is on its way and will take this one too
                self._delivery_due = True
            try:
                token.run_sync_soon(self._deliver)
            except trio.RunFinishedError:
                return

    def _deliver(self) -> None:
        """In the Trio thread: wake every task whose call has returned."""
        with self._lock:
            results, self._results = self._results, []
            self._delivery_due = False
        for item, wake in results:
            if not item.abandoned:
                trio.lowlevel.reschedule(item.task, wake)

    async def run(self, call: JobCall) -> outcome.Outcome[str]:
        if self._token is None:
            raise WerkError(
                "the thread pool is not running: "
                "run jobs inside `async with executor.running():` (Worker.run does)"
            )
        await trio.lowlevel.checkpoint_if_cancelled()
        item = _Call(call, trio.lowlevel.current_task())
        if call.ctx is not None:
            call.ctx._cancelled = item.cancelled

        def abort(_: Any) -> trio.lowlevel.Abort:
            with self._lock:
                item.abandoned = True
                running = item.started and not item.done
                if running:
                    self.stuck += 1
            if running:
                logger.warning(
                    "a %s handler thread did not stop on cancel; abandoned (it keeps its slot)",
                    getattr(call.func, "__qualname__", call.func),
                )
            return trio.lowlevel.Abort.SUCCEEDED

        with self._lock:
            # threads start on demand, up to the limit: one more when the calls
            # waiting outnumber the idle threads (an abandoned thread keeps its
            # place until it returns, so it still counts against the limit)
            self._queued += 1
            grow = self._queued > self._idle and len(self._threads) < self.concurrency
        if grow:
            self._start_thread()
        self._calls.put(item)
        result: outcome.Outcome[str] = await trio.lowlevel.wait_task_rescheduled(abort)
        return result
