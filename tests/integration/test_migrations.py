"""Schema and migrations: concurrent first start, tables, prefix, schema, constraints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from werk_trio import Werk
from werk_trio.sql import migrations

# A process that imports werk_trio, says "ready", waits for "go" on stdin, then
# connects (auto_migrate) and reports what it saw.
CHILD = r"""
import json, logging, sys, trio
from werk_trio import Werk

applied = []

class Keep(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("applied migrations"):
            applied.append(record.getMessage())

logging.getLogger("werk_trio").addHandler(Keep())
logging.getLogger("werk_trio").setLevel(logging.INFO)

async def main():
    app = Werk(schema=sys.argv[1], prefix=sys.argv[2], min_pool_size=1, max_pool_size=2)
    print("ready", flush=True)
    sys.stdin.readline()
    async with app:
        again = await app.migrate()
        job = await app.enqueue("tests.integration.test_migrations.noop")
    print(json.dumps({"applied_logs": applied, "again": again, "job": str(job.id)}), flush=True)

trio.run(main)
"""


def noop() -> None:
    pass


def _tables(dsn: str, schema: str) -> set[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return {r[0] for r in rows}


def _versions(dsn: str, schema: str, prefix: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        table = sql.Identifier(schema, f"{prefix}_migrations")
        q = sql.SQL("SELECT version, name FROM {} ORDER BY version").format(table)
        return [(r[0], r[1]) for r in conn.execute(q).fetchall()]


def _expected_versions() -> list[tuple[int, str]]:
    return [(m.version, m.name) for m in migrations()]


def _required(prefix: str) -> set[str]:
    return {f"{prefix}_{t}" for t in ("jobs", "executions", "workers", "job_deps", "migrations")}


async def test_six_processes_migrate_an_empty_schema_at_once(dsn: str, schema: str) -> None:
    """Three prefixes, two processes each, all started together on a schema that
    does not exist yet: every one succeeds, each migration is applied once per prefix."""
    prefixes = ["_werk", "_werk", "alpha", "alpha", "beta", "beta"]
    env = {**os.environ, "WERK_DSN": dsn}
    env.pop("DATABASE_URL", None)
    procs: list[trio.Process] = []
    outputs: list[bytes] = [b""] * len(prefixes)
    try:
        with trio.fail_after(60):
            for prefix in prefixes:
                procs.append(
                    await trio.lowlevel.open_process(
                        [sys.executable, "-c", CHILD, schema, prefix],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        env=env,
                        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
                    )
                )
            # wait until every process has imported everything, then release them together
            for proc in procs:
                assert proc.stdout is not None
                line = b""
                while not line.endswith(b"\n"):
                    chunk = await proc.stdout.receive_some(1)
                    assert chunk, "a child exited before it was ready"
                    line += chunk
                assert line == b"ready\n"
            for proc in procs:
                assert proc.stdin is not None
                await proc.stdin.send_all(b"go\n")

            async def collect(i: int, proc: trio.Process) -> None:
                assert proc.stdout is not None
                async for chunk in proc.stdout:
                    outputs[i] += chunk
                await proc.wait()

            async with trio.open_nursery() as nursery:
                for i, proc in enumerate(procs):
                    nursery.start_soon(collect, i, proc)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    assert [p.returncode for p in procs] == [0] * len(prefixes), outputs
    reports = [json.loads(out) for out in outputs]
    for prefix in set(prefixes):
        mine = [r for r, p in zip(reports, prefixes, strict=True) if p == prefix]
        # exactly one of the two processes applied the migrations; then nothing was left to do
        assert sum(len(r["applied_logs"]) for r in mine) == 1, mine
        assert all(r["again"] == [] for r in mine)
        assert _versions(dsn, schema, prefix) == _expected_versions()
    tables = _tables(dsn, schema)
    for prefix in set(prefixes):
        assert _required(prefix) <= tables
    assert len({r["job"] for r in reports}) == len(prefixes)


async def test_tables_indexes_and_an_idempotent_migrate(dsn: str, schema: str) -> None:
    with trio.fail_after(20):
        async with Werk(dsn, schema=schema) as app:
            assert await app.migrate() == []
            assert _versions(dsn, schema, "_werk") == _expected_versions()
            tables = _tables(dsn, schema)
            assert _required("_werk") <= tables
            assert all(t.startswith("_werk_") for t in tables)
            async with app.connection() as conn:
                cur = await conn.execute(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", (schema,)
                )
                indexes = dict(await cur.fetchall())
        # the dequeue index is partial: only claimable rows are in it
        dequeue = indexes["_werk_jobs_dequeue_idx"]
        assert "WHERE" in dequeue and "queued" in dequeue and "scheduled" in dequeue
        assert "complete" not in dequeue
        assert "UNIQUE" in indexes["_werk_jobs_key_idx"]
        assert "UNIQUE" in indexes["_werk_jobs_group_active_idx"]
        # a second app on the same schema finds it migrated
        async with Werk(dsn, schema=schema) as again:
            assert await again.migrate() == []


async def test_custom_prefix_keeps_apps_apart(dsn: str, schema: str) -> None:
    with trio.fail_after(20):
        async with Werk(dsn, schema=schema, prefix="orders") as a, Werk(dsn, schema=schema) as b:
            job = await a.enqueue(noop)
            assert job is not None
            assert (await a.get_job(job.id)).id == job.id
            assert await b.list_jobs() == []
            assert [j.id for j in await a.list_jobs()] == [job.id]
    tables = _tables(dsn, schema)
    assert _required("orders") <= tables and _required("_werk") <= tables


@pytest.fixture
def search_path_dsn(dsn: str, schema: str) -> Iterator[str]:
    """A DSN whose search_path is this test's (existing, empty) schema."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    params = conninfo_to_dict(dsn)
    params["options"] = f"-csearch_path={schema}"
    yield make_conninfo("", **params)


async def test_without_a_schema_the_tables_go_to_the_search_path(
    dsn: str, schema: str, search_path_dsn: str
) -> None:
    with trio.fail_after(20):
        async with Werk(search_path_dsn) as app:
            assert app.config.schema is None
            job = await app.enqueue(noop)
            assert job is not None
            assert (await app.get_job(job.id)).id == job.id
    assert _required("_werk") <= _tables(dsn, schema)


# --- constraints, checked with direct SQL ------------------------------------------------


@pytest.fixture
def migrated(dsn: str, schema: str) -> str:
    """This test's schema, migrated (for the synchronous tests below)."""

    async def migrate() -> None:
        with trio.fail_after(20):
            async with Werk(dsn, schema=schema):
                pass

    trio.run(migrate)
    return schema


def _insert(dsn: str, schema: str, **columns: Any) -> None:
    values = {"id": uuid.uuid4(), "function": "m.f", **columns}
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(schema, "_werk_jobs"),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(sql.Placeholder() * len(values)),
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query, list(values.values()))


@pytest.mark.parametrize(
    "columns",
    [
        {"status": "bogus"},
        {"status": "running"},
        {"attempts": 3, "max_attempts": 2},
        {"attempts": -1},
        {"max_attempts": 0},
        {"status": "active"},  # active needs a worker and a start time
        {"status": "aborting", "worker_id": uuid.uuid4()},
        {"timeout_secs": -1},
        {"heartbeat_secs": 0},
        {"ttl": 0},
        {"failure_mode": "explode"},
        {"repeat_remaining": -1},
        {"function": ""},
        {"queue": ""},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_check_constraints_reject_bad_rows(dsn: str, migrated: str, columns: dict[str, Any]) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        _insert(dsn, migrated, **columns)


def test_good_rows_pass_the_constraints(dsn: str, migrated: str) -> None:
    _insert(dsn, migrated, status="active", worker_id=uuid.uuid4(), started_at="now", attempts=1)
    _insert(dsn, migrated, status="failed", attempts=2, max_attempts=2)
    for status in ("scheduled", "queued", "waiting", "complete", "aborted"):
        _insert(dsn, migrated, status=status)


def test_unique_indexes_hold(dsn: str, migrated: str) -> None:
    _insert(dsn, migrated, key="k")
    with pytest.raises(psycopg.errors.UniqueViolation):
        _insert(dsn, migrated, key="k")
    running = {"status": "active", "worker_id": uuid.uuid4(), "started_at": "now", "attempts": 1}
    _insert(dsn, migrated, group_key="g", **running)
    _insert(dsn, migrated, group_key="g")  # a queued job of the group is fine
    with pytest.raises(psycopg.errors.UniqueViolation):
        _insert(dsn, migrated, group_key="g", **running)


def test_execution_status_is_checked(dsn: str, migrated: str) -> None:
    job_id = uuid.uuid4()
    _insert(dsn, migrated, id=job_id)
    with psycopg.connect(dsn, autocommit=True) as conn:
        table = sql.Identifier(migrated, "_werk_executions")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                sql.SQL("INSERT INTO {} (job_id, attempt, status) VALUES (%s, 1, 'bogus')").format(table),
                (job_id,),
            )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(sql.SQL("INSERT INTO {} (job_id, attempt) VALUES (%s, 0)").format(table), (job_id,))
