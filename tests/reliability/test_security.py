"""Security checks of the reliability suite (issue 6).

* SQL only from ``werk_trio/sql/``: a static scan of the package source
  (``_sqlscan.py``) fails on string-built SQL anywhere else; every statement
  names its tables and channels through ``sql.Identifier``.
* A job row naming ``os.system`` (or anything else not allowed) fails with
  UnknownTask and runs nothing -- proven by the file the command would create.
* PickleSerializer warns that it is unsafe with untrusted producers.
* The DSN password appears in no log record, exception, row or CLI output.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
import uuid
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import werk_trio
from tests.proctools import child_env, spawn, worker_argv
from werk_trio import AsyncWorker, ConfigError, JobStatus, PickleSerializer, UnknownTask, Werk
from werk_trio.sql import Statements, listen

from . import relapp
from ._faults_support import APP
from ._sqlscan import scan, scan_package

# --- SQL only from werk_trio/sql/ --------------------------------------------------


def test_no_sql_is_built_outside_the_sql_package() -> None:
    package = Path(werk_trio.__file__).parent
    findings, scanned = scan_package(package)
    assert len(scanned) >= 30 and "werk_trio/app.py" in scanned and "werk_trio/actors/completer.py" in scanned
    assert not any(p.startswith("werk_trio/sql/") for p in scanned)
    assert not findings, "SQL built outside werk_trio/sql/:\n" + "\n".join(map(str, findings))


BAD_SNIPPETS = {
    "f-string": 'async def f(conn, t):\n    await conn.execute(f"SELECT * FROM {t}")\n',
    "concatenation": 'async def f(conn, t):\n    await conn.execute("DELETE FROM " + t)\n',
    "percent": 'async def f(conn, t):\n    q = "UPDATE %s SET x = 1" % t\n    await conn.execute(q)\n',
    "format": 'async def f(conn, t):\n    await conn.execute("INSERT INTO {} VALUES (1)".format(t))\n',
    "literal": 'async def f(conn):\n    await conn.execute("TRUNCATE jobs")\n',
    "composed": (
        "from psycopg import sql\n"
        "async def f(conn, c):\n    await conn.execute(sql.SQL('LISTEN {}').format(sql.Identifier(c)))\n"
    ),
    "identifier": "from psycopg.sql import Identifier\nX = Identifier('jobs')\n",
    "variable from a caller": (
        "async def run(conn, query):\n    await conn.execute(query)\n"
        "async def g(conn, app):\n    await run(conn, app.sql.GET_JOB)\n"
        "async def h(conn):\n    await run(conn, 'SELECT 1')\n"
    ),
    "unknown local": "async def f(conn, make):\n    q = make()\n    await conn.execute(q)\n",
    "sql outside a statements object": (
        "from psycopg import sql\nasync def f(conn):\n    await conn.execute(sql.SOMETHING)\n"
    ),
    "sql in a plain constant": 'QUERY = "SELECT id FROM jobs WHERE status = %s"\n',
}

GOOD_SNIPPET = '''
"""Docstrings may say SELECT ... FROM jobs FOR UPDATE SKIP LOCKED."""
import logging
logger = logging.getLogger("x")

class Actor:
    async def beat(self, conn, flag):
        sql = self.app.sql
        await conn.execute(sql.HEARTBEAT_WORKER, {"id": 1})
        query = sql.CLAIM_PRIORITY if flag else sql.CLAIM_BY_QUEUE
        await conn.execute(query, {})
        await conn.execute(self.app.sql.render(self.migration.template))
        await self._fetch(conn, self.app.sql.GET_JOB)
        logger.warning("LISTEN connection lost (%s); reconnecting", flag)

    async def _fetch(self, conn, statement):
        return await conn.execute(statement)
'''


@pytest.mark.parametrize("name", sorted(BAD_SNIPPETS))
def test_the_scan_finds_string_built_sql(name: str) -> None:
    findings = scan({f"bad/{name}.py": BAD_SNIPPETS[name]})
    assert findings, f"the scan missed: {BAD_SNIPPETS[name]}"


def test_the_scan_accepts_named_statements() -> None:
    assert scan({"good.py": GOOD_SNIPPET}) == []


def test_every_name_in_a_statement_is_an_identifier(monkeypatch: pytest.MonkeyPatch) -> None:
    """Statements fill their templates through sql.Identifier only (and the
    NOTIFY channels derived from those names through sql.Literal); bad names
    are refused before any SQL exists; odd but valid names come out quoted."""
    filled: list[Any] = []
    original = sql.SQL.format

    def spy(self: sql.SQL, *args: Any, **kwargs: Any) -> sql.Composed:
        filled.extend(args)
        filled.extend(kwargs.values())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sql.SQL, "format", spy)
    statements = Statements("Odd_Schema", "Pre_fix")
    channel = listen('we"ird')
    channels = {statements.jobs_channel, statements.done_channel, statements.control_channel}
    literals = [v for v in filled if isinstance(v, sql.Literal)]
    assert {v.as_string(None).strip("'") for v in literals} == channels, literals
    names = [v for v in filled if not isinstance(v, sql.Literal)]
    assert names and all(isinstance(v, sql.Identifier) for v in names), {type(v) for v in names}
    assert "pg_notify('Odd_Schema.Pre_fix_jobs', queue)" in statements.INSERT_JOBS
    assert '"Odd_Schema"."Pre_fix_jobs"' in statements.INSERT_JOBS
    assert channel.as_string(None) == 'LISTEN "we""ird"'
    rendered = [getattr(statements, n) for n in werk_trio.sql.statement_names()]
    assert len(rendered) > 30
    assert not [s for s in rendered if re.search(r"\{\w+\}", s)], "a placeholder was left unfilled"
    for bad in ('x"; DROP TABLE jobs; --', "a b", "1abc", "", "x" * 41, "ü"):
        with pytest.raises(ConfigError):
            Statements(bad, "_werk")
        with pytest.raises(ConfigError):
            Statements(None, bad)
        with pytest.raises(ConfigError):
            Werk("postgresql://localhost/x", schema=bad)


# --- a job naming os.system runs nothing ------------------------------------------------


@pytest.mark.parametrize("worker_type", ["async", "fork"])
async def test_job_naming_os_system_fails_with_unknown_task_and_runs_nothing(
    worker_type: str, app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    """Rows naming functions no one allowed -- os.system itself, os.system
    reached through an allowed module's attributes, builtins.exec, and a module
    outside task_modules whose import would leave a mark -- are each failed
    with UnknownTask on their first attempt (no retry), and nothing ran."""
    with trio.fail_after(90):
        await trio.to_thread.run_sync(relapp.create_history, dsn, schema)
        marks = {n: tmp_path / f"ran-{n}" for n in ("system", "through", "exec", "imported", "called")}
        evil = f"werk_evil_{uuid.uuid4().hex[:8]}"
        (tmp_path / "mods").mkdir()
        (tmp_path / "mods" / f"{evil}.py").write_text(
            f"open({str(marks['imported'])!r}, 'w').close()\n"
            f"def run():\n    open({str(marks['called'])!r}, 'w').close()\n"
        )
        rows = {
            "os.system": ["touch " + str(marks["system"])],
            "tests.reliability.relapp.os.system": ["touch " + str(marks["through"])],
            "builtins.exec": [f"open({str(marks['exec'])!r}, 'w').close()"],
            f"{evil}.run": [],
        }
        jobs = {path: await app.enqueue(path, *args, _queue="sec", _retry=3) for path, args in rows.items()}
        honest = await app.enqueue(relapp.work, _queue="sec")  # the worker does run allowed jobs
        assert honest is not None
        env = child_env(dsn, schema, PYTHONPATH=str(tmp_path / "mods"))
        argv = worker_argv("--queues", "sec", "--worker-type", worker_type, "--burst", app=APP)
        async with spawn(argv, env=env, log_path=tmp_path / "w.log") as w:
            assert await w.wait() == 0, w.output()
        assert (await app.get_job(honest.id)).status is JobStatus.COMPLETE, w.output()
        for path, job in jobs.items():
            assert job is not None
            done = await app.get_job(job.id)
            assert done.status is JobStatus.FAILED, (path, done.status, done.error)
            assert done.attempts == 1, f"{path}: retrying cannot help, attempts={done.attempts}"
            assert "UnknownTask" in (done.error or "") and path in (done.error or ""), done.error
            assert "app.task" in (done.error or ""), "the error says how to allow it"
        ran = [n for n, mark in marks.items() if mark.exists()]
        assert not ran, f"refused jobs had side effects: {ran}\n{w.output()}"
        runs = [r for r in await _history_ids(app, schema)]
        assert runs == [honest.id], "only the allowed job ran"


def test_functions_reachable_from_an_allowed_module_but_living_elsewhere_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Allowing a module allows what it defines, not everything it imported."""
    name = f"werk_tasks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "import os\nfrom os import system\nfrom subprocess import run as launch\n"
        "GREETING = 'hi'\nclass Tasks:\n    @staticmethod\n    def ok():\n        return 1\n"
        "def own():\n    return 2\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry = Werk("postgresql://localhost/x", task_modules=[name]).tasks
        for path in (f"{name}.system", f"{name}.launch", f"{name}.os.system", f"{name}.os.path.join",
                     f"{name}.GREETING.join", f"{name}.Tasks.ok.__call__"):  # fmt: skip
            with pytest.raises(UnknownTask, match="not allowed"):
                registry.resolve(path)
        assert registry.resolve(f"{name}.own")() == 2
        assert registry.resolve(f"{name}.Tasks.ok")() == 1
    finally:
        sys.modules.pop(name, None)


async def _history_ids(app: Werk, schema: str) -> list[Any]:
    async with app.connection() as conn:
        cur = await conn.execute(sql.SQL("SELECT job_id FROM {}").format(relapp.history_table(schema)))
        return [r[0] for r in await cur.fetchall()]


# --- PickleSerializer warns ---------------------------------------------------------------


def test_pickle_serializer_warns_that_it_is_unsafe() -> None:
    with pytest.warns(UserWarning, match="unsafe unless every writer of the jobs table is trusted"):
        PickleSerializer()
    with pytest.warns(UserWarning, match="unsafe"):
        Werk("postgresql://localhost/x", serializer=PickleSerializer())
    assert "UNSAFE" in (PickleSerializer.__doc__ or "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PickleSerializer(warn=False)  # the documented, explicit opt-out


# --- the DSN password is never shown ------------------------------------------------------

PASSWORD = "Pw9xK2s3cretQ"


def _with_password(dsn: str, password: str = PASSWORD) -> str:
    """``dsn`` as a URL with ``password`` (the embedded server trusts its socket,
    so any password connects)."""
    params = conninfo_to_dict(dsn)
    user = params.pop("user", None) or "postgres"
    dbname = params.pop("dbname", None) or "postgres"
    params.pop("password", None)
    return f"postgresql://{quote(user)}:{password}@/{quote(dbname)}?{urlencode(params)}"


async def secret_job(x: int) -> int:
    return 2 * x


async def secret_fail() -> None:
    raise ValueError("a handler error")


def _exception_text(exc: BaseException) -> str:
    parts = ["".join(traceback.format_exception(exc)), repr(exc), str(exc), repr(exc.args)]
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
        if not exc.__suppress_context__ or seen is exc.__cause__:
            parts.append(repr(seen))
    return "\n".join(parts)


async def test_password_is_in_no_log_record_exception_or_row(
    dsn: str, schema: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_dsn = _with_password(dsn)
    caplog.set_level(logging.DEBUG)
    # werk_trio's own handler (when a log_level is set) stops propagation: see every record
    monkeypatch.setattr(logging.getLogger("werk_trio"), "propagate", True)
    texts: list[str] = []
    with trio.fail_after(60):
        app = Werk(secret_dsn, schema=schema, task_modules=["tests"])
        texts += [repr(app), str(app), repr(app.config), str(app.config)]
        async with app:
            assert PASSWORD in app.dsn  # the conninfo in use (documented: never log it)
            texts += [repr(app)]
            good = await app.enqueue(secret_job, 21)
            bad = await app.enqueue(secret_fail, _retry=2)
            unknown = await app.enqueue("os.getcwd")
            assert good and bad and unknown
            worker = AsyncWorker(app, burst=True, handle_signals=False, concurrency=2)
            texts += [repr(worker)]
            await worker.run()
            assert (await app.get_job(good.id)).status is JobStatus.COMPLETE
            assert (await app.get_job(bad.id)).status is JobStatus.FAILED
            rows = await _all_rows(app)
            assert len(rows) > 5
            texts += rows
        # connection failures: a refused port, a missing database, a malformed DSN
        failing = [
            "postgresql://postgres:" + PASSWORD + "@127.0.0.1:1/postgres",
            f"host=127.0.0.1 port=1 user=postgres password={PASSWORD} dbname=postgres",
            # the test server with a database that does not exist (whatever form WERK_TEST_DSN has)
            make_conninfo(_with_password(dsn), dbname="no_such_db_" + uuid.uuid4().hex[:6]),
            f"postgresql://postgres:{PASSWORD}@localhost:notaport/postgres",
            f"postgres//postgres:{PASSWORD}@localhost/postgres",
        ]
        for bad_dsn in failing:
            with pytest.raises(ConfigError) as info:
                async with Werk(bad_dsn, schema=schema, connect_timeout=2):
                    pass
            texts.append(_exception_text(info.value))
            texts += [repr(Werk(bad_dsn)), repr(Werk(bad_dsn).config)] if "notaport" not in bad_dsn else []
    records = caplog.records
    assert any("using database" in r.getMessage() for r in records), "the log says which database is used"
    for record in records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(_exception_text(record.exc_info[1]))
    leaks = [t for t in texts if PASSWORD in t]
    assert not leaks, f"the password leaked in {len(leaks)} place(s): {leaks[:3]}"


async def _all_rows(app: Werk) -> list[str]:
    """Every row of every table in the app's schema, as text."""
    out = []
    async with app.connection() as conn:
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (app.config.schema,)
        )
        for (table,) in await cur.fetchall():
            cur = await conn.execute(
                sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(app.config.schema, table))
            )
            out += [r[0] for r in await cur.fetchall()]
    return out


async def test_password_is_in_no_cli_output(app: Werk, dsn: str, schema: str, tmp_path: Path) -> None:
    secret_dsn = _with_password(dsn)
    with trio.fail_after(120):
        await app.enqueue(secret_job, 1, _queue="cli")
        await app.enqueue(secret_fail, _queue="cli")
        env = child_env(secret_dsn, schema)
        cli = [sys.executable, "-m", "werk_trio.cli"]
        commands = {
            "migrate": [*cli, "migrate", APP, "--log-level", "DEBUG"],
            "info": [*cli, "info", APP, "--log-level", "DEBUG"],
            "stats": [*cli, "stats", APP],
            "jobs": [*cli, "jobs", APP, "--queue", "cli"],
            "purge": [*cli, "purge", APP, "--status", "aborted"],
            "worker": worker_argv("--queues", "cli", "--burst", "--log-level", "DEBUG", app=APP),
            "worker-json": worker_argv("--queues", "cli", "--burst", "--log-format", "json",
                                       "--log-level", "DEBUG", app=APP),
        }  # fmt: skip
        unreachable = child_env(f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/postgres", schema)
        results: dict[str, tuple[int, str]] = {}

        async def run(name: str, argv: list[str], env: dict[str, str]) -> None:
            async with spawn(argv, env=env, log_path=tmp_path / f"{name}.log") as child:
                code = await child.wait()
            results[name] = (code, child.output())

        await run("migrate", commands.pop("migrate"), env)  # before the others touch the schema
        async with trio.open_nursery() as nursery:
            for name, argv in commands.items():
                nursery.start_soon(run, name, argv, env)
            nursery.start_soon(run, "info-unreachable", [*cli, "info", APP], unreachable)
            nursery.start_soon(run, "worker-unreachable", worker_argv(app=APP), unreachable)
    for name, (code, out) in results.items():
        assert PASSWORD not in out, f"{name} printed the password:\n{out}"
        if name.endswith("unreachable"):
            assert code != 0 and "werk: error: cannot connect" in out, (name, out)
        else:
            assert code == 0, (name, out)
    assert "using database" in results["worker"][1]
    assert "│ cli " in results["info"][1]  # the queue's row of the counts table
    assert (await app.counts())["cli"] == {"complete": 1, "failed": 1}
