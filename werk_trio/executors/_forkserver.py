"""The fork server: a small single-threaded process that forks one child per job.

A Trio program has threads, and forking a multi-threaded process can deadlock
the child on a lock some other thread held. So the ForkWorker starts this
server once (a fresh interpreter: no Trio loop, no threads, no database
connections) and asks it to fork. Modules named in requests are imported by
the server before it forks, so children inherit them and start in
milliseconds.

Protocol, on a SOCK_SEQPACKET control socket (one pickled message each):

* parent -> server: ``("init", sys_path, preload_modules)`` once, then
  ``("run", token, module_name)`` with one file descriptor attached (a stream
  socket the child talks to the parent on).
* server -> parent: ``("ready", 0, None)`` once the preload modules are
  imported, ``("pid", token, pid)`` after each fork, and
  ``("exit", token, exitcode)`` once the child is reaped (negative: killed by
  that signal).

The child reads its length-prefixed request from the job socket, runs it with
:func:`werk_trio.executors._child.run_request`, writes the length-prefixed
reply and exits. When the parent goes away (EOF on the control socket) the
server kills its children and exits.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import pickle
import select
import signal
import socket
import struct
import sys
from typing import Any

# imported here, once, so that each child inherits it instead of importing it
from ._child import run_request

_LEN = struct.Struct("!Q")


def read_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError("job socket closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _child(job_sock: socket.socket) -> None:
    try:
        (size,) = _LEN.unpack(read_exact(job_sock, _LEN.size))
        reply = run_request(read_exact(job_sock, size))
        job_sock.sendall(_LEN.pack(len(reply)) + reply)
        code = 0
    except BaseException:
        code = 70
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(code)


def serve(ctrl: socket.socket) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    children: dict[int, Any] = {}

    def send(msg: tuple[Any, ...]) -> None:
        ctrl.sendall(pickle.dumps(msg))

    def reap() -> None:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            token = children.pop(pid, None)
            if token is not None:
                send(("exit", token, os.waitstatus_to_exitcode(status)))

    try:
        while True:
            try:
                ready, _, _ = select.select([ctrl.fileno(), wake_r], [], [])
            except InterruptedError:
                continue
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 4096):
                        pass
                reap()
            if ctrl.fileno() not in ready:
                continue
            msg, fds, _flags, _addr = socket.recv_fds(ctrl, 1 << 16, 1)
            if not msg:
                return  # the parent is gone
            request = pickle.loads(msg)
            if request[0] == "init":
                _, path, preload = request
                sys.path[:] = path
                for name in preload:
                    with contextlib.suppress(Exception):
                        importlib.import_module(name)
                send(("ready", 0, None))
                continue
            _, token, module = request
            if module:
                with contextlib.suppress(Exception):
                    importlib.import_module(module)
            job_fd = fds[0]
            # Everything the server holds now moves to the permanent generation
            # (O(1)): a collection in the child then never walks (and so never
            # copies the pages of) the objects it inherited.
            gc.freeze()
            pid = os.fork()
            if pid == 0:  # the child
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                ctrl.close()
                os.close(wake_r)
                os.close(wake_w)
                _child(socket.socket(fileno=job_fd))
            os.close(job_fd)
            children[pid] = token
            send(("pid", token, pid))
            reap()
    finally:
        for pid in list(children):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for _ in range(len(children)):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(-1, 0)


def main() -> None:
    fd = int(sys.argv[1])
    ctrl = socket.socket(fileno=fd)
    serve(ctrl)


if __name__ == "__main__":
    main()
