"""The fork executor (ForkWorker): a freshly forked process for every job.

Forks come from a fork server (``_forkserver.py``), a clean single-threaded
interpreter started with the worker, so a fork never copies a lock held by
one of the worker's threads; the server imports each job's module before
forking, so children start in milliseconds. The worker claims nothing until
the server is up and has imported the preload modules (the registered tasks'
and ``task_modules``), so that start-up never counts against a job's
``_timeout``; a module first named by a job is imported at that job's start.
The parent talks to each child over its own socket: the request goes down,
the reply (result already encoded, or the exception with its traceback)
comes back, read while the child runs, so a large result cannot block it.

Stopping a job (timeout, abort, shutdown): SIGTERM, up to ``sigterm_grace``
seconds, then SIGKILL; the wait is shielded, so a child that ignores SIGTERM
is gone at ``timeout + sigterm_grace``. A child that dies on its own fails the
attempt with an error naming its exit code or signal. The server reaps every
child: no zombies, no leaked descriptors.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from ..errors import WerkError
from . import ChildDied, JobCall, child_request, describe_exit, reply_to_result

__all__ = ["ForkExecutor"]

logger = logging.getLogger("werk_trio.worker")

_LEN = struct.Struct("!Q")


@dataclass
class _Child:
    token: int
    pid: int | None = None
    exitcode: int | None = None
    started: trio.Event = field(default_factory=trio.Event)
    exited: trio.Event = field(default_factory=trio.Event)


class ForkExecutor:
    name = "fork"

    def __init__(self, concurrency: int, serializer: Any, *, sigterm_grace: float = 5.0,
                 preload: list[str] | None = None) -> None:
        self.limiter = trio.CapacityLimiter(concurrency)
        self.serializer = serializer
        self.sigterm_grace = sigterm_grace
        self.preload = list(preload or [])
        self._ctrl: trio.socket.SocketType | None = None
        self._children: dict[int, _Child] = {}
        self._tokens = itertools.count(1)
        self._send_lock = trio.Lock()
        self._ready = trio.Event()
        self.forks = 0
        self.killed = 0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "werk_trio.executors._forkserver", str(child.fileno())],
                pass_fds=[child.fileno()],
            )
        finally:
            child.close()
        self._ctrl = trio.socket.from_stdlib_socket(parent)
        await self._ctrl.send(pickle.dumps(("init", list(sys.path), self.preload)))
        try:
            async with trio.open_nursery() as inner:
                inner.start_soon(self._read_control)
                # Starting an interpreter and importing the preload modules takes
                # seconds on a busy machine: claim no job (whose _timeout would
                # pay for it) before the server can fork.
                await self._ready.wait()
                try:
                    yield
                finally:
                    inner.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                self._ctrl.close()  # EOF: the server kills what is left and exits
                self._ctrl = None
                with trio.move_on_after(5):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                for state in self._children.values():
                    state.exited.set()

    async def _read_control(self) -> None:
        assert self._ctrl is not None
        while True:
            msg = await self._ctrl.recv(1 << 16)
            if not msg:
                logger.error("the fork server exited")
                self._ready.set()  # run() then fails each job: the server is gone
                for state in self._children.values():
                    state.started.set()
                    state.exited.set()
                return
            kind, token, value = pickle.loads(msg)
            if kind == "ready":
                self._ready.set()
                continue
            child = self._children.get(token)
            if child is None:
                continue
            if kind == "pid":
                child.pid = value
                child.started.set()
            elif kind == "exit":
                child.exitcode = value
                child.started.set()
                child.exited.set()

    async def run(self, call: JobCall) -> Any:
        if self._ctrl is None:
            raise WerkError(
                "the fork server is not running: "
                "run jobs inside `async with executor.running():` (Worker.run does)"
            )
        payload = pickle.dumps(child_request(call, self.serializer))
        module = getattr(call.func, "__module__", None)
        async with self.limiter:
            state = _Child(next(self._tokens))
            self._children[state.token] = state
            ours, theirs = socket.socketpair()
            try:
                async with self._send_lock:
                    await self._ctrl.sendmsg(
                        [pickle.dumps(("run", state.token, module))],
                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", theirs.fileno()))],
                    )
                theirs.close()
                self.forks += 1
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
                try:
                    reply = await self._talk(stream, payload)
                    await state.exited.wait()
                except BaseException:
                    with trio.CancelScope(shield=True):
                        await self._stop_child(state)
                    raise
                finally:
                    with trio.CancelScope(shield=True):
                        await stream.aclose()
            finally:
                theirs.close()
                ours.close()
                self._children.pop(state.token, None)
        if reply is None:
            raise ChildDied(f"the job's forked process {describe_exit(state.exitcode)}")
        return reply_to_result(pickle.loads(reply))

    async def _talk(self, stream: trio.SocketStream, payload: bytes) -> bytes | None:
        """Send the request, then read the whole reply; None if the child died first."""
        try:
            await stream.send_all(_LEN.pack(len(payload)) + payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        head = await _receive_exact(stream, _LEN.size)
        if head is None:
            return None
        (size,) = _LEN.unpack(head)
        return await _receive_exact(stream, size)

    async def _stop_child(self, state: _Child) -> None:
        """SIGTERM, ``sigterm_grace``, then SIGKILL (shielded by the caller)."""
        with trio.move_on_after(5):
            await state.started.wait()
        if state.pid is None or state.exited.is_set():
            return
        self.killed += 1
        _signal(state.pid, signal.SIGTERM)
        with trio.move_on_after(self.sigterm_grace):
            await state.exited.wait()
        if not state.exited.is_set():
            _signal(state.pid, signal.SIGKILL)
            with trio.move_on_after(5):
                await state.exited.wait()


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


async def _receive_exact(stream: trio.SocketStream, n: int) -> bytes | None:
    chunks = []
    while n:
        try:
            chunk = await stream.receive_some(min(n, 1 << 20))
        except trio.BrokenResourceError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
