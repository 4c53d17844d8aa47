"""Cron across real processes: one leader, takeover after SIGKILL, exactly one
job per tick, and the same through PgBouncer in transaction mode.

Every scheduler is a real ``werk cron tests.cronapp:app`` process (the click
command run as ``python -c "from werk_trio.cli.cron import command; command()"``)
with one schedule, ``tick``, every 0.5 s; a real worker process runs the jobs.
A job's tick is read from its idempotency key (``cron:tick:{tick}``). The
second guard (that key) must never be what stopped a duplicate: a scheduler
logs "enqueued already (key taken)" when it is, and no output may say so.

Takeover is measured on the database clock: from the ``now()`` read just
before the SIGKILL to the new lease's ``acquired_at``. Lease 1 s, standby
retry 0.25 s: the bound is 1.25 s (lease + standby_retry_interval, the leader
having renewed at most a round before it died); asserted with a margin for a
loaded machine, and the measured times are printed (tests/reliability/README.md).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from psycopg import sql

from tests.proctools import Child, child_env, describe, spawn, worker_argv
from tests.reliability.test_pgbouncer import Bouncer
from tests.reliability.test_pgbouncer import bouncer as bouncer  # the module-scoped pgbouncer fixture

LEASE, RETRY, INTERVAL = 1.0, 0.25, 0.5
STEP = timedelta(seconds=INTERVAL)
BOUND = LEASE + RETRY
MARGIN = 2.0  # a loaded machine: scheduling, process and query latency


def cron_argv(*extra: str) -> list[str]:
    return [
        sys.executable, "-c", "from werk_trio.cli.cron import command; command()", "tests.cronapp:app",
        "--lease", str(LEASE), "--standby-retry-interval", str(RETRY), *extra,
    ]  # fmt: skip


def q(conn: psycopg.Connection[Any], query: str, schema: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run a test query with ``{lease}``, ``{jobs}``, ``{schedules}`` filled for ``schema``."""
    names = {"lease": "_werk_cron_lease", "jobs": "_werk_jobs", "schedules": "_werk_cron_schedules"}
    composed = sql.SQL(query).format(**{k: sql.Identifier(schema, v) for k, v in names.items()})
    return conn.execute(composed, params).fetchall()


def lease(conn: psycopg.Connection[Any], schema: str) -> tuple[Any, ...]:
    return q(conn, "SELECT holder_name, generation, acquired_at, now() FROM {lease}", schema)[0]


def jobs(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    query = "SELECT key, enqueued_at, status FROM {jobs} WHERE cron_name = 'tick' ORDER BY key"
    return q(conn, query, schema)


def tick(key: str) -> datetime:
    assert key.startswith("cron:tick:"), key
    return datetime.fromisoformat(key[len("cron:tick:"):])


async def poll(predicate: Callable[[], Any]) -> None:
    """Wait until ``predicate()`` (a quick blocking query) is true."""
    while not predicate():
        await trio.sleep(0.02)


async def schedulers(stack: AsyncExitStack, n: int, env: dict[str, str], tmp_path: Path) -> list[Child]:
    """``n`` scheduler processes, killed when ``stack`` closes."""
    return [
        await stack.enter_async_context(spawn(cron_argv(), env=env, log_path=tmp_path / f"cron{i}.log"))
        for i in range(n)
    ]


async def started(children: list[Child]) -> None:
    for child in children:
        await child.wait_for_output("cron scheduler")


def check_ticks(rows: list[tuple[Any, ...]], outputs: str) -> list[datetime]:
    """Exactly one job per tick, also across leader changes: consecutive ticks
    one interval apart, no gap; never enqueued before its tick; the key never
    the guard that held. Returns the ticks."""
    ticks = [tick(r[0]) for r in rows]
    assert ticks == sorted(set(ticks))
    for key, enqueued_at, _ in rows:
        assert enqueued_at >= tick(key), key
    gaps = [(a, b) for a, b in pairwise(ticks) if b - a != STEP]
    assert gaps == [], f"ticks without a job between: {gaps}"
    assert "key taken" not in outputs
    return ticks


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c


async def test_three_schedulers_sigkill_the_leader_twice(
    dsn: str, schema: str, tmp_path: Path, conn: psycopg.Connection[Any]
) -> None:
    env = child_env(dsn, schema, WERK_CRON_INTERVAL=str(INTERVAL))
    takeovers: list[float] = []
    with trio.fail_after(180):
        async with AsyncExitStack() as stack:
            scheds = await schedulers(stack, 3, env, tmp_path)
            worker = await stack.enter_async_context(
                spawn(worker_argv("--poll-interval", "0.2", app="tests.cronapp:app"), env=env,
                      log_path=tmp_path / "worker.log")
            )  # fmt: skip
            await started(scheds)
            await poll(lambda: len(jobs(conn, schema)) >= 4)
            # exactly one leader: one generation, held by one of the three
            holder, generation, _, _ = lease(conn, schema)
            assert generation == 1
            assert sum(holder.endswith(f":{c.pid}") for c in scheds) == 1
            for _ in range(2):
                holder, generation, _, _ = lease(conn, schema)
                leader = next(c for c in scheds if holder.endswith(f":{c.pid}"))
                killed_at = q(conn, "SELECT now()", schema)[0][0]
                leader.send_signal(9)
                await leader.wait()
                await poll(lambda g=generation: lease(conn, schema)[1] > g)
                new_holder, new_generation, acquired_at, _ = lease(conn, schema)
                assert new_generation == generation + 1
                assert not new_holder.endswith(f":{leader.pid}")
                takeovers.append((acquired_at - killed_at).total_seconds())
                count = len(jobs(conn, schema))
                await poll(lambda n=count: len(jobs(conn, schema)) >= n + 4)
            last = next(c for c in scheds if c.returncode is None)
            for c in scheds:
                if c.returncode is None:
                    c.send_signal(15)
            for c in scheds:
                await c.wait()
            assert last.returncode == 0, describe(scheds)
            rows = jobs(conn, schema)
            # the worker runs them all
            await poll(lambda: all(r[2] == "complete" for r in jobs(conn, schema)))
            worker.send_signal(15)
            await worker.wait()
    print(f"\ncron takeover after SIGKILL (lease {LEASE}s, standby retry {RETRY}s): "
          + ", ".join(f"{t:.2f}s" for t in takeovers))  # fmt: skip
    for t in takeovers:
        assert 0 < t <= BOUND + MARGIN, takeovers
    ticks = check_ticks(rows, describe(scheds))
    assert len(ticks) >= 12
    total = q(conn, "SELECT total_runs FROM {schedules} WHERE name = 'tick'", schema)[0][0]
    assert total == len(rows)
    # the last leader gave the lease up on SIGTERM
    assert lease(conn, schema)[0] is None


async def test_a_frozen_leader_is_fenced_out(
    dsn: str, schema: str, tmp_path: Path, conn: psycopg.Connection[Any]
) -> None:
    """SIGSTOP the leader for three leases: a standby takes over (also when the
    leader froze inside its round, holding the lease row: the server ends that
    session after half a lease); after SIGCONT the old leader finds the lease
    moved on and enqueues nothing -- not even a duplicate the key would stop."""
    env = child_env(dsn, schema, WERK_CRON_INTERVAL=str(INTERVAL))
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            scheds = await schedulers(stack, 2, env, tmp_path)
            await started(scheds)
            await poll(lambda: len(jobs(conn, schema)) >= 4)
            holder, generation, _, _ = lease(conn, schema)
            frozen = next(c for c in scheds if holder.endswith(f":{c.pid}"))
            other = next(c for c in scheds if c is not frozen)
            frozen_at = q(conn, "SELECT now()", schema)[0][0]
            frozen.send_signal(19)  # SIGSTOP
            try:
                await poll(lambda: lease(conn, schema)[1] > generation)
                taken = lease(conn, schema)
                thaw_at = frozen_at + timedelta(seconds=3 * LEASE)
                await poll(lambda: q(conn, "SELECT now()", schema)[0][0] > thaw_at)
            finally:
                frozen.send_signal(18)  # SIGCONT
            await frozen.wait_for_output("lost the lease")
            count = len(jobs(conn, schema))
            await poll(lambda n=count: len(jobs(conn, schema)) >= n + 4)
            for c in scheds:
                c.send_signal(15)
            for c in scheds:
                await c.wait()
            rows = jobs(conn, schema)
    output = describe(scheds)
    assert taken[1] == generation + 1 and taken[0].endswith(f":{other.pid}"), output
    takeover = (taken[2] - frozen_at).total_seconds()
    print(f"\ncron takeover from a frozen leader: {takeover:.2f}s")
    assert takeover <= LEASE + LEASE / 2 + RETRY + MARGIN, output
    check_ticks(rows, output)
    assert all(c.returncode == 0 for c in scheds), output


async def test_two_schedulers_through_pgbouncer_one_leader_no_duplicates(
    dsn: str, schema: str, tmp_path: Path, conn: psycopg.Connection[Any], bouncer: Bouncer
) -> None:
    """Both started at once, through transaction pooling (4 server sessions
    shared by everything): one takes the lease and keeps it, the other stays
    standby; every tick gets its one job."""
    env = child_env(bouncer.dsn, schema, WERK_CRON_INTERVAL=str(INTERVAL), WERK_CRON_POLL_ONLY="1")
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            scheds = await schedulers(stack, 2, env, tmp_path)
            await started(scheds)
            await poll(lambda: len(jobs(conn, schema)) >= 12)
            holder, generation, _, _ = lease(conn, schema)
            for c in scheds:
                c.send_signal(15)
            for c in scheds:
                await c.wait()
            rows = jobs(conn, schema)
    output = describe(scheds)
    assert generation == 1, output  # nobody ever took the lease from the first leader
    assert sum(holder.endswith(f":{c.pid}") for c in scheds) == 1
    assert output.count("started as leader") == 1 and output.count("started as standby") == 1, output
    ticks = check_ticks(rows, output)
    assert len(ticks) >= 12
    assert all(c.returncode == 0 for c in scheds), output
