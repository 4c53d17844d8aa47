"""Tasks the dashboard tests' workers run (registered on each test's Werk).

``gate`` holds its job until the test opens the gate (a Trio event, set from
the browser thread with ``trio.from_thread``), so a test can see jobs active
on the overview and then see them complete; ``report`` sets its progress
first.
"""

from __future__ import annotations

from typing import Any

import trio

from werk_trio import Werk

GATE: dict[str, trio.Event] = {}


async def gate(name: str = "default") -> str:
    await GATE.setdefault(name, trio.Event()).wait()
    return f"opened {name}"


async def report(ctx: Any, name: str = "report") -> str:
    """Reports progress, then holds like ``gate``."""
    await ctx.set_progress(0.4, "two of five")
    await GATE.setdefault(name, trio.Event()).wait()
    return f"reported {name}"


async def add(a: int, b: int) -> int:
    return a + b


async def explode(marker: str) -> None:
    def deeper() -> None:
        raise ValueError(f"it broke: {marker}")

    deeper()


async def echo(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def register(app: Werk) -> None:
    for func in (gate, report, add, explode, echo):
        app.task(func)
