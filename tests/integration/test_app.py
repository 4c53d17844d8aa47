"""The Werk app on a real Postgres: lifecycle, enqueue, management (SPEC §1-3, §7).

Job states a worker would produce (active, failed, complete...) are set with
plain SQL here: these tests are about the app's own calls, not the runtime.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import traceback
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from werk_trio import (
    Callback,
    ConfigError,
    Connection,
    Dependency,
    EnqueueParams,
    ExecutionStatus,
    Job,
    JobNotFound,
    JobStatus,
    PayloadTooLarge,
    PickleSerializer,
    PoolTimeout,
    Repeat,
    Retry,
    SerializationError,
    UnknownTask,
    Werk,
    WerkError,
)
from werk_trio.db import Listener
from werk_trio.jobs import ENQUEUE_OPTIONS

# --- job functions (module level: importable by a worker) ------------------------


def noop() -> None:
    pass


async def send_email(to: str, subject: str = "") -> str:
    return to


def on_ok(ctx: Any) -> None:
    pass


def on_fail(ctx: Any) -> None:
    pass


def on_stop(ctx: Any) -> None:
    pass


# --- helpers ----------------------------------------------------------------------


async def sql(app: Werk, query: str, *params: Any) -> list[Any]:
    """Run ``query`` ({jobs}, {executions}... are the app's tables); return its rows."""
    async with app.connection() as conn:
        cur = await conn.execute(app.sql.render(query), params or None)
        return await cur.fetchall() if cur.description else []


async def job_count(app: Werk) -> int:
    return int((await sql(app, "SELECT count(*) FROM {jobs}"))[0][0])


async def make_active(app: Werk, job: Job, worker_id: uuid.UUID | None = None) -> uuid.UUID:
    """Put ``job`` in the state a worker's claim leaves it in."""
    wid = worker_id or uuid.uuid4()
    await sql(
        app,
        "UPDATE {jobs} SET status = 'active', worker_id = %s, started_at = now(), "
        "attempts = attempts + 1 WHERE id = %s",
        wid,
        job.id,
    )
    return wid


async def finish(app: Werk, job: Job, status: str, *, days_ago: float = 0) -> None:
    """Put ``job`` in a terminal state, ended ``days_ago`` days ago."""
    await sql(
        app,
        "UPDATE {jobs} SET status = %s, attempts = 1, "
        "completed_at = now() - make_interval(secs => %s), "
        "error = CASE WHEN %s = 'failed' THEN 'Traceback...\nValueError: boom' END WHERE id = %s",
        status,
        days_ago * 86400,
        status,
        job.id,
    )


@asynccontextmanager
async def listening(
    app: Werk, channels: list[str] | None = None
) -> AsyncIterator[trio.MemoryReceiveChannel[Any]]:
    """Notifications on the app's new-jobs channel (or on ``channels``)."""
    send, receive = trio.open_memory_channel[Any](100)
    listener = Listener(app.dsn, channels or [app.sql.jobs_channel], send)
    async with trio.open_nursery() as nursery:
        await nursery.start(listener.run)
        yield receive
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def round_trips(conn: Connection[Any]) -> AsyncIterator[list[int]]:
    """Count the round trips on ``conn`` with libpq's own protocol trace: every
    simple query and every extended-protocol Sync ends in one ReadyForQuery."""
    out: list[int] = []
    with tempfile.TemporaryFile("w+") as f:
        conn.pgconn.trace(f.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield out
        finally:
            conn.pgconn.untrace()
        f.seek(0)
        out.append(sum(1 for line in f if line.startswith("B") and "\tReadyForQuery" in line))


# --- lifecycle --------------------------------------------------------------------


async def test_connect_and_disconnect_are_idempotent(dsn: str, schema: str) -> None:
    app = Werk(dsn, schema=schema)
    assert not app.connected
    assert "not connected" in repr(app)
    with pytest.raises(WerkError, match="not connected"):
        app.pool  # noqa: B018
    with trio.fail_after(20):
        await app.connect()
        pool = app.pool
        await app.connect()
        assert app.pool is pool
        assert app.connected
        assert "not connected" not in repr(app)
        await app.disconnect()
        await app.disconnect()
        assert not app.connected
        assert pool.closed
        with pytest.raises(WerkError, match="not connected"):
            await app.enqueue(noop)
        # and it can connect again
        await app.connect()
        assert (await app.enqueue(noop)) is not None
        await app.disconnect()


async def test_concurrent_connects_open_one_pool(dsn: str, schema: str) -> None:
    app = Werk(dsn, schema=schema)
    started: list[int] = []
    app.on_startup(lambda: started.append(1))
    pools: list[Any] = []

    async def connect() -> None:
        await app.connect()
        pools.append(app.pool)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(connect)
        assert len({id(p) for p in pools}) == 1
        assert started == [1]
        await app.disconnect()


async def test_async_with_and_hooks_run_once(dsn: str, schema: str) -> None:
    app = Werk(dsn, schema=schema)
    events: list[str] = []

    @app.on_startup
    def sync_start() -> None:
        events.append("start-sync")

    @app.on_startup
    async def async_start() -> None:
        # startup runs after the migrations: the tables are there
        await trio.lowlevel.checkpoint()
        events.append(f"start-async:{await job_count(app)}")

    @app.on_shutdown
    async def async_stop() -> None:
        # shutdown runs before the pool closes: the app still works
        events.append(f"stop-async:{await job_count(app)}")

    @app.on_shutdown
    def sync_stop() -> None:
        events.append("stop-sync")

    with trio.fail_after(20):
        async with app as entered:
            assert entered is app
            assert app.connected
            await app.connect()
            await app.enqueue(noop)
        assert not app.connected
        await app.disconnect()
    assert events == ["start-sync", "start-async:0", "stop-async:1", "stop-sync"]


async def test_async_with_disconnects_on_error(dsn: str, schema: str) -> None:
    app = Werk(dsn, schema=schema)
    with trio.fail_after(20):
        with pytest.raises(KeyError):
            async with app:
                raise KeyError("boom")
        assert not app.connected


async def test_failing_startup_hook_leaves_the_app_disconnected(dsn: str, schema: str) -> None:
    app = Werk(dsn, schema=schema)

    @app.on_startup
    def explode() -> None:
        raise RuntimeError("startup failed")

    with trio.fail_after(20):
        with pytest.raises(RuntimeError, match="startup failed"):
            await app.connect()
        assert not app.connected


async def test_connect_failure_is_a_config_error(dsn: str) -> None:
    missing = tempfile.mkdtemp(prefix="werk-nopg-", dir="/tmp")
    app = Werk(f"host={missing} port=5999 dbname=x user=x", connect_timeout=2)
    with trio.fail_after(20):
        with pytest.raises(ConfigError, match="cannot connect to database x at socket"):
            await app.connect()
    assert not app.connected


async def test_the_log_names_the_database(
    dsn: str, schema: str, werk_records: list[logging.LogRecord]
) -> None:
    with trio.fail_after(20):
        async with Werk(dsn, schema=schema) as app:
            where = repr(app)
    messages = [r.getMessage() for r in werk_records]
    assert any(m.startswith("werk_trio using database ") for m in messages), messages
    assert any("applied migrations [1" in m for m in messages), messages
    assert "database " in where


@pytest.mark.parametrize("variable", ["WERK_DSN", "DATABASE_URL"])
async def test_dsn_from_the_environment(
    dsn: str,
    schema: str,
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    werk_records: list[logging.LogRecord],
) -> None:
    monkeypatch.delenv("WERK_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv(variable, dsn)
    with trio.fail_after(20):
        async with Werk(schema=schema) as app:
            assert await app.enqueue(noop) is not None
    assert any(r.getMessage().endswith(f"(from {variable})") for r in werk_records)


async def test_no_dsn_means_the_embedded_postgres(
    schema: str, monkeypatch: pytest.MonkeyPatch, werk_records: list[logging.LogRecord]
) -> None:
    monkeypatch.delenv("WERK_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with trio.fail_after(60):
        async with Werk(schema=schema) as app:
            try:
                job = await app.enqueue(noop)
                assert job is not None and (await app.get_job(job.id)).id == job.id
                assert "at socket /" in repr(app)
            finally:
                async with app.connection() as conn:
                    await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    assert any(r.getMessage().endswith("(from embedded)") for r in werk_records)


async def test_embedded_without_pgserver_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WERK_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setitem(sys.modules, "pgserver", None)  # as if the extra were not installed
    app = Werk(embedded_dir=str(tmp_path / "pgdata"))
    with trio.fail_after(20):
        with pytest.raises(ConfigError) as info:
            await app.connect()
    message = str(info.value)
    assert "pip install 'werk-trio[embedded]'" in message
    assert "WERK_DSN" in message and "DATABASE_URL" in message
    assert not app.connected


# --- the password never shows ---------------------------------------------------------

SECRET = "Sup3r-Secret-Pw"


@pytest.fixture
def werk_records() -> Iterator[list[logging.LogRecord]]:
    """Every record of the werk_trio and psycopg loggers, at DEBUG."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("werk_trio", "psycopg")]
    saved = [(lg.level, list(lg.handlers), lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        # also undoes what Werk(log_level=...) installed
        for lg, (level, handlers, propagate) in zip(loggers, saved, strict=True):
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


@pytest.fixture
def dsn_with_password(dsn: str) -> tuple[str, str]:
    """The test DSN with a password in it (the embedded server trusts local
    connections, so a made-up password still connects) and that password."""
    params = conninfo_to_dict(dsn)
    secret = str(params.get("password") or SECRET)
    params["password"] = secret
    return make_conninfo("", **params), secret


def _exception_text(ex: BaseException) -> str:
    return "".join(traceback.format_exception(ex)) + repr(ex) + str(ex)


async def test_password_never_in_repr_logs_errors_or_rows(
    dsn_with_password: tuple[str, str], schema: str, werk_records: list[logging.LogRecord]
) -> None:
    url, secret = dsn_with_password
    app = Werk(
        url, schema=schema, log_level="DEBUG", log_format="json",
        min_pool_size=1, max_pool_size=1, pool_timeout=0.2,
    )  # fmt: skip
    texts = [repr(app), repr(app.config), str(app.config)]
    with trio.fail_after(20):
        async with app:
            assert app.dsn and secret in app.dsn  # the one accessor that holds it, on purpose
            texts.append(repr(app))
            job = await app.enqueue(send_email, to="a@b.c", _meta={"m": 1}, _key="k")
            assert job is not None
            texts.append(repr(job))
            for failing in (
                app.get_job(uuid.uuid4()),
                app.get_job("not-a-uuid"),
                app.enqueue(noop, _depends_on=uuid.uuid4()),
            ):
                with pytest.raises(WerkError) as info:
                    await failing
                texts.append(_exception_text(info.value))
            async with app.connection():
                with pytest.raises(PoolTimeout) as timeout:
                    await app.get_job(job.id)
                texts.append(_exception_text(timeout.value))
            rows = await sql(app, "SELECT row_to_json(j)::text FROM {jobs} j")
            texts.extend(r[0] for r in rows)
            activity = await sql(
                app, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            )
            assert activity[0][0] == "werk_trio"
        texts.append(repr(app))

    # a connection that fails, with the password in a URL
    params = conninfo_to_dict(url)
    bad = f"postgresql://{params.get('user') or 'x'}:{secret}@/nodb?host=/nonexistent-dir&port=5999"
    with trio.fail_after(20):
        with pytest.raises(ConfigError) as info:
            await Werk(bad, connect_timeout=2).connect()
    texts.append(_exception_text(info.value))
    # and a DSN libpq cannot parse
    with pytest.raises(ConfigError) as info:
        await Werk(f"postgres//user:{secret}@host/db").connect()
    texts.append(_exception_text(info.value))

    # what the app's own log handler writes, and what every record says
    (own,) = [h for h in logging.getLogger("werk_trio").handlers if getattr(h, "_werk_trio_handler", False)]
    formatter = own.formatter
    assert werk_records, "nothing was logged"
    for record in werk_records:
        texts.append(record.getMessage())
        texts.append(formatter.format(record) if formatter else "")
    leaks = [t for t in texts if secret in t]
    assert leaks == []


# --- enqueue: every option -------------------------------------------------------------


async def test_enqueue_defaults(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(noop)
        assert job is not None
        back = await app.get_job(job.id)
        assert back == job
        assert back.function == "tests.integration.test_app.noop"
        assert back.status is JobStatus.QUEUED
        assert (back.queue, back.priority, back.attempts, back.max_attempts) == ("default", 0, 0, 1)
        assert back.payload == {"args": [], "kwargs": {}}
        assert back.meta == {}
        assert back.failure_mode == "hold"
        assert back.scheduled_at == back.enqueued_at
        for name in (
            "started_at", "completed_at", "touched_at", "expires_at", "key", "group_key", "result",
            "error", "timeout_secs", "heartbeat_secs", "worker_id", "ttl", "result_ttl",
            "failure_ttl", "on_success", "on_failure", "on_stopped", "retry_intervals",
            "repeat_interval_secs", "repeat_intervals", "cron_name",
        ):  # fmt: skip
            assert getattr(back, name) is None, name
        assert back.repeat_remaining == 0
        assert back.id.version == 7


async def test_enqueue_every_option_is_stored(app: Werk) -> None:
    with trio.fail_after(10):
        parent = await app.enqueue(noop)
        assert parent is not None
        at = datetime.now(UTC).replace(microsecond=123456) + timedelta(hours=1)
        job = await app.enqueue(
            send_email,
            "a@b.c",
            subject="hi ü",
            _queue="mail",
            _priority=7,
            _at=at,
            _retry=Retry(4, [1, 5, 30]),
            _timeout=12.5,
            _heartbeat=3,
            _key="welcome-42",
            _group="user-42",
            _meta={"trace": "abc", "n": [1, 2]},
            _ttl=600,
            _result_ttl=60,
            _failure_ttl=0,
            _failure_mode="delete",
            _on_success=on_ok,
            _on_failure="tests.integration.test_app.on_fail",
            _on_stopped=Callback(on_stop, timeout=3),
            _repeat=Repeat(2, interval=10),
            _depends_on=Dependency(parent, allow_failure=True),
        )
        assert job is not None
        back = await app.get_job(job.id)
        assert back == job
        assert back.function == "tests.integration.test_app.send_email"
        assert back.queue == "mail"
        assert back.status is JobStatus.WAITING  # its parent has not ended
        assert back.priority == 7
        assert back.max_attempts == 4 and back.attempts == 0
        assert back.scheduled_at == at
        assert back.expires_at == at + timedelta(seconds=600)
        assert back.key == "welcome-42"
        assert back.group_key == "user-42"
        assert back.payload == {"args": ["a@b.c"], "kwargs": {"subject": "hi ü"}}
        assert (back.args, back.kwargs) == (["a@b.c"], {"subject": "hi ü"})
        assert back.timeout_secs == 12.5
        assert back.heartbeat_secs == 3
        assert back.meta == {"trace": "abc", "n": [1, 2]}
        assert (back.ttl, back.result_ttl, back.failure_ttl) == (600, 60, 0)
        assert back.failure_mode == "delete"
        assert back.on_success == Callback("tests.integration.test_app.on_ok", None)  # no limit
        assert back.on_failure == Callback("tests.integration.test_app.on_fail", None)
        assert back.on_stopped == Callback("tests.integration.test_app.on_stop", 3)
        assert back.retry_intervals == [1, 5, 30]
        assert (back.repeat_remaining, back.repeat_interval_secs, back.repeat_intervals) == (2, 10, None)
        assert await app.get_job_dependencies(job) == [parent.id]
        assert await app.get_job_dependency_details(job) == [
            {"job_id": parent.id, "allow_failure": True, "status": JobStatus.QUEUED}
        ]


async def test_enqueue_delay_retry_int_and_repeat_intervals(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(noop, _delay=30, _retry=3, _repeat=Repeat(3, intervals=[1, 2]))
        assert job is not None
        back = await app.get_job(job.id)
        assert back.status is JobStatus.SCHEDULED
        assert back.scheduled_at - back.enqueued_at == timedelta(seconds=30)  # one database clock
        assert (back.max_attempts, back.retry_intervals) == (3, [0])
        assert back.repeat_remaining == 3
        assert back.repeat_interval_secs is None
        assert back.repeat_intervals is not None and back.repeat_intervals[:2] == [1, 2]
        # fractional seconds: the returned Job has exactly the times the row got
        odd = await app.enqueue(noop, _delay=1.0000005, _ttl=2.2222225)
        assert odd is not None
        odd_back = await app.get_job(odd.id)
        assert odd_back == odd
        assert odd_back.expires_at is not None and odd_back.expires_at > odd_back.scheduled_at
        assert (
            timedelta(seconds=1)
            <= odd_back.scheduled_at - odd_back.enqueued_at
            <= timedelta(seconds=1.000001)
        )
        # a callable given by dotted path string
        by_path = await app.enqueue("tests.integration.test_app.send_email", "x@y.z")
        assert by_path is not None
        assert (await app.get_job(by_path.id)).function == "tests.integration.test_app.send_email"


async def test_depends_on_forms_and_finished_parents(app: Werk) -> None:
    with trio.fail_after(10):
        a, b, c = [await app.enqueue(noop) for _ in range(3)]
        assert a and b and c
        child = await app.enqueue(noop, _depends_on=[a, str(b.id), Dependency(c.id, allow_failure=True)])
        assert child is not None and child.status is JobStatus.WAITING
        assert set(await app.get_job_dependencies(child.id)) == {a.id, b.id, c.id}
        deps = await app.get_job_dependency_details(child.id)
        assert {d["job_id"] for d in deps} == {a.id, b.id, c.id}
        assert {d["job_id"]: d["allow_failure"] for d in deps}[c.id] is True

        # parents that already ended: queued at once, or failed with DependencyFailed
        await app.cancel_job(a)
        ok = await app.enqueue(noop, _depends_on=Dependency(a, allow_failure=True))
        assert ok is not None and ok.status is JobStatus.QUEUED
        assert (await app.get_job(ok.id)).status is JobStatus.QUEUED
        doomed = await app.enqueue(noop, _depends_on=a)
        assert doomed is not None and doomed.status is JobStatus.FAILED
        failed = await app.get_job(doomed.id)
        assert failed.status is JobStatus.FAILED
        assert failed.error is not None and "DependencyFailed" in failed.error and str(a.id) in failed.error


async def test_enqueue_notifies_the_queue(app: Werk) -> None:
    with trio.fail_after(10):
        async with listening(app) as notes:
            await app.enqueue(noop, _queue="later", _delay=60)  # not claimable yet: no wake-up
            await app.enqueue(noop, _queue="mail")
            note = await notes.receive()
            assert (note.channel, note.payload) == (app.sql.jobs_channel, "mail")
            await app.enqueue_many([EnqueueParams(noop, queue="a"), EnqueueParams(noop, queue="b")])
            assert {(await notes.receive()).payload for _ in range(2)} == {"a", "b"}


def _epoch_text(at: datetime) -> str:
    """``extract(epoch FROM at)::text``: seconds with six decimals, exactly."""
    us = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


async def test_a_job_due_later_tells_its_queue_when(app: Werk) -> None:
    """One job (INSERT_JOB) and a batch (INSERT_JOBS) send the same control
    note: 'due:<epoch of its scheduled_at>:<queue>', the batch's earliest."""
    with trio.fail_after(10):
        async with listening(app, [app.sql.control_channel]) as notes:
            one = await app.enqueue(noop, _queue="later", _delay=60)
            assert one is not None
            note = await notes.receive()
            assert note.payload == f"due:{_epoch_text(one.scheduled_at)}:later"
            jobs = await app.enqueue_many(
                [EnqueueParams(noop, queue="soon", delay=90), EnqueueParams(noop, queue="soon", delay=30)]
            )
            first = min(j.scheduled_at for j in jobs if j is not None)
            note = await notes.receive()
            assert note.payload == f"due:{_epoch_text(first)}:soon"


async def test_long_schema_and_prefix_still_notify(dsn: str) -> None:
    """Channel names are limited to 63 bytes; the longest valid names must work."""
    schema = "t_" + uuid.uuid4().hex + "x" * 6  # 40 characters
    try:
        with trio.fail_after(20):
            async with Werk(dsn, schema=schema, prefix="p" * 40) as app:
                async with listening(app) as notes:
                    job = await app.enqueue(noop, _queue="long")
                    assert job is not None
                    assert (await notes.receive()).payload == "long"
                assert (await app.get_job(job.id)).queue == "long"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- enqueue_many ----------------------------------------------------------------------


async def test_enqueue_many_in_one_round_trip_with_key_collisions(app: Werk) -> None:
    with trio.fail_after(10):
        taken = await app.enqueue(noop, _key="a")
        assert taken is not None
        batch = [
            EnqueueParams(noop, key="a"),  # collides with the existing job
            EnqueueParams(send_email, args=["x@y.z"], kwargs={"subject": "s"}, key="b", queue="mail"),
            EnqueueParams(noop, key="b"),  # collides inside the batch
            EnqueueParams(noop, priority=5, delay=60),
            EnqueueParams(noop, key="c", retry=Retry(2, 3)),
        ]
        async with app.connection() as conn, round_trips(conn) as trips:
            out = await app.enqueue_many(batch, _conn=conn)
        assert trips == [1]
        assert [j is None for j in out] == [True, False, True, False, False]
        assert await job_count(app) == 4
        jobs = [j for j in out if j is not None]
        assert [j.key for j in jobs] == ["b", None, "c"]
        for j in jobs:
            assert await app.get_job(j.id) == j
        assert jobs[0].queue == "mail" and jobs[0].payload == {"args": ["x@y.z"], "kwargs": {"subject": "s"}}
        assert jobs[1].status is JobStatus.SCHEDULED and jobs[1].priority == 5
        assert jobs[2].max_attempts == 2 and jobs[2].retry_intervals == [3]
        # ids are time-ordered in input order
        assert jobs[0].id < jobs[1].id < jobs[2].id
        assert await app.enqueue_many([]) == []


async def test_enqueue_is_one_round_trip_and_a_taken_key_returns_none(app: Werk) -> None:
    with trio.fail_after(10):
        async with app.connection() as conn, round_trips(conn) as trips:
            first = await app.enqueue(noop, _key="once", _conn=conn)
        assert trips == [1]
        assert first is not None
        assert await app.enqueue(noop, _key="once") is None
        # a taken key with times to compute from now(): still None, nothing inserted
        assert await app.enqueue(noop, _key="once", _delay=5, _ttl=60) is None
        assert await job_count(app) == 1
        await app.delete_job(first)
        again = await app.enqueue(noop, _key="once")  # the key is free once the row is gone
        assert again is not None and again.id != first.id


async def test_enqueue_many_checks_its_input(app: Werk) -> None:
    with trio.fail_after(10):
        with pytest.raises(ConfigError, match="EnqueueParams"):
            await app.enqueue_many([EnqueueParams(noop), noop])  # type: ignore[list-item]
        with pytest.raises(ConfigError):
            await app.enqueue_many([EnqueueParams(noop), EnqueueParams(noop, queue="")])
        with pytest.raises(ConfigError, match="args"):
            await app.enqueue_many([EnqueueParams(noop, args="abc")])  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="no such job"):
            await app.enqueue_many([EnqueueParams(noop), EnqueueParams(noop, depends_on=uuid.uuid4())])
        assert await job_count(app) == 0


# --- enqueue inside the caller's transaction ---------------------------------------------


class Boom(Exception):
    pass


async def test_enqueue_with_conn_joins_the_transaction(app: Werk) -> None:
    table = f'"{app.config.schema}".orders'
    await sql(app, f"CREATE TABLE {table} (id int PRIMARY KEY)")
    with trio.fail_after(10):
        # rollback: neither the caller's row nor the job
        async with app.connection() as conn:
            with pytest.raises(Boom):
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {table} VALUES (1)")
                    job = await app.enqueue(noop, _conn=conn)
                    many = await app.enqueue_many([EnqueueParams(noop)], _conn=conn)
                    assert job is not None and many[0] is not None
                    with pytest.raises(JobNotFound):  # not visible outside before commit
                        await app.get_job(job.id)
                    raise Boom
        assert await job_count(app) == 0
        assert (await sql(app, f"SELECT count(*) FROM {table}"))[0][0] == 0
        with pytest.raises(JobNotFound):
            await app.get_job(job.id)

        # commit: both, and the job's dependencies too (a savepoint inside the block)
        async with app.connection() as conn, conn.transaction():
            await conn.execute(f"INSERT INTO {table} VALUES (2)")
            parent = await app.enqueue(noop, _conn=conn)
            child = await app.enqueue(noop, _depends_on=parent, _conn=conn)
        assert parent is not None and child is not None
        assert (await app.get_job(child.id)).status is JobStatus.WAITING
        assert await job_count(app) == 2
        assert (await sql(app, f"SELECT id FROM {table}")) == [(2,)]


async def test_conn_must_be_an_open_werk_connection(app: Werk) -> None:
    with trio.fail_after(10):
        with pytest.raises(ConfigError, match="_conn"):
            await app.enqueue(noop, _conn=object())
        raw = await Connection.connect(app.dsn)
        await raw.close()
        with pytest.raises(ConfigError, match="closed"):
            await app.enqueue(noop, _conn=raw)
        assert await job_count(app) == 0


# --- before-enqueue callbacks ------------------------------------------------------------


async def test_before_enqueue_callbacks(app: Werk) -> None:
    seen: list[str] = []

    def route(params: EnqueueParams) -> None:
        seen.append("route")
        params.queue = "routed"

    async def stamp(params: EnqueueParams) -> None:
        await trio.lowlevel.checkpoint()
        seen.append("stamp")
        params.meta = {**(params.meta or {}), "stamped": True}

    def refuse(params: EnqueueParams) -> None:
        if params.kwargs.get("to") == "blocked":
            raise ConfigError("refused by policy")

    with trio.fail_after(10):
        app.register_before_enqueue(route)
        app.register_before_enqueue(stamp)
        app.register_before_enqueue(refuse)
        job = await app.enqueue(send_email, to="a@b.c", _meta={"m": 1})
        assert job is not None
        back = await app.get_job(job.id)
        assert back.queue == "routed"
        assert back.meta == {"m": 1, "stamped": True}
        assert seen == ["route", "stamp"]
        with pytest.raises(ConfigError, match="policy"):
            await app.enqueue(send_email, to="blocked")
        many = await app.enqueue_many([EnqueueParams(noop), EnqueueParams(noop)])
        assert all(j is not None and j.queue == "routed" for j in many)
        assert await job_count(app) == 3

        app.unregister_before_enqueue(route)
        app.unregister_before_enqueue(stamp)
        plain = await app.enqueue(noop)
        assert plain is not None and plain.queue == "default" and plain.meta == {}
        with pytest.raises(ConfigError, match="not a registered"):
            app.unregister_before_enqueue(route)
        with pytest.raises(ConfigError, match="callable"):
            app.register_before_enqueue("nope")  # type: ignore[arg-type]


# --- inspecting -----------------------------------------------------------------------------


async def test_get_job(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(noop)
        assert job is not None
        assert await app.get_job(str(job.id)) == job
        assert await app.get_job(job) == job
        missing = uuid.uuid4()
        with pytest.raises(JobNotFound) as info:
            await app.get_job(missing)
        assert info.value.job_id == missing and str(missing) in str(info.value)
        assert isinstance(info.value, LookupError)
        with pytest.raises(ConfigError, match="job id"):
            await app.get_job("not-a-uuid")
        assert await app.get_jobs([job.id, missing]) == {job.id: job}


async def test_list_jobs_filters(app: Werk) -> None:
    with trio.fail_after(10):
        mail = [await app.enqueue(send_email, f"user{i}@example.com", _queue="mail") for i in range(3)]
        other = await app.enqueue(noop, _queue="other", _key="special-key")
        assert all(mail) and other is not None
        worker = await make_active(app, mail[0])  # type: ignore[arg-type]
        await finish(app, mail[1], "failed")  # type: ignore[arg-type]

        everything = await app.list_jobs()
        assert [j.id for j in everything] == [other.id, *[m.id for m in reversed(mail)]]  # type: ignore[union-attr]
        assert {j.id for j in await app.list_jobs(queue="mail")} == {m.id for m in mail}  # type: ignore[union-attr]
        assert [j.id for j in await app.list_jobs(status="failed")] == [mail[1].id]  # type: ignore[union-attr]
        assert [j.id for j in await app.list_jobs(status=JobStatus.ACTIVE)] == [mail[0].id]  # type: ignore[union-attr]
        both = await app.list_jobs(status=["active", JobStatus.FAILED])
        assert {j.id for j in both} == {mail[0].id, mail[1].id}  # type: ignore[union-attr]
        assert [j.id for j in await app.list_jobs(worker_id=worker)] == [mail[0].id]  # type: ignore[union-attr]
        assert [j.id for j in await app.list_jobs(worker_id=str(worker))] == [mail[0].id]  # type: ignore[union-attr]
        assert await app.list_jobs(worker_id=uuid.uuid4()) == []
        assert [j.id for j in await app.list_jobs(search="user2@")] == [mail[2].id]  # type: ignore[union-attr]
        assert [j.id for j in await app.list_jobs(search="SPECIAL")] == [other.id]
        assert len(await app.list_jobs(search="send_email")) == 3
        # a prefix long enough to pass the 48-bit millisecond stamp that jobs
        # enqueued in the same millisecond share (the first 13 characters)
        assert [j.id for j in await app.list_jobs(search=str(other.id)[:23])] == [other.id]
        assert await app.list_jobs(search="%") == []  # LIKE wildcards are literal
        assert await app.list_jobs(search="user_") == []
        assert len(await app.list_jobs(function="tests.integration.test_app.noop")) == 1
        page1 = await app.list_jobs(limit=2)
        page2 = await app.list_jobs(limit=2, offset=2)
        assert [j.id for j in page1 + page2] == [j.id for j in everything]
        assert await app.list_jobs(queue="mail", status="complete") == []
        with pytest.raises(ConfigError, match="unknown job status"):
            await app.list_jobs(status="running")
        for bad in ({"limit": 0}, {"limit": 10_001}, {"offset": -1}, {"limit": "5"}):
            with pytest.raises(ConfigError):
                await app.list_jobs(**bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="worker_id"):
            await app.list_jobs(worker_id="nope")


async def test_get_executions_and_counts(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(noop, _retry=3)
        assert job is not None
        assert await app.get_executions(job.id) == []
        worker = uuid.uuid4()
        await sql(
            app,
            "INSERT INTO {executions} (job_id, attempt, worker_id, status, started_at, finished_at, error) "
            "VALUES (%s, 2, %s, 'running', now(), NULL, NULL), "
            "(%s, 1, %s, 'failed', now() - interval '1 minute', now(), 'ValueError: boom')",
            job.id, worker, job.id, worker,
        )  # fmt: skip
        runs = await app.get_executions(job)
        assert [(r.attempt, r.status) for r in runs] == [
            (1, ExecutionStatus.FAILED),
            (2, ExecutionStatus.RUNNING),
        ]
        assert runs[0].job_id == job.id and runs[0].worker_id == worker
        assert runs[0].error == "ValueError: boom" and runs[0].finished_at is not None
        assert runs[1].finished_at is None and runs[1].error is None
        assert runs[0].started_at < runs[1].started_at

        await app.enqueue(noop, _queue="mail")
        await app.enqueue(noop, _queue="mail", _delay=60)
        assert await app.counts() == {"default": {"queued": 1}, "mail": {"queued": 1, "scheduled": 1}}


# --- managing ----------------------------------------------------------------------------------


async def test_cancel_job(app: Werk) -> None:
    with trio.fail_after(10):
        queued = await app.enqueue(noop)
        scheduled = await app.enqueue(noop, _delay=600)
        assert queued and scheduled
        waiting = await app.enqueue(noop, _depends_on=queued)
        assert waiting is not None
        for job in (waiting, queued, scheduled):
            assert await app.cancel_job(job.id) is True
            cancelled = await app.get_job(job.id)
            assert cancelled.status is JobStatus.ABORTED
            assert cancelled.completed_at is not None
            assert cancelled.error == "cancelled before it started"
        assert await app.cancel_job(queued) is False  # already ended: unchanged
        assert (await app.get_job(queued.id)).completed_at == (await app.get_job(queued.id)).completed_at
        running = await app.enqueue(noop)
        assert running is not None
        await make_active(app, running)
        assert await app.cancel_job(running) is False
        assert (await app.get_job(running.id)).status is JobStatus.ACTIVE
        assert await app.cancel_job(uuid.uuid4()) is False


@asynccontextmanager
async def listening_done(app: Werk) -> AsyncIterator[trio.MemoryReceiveChannel[Any]]:
    """Notifications on the app's finished-jobs channel."""
    send, receive = trio.open_memory_channel[Any](100)
    listener = Listener(app.dsn, [app.sql.done_channel], send)
    async with trio.open_nursery() as nursery:
        await nursery.start(listener.run)
        yield receive
        nursery.cancel_scope.cancel()


async def _family(app: Werk) -> tuple[Job, Job, Job, Job]:
    """A parent, a strict child, a grandchild of that one, a child allowed to fail."""
    parent = await app.enqueue(noop)
    assert parent is not None
    strict = await app.enqueue(noop, _depends_on=parent)
    lenient = await app.enqueue(noop, _depends_on=Dependency(parent, allow_failure=True))
    assert strict is not None and lenient is not None
    grandchild = await app.enqueue(noop, _depends_on=strict)
    assert grandchild is not None
    return parent, strict, grandchild, lenient


async def _assert_resolved(app: Werk, strict: Job, grandchild: Job, lenient: Job) -> None:
    for job in (strict, grandchild):
        back = await app.get_job(job.id)
        assert back.status is JobStatus.FAILED, back
        assert back.error is not None and "DependencyFailed" in back.error
    assert (await app.get_job(lenient.id)).status is JobStatus.QUEUED


async def test_stopping_a_parent_resolves_its_waiting_dependents(app: Werk) -> None:
    """A job that ends without running (cancel, abort before start, bulk cancel)
    is terminal like any other: its dependents stop waiting at once, and
    waiters on the finished-jobs channel hear about it."""
    with trio.fail_after(10):
        parent, strict, grandchild, lenient = await _family(app)
        async with listening_done(app) as done:
            await app.cancel_job(parent)
            assert str(parent.id) in (await done.receive()).payload.split(",")
        await _assert_resolved(app, strict, grandchild, lenient)

        parent, strict, grandchild, lenient = await _family(app)
        assert await app.abort_job(parent) is False  # not started: abort leaves it alone
        assert (await app.get_job(parent.id)).status is JobStatus.QUEUED
        assert (await app.get_job(strict.id)).status is JobStatus.WAITING

        parent, strict, grandchild, lenient = await _family(app)
        await sql(app, "UPDATE {jobs} SET queue = 'bulk' WHERE id = %s", parent.id)
        assert await app.bulk_cancel_jobs(queue="bulk") == 1
        await _assert_resolved(app, strict, grandchild, lenient)


async def test_deleting_a_parent_releases_its_dependents(app: Werk) -> None:
    with trio.fail_after(10):
        parent = await app.enqueue(noop)
        assert parent is not None
        child = await app.enqueue(noop, _depends_on=parent)
        assert child is not None
        await app.delete_job(parent)
        # a dependency whose job is gone counts as ended
        assert (await app.get_job(child.id)).status is JobStatus.QUEUED


async def test_abort_job(app: Werk) -> None:
    with trio.fail_after(10):
        running = await app.enqueue(noop)
        queued = await app.enqueue(noop)
        done = await app.enqueue(noop)
        assert running and queued and done
        worker = await make_active(app, running)
        assert await app.abort_job(running) is True
        aborting = await app.get_job(running.id)
        assert aborting.status is JobStatus.ABORTING
        assert aborting.worker_id == worker and aborting.completed_at is None
        # pgwerk's rule: a job that has not started is not aborted (cancel_job stops it)
        before = await app.get_job(queued.id)
        assert await app.abort_job(queued.id) is False
        assert await app.get_job(queued.id) == before
        await finish(app, done, "complete")
        finished = await app.get_job(done.id)
        assert await app.abort_job(done) is False
        assert await app.get_job(done.id) == finished
        assert await app.abort_job(uuid.uuid4()) is False


async def test_requeue_job(app: Werk) -> None:
    with trio.fail_after(10):
        failed = await app.enqueue(noop, _queue="rq", _retry=2, _ttl=300)
        running = await app.enqueue(noop)
        assert failed and running
        await finish(app, failed, "failed")
        await make_active(app, running)
        async with listening(app) as notes:
            assert await app.requeue_job(failed.id) is True
            assert (await notes.receive()).payload == "rq"
        again = await app.get_job(failed.id)
        assert again.status is JobStatus.QUEUED
        assert (again.attempts, again.error, again.completed_at, again.started_at) == (0, None, None, None)
        assert again.expires_at is not None and again.expires_at > again.scheduled_at
        aborted = await app.enqueue(noop)
        assert aborted is not None and await app.cancel_job(aborted.id) is True
        assert await app.requeue_job(aborted) is True
        assert (await app.get_job(aborted.id)).status is JobStatus.QUEUED
        # pgwerk's rule: queued, scheduled and running jobs are left alone
        for job in (aborted, running, await app.enqueue(noop, _delay=60)):
            assert job is not None
            before = await app.get_job(job.id)
            assert await app.requeue_job(job) is False
            assert await app.get_job(job.id) == before
        assert await app.requeue_job(uuid.uuid4()) is False


async def test_delete_job_cascades(app: Werk) -> None:
    with trio.fail_after(10):
        parent = await app.enqueue(noop)
        assert parent is not None
        child = await app.enqueue(noop, _depends_on=parent)
        assert child is not None
        await sql(app, "INSERT INTO {executions} (job_id, attempt) VALUES (%s, 1)", child.id)
        await app.delete_job(child.id)
        with pytest.raises(JobNotFound):
            await app.get_job(child.id)
        assert await sql(app, "SELECT count(*) FROM {executions}") == [(0,)]
        assert await sql(app, "SELECT count(*) FROM {job_deps}") == [(0,)]
        await app.delete_job(child.id)  # gone already: silent, as pgwerk's
        await app.delete_job(parent)
        assert await job_count(app) == 0


async def test_touch_job(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(noop)
        assert job is not None
        await app.touch_job(job)  # not running: nothing happens, as pgwerk's
        assert (await app.get_job(job.id)).touched_at is None
        await make_active(app, job)
        assert (await app.get_job(job.id)).touched_at is None
        await app.touch_job(job.id)
        touched = await app.get_job(job.id)
        assert touched.touched_at is not None and touched.started_at is not None
        assert touched.touched_at >= touched.started_at
        await app.touch_job(uuid.uuid4())  # missing: silent


async def test_bulk_requeue_and_bulk_cancel(app: Werk) -> None:
    with trio.fail_after(10):
        jobs = {}
        for queue in ("a", "b"):
            for func in (noop, send_email):
                for status in ("failed", "aborted", "complete"):
                    job = await app.enqueue(func, _queue=queue)
                    assert job is not None
                    await finish(app, job, status)
                    jobs[queue, func.__name__, status] = job
        assert await app.bulk_requeue_jobs(queue="a", function_name="tests.integration.test_app.noop") == 2
        assert await app.bulk_requeue_jobs(queue="a") == 2
        assert await app.bulk_requeue_jobs(function_name="tests.integration.test_app.noop") == 2
        assert await app.bulk_requeue_jobs() == 2
        assert await app.bulk_requeue_jobs() == 0
        statuses = {k: (await app.get_job(j.id)).status for k, j in jobs.items()}
        assert all(s is JobStatus.QUEUED for k, s in statuses.items() if k[2] != "complete")
        assert all(s is JobStatus.COMPLETE for k, s in statuses.items() if k[2] == "complete")

        await app.enqueue(noop, _queue="b", _delay=600)
        assert await app.bulk_cancel_jobs(queue="b") == 5  # 4 requeued + 1 scheduled
        assert await app.bulk_cancel_jobs() == 4
        assert await app.bulk_cancel_jobs() == 0
        assert {j.status for j in await app.list_jobs(limit=100)} == {JobStatus.ABORTED, JobStatus.COMPLETE}


async def test_purge_jobs(app: Werk) -> None:
    with trio.fail_after(10):
        old_done, old_failed, old_aborted, new_done = [await app.enqueue(noop) for _ in range(4)]
        queued = await app.enqueue(noop)
        assert old_done and old_failed and old_aborted and new_done and queued
        await finish(app, old_done, "complete", days_ago=3)
        await finish(app, old_failed, "failed", days_ago=3)
        await finish(app, old_aborted, "aborted", days_ago=3)
        await finish(app, new_done, "complete")
        assert await app.purge_jobs(["complete"], older_than_days=2) == 1
        with pytest.raises(JobNotFound):
            await app.get_job(old_done.id)
        assert await app.purge_jobs(older_than_days=2.5) == 2
        remaining = {j.id for j in await app.list_jobs()}
        assert remaining == {new_done.id, queued.id}
        assert await app.purge_jobs() == 1  # every terminal job, however recent
        assert {j.id for j in await app.list_jobs()} == {queued.id}
        with pytest.raises(ConfigError, match="running"):
            await app.purge_jobs(["active"])
        with pytest.raises(ConfigError):
            await app.purge_jobs(["bogus"])
        with pytest.raises(ConfigError, match="older_than_days"):
            await app.purge_jobs(older_than_days=-1)


async def test_vacuum_and_truncate(app: Werk) -> None:
    with trio.fail_after(20):
        parent = await app.enqueue(noop)
        assert parent is not None
        child = await app.enqueue(noop, _depends_on=parent)
        assert child is not None
        await sql(app, "INSERT INTO {executions} (job_id, attempt) VALUES (%s, 1)", parent.id)
        await sql(
            app,
            "INSERT INTO {workers} (id, name, hostname, pid, worker_type, queues, concurrency, "
            "heartbeat_interval) VALUES (%s, 'w', 'h', 1, 'async', ARRAY['default'], 1, 10)",
            uuid.uuid4(),
        )
        await app.vacuum()
        analyzed = await sql(
            app,
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = %s AND last_analyze IS NOT NULL",
            app.config.schema,
        )
        assert {r[0] for r in analyzed} >= {
            "_werk_jobs",
            "_werk_executions",
            "_werk_workers",
            "_werk_job_deps",
        }
        await app.truncate()
        for table in ("jobs", "executions", "workers", "job_deps"):
            assert await sql(app, f"SELECT count(*) FROM {{{table}}}") == [(0,)], table
        assert (await sql(app, "SELECT count(*) FROM {migrations}"))[0][0] >= 1  # the schema stays


# --- serializers ---------------------------------------------------------------------------------


async def test_json_serializer_round_trip(app: Werk) -> None:
    with trio.fail_after(10):
        payload = {"nested": {"list": [1, 2.5, None, True, "ü€"]}, "n": 10**15}
        job = await app.enqueue(noop, "a", 2, _meta={"m": ["x"]}, **payload)
        assert job is not None
        back = await app.get_job(job.id)
        assert back.payload == {"args": ["a", 2], "kwargs": payload}
        assert back.meta == {"m": ["x"]}
        raw = await sql(app, "SELECT payload, meta FROM {jobs}")
        assert json.loads(raw[0][0]) == back.payload and json.loads(raw[0][1]) == {"m": ["x"]}


async def test_pickle_serializer_round_trip(dsn: str, schema: str) -> None:
    with pytest.warns(UserWarning, match="unsafe"):
        serializer = PickleSerializer()
    value = {"when": datetime(2024, 5, 6, 7, 8, tzinfo=UTC), "set": {1, 2}, "bytes": b"\x00\xff"}
    with trio.fail_after(20):
        async with Werk(dsn, schema=schema, serializer=serializer) as app:
            job = await app.enqueue(noop, value, _meta={"tags": frozenset({"a"})})
            assert job is not None
            back = await app.get_job(job.id)
            assert back.payload == {"args": [value], "kwargs": {}}
            assert back.meta == {"tags": frozenset({"a"})}
            raw = (await sql(app, "SELECT payload FROM {jobs}"))[0][0]
            assert raw.isascii() and not raw.startswith("{")  # base64 pickle, not JSON


class Reversed:
    """A custom serializer: JSON, reversed (so the stored text is recognisable)."""

    def dumps(self, obj: Any) -> str:
        return json.dumps(obj)[::-1]

    def loads(self, data: str | bytes) -> Any:
        text = data.decode() if isinstance(data, bytes) else data
        return json.loads(text[::-1])


async def test_custom_serializer_round_trip(dsn: str, schema: str) -> None:
    with trio.fail_after(20):
        async with Werk(dsn, schema=schema, serializer=Reversed()) as app:
            job = await app.enqueue(noop, x=[1, 2], _meta={"k": "v"})
            assert job is not None
            back = await app.get_job(job.id)
            assert back.payload == {"args": [], "kwargs": {"x": [1, 2]}}
            assert back.meta == {"k": "v"}
            raw = await sql(app, "SELECT payload, meta FROM {jobs}")
            assert raw[0] == (json.dumps(back.payload)[::-1], json.dumps({"k": "v"})[::-1])


# --- bad input: a clear error and nothing inserted ---------------------------------------


def _nested() -> Any:
    def inner() -> None:
        pass

    return inner


BAD_ENQUEUES: list[tuple[str, Any, dict[str, Any], type[Exception], str]] = [
    ("lambda", lambda: None, {}, ConfigError, "lambda"),
    ("nested function", _nested(), {}, ConfigError, "inside another function"),
    ("unknown option", noop, {"_queu": "x"}, ConfigError, "unknown enqueue option '_queu'"),
    ("naive _at", noop, {"_at": datetime(2030, 1, 1)}, ConfigError, "naive"),
    ("_at not a datetime", noop, {"_at": "tomorrow"}, ConfigError, "_at"),
    ("_delay and _at", noop, {"_delay": 1, "_at": datetime.now(UTC)}, ConfigError, "at most one"),
    ("negative _delay", noop, {"_delay": -1}, ConfigError, "_delay"),
    ("unserializable payload", noop, {"x": object()}, SerializationError, "payload"),
    ("unserializable meta", noop, {"_meta": {"x": {1, 2}}}, SerializationError, "_meta"),
    ("NaN in payload", noop, {"x": float("nan")}, SerializationError, "payload"),
    ("negative _retry", noop, {"_retry": -1}, ConfigError, "Retry"),
    ("_retry bool", noop, {"_retry": True}, ConfigError, "_retry"),
    ("negative _timeout", noop, {"_timeout": -5}, ConfigError, "_timeout"),
    ("zero _timeout", noop, {"_timeout": 0}, ConfigError, "_timeout"),
    ("NaN _heartbeat", noop, {"_heartbeat": float("nan")}, ConfigError, "_heartbeat"),
    ("_priority text", noop, {"_priority": "high"}, ConfigError, "_priority"),
    ("_priority too big", noop, {"_priority": 2**31}, ConfigError, "_priority"),
    ("_meta not a dict", noop, {"_meta": ["x"]}, ConfigError, "_meta"),
    ("_failure_mode", noop, {"_failure_mode": "explode"}, ConfigError, "_failure_mode"),
    ("_repeat not Repeat", noop, {"_repeat": 3}, ConfigError, "_repeat"),
    ("_on_success lambda", noop, {"_on_success": lambda ctx: None}, ConfigError, "lambda"),
    ("_on_failure bad path", noop, {"_on_failure": "not a path"}, ConfigError, "dotted path"),
    ("_key empty", noop, {"_key": ""}, ConfigError, "_key"),
    ("_queue empty", noop, {"_queue": ""}, ConfigError, "_queue"),
    ("_queue not text", noop, {"_queue": 5}, ConfigError, "_queue"),
    ("_depends_on garbage", noop, {"_depends_on": "garbage"}, ConfigError, "job id"),
    ("_depends_on missing", noop, {"_depends_on": uuid.UUID(int=7)}, ConfigError, "no such job"),
    ("bad function path", "not-a-path", {}, ConfigError, "dotted path"),
    ("not callable", 42, {}, ConfigError, "function"),
]


@pytest.mark.parametrize(
    ("func", "kwargs", "error", "match"),
    [case[1:] for case in BAD_ENQUEUES],
    ids=[case[0] for case in BAD_ENQUEUES],
)
async def test_bad_enqueue_inserts_nothing(
    app: Werk, func: Any, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with trio.fail_after(10):
        with pytest.raises(error, match=match):
            await app.enqueue(func, **kwargs)
        assert await job_count(app) == 0
        # and in a batch with a good job, the good one is not inserted either
        options = {k[1:]: v for k, v in kwargs.items() if k.startswith("_") and k[1:] in ENQUEUE_OPTIONS}
        if len(options) == len(kwargs):
            with pytest.raises(error):
                await app.enqueue_many([EnqueueParams(noop), EnqueueParams(func, **options)])
            assert await job_count(app) == 0


async def test_unknown_option_lists_the_valid_ones(app: Werk) -> None:
    with trio.fail_after(10):
        with pytest.raises(ConfigError) as info:
            await app.enqueue(noop, _queue="q", _prority=5)
        message = str(info.value)
        for option in (*ENQUEUE_OPTIONS, "conn"):
            assert f"_{option}" in message, option
        assert await job_count(app) == 0


def test_retry_and_repeat_validate_themselves() -> None:
    with pytest.raises(ConfigError, match="total number of attempts"):
        Retry(max=0)
    with pytest.raises(ConfigError):
        Retry(3, intervals=[])
    with pytest.raises(ConfigError):
        Retry(3, intervals=[1, -2])
    assert Retry(3, [1, 5]).delay(1) == 1 and Retry(3, [1, 5]).delay(7) == 5
    with pytest.raises(ConfigError):
        Repeat(0, interval=1)
    # pgwerk's defaults: no interval repeats at once; intervals override interval
    assert Repeat(2).get_interval(0) == 0
    assert Repeat(2, interval=1, intervals=[4, 8]).get_interval(5) == 8
    with pytest.raises(ConfigError):
        Repeat(2, interval=-1)
    with pytest.raises(ConfigError):
        Callback(noop, timeout=0)


async def test_payload_size_limit(dsn: str, schema: str) -> None:
    with trio.fail_after(20):
        async with Werk(dsn, schema=schema, max_payload_bytes=1000) as app:
            overhead = len(json.dumps({"args": [""], "kwargs": {}}, separators=(",", ":")))
            fits = await app.enqueue(noop, "x" * (1000 - overhead))
            assert fits is not None
            with pytest.raises(PayloadTooLarge) as info:
                await app.enqueue(noop, "x" * (1001 - overhead))
            assert "max_payload_bytes" in str(info.value) and "1001 bytes" in str(info.value)
            # the limit counts encoded bytes, not characters
            with pytest.raises(PayloadTooLarge):
                await app.enqueue(noop, "é" * 600)
            with pytest.raises(PayloadTooLarge):
                await app.enqueue_many([EnqueueParams(noop), EnqueueParams(noop, args=["y" * 5000])])
            assert await job_count(app) == 1


# --- which functions may run -------------------------------------------------------------


def test_task_resolution_rules(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = Werk(dsn)  # created here: the home package is tests.integration
    assert app.tasks.resolve("tests.integration.test_app.noop") is noop
    # outside the home package and not listed: refused
    with pytest.raises(UnknownTask, match="not allowed"):
        app.tasks.resolve("tests.unit.test_tasks.module_level")
    with pytest.raises(UnknownTask) as info:
        app.tasks.resolve("os.system")
    assert "os.system" in str(info.value)
    assert "@app.task" in str(info.value) and "task_modules" in str(info.value)

    # registered functions run wherever they live
    import json as json_module

    app.register(json_module.loads)
    assert app.tasks.resolve("json.loads") is json_module.loads

    @app.task(name="tools.dump")
    def dump() -> None:
        pass

    assert app.tasks.resolve("tools.dump") is dump
    assert app.register(on_ok) is on_ok and app.tasks.resolve(app.tasks.register(on_ok)) is on_ok
    with pytest.raises(UnknownTask):
        app.tasks.resolve("json.dumps")  # only json.loads was registered

    # task_modules: a module or a package prefix
    listed = Werk(dsn, task_modules=["json", "tests.unit"])
    assert listed.tasks.resolve("json.dumps") is json_module.dumps
    assert listed.tasks.resolve("tests.unit.test_tasks.module_level").__name__ == "module_level"

    # refused paths are never imported
    (tmp_path / "werk_app_canary.py").write_text("raise SystemExit('imported!')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnknownTask):
        app.tasks.resolve("werk_app_canary.run")
    assert "werk_app_canary" not in sys.modules
