"""Running ``werk`` in tests: through click's runner (in a thread, since each
command runs its own ``trio.run``) and as a real process, both against the
test's schema, and reading their ``--json`` output."""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from typing import Any

import trio
from click.testing import CliRunner

from tests.proctools import REPO, child_env
from werk_trio.cli import cli

APP = "tests.cliapp:app"


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str

    def json(self) -> list[dict[str, Any]]:
        """Every stdout line parsed: each must be one JSON object."""
        out = [json.loads(line) for line in self.stdout.splitlines()]
        assert all(isinstance(obj, dict) for obj in out), self.stdout
        return out

    def ok(self) -> Ran:
        assert self.code == 0, f"exit {self.code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        return self


async def invoke(dsn: str, schema: str, *args: str, input: str | None = None, **env: str) -> Ran:
    """``werk ARGS`` through click's CliRunner."""
    runner = CliRunner()
    call = functools.partial(runner.invoke, cli, list(args), input=input,
                             env={"WERK_DSN": dsn, "WERK_SCHEMA": schema, **env})  # fmt: skip
    result = await trio.to_thread.run_sync(call, abandon_on_cancel=True)
    return Ran(result.exit_code, result.stdout, result.stderr)


async def werk(dsn: str, schema: str, *args: str, input: str | None = None, **env: str) -> Ran:
    """``python -m werk_trio.cli ARGS`` as a real process."""
    done = await trio.run_process(
        [sys.executable, "-m", "werk_trio.cli", *args], env=child_env(dsn, schema, **env), cwd=REPO,
        stdin=(input or "").encode(), capture_stdout=True, capture_stderr=True, check=False,
    )  # fmt: skip
    return Ran(done.returncode, done.stdout.decode(), done.stderr.decode())
