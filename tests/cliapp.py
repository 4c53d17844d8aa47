"""The app the CLI tests load: ``werk ... tests.cliapp:app``.

``app`` is a factory (the CLI calls a callable APP), so every command builds
its Werk from the environment of that moment: WERK_DSN (read by Werk),
WERK_SCHEMA and CLIAPP_ESTIMATE_LIMIT (read here), set by
the test for a child process, or for click's in-process runner.
"""

from __future__ import annotations

import os

import trio

from werk_trio import Werk


async def add(a: int, b: int = 0) -> int:
    return a + b


async def boom(message: str = "boom") -> None:
    raise ValueError(message)


async def nap(seconds: float) -> float:
    await trio.sleep(seconds)
    return seconds


def app() -> Werk:
    limit = os.environ.get("CLIAPP_ESTIMATE_LIMIT")
    settings = {"estimate_limit": int(limit)} if limit else {}
    werk = Werk(schema=os.environ.get("WERK_SCHEMA") or None, task_modules=["tests"], **settings)
    for func in (add, boom, nap):
        werk.register(func)
    return werk
