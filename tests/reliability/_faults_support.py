"""Shared pieces of the fault scenarios (test_faults.py): sizes, a fleet of
real worker processes that can be SIGKILLed and restarted, waits, figures.

Sizes: the normal run is small; ``WERK_RELIABILITY_SIZE=full`` selects the
documented full size (see README.md). Figures of every scenario are printed
(``pytest -s``) and, when ``WERK_RELIABILITY_FIGURES`` names a file, appended
to it as one JSON object per line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import psutil
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests._support import RUN_KEYS, registered_workers, side_rows, wait_registered
from tests.proctools import Child, child_env, describe, spawn, worker_argv
from werk_trio import Werk
from werk_trio.testing import until

from .relapp import history_table

FULL = os.environ.get("WERK_RELIABILITY_SIZE", "").lower() == "full"
APP = "tests.reliability.relapp:app"
WORKER_TYPES = ("async", "thread", "process", "fork")


def size(small: Any, full: Any) -> Any:
    """``full`` under WERK_RELIABILITY_SIZE=full, else ``small``."""
    return full if FULL else small


def record_figures(scenario: str, **figures: Any) -> None:
    """Print the scenario's figures; append them to WERK_RELIABILITY_FIGURES if set."""
    line = json.dumps({"scenario": scenario, "size": "full" if FULL else "small", **figures}, default=str)
    print(f"\nFIGURES {line}")
    path = os.environ.get("WERK_RELIABILITY_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def with_app_name(dsn: str, name: str) -> str:
    """``dsn`` with ``application_name`` set: the worker's pool and LISTEN
    backends then carry it (werk_trio keeps a name the DSN already has)."""
    return make_conninfo(dsn, application_name=name)


class Fleet:
    """Worker processes in numbered slots; each can be SIGKILLed and restarted.

    Every child is started through :func:`spawn` inside one exit stack, so
    whatever is still running when the test ends is killed.
    """

    def __init__(
        self,
        app: Werk,
        dsn: str,
        schema: str,
        log_dir: Path,
        argv: Sequence[str],
        *,
        slots: int,
        env: dict[str, str] | None = None,
        app_names: bool = False,
    ) -> None:
        self.app = app
        self.dsn = dsn
        self.schema = schema
        self.log_dir = log_dir
        self.argv = list(argv)
        self.slots: list[Child | None] = [None] * slots
        self.extra_env = env or {}
        self.app_names = app_names
        self.children: list[Child] = []
        self.killed_pids: set[int] = set()
        #: processes the killed workers had started (pool children, fork server)
        self.killed_children: set[int] = set()
        self.generation = [0] * slots
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Fleet:
        await self._stack.__aenter__()
        for i in range(len(self.slots)):
            await self.start(i)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._stack.__aexit__(*exc)

    def app_name(self, i: int) -> str:
        return f"relw_{self.schema}_{i}"

    async def start(self, i: int) -> Child:
        dsn = with_app_name(self.dsn, self.app_name(i)) if self.app_names else self.dsn
        env = child_env(dsn, self.schema, **self.extra_env)
        self.generation[i] += 1
        log = self.log_dir / f"w{i}-{self.generation[i]}.log"
        child = await self._stack.enter_async_context(spawn(self.argv, env=env, log_path=log))
        self.slots[i] = child
        self.children.append(child)
        return child

    def live(self) -> list[Child]:
        return [c for c in self.slots if c is not None and c.returncode is None]

    async def kill(self, i: int) -> Child:
        """SIGKILL slot ``i``'s worker and wait until it is gone."""
        child = self.slots[i]
        assert child is not None
        self.killed_pids.add(child.pid)
        with contextlib.suppress(psutil.Error):
            self.killed_children |= {p.pid for p in psutil.Process(child.pid).children(recursive=True)}
        os.kill(child.pid, signal.SIGKILL)
        code = await child.wait()
        assert code == -signal.SIGKILL, f"killed worker exited with {code}\n{describe([child])}"
        return child

    def orphans(self) -> list[int]:
        """Processes of killed workers still running (a zombie is not running)."""
        alive = []
        for pid in sorted(self.killed_children):
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
        return alive

    async def registered(self) -> dict[int, Any]:
        """pid -> worker id of the fleet's registered workers."""
        return await registered_workers(self.app)

    async def wait_registered(self, children: Sequence[Child] | None = None) -> None:
        wanted = list(children if children is not None else self.live())
        await wait_registered(self.app, wanted, interval=0.05)

    async def stop(self, *, within: float = 10.0) -> list[int]:
        """SIGTERM every live worker (none is running a job); their exit codes.
        Each must be gone ``within`` seconds: with nothing to finish, a stop is quick."""
        live = self.live()
        sent = time.monotonic()
        for child in live:
            child.send_signal(signal.SIGTERM)
        codes = [await child.wait() for child in live]
        took = time.monotonic() - sent
        assert took < within, f"workers took {took:.1f}s to stop after SIGTERM\n{describe(live)}"
        return codes

    def outputs(self) -> str:
        return describe(self.children)


def argv_for(worker_type: str, *args: str, queues: str = "rel") -> list[str]:
    return worker_argv("--queues", queues, "--worker-type", worker_type, *args, app=APP)


async def active_of(app: Werk, worker_id: Any) -> list[Any]:
    """Ids of jobs still active (or aborting) for ``worker_id``."""
    jobs = await app.list_jobs(worker_id=worker_id, status=["active", "aborting"], limit=10_000)
    return [j.id for j in jobs]


async def wait_all_terminal(app: Werk, ids: Sequence[Any], *, interval: float = 0.2) -> dict[str, int]:
    """Until every job in ``ids`` is complete, failed or aborted; the counts by status."""

    async def check() -> dict[str, int] | None:
        async with app.connection() as conn:
            cur = await conn.execute(
                sql.SQL(
                    "SELECT status, count(*) FROM {} WHERE id = ANY(%(ids)s::uuid[]) GROUP BY status"
                ).format(app.sql.idents["jobs"]),
                {"ids": list(ids)},
            )
            counts = {s: n for s, n in await cur.fetchall()}
        done = sum(counts.get(s, 0) for s in ("complete", "failed", "aborted"))
        return counts if done == len(ids) else None

    return await until(check, interval=interval)


async def history(app: Werk, schema: str) -> list[dict[str, Any]]:
    """The side table, oldest run first."""
    keys = (*RUN_KEYS, "worker_pid")
    return await side_rows(app, history_table(schema), keys, order_by="run_id")


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return round(time.monotonic() - self.t0, 3)
