"""Helpers for tests that start real child processes (workers, example servers).

:func:`spawn` starts a child with its output (stdout and stderr together) in a
file and always kills it on the way out, so no child outlives its test.
Waiting helpers poll a condition with short sleeps; the test's own
``trio.fail_after`` bounds every wait.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

__all__ = ["REPO", "Child", "child_env", "describe", "spawn", "worker_argv"]

REPO = Path(__file__).resolve().parents[1]

def child_env(dsn: str, schema: str, **extra: str) -> dict[str, str]:
    """The environment for a child: the test's DSN and schema, unbuffered output."""
    env = dict(os.environ)
    env.update(
        WERK_PROC_DSN=dsn,
        WERK_PROC_SCHEMA=schema,
        WERK_DSN=dsn,
        WERK_SCHEMA=schema,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def worker_argv(*args: str, app: str = "tests.procapp:app") -> list[str]:
    """``python -m werk_trio.cli worker APP ARGS...``."""
    return [sys.executable, "-m", "werk_trio.cli", "worker", app, *args]


class Child:
    """A running child process and its output file."""

    def __init__(self, proc: trio.Process, log_path: Path, argv: Sequence[str]) -> None:
        self.proc = proc
        self.log_path = log_path
        self.argv = list(argv)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def wait(self) -> int:
        return await self.proc.wait()

    async def wait_for_output(self, needle: str, interval: float = 0.02) -> str:
        """Wait until ``needle`` shows in the output; fail if the child exits first."""
        while True:
            text = self.output()
            if needle in text:
                return text
            if self.proc.poll() is not None:
                text = self.output()
                if needle in text:
                    return text
                raise AssertionError(
                    f"child {self.argv} exited with {self.proc.returncode} before printing "
                    f"{needle!r}; its output:\n{text}"
                )
            await trio.sleep(interval)

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} rc={self.returncode} {' '.join(self.argv[-3:])}>"


@asynccontextmanager
async def spawn(argv: Sequence[str], *, env: dict[str, str], log_path: Path) -> AsyncIterator[Child]:
    """Start ``argv`` in the repository root; SIGKILL it on exit if still running."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        proc = await trio.lowlevel.open_process(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
    child = Child(proc, log_path, argv)
    try:
        yield child
    finally:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await proc.wait()


def describe(children: Sequence[Any]) -> str:
    """The output of several children, for assertion messages."""
    return "\n".join(f"--- {c!r}\n{c.output()}" for c in children)
