"""Issue 10 on a real database: refused calls leave the caller's transaction
usable; the app's filters and times are validated; the home-package rule;
PickleSerializer never unpickles a row whose function the allowlist refuses."""

from __future__ import annotations

import base64
import contextlib
import math
import os
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from psycopg import sql

from werk_trio import ConfigError, JobStatus, PickleSerializer, UnknownTask, Werk, WerkError
from werk_trio.testing import run_until_idle, temporary_schema


async def noop() -> None:
    pass


# --- a refused enqueue sends nothing ---------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [{"_key": "a\x00b"}, {"_group": "g\udcff"}, {"_queue": "q\x00"}, {"_delay": 1e13}, {"_ttl": 9.3e12},
     {"_retry": 2**31}, {"_meta": {"m": math.nan}}, {"_priority": 2**40}, {"x": "\udcff", "_key": "k\x00"}],
)  # fmt: skip
async def test_a_refused_enqueue_leaves_the_callers_transaction_usable(
    app: Werk, bad: dict[str, Any]
) -> None:
    with trio.fail_after(20):
        async with app.connection() as conn, conn.transaction():
            before = await app.enqueue(noop, _conn=conn)
            with pytest.raises(WerkError):
                await app.enqueue(noop, _conn=conn, **bad)
            after = await app.enqueue(noop, _conn=conn)  # InFailedSqlTransaction before the fix
        assert before and after
        assert {j.id for j in await app.list_jobs()} == {before.id, after.id}


async def test_app_filters_and_times_are_validated(app: Werk) -> None:
    job = await app.enqueue(noop)
    assert job is not None
    with trio.fail_after(20):
        for value in (math.nan, math.inf, 1e13, -1):
            with pytest.raises(ConfigError, match="timeout"):
                await app.wait_for(job.id, timeout=value)
        for days in (math.inf, math.nan, 1e9, -1):
            with pytest.raises(ConfigError, match="older_than_days"):
                await app.purge_jobs(older_than_days=days)
        for kwargs in ({"queue": "a\x00"}, {"function": "f\udcff"}, {"search": "s\x00"}, {"queue": 5},
                       {"status": [5]}, {"function": ["x"]}):  # fmt: skip
            with pytest.raises(ConfigError):
                await app.list_jobs(**kwargs)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="queue"):
            await app.bulk_requeue_jobs(queue="q\x00")
        with pytest.raises(ConfigError, match="function_name"):
            await app.bulk_requeue_jobs(function_name=7)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="queue"):
            await app.bulk_cancel_jobs(queue="\udcff")
        assert [j.id for j in await app.list_jobs()] == [job.id]  # nothing changed


# --- the home-package rule ------------------------------------------------------------------


async def test_temporary_schema_gets_the_callers_package(dsn: str) -> None:
    with trio.fail_after(30):
        async with temporary_schema(dsn) as app:
            # werk_trio created it (inside contextlib): before the fix 'contextlib'
            assert app.tasks.home_package == "tests.integration"
            assert not app.tasks.is_allowed("contextlib.suppress")


def test_werk_trio_as_creator_gets_no_home_package() -> None:
    import werk_trio

    where = os.path.join(os.path.dirname(werk_trio.__file__), "cli", "fake_demo.py")
    scope: dict[str, Any] = {"__name__": "werk_trio.cli.fake_demo", "Werk": Werk}
    exec(compile("app = Werk('postgresql://u@h/d')", where, "exec"), scope)
    assert scope["app"].tasks.home_package is None

    async def created_under_trio() -> Werk:  # werk demo: trio's frames drive werk_trio's code
        scope2: dict[str, Any] = {"__name__": "werk_trio.cli.fake_demo", "Werk": Werk}
        exec(compile("async def make():\n    return Werk('postgresql://u@h/d')", where, "exec"), scope2)
        return await scope2["make"]()  # type: ignore[no-any-return]

    assert trio.run(created_under_trio).tasks.home_package is None


@contextlib.contextmanager
def _user_wrapper() -> Iterator[Werk]:
    yield Werk("postgresql://u@h/d")  # created inside contextlib's machinery


def test_user_code_through_the_standard_library_keeps_its_package() -> None:
    with _user_wrapper() as app:
        assert app.tasks.home_package == "tests.integration"
    assert Werk("postgresql://u@h/d", home_package="").tasks.home_package is None
    assert Werk("postgresql://u@h/d", home_package="myapp").tasks.home_package == "myapp"
    with pytest.raises(ConfigError, match="home_package"):
        Werk("postgresql://u@h/d", home_package="not a package")


# --- PickleSerializer: the allowlist before unpickling ---------------------------------------


class _Boom:
    """Unpickling it creates a directory: proof that a row's pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


def _pickled(obj: Any) -> str:
    return base64.b64encode(pickle.dumps(obj)).decode("ascii")


async def test_pickle_rows_of_refused_functions_are_never_unpickled(
    dsn: str, schema: str, tmp_path: Path
) -> None:
    markers = [tmp_path / f"ran{i}" for i in range(4)]
    app = Werk(dsn, schema=schema, task_modules=["tests"], serializer=PickleSerializer(warn=False))
    with trio.fail_after(60):
        async with app:
            queued, finished = uuid.uuid4(), uuid.uuid4()
            table = sql.Identifier(schema, "_werk_jobs")
            async with app.connection() as conn:
                await conn.execute(
                    sql.SQL("INSERT INTO {} (id, function, payload, meta) VALUES (%s, 'os.getcwd', %s, %s)")
                    .format(table), [queued, _pickled(_Boom(markers[0])), _pickled(_Boom(markers[1]))],
                )  # fmt: skip
                await conn.execute(
                    sql.SQL("INSERT INTO {} (id, function, status, completed_at, payload, result) "
                            "VALUES (%s, 'os.getcwd', 'complete', now(), %s, %s)").format(table),
                    [finished, _pickled(_Boom(markers[2])), _pickled(_Boom(markers[3]))],
                )  # fmt: skip
            got = await app.get_job(finished)
            assert got.payload is None and got.result is None
            listed = await app.list_jobs()
            assert {j.id for j in listed} == {queued, finished}
            waited = await app.wait_for(finished, timeout=5)
            assert waited.status is JobStatus.COMPLETE and waited.result is None
            worker = await run_until_idle(app)
            assert worker.stats.get("fail_final") == 1
            failed = await app.get_job(queued)
            assert failed.status is JobStatus.FAILED
            assert UnknownTask.__name__ in (failed.error or "") and "not allowed" in (failed.error or "")
            # an allowed function's row is unpickled as usual
            ok = await app.enqueue(noop)
            assert ok is not None and (await app.get_job(ok.id)).payload == {"args": [], "kwargs": {}}
    assert not any(m.exists() for m in markers), "a row's pickle ran"


# --- a batch the database refuses; actors that meet database errors ---------------------------


async def poison_or_ok(i: int) -> str:
    return "poison" if i == 3 else f"ok {i}"


async def test_a_refused_outcome_fails_alone_and_the_batch_is_written_row_by_row(app: Werk) -> None:
    """A constraint the completer's data breaks (as a user's own CHECK or trigger
    could): the batch is refused, written again one outcome at a time, and only
    the offending job fails -- with the database's message."""
    table = sql.Identifier(app.config.schema, "_werk_jobs")
    async with app.connection() as conn:
        await conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT no_poison CHECK (result IS DISTINCT FROM '\"poison\"')")
            .format(table)
        )  # fmt: skip
    from werk_trio.worker import AsyncWorker

    with trio.fail_after(60):
        jobs = [await app.enqueue(poison_or_ok, i) for i in range(12)]
        worker = AsyncWorker(app, concurrency=12, handle_signals=False)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            ends = {j.id: await app.wait_for(j.id) for j in jobs if j is not None}
            worker.stop()
    for i, job in enumerate(jobs):
        assert job is not None
        end = ends[job.id]
        if i == 3:
            assert end.status is JobStatus.FAILED
            assert "could not store the outcome (complete)" in (end.error or "")
            assert "no_poison" in (end.error or "")  # the database's own message
            assert end.attempts == 1
        else:
            assert end.status is JobStatus.COMPLETE, end.error
            assert end.result == f"ok {i}"
    assert worker.stats.get("complete") == 12  # every attempt ran; one outcome was refused


async def test_actors_log_database_errors_and_go_on(app: Werk, caplog: pytest.LogCaptureFixture) -> None:
    """Heartbeats and sweeps refused by the database (here: triggers that raise)
    are logged with the worker's name; the worker keeps running jobs and stops
    cleanly, deregistered."""
    schema = app.config.schema
    assert schema is not None
    async with app.connection() as conn:
        await conn.execute(
            sql.SQL("CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'refused by a test trigger'; END $$")
            .format(sql.Identifier(schema, "refuse"))
        )  # fmt: skip
        await conn.execute(
            # heartbeats only (status unchanged): deregistration marks the row stopped
            sql.SQL("CREATE TRIGGER refuse_beats BEFORE UPDATE ON {} FOR EACH ROW"
                    " WHEN (NEW.status IS NOT DISTINCT FROM OLD.status) EXECUTE FUNCTION {}()")
            .format(sql.Identifier(schema, "_werk_workers"), sql.Identifier(schema, "refuse"))
        )  # fmt: skip
        await conn.execute(
            sql.SQL("CREATE TRIGGER refuse_deletes BEFORE DELETE ON {} FOR EACH ROW EXECUTE FUNCTION {}()")
            .format(sql.Identifier(schema, "_werk_jobs"), sql.Identifier(schema, "refuse"))
        )  # fmt: skip
    caplog.set_level("WARNING", logger="werk_trio")
    from werk_trio.worker import AsyncWorker

    with trio.fail_after(60):
        expired = await app.enqueue(noop, _result_ttl=0)  # the sweep will try to delete it
        assert expired is not None
        worker = AsyncWorker(app, heartbeat_interval=0.05, sweep_interval=0.05, handle_signals=False,
                             name="hardy")  # fmt: skip
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            while worker.heartbeater.beats == 0 and not _logged(caplog, "heartbeat failed"):
                await trio.sleep(0.02)
            while not _logged(caplog, "sweep failed"):
                await trio.sleep(0.02)
            late = await app.enqueue(poison_or_ok, 1)
            assert late is not None
            assert (await app.wait_for(late.id, timeout=20)).result == "ok 1"  # still working
            worker.stop()
    assert _logged(caplog, "worker hardy: heartbeat failed (RaiseException")
    assert _logged(caplog, "worker hardy: sweep failed (RaiseException")
    # deregistered: the row is marked stopped (kept listed for stopped_worker_retention)
    assert [(w["name"], w["status"]) for w in await app.list_workers()] == [("hardy", "stopped")]


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def test_a_row_that_does_not_decode_is_listed_bare_and_get_job_names_the_column(app: Werk) -> None:
    from werk_trio import SerializationError

    good = await app.enqueue(noop)
    assert good is not None
    bad = uuid.uuid4()
    async with app.connection() as conn:
        await conn.execute(
            sql.SQL("INSERT INTO {} (id, function, meta) VALUES (%s, 'tests.x.y', 'not json')").format(
                sql.Identifier(app.config.schema, "_werk_jobs")
            ),
            [bad],
        )
    with trio.fail_after(20):
        listed = {j.id: j for j in await app.list_jobs()}
        assert set(listed) == {good.id, bad}
        assert listed[good.id].payload == {"args": [], "kwargs": {}}
        assert listed[bad].payload is None and listed[bad].meta == {}
        with pytest.raises(SerializationError, match="column meta does not decode with JSONSerializer"):
            await app.get_job(bad)
