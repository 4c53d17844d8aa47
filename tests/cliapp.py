"""The app the CLI tests load: ``werk ... tests.cliapp:app``.

Its database and schema come from WERK_DSN and WERK_SCHEMA (set by the test
for the child process, or in ``os.environ`` for click's in-process runner).
"""

from __future__ import annotations

import trio

from werk_trio import Werk

app = Werk(task_modules=["tests"])


@app.task
async def add(a: int, b: int = 0) -> int:
    return a + b


@app.task
async def boom(message: str = "boom") -> None:
    raise ValueError(message)


@app.task
async def nap(seconds: float) -> float:
    await trio.sleep(seconds)
    return seconds
