"""Workers: one Worker runtime, presets per executor.

``await worker.run()`` opens one nursery of actors (see ``werk_trio/actors/``):
listener, poller, ``concurrency`` runners, completer, callbacks, heartbeater,
sweeper, abort-watcher and signals. ``await nursery.start(worker.run)``
returns once the worker row exists and LISTEN is issued.

Stopping:

* :meth:`Worker.stop` (also the first SIGTERM/SIGINT): stop claiming, give
  running jobs ``shutdown_timeout`` seconds, cancel the rest (requeued
  without spending an attempt), flush the completer, deregister, return.
* ``stop(now=True)`` (a second signal) or cancelling the nursery that runs
  ``run()``: the same without the grace period.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from ._logging import install_record_factory
from ._progress import WorkerProgress
from .actors.abort_watcher import AbortWatcher
from .actors.callbacks import Callbacks
from .actors.completer import OUTCOMES_PER_SLOT, Completer, Outcome
from .actors.heartbeater import Heartbeater
from .actors.ledger import Ledger, RunningJob
from .actors.listener import QueueListener
from .actors.poller import Poller, Row
from .actors.runner import Hooks, Runner
from .actors.signals import SignalHandler
from .actors.sweeper import Sweeper
from .actors.wiring import Db, DbHealth, Wake, WorkerSettings, interval
from .app import Werk
from .errors import ConfigError
from .executors import Executor
from .executors.inline import InlineExecutor
from .executors.thread import ThreadExecutor
from .jobs import DequeueStrategy

if TYPE_CHECKING:
    import uuid

    from .metrics import WorkerMetrics

__all__ = [
    "AsyncWorker", "BaseWorker", "ForkWorker", "ProcessWorker", "ThreadWorker", "Worker",
    "WorkerSettings", "worker_class",
]  # fmt: skip

logger = logging.getLogger("werk_trio.worker")

Hook = Callable[..., Any]



def _hooks(name: str, hooks: Sequence[Hook] | None) -> list[Hook]:
    out = list(hooks or [])
    for hook in out:
        if not callable(hook):
            raise ConfigError(f"{name} hooks must be callables, got {hook!r}")
    return out


class Worker:
    """A worker of one executor. Parameters and defaults as on the workers page;
    ``None`` means the app's WerkConfig value (the documented default)."""

    def __init__(
        self,
        app: Werk,
        queues: Sequence[str] = ("default",),
        concurrency: int = 10,
        heartbeat_interval: float | None = None,
        poll_interval: float | None = None,
        dequeue_strategy: DequeueStrategy = DequeueStrategy.Priority,
        burst: bool = False,
        before_process: Sequence[Hook] | None = None,
        after_process: Sequence[Hook] | None = None,
        sweep_interval: float | None = None,
        abort_interval: float | None = None,
        shutdown_timeout: float | None = None,
        *,
        executor: Executor | None = None,
        name: str | None = None,
        handle_signals: bool = True,
        claim_batch: int | None = None,
        prefetch: int | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        metrics: WorkerMetrics | None = None,
    ) -> None:
        if not isinstance(app, Werk):
            raise ConfigError(f"app must be a Werk instance, got {type(app).__name__}")
        if prefetch is None and isinstance(concurrency, int):
            prefetch = self._default_prefetch(concurrency)
        #: Everything this worker was configured with (frozen, checked once).
        #: ``prefetch``: jobs claimed ahead of free runners, waiting in the
        #: hand-off channel, so a runner that finishes starts the next job
        #: without waiting for a claim round trip; ``capacity`` = running +
        #: prefetched, the most jobs held.
        self.settings = WorkerSettings.resolve(
            app.config, queues=queues, concurrency=concurrency, prefetch=prefetch,
            claim_batch=claim_batch, heartbeat_interval=heartbeat_interval,
            poll_interval=poll_interval, sweep_interval=sweep_interval,
            abort_interval=abort_interval, shutdown_timeout=shutdown_timeout,
            dequeue_strategy=dequeue_strategy, burst=burst, name=name,
        )  # fmt: skip
        self.app = app
        self.hooks = Hooks(
            _hooks("before_process", before_process), _hooks("after_process", after_process), []
        )
        self.handle_signals = handle_signals
        self.executor: Executor = executor if executor is not None else self._default_executor()
        if isinstance(self.executor, InlineExecutor | ThreadExecutor) and self.executor.serializer is None:
            self.executor.serializer = app.serializer  # results are encoded where they are made
        #: Callbacks run in the worker's loop; the AsyncWorker's own executor serves.
        self.executor_inline = (
            self.executor if isinstance(self.executor, InlineExecutor)
            else InlineExecutor(serializer=app.serializer)
        )
        self.shutdown_deadline: float | None = None
        self.burst_done = trio.Event()
        self.started = trio.Event()
        self.stopped = trio.Event()
        self._claim_scope: trio.CancelScope | None = None
        self._runner_scope: trio.CancelScope | None = None
        self._stopping = False
        self._running_flag = False
        self._init_metrics(metrics_port, metrics_host, metrics)
        self._wire()

    def _wire(self) -> None:
        """Build the actors, each with what it uses (the wiring diagram of
        docs/architecture.md; ``run`` starts them)."""
        settings, metrics = self.settings, self.metrics
        self.db = db = Db(self.app)
        self.ledger = ledger = Ledger()
        self.wake = wake = Wake()
        self.health = health = DbHealth()
        self.slots = trio.Semaphore(settings.capacity)
        # runners -> completer: bounded, so a stalled database stops claiming
        self._outcomes_send, outcomes_recv = trio.open_memory_channel[Outcome](
            OUTCOMES_PER_SLOT * settings.capacity
        )
        # completer -> callbacks
        callbacks_send, callbacks_recv = trio.open_memory_channel[tuple[Outcome, str]](settings.capacity)
        self.progress = WorkerProgress(db, settings.id)  # ctx.set_progress (flow control)
        self.completer = Completer(db, settings, outcomes_recv, callbacks_send, ledger, wake, metrics)
        self.callbacks = Callbacks(self.app, settings, callbacks_recv, self.executor_inline, self)
        self.poller = Poller(db, settings, wake, self.slots, ledger, self.burst_done, metrics)
        self.listener = QueueListener(db, settings, wake, self.poller)
        self.heartbeater = Heartbeater(db, settings, ledger, health, self.register)
        self.sweeper = Sweeper(self.app, settings, health)
        self.abort_watcher = AbortWatcher(db, settings, ledger)

    # --- settings, as attributes ------------------------------------------------

    @property
    def worker_type(self) -> str:
        """What the workers table shows: the executor's name (async, thread, process, fork)."""
        return self.executor.name

    @property
    def id(self) -> uuid.UUID:
        return self.settings.id

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def queues(self) -> list[str]:
        return list(self.settings.queues)

    @property
    def concurrency(self) -> int:
        return self.settings.concurrency

    @property
    def prefetch(self) -> int:
        return self.settings.prefetch

    @property
    def capacity(self) -> int:
        return self.settings.capacity

    @property
    def claim_batch(self) -> int:
        return self.settings.claim_batch

    @property
    def heartbeat_interval(self) -> float:
        return self.settings.heartbeat_interval

    @property
    def poll_interval(self) -> float:
        return self.settings.poll_interval

    @property
    def sweep_interval(self) -> float:
        return self.settings.sweep_interval

    @property
    def abort_interval(self) -> float:
        return self.settings.abort_interval

    @property
    def shutdown_timeout(self) -> float:
        return self.settings.shutdown_timeout

    @property
    def dequeue_strategy(self) -> DequeueStrategy:
        return self.settings.dequeue_strategy

    @property
    def burst(self) -> bool:
        return self.settings.burst

    @property
    def before_process(self) -> list[Hook]:
        return self.hooks.before_process

    @property
    def after_process(self) -> list[Hook]:
        return self.hooks.after_process

    @property
    def exception_handlers(self) -> list[Hook]:
        return self.hooks.exception_handlers

    # --- the ledger, read-only ---------------------------------------------------

    @property
    def stats(self) -> Mapping[str, int]:
        """Outcomes so far by kind (complete, fail, fail_final, abort, requeue, snooze); read-only."""
        return self.ledger.stats

    @property
    def running(self) -> Mapping[uuid.UUID, RunningJob]:
        """The jobs running now, by id; read-only."""
        return self.ledger.running

    def _init_metrics(self, port: int | None, host: str, metrics: WorkerMetrics | None) -> None:
        """``metrics_port``: serve this worker's counters (werk_trio.metrics) on
        ``http://metrics_host:port/metrics`` (0: a free port; see metrics_url)."""
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                                 or not 0 <= port <= 65535):
            raise ConfigError(f"metrics_port must be an int in 0..65535, got {port!r}")
        if not isinstance(host, str) or not host or any(c.isspace() for c in host):
            raise ConfigError(f"metrics_host must be an address like 127.0.0.1, got {host!r}")
        if metrics is None and port is not None:
            from .metrics import WorkerMetrics

            metrics = WorkerMetrics()
        self.metrics = metrics
        self.metrics_port, self.metrics_host = port, host
        #: The address the metrics are served on, once the worker runs.
        self.metrics_url: str | None = None

    async def _serve_metrics(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        from hypercorn.config import Config
        from hypercorn.trio import serve

        assert self.metrics is not None
        config = Config()
        host = f"[{self.metrics_host}]" if ":" in self.metrics_host else self.metrics_host
        config.bind = [f"{host}:{self.metrics_port}"]
        config.accesslog = None
        config.errorlog = logger
        config.include_server_header = False
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(functools.partial(serve, self.metrics.asgi, config))  # type: ignore[arg-type]
            logger.info("worker %s: metrics on %s/metrics", self.name, binds[0])
            task_status.started(f"{binds[0]}/metrics")

    def _default_prefetch(self, concurrency: int) -> int:
        """No prefetch by default: a claimed job starts at once."""
        return 0

    def _default_executor(self) -> Executor:
        # sync handlers go to threads: allow ``concurrency`` of them at once
        # (Trio's default thread limiter would cap them at 40)
        return InlineExecutor(thread_limit=self.concurrency, serializer=self.app.serializer)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} queues={self.queues} concurrency={self.concurrency}>"

    # --- hooks and handlers (the workers page) -------------------------------

    def add_before_process(self, hook: Hook) -> None:
        """Run ``hook(ctx)`` (sync or async) before each job."""
        self.before_process.extend(_hooks("before_process", [hook]))

    def add_after_process(self, hook: Hook) -> None:
        """Run ``hook(ctx)`` (sync or async) after each job; ``ctx.exception`` is set on failure."""
        self.after_process.extend(_hooks("after_process", [hook]))

    def push_exception_handler(self, handler: Hook) -> None:
        """Push ``handler(job, exc)`` (sync or async); called most recent first on failures."""
        if not callable(handler):
            raise ConfigError(f"exception handler must be callable, got {handler!r}")
        self.exception_handlers.append(handler)

    def pop_exception_handler(self) -> Hook:
        """Remove and return the most recently pushed handler (IndexError when empty)."""
        if not self.exception_handlers:
            raise IndexError("pop_exception_handler: no exception handler to pop")
        return self.exception_handlers.pop()

    def nudge(self) -> None:
        """Wake the poller (coalesced: many nudges cost one claim)."""
        self.wake.nudge()

    # --- registration -------------------------------------------------------------

    async def register(self) -> None:
        """Write this worker's row (``run`` calls it at start). Raises what the
        database raises. Cancellation: one statement, registered or not."""
        sql = self.app.sql
        async with self.app.pool.connection() as conn:
            await conn.execute(
                sql.REGISTER_WORKER,
                {
                    "id": self.id, "name": self.name, "hostname": socket.gethostname(),
                    "pid": os.getpid(), "worker_type": self.worker_type, "queues": self.queues,
                    "concurrency": self.concurrency, "heartbeat_interval": self.heartbeat_interval,
                },
            )  # fmt: skip

    async def _deregister(self) -> None:
        """Requeue (unspent) jobs claimed but never run, then mark the worker row
        stopped (listed for ``stopped_worker_retention``, then deleted by a sweep)."""
        sql = self.app.sql
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            try:
                async with self.app.pool.connection() as conn, conn.transaction():
                    cur = await conn.execute(
                        sql.RELEASE_WORKER_JOBS, {"id": self.id}
                    )
                    released = len(await cur.fetchall())
                    await conn.execute(
                        sql.DEREGISTER_WORKER,
                        {"id": self.id, "retention": float(self.app.config.stopped_worker_retention)},
                    )
                if released:
                    logger.info(
                        "worker %s: %d job(s) still active for it at exit (claimed but never run); "
                        "requeued", self.name, released,
                    )  # fmt: skip
            except Exception as ex:  # the sweeper of another worker cleans up after us
                logger.warning("could not deregister worker %s: %s", self.name, ex)

    # --- stopping -------------------------------------------------------------------

    def stop(self, *, now: bool = False) -> None:
        """Stop claiming; running jobs get ``shutdown_timeout`` (or none with ``now``)."""
        if not self._stopping:
            self._stopping = True
            deadline = trio.current_time() + (0 if now else self.settings.shutdown_timeout)
            self.shutdown_deadline = deadline
            self.ledger.shut_down(deadline)
            if self._claim_scope is not None:
                self._claim_scope.cancel()
            if self._runner_scope is not None:
                self._runner_scope.deadline = deadline + 1.0  # hooks' last chance
        elif now:
            self.shutdown_deadline = trio.current_time()
            self.ledger.shut_down(self.shutdown_deadline)
            if self._runner_scope is not None:
                self._runner_scope.cancel()

    # --- the actor nursery ------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until stopped (or, with ``burst``, until nothing is left to do).

        Cancellation: cancelling the caller stops at once -- running jobs are
        requeued without spending an attempt, outcomes are flushed (shielded,
        bounded) and the worker deregisters before the Cancelled propagates.
        """
        if self._running_flag:
            raise ConfigError(f"{self!r} is already running; create one worker object per run")
        self._running_flag = True
        install_record_factory()  # log records made while a job runs carry it
        if not self.app.connected:
            await self.app.connect()
        try:
            async with trio.open_nursery() as services:
                # signals first: a SIGTERM once the worker row exists is a clean
                # stop (deregistered, exit 0), not the default death leaving the row
                if self.handle_signals and threading.current_thread() is threading.main_thread():
                    await services.start(SignalHandler(self.settings, self.stop).run)
                self.ledger.reset()  # a new registration holds nothing yet
                await self.register()
                self.health.reset()
                logger.info(
                    "worker %s started: queues=%s concurrency=%d executor=%s",
                    self.name, ",".join(self.settings.queues), self.concurrency, self.executor.name,
                )
                await services.start(self.heartbeater.run)
                await services.start(self.sweeper.run)
                await services.start(self.abort_watcher.run)
                await services.start(self.callbacks.run)  # until the completer closes its channel
                if self.metrics_port is not None:
                    self.metrics_url = await services.start(self._serve_metrics)
                async with trio.open_nursery() as outflow:
                    # the completer returns by itself once every runner is gone
                    # and their outcomes are written; a stop gives it 10 s, then
                    # the shielded flush below writes what is left
                    await outflow.start(self.completer.run)
                    async with self._executors():
                        await self._pipeline(task_status)
                    outflow.cancel_scope.deadline = trio.current_time() + 10
                services.cancel_scope.cancel()
        finally:
            await self.completer.flush_all()
            await self._deregister()
            self.stopped.set()
            logger.info("worker %s stopped (%s)", self.name, self.ledger.summary())

    @asynccontextmanager
    async def _executors(self) -> AsyncIterator[None]:
        """The job executor and (when it is another one) the callbacks' inline executor, running."""
        async with self.executor.running():
            if self.executor_inline is self.executor:
                yield
            else:
                async with self.executor_inline.running():
                    yield

    async def _pipeline(self, task_status: trio.TaskStatus[None]) -> None:
        """Poller -> runners (bounded to ``capacity``); runners -> completer
        (``OUTCOMES_PER_SLOT * capacity``; each runner holds a clone, the original
        closes here once they all have theirs)."""
        send, recv = trio.open_memory_channel[Row](self.capacity)
        runner = functools.partial(
            Runner, self.app, self.db, self.settings, self.executor, self.ledger, self.slots,
            self.wake,
        )
        async with trio.open_nursery() as runners:
            self._runner_scope = runners.cancel_scope
            if self.shutdown_deadline is not None:
                runners.cancel_scope.deadline = self.shutdown_deadline + 1.0
            async with recv, self._outcomes_send as outcomes:
                for _ in range(self.concurrency):
                    job_runner = runner(outcomes.clone(), self.hooks, self.progress, self.metrics, self)
                    await runners.start(job_runner.run, recv.clone())
            # `send` closes however claiming ends: a stop that came before this
            # point cancels claiming before the poller (which closes it) starts,
            # and the runners would wait for jobs until their deadline
            async with send, trio.open_nursery() as claiming:
                self._claim_scope = claiming.cancel_scope
                if self._stopping:
                    claiming.cancel_scope.cancel()
                if self.app.config.use_listen_notify:
                    await claiming.start(self.listener.run)
                await claiming.start(self.poller.run, send)
                self.started.set()
                task_status.started()
                if self.settings.burst:
                    await self.burst_done.wait()
                    claiming.cancel_scope.cancel()
            # claiming stopped: the poller closed `send`; runners finish and exit


class AsyncWorker(Worker):
    """Trio coroutines in the worker's loop; plain functions in threads; asyncio
    coroutines (marked) through trio-asyncio. Best for I/O-bound work."""

    worker_type = "async"


class ThreadWorker(Worker):
    """Each handler in a thread of a pool of up to ``concurrency`` threads (``executors/thread.py``)."""


    def _default_executor(self) -> Executor:
        return ThreadExecutor(self.concurrency, self.app.serializer)


class ProcessWorker(Worker):
    """Handlers in a pool of ``concurrency`` long-lived child processes (trio-parallel).
    For CPU-bound work: true parallelism. A timeout or abort kills that child and
    the pool replaces it."""


    def _default_prefetch(self, concurrency: int) -> int:
        # a child round trip costs more than a claim: keep one job ready per child
        return concurrency

    def _default_executor(self) -> Executor:
        from .executors.process import ProcessExecutor

        return ProcessExecutor(self.concurrency, self.app.serializer)


class ForkWorker(Worker):
    """A freshly forked process per job (maximum isolation). On timeout, abort or
    shutdown the child gets SIGTERM, then SIGKILL after ``sigterm_grace`` seconds."""


    def _default_prefetch(self, concurrency: int) -> int:
        # a fork per job costs more than a claim: keep one job ready per slot
        return concurrency

    def __init__(self, app: Werk, *args: Any, sigterm_grace: float | None = None, **kwargs: Any) -> None:
        self.sigterm_grace = interval(
            "sigterm_grace", sigterm_grace, app.config.sigterm_grace, allow_zero=True
        )
        super().__init__(app, *args, **kwargs)

    def _default_executor(self) -> Executor:
        from .executors.fork import ForkExecutor

        preload = sorted({fn.__module__ for fn in self.app.tasks.registered().values()
                          if getattr(fn, "__module__", None) not in (None, "__main__")}
                         | set(self.app.config.task_modules))
        return ForkExecutor(self.concurrency, self.app.serializer, sigterm_grace=self.sigterm_grace,
                            preload=preload)


#: pgwerk's name of the class every worker type shares (the same class).
BaseWorker = Worker


#: Every worker type (the CLI's ``--worker-type`` choices, ``worker_class``,
#: ``app.run``, ``run_until_idle``): its preset class.
WORKER_CLASSES: dict[str, type[Worker]] = {
    "async": AsyncWorker, "thread": ThreadWorker, "process": ProcessWorker, "fork": ForkWorker,
}  # fmt: skip
WORKER_TYPES = tuple(WORKER_CLASSES)


def worker_class(worker_type: str) -> type[Worker]:
    """The worker class for ``async``, ``thread``, ``process`` or ``fork``."""
    try:
        return WORKER_CLASSES[worker_type]
    except KeyError:
        raise ConfigError(
            f"unknown worker type {worker_type!r}; choose one of {', '.join(WORKER_TYPES)}"
        ) from None
