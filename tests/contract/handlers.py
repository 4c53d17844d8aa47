"""Job handlers for the executor contract suite.

Module level and importable on their own: ProcessWorker children are spawned
and re-import this module; ForkWorker children are forked from a fork server
that imported it. So nothing here may depend on state set up by a test in the
worker process -- what a handler must tell the test travels through the job's
result, its error, or files in a directory the test passes as an argument
(``<dir>/<name>``: the handler's pid when it started, a marker when it got
past a point it should never reach).

The in-process-only state at the bottom (:class:`Gauge`, the thread-handler
events) is used by ThreadWorker tests alone, where handlers run in the test's
own process.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import trio

from werk_trio import Cancel, Context, SerializationError, Snooze, asyncio_handler

# --- files the handlers leave for the test ----------------------------------------


def note(directory: str, name: str, text: str = "") -> None:
    """Write ``<directory>/<name>`` atomically (the test polls for it)."""
    path = Path(directory) / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def note_pid(directory: str, name: str) -> None:
    note(directory, name, str(os.getpid()))


# --- results -------------------------------------------------------------------------


def _payload(kind: str, a: int, b: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "sum": a + b,
        "pid": os.getpid(),
        "nested": {"list": [1, 2.5, None, True, "zwölf"], "extra": extra},
    }


async def trio_add(a: int, b: int, **extra: Any) -> dict[str, Any]:
    await trio.sleep(0)
    return _payload("trio", a, b, extra)


def sync_add(a: int, b: int, **extra: Any) -> dict[str, Any]:
    return _payload("sync", a, b, extra)


@asyncio_handler
async def asyncio_add(a: int, b: int, **extra: Any) -> dict[str, Any]:
    await asyncio.sleep(0)
    asyncio.get_running_loop()  # raises outside asyncio
    return _payload("asyncio", a, b, extra)


ADD = {"trio": trio_add, "sync": sync_add, "asyncio": asyncio_add}


# --- Context ---------------------------------------------------------------------------


def _describe(ctx: Context, kind: str, tag: str) -> dict[str, Any]:
    job = ctx.job
    return {
        "kind": kind,
        "tag": tag,
        "is_context": isinstance(ctx, Context),
        "job_id": str(job.id),
        "function": job.function,
        "queue": job.queue,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "args": job.args,
        "kwargs": job.kwargs,
        "worker_id": str(ctx.worker_id),
        "worker_name": ctx.worker_name,
        "cancelled": ctx.cancelled,
        "pid": os.getpid(),
    }


async def trio_ctx(ctx, tag: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    await trio.sleep(0)
    return _describe(ctx, "trio", tag)


def sync_ctx(ctx, tag: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return _describe(ctx, "sync", tag)


@asyncio_handler
async def asyncio_ctx(ctx, tag: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    await asyncio.sleep(0)
    return _describe(ctx, "asyncio", tag)


# Asked for by annotation rather than by the name ``ctx``.
async def trio_annotated(context: Context, tag: str) -> dict[str, Any]:
    return _describe(context, "trio", tag)


def sync_annotated(context: Context, tag: str) -> dict[str, Any]:
    return _describe(context, "sync", tag)


@asyncio_handler
async def asyncio_annotated(context: Context, tag: str) -> dict[str, Any]:
    return _describe(context, "asyncio", tag)


CTX = {"trio": trio_ctx, "sync": sync_ctx, "asyncio": asyncio_ctx}
ANNOTATED = {"trio": trio_annotated, "sync": sync_annotated, "asyncio": asyncio_annotated}


# --- errors ------------------------------------------------------------------------------


class HandlerBoom(Exception):
    """The handlers' own exception type (module level, so it pickles)."""


def deepest_helper_frame(kind: str, n: int) -> None:
    raise HandlerBoom(f"boom from {kind} with n={n}")


def middle_helper_frame(kind: str, n: int) -> None:
    deepest_helper_frame(kind, n + 1)


async def trio_raises(n: int) -> None:
    await trio.sleep(0)
    middle_helper_frame("trio", n)


def sync_raises(n: int) -> None:
    middle_helper_frame("sync", n)


@asyncio_handler
async def asyncio_raises(n: int) -> None:
    await asyncio.sleep(0)
    middle_helper_frame("asyncio", n)


RAISES = {"trio": trio_raises, "sync": sync_raises, "asyncio": asyncio_raises}


# --- timeouts, aborts, shutdown ------------------------------------------------------------


async def trio_sleep_then_mark(directory: str, name: str, seconds: float) -> str:
    """Note the pid, sleep (cancellable), then leave a marker that proves it ran on."""
    note_pid(directory, name + ".pid")
    try:
        await trio.sleep(seconds)
    except BaseException:
        note(directory, name + ".interrupted")
        raise
    note(directory, name + ".marker", "ran past its timeout")
    return "finished"


def sync_sleep_then_mark(directory: str, name: str, seconds: float) -> str:
    """The same, blocking: only killing the process can stop it."""
    note_pid(directory, name + ".pid")
    time.sleep(seconds)
    note(directory, name + ".marker", "ran past its timeout")
    return "finished"


@asyncio_handler
async def asyncio_sleep_then_mark(directory: str, name: str, seconds: float) -> str:
    note_pid(directory, name + ".pid")
    try:
        await asyncio.sleep(seconds)
    except BaseException:
        note(directory, name + ".interrupted")
        raise
    note(directory, name + ".marker", "ran past its timeout")
    return "finished"


SLEEP_THEN_MARK = {"trio": trio_sleep_then_mark, "sync": sync_sleep_then_mark,
                   "asyncio": asyncio_sleep_then_mark}  # fmt: skip


def ignore_sigterm_then_sleep(directory: str, name: str, seconds: float) -> str:
    """A child that will not go on SIGTERM: only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    note_pid(directory, name + ".pid")
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # time.sleep would be cut short by no signal, but be sure
        time.sleep(0.01)
    note(directory, name + ".marker", "outlived SIGTERM and the grace period")
    return "finished"


# --- crashes ----------------------------------------------------------------------------


def crash(ctx: Context, how: str, directory: str) -> str:
    """Die the way ``how`` says on the first attempt; succeed on any later one."""
    if ctx.job.attempts > 1:
        return f"attempt {ctx.job.attempts} ran normally in pid {os.getpid()}"
    note_pid(directory, f"{how}.pid")
    if how == "exit3":
        os._exit(3)
    if how == "segfault":
        ctypes.string_at(0)  # a real invalid read: SIGSEGV
    if how == "sigkill":  # the test kills us from outside
        while True:
            time.sleep(0.01)
    raise AssertionError(f"unknown crash {how!r}")


# --- sizes and serialization ---------------------------------------------------------------


def big_result(size: int) -> str:
    return "x" * (size - 1) + "!"


class Opaque:
    """A result the JSON serializer cannot encode."""

    def __repr__(self) -> str:
        return "<Opaque result>"


async def trio_unserializable() -> Any:
    return {"fine": 1, "not fine": Opaque()}


def sync_unserializable() -> Any:
    return {"fine": 1, "not fine": Opaque()}


@asyncio_handler
async def asyncio_unserializable() -> Any:
    return {"fine": 1, "not fine": Opaque()}


UNSERIALIZABLE = {"trio": trio_unserializable, "sync": sync_unserializable,
                  "asyncio": asyncio_unserializable}  # fmt: skip


def _own_serialization_error() -> SerializationError:
    """What a handler raises itself (e.g. it could not decode its own input):
    an error like any other, retried -- unlike a result that cannot be encoded."""
    return SerializationError("the handler's own input did not decode (Opaque)")


async def trio_raises_serialization_error() -> Any:
    raise _own_serialization_error()


def sync_raises_serialization_error() -> Any:
    raise _own_serialization_error()


@asyncio_handler
async def asyncio_raises_serialization_error() -> Any:
    raise _own_serialization_error()


RAISES_SERIALIZATION_ERROR = {"trio": trio_raises_serialization_error,
                              "sync": sync_raises_serialization_error,
                              "asyncio": asyncio_raises_serialization_error}  # fmt: skip


# --- throughput and isolation -----------------------------------------------------------


def noop(i: int) -> int:
    return i


#: A logger with a handler (and so a lock) of its own, writing nowhere: the
#: fork test hammers it from threads in the worker while children log to it.
CHILD_LOG = logging.getLogger("tests.contract.child")
CHILD_LOG_SINK = logging.FileHandler(os.devnull)
CHILD_LOG.addHandler(CHILD_LOG_SINK)
CHILD_LOG.propagate = False


def logs_in_the_child(i: int) -> int:
    """Take the logging module's locks in the child (a fork of a process whose
    other thread held one would hang here)."""
    logging.getLogger(f"tests.contract.child.{i % 50}")  # the logging module's lock
    CHILD_LOG.warning("child %d of pid %d", i, os.getpid())  # the handler's lock
    return i


def cpu_burn(rounds: int) -> int:
    """Pure-Python CPU work (holds the GIL the whole time)."""
    acc = 0
    for i in range(rounds):
        acc = (acc * 31 + i) % 1_000_003
    return acc


def cpu_burn_pid(rounds: int) -> int:
    """CPU work; returns the pid of the process that did it."""
    cpu_burn(rounds)
    return os.getpid()


# --- ThreadWorker: in-process state ----------------------------------------------------------


class Gauge:
    """How many thread handlers are inside their body right now, and the peak."""

    lock = threading.Lock()
    active = 0
    peak = 0
    started: list[str] = []

    @classmethod
    def reset(cls) -> None:
        with cls.lock:
            cls.active = cls.peak = 0
            cls.started = []

    @classmethod
    def enter(cls, name: str) -> None:
        with cls.lock:
            cls.active += 1
            cls.peak = max(cls.peak, cls.active)
            cls.started.append(name)

    @classmethod
    def leave(cls) -> None:
        with cls.lock:
            cls.active -= 1


#: Set by the test to let stuck thread handlers return.
RELEASE = threading.Event()
#: Names of thread handlers that saw ``ctx.cancelled`` become true.
SAW_CANCELLED: dict[str, float] = {}


def stuck_thread(ctx: Context, name: str) -> str:
    """Notice ``ctx.cancelled`` (recording when), then stay stuck until released."""
    Gauge.enter(name)
    try:
        while not ctx.cancelled:
            time.sleep(0.005)
        SAW_CANCELLED[name] = time.monotonic()
        RELEASE.wait(30)
        return "released"
    finally:
        Gauge.leave()


def counted_thread(name: str) -> str:
    Gauge.enter(name)
    try:
        time.sleep(0.02)
        return name
    finally:
        Gauge.leave()


def until_cancelled(ctx: Context, directory: str, name: str) -> str:
    """A thread handler that stops when told (the only way a thread stops)."""
    note_pid(directory, name + ".pid")
    while not ctx.cancelled:
        time.sleep(0.005)
    note(directory, name + ".cancelled", "saw ctx.cancelled")
    return "noticed"


async def trio_hang(directory: str, name: str) -> None:
    note_pid(directory, name + ".pid")
    try:
        await trio.sleep_forever()
    finally:
        note(directory, name + ".cancelled", "cancelled")


def blocking_hang(directory: str, name: str) -> None:
    """Ignores every request to stop; only a kill ends it."""
    note_pid(directory, name + ".pid")
    while True:
        time.sleep(0.01)


# --- flow control: Snooze, Cancel, progress (tests/contract/test_flow_control.py) ------
#
# A snoozing handler snoozes on its first run only: the marker file it leaves
# says it already did (the attempt number cannot: a snooze does not spend one).


def _first_run(directory: str, name: str) -> bool:
    if (Path(directory) / name).exists():
        return False
    note(directory, name, str(os.getpid()))
    return True


async def trio_snooze(ctx: Context, directory: str, seconds: float) -> dict[str, Any]:
    if _first_run(directory, "snoozed"):
        raise Snooze(seconds)
    await trio.sleep(0)
    return {"kind": "trio", "attempts": ctx.job.attempts}


def sync_snooze(ctx: Context, directory: str, seconds: float) -> dict[str, Any]:
    if _first_run(directory, "snoozed"):
        raise Snooze(seconds)
    return {"kind": "sync", "attempts": ctx.job.attempts}


@asyncio_handler
async def asyncio_snooze(ctx: Context, directory: str, seconds: float) -> dict[str, Any]:
    if _first_run(directory, "snoozed"):
        raise Snooze(seconds)
    await asyncio.sleep(0)
    return {"kind": "asyncio", "attempts": ctx.job.attempts}


SNOOZE = {"trio": trio_snooze, "sync": sync_snooze, "asyncio": asyncio_snooze}


async def trio_cancel(directory: str, reason: str) -> None:
    note(directory, "ran")
    await trio.sleep(0)
    raise Cancel(reason)


def sync_cancel(directory: str, reason: str) -> None:
    note(directory, "ran")
    raise Cancel(reason)


@asyncio_handler
async def asyncio_cancel(directory: str, reason: str) -> None:
    note(directory, "ran")
    await asyncio.sleep(0)
    raise Cancel(reason)


CANCEL = {"trio": trio_cancel, "sync": sync_cancel, "asyncio": asyncio_cancel}

# Progress: report 0.5 "halfway", wait (at most 30 s) for the test's "go"
# file, report 1.0 "done", return.


async def trio_progress(ctx: Context, directory: str) -> str:
    await ctx.set_progress(0.5, "halfway")
    with trio.move_on_after(30):
        while not (Path(directory) / "go").exists():
            await trio.sleep(0.01)
    await ctx.set_progress(1, "done")
    return "trio"


def sync_progress(ctx: Context, directory: str) -> str:
    ctx.set_progress_sync(0.5, "halfway")
    deadline = time.monotonic() + 30
    while not (Path(directory) / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    ctx.set_progress_sync(1, "done")
    return "sync"


@asyncio_handler
async def asyncio_progress(ctx: Context, directory: str) -> str:
    await ctx.set_progress(0.5, "halfway")
    deadline = time.monotonic() + 30
    while not (Path(directory) / "go").exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await ctx.set_progress(1, "done")
    return "asyncio"


PROGRESS = {"trio": trio_progress, "sync": sync_progress, "asyncio": asyncio_progress}
