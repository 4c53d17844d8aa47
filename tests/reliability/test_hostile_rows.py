"""Issue 10: rows written past the API cannot stop a worker.

Each row is inserted straight into the jobs table with a value the API would
refuse -- bad JSON, JSON of the wrong shape, NaN / Infinity / 1e300 seconds,
callbacks without a function, timestamps at +-infinity or past year 9999, no
attempts left, NUL-laden text, a producer on another serializer -- beside good
jobs. Then a real ``werk worker --burst`` process drains the queue, and:

* it exits 0 (no crash loop, no traceback);
* every row that does not decode ends ``failed`` on its first claim, final,
  with an error naming the column (and, for payload/meta, the serializer);
* rows the worker can make sense of (a clamped timestamp, a last attempt)
  complete, and so does every good job, also those claimed in the same batch;
* rows that are never claimed (finished rows with absurd TTLs) survive every
  sweep untouched instead of crashing it;
* no worker row is left behind, and a second burst worker finds nothing to do.

Without the fixes the first such row crash-looped every worker of the queue
(exit 1, attempt given back unspent), taking the good jobs of its claim down.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import psycopg
import trio
from psycopg import sql

from tests.proctools import child_env, spawn, worker_argv
from werk_trio import JobStatus, Werk

OK = "tests.reliability.hostile_tasks.ok"
FAIL = "tests.reliability.hostile_tasks.fail"
GOOD_PAYLOAD = '{"args":[1],"kwargs":{}}'
JSON = "JSONSerializer()"

#: Column types, for the casts of the INSERT.
TYPES = {
    "payload": "text", "meta": "text", "result": "text", "error": "text", "function": "text",
    "queue": "text", "key": "text", "group_key": "text", "cron_name": "text", "status": "text",
    "failure_mode": "text", "on_success": "jsonb", "on_failure": "jsonb", "on_stopped": "jsonb",
    "timeout_secs": "float8", "heartbeat_secs": "float8", "ttl": "float8", "result_ttl": "float8",
    "failure_ttl": "float8", "repeat_interval_secs": "float8", "retry_intervals": "float8[]",
    "repeat_intervals": "float8[]", "priority": "int4", "attempts": "int4", "max_attempts": "int4",
    "repeat_remaining": "int4", "scheduled_at": "timestamptz", "enqueued_at": "timestamptz",
    "started_at": "timestamptz", "completed_at": "timestamptz", "touched_at": "timestamptz",
    "expires_at": "timestamptz", "worker_id": "uuid",
}  # fmt: skip

INF, NAN = math.inf, math.nan

#: (label, columns, expected end, fragments the error must contain)
#: expected "failed": fails on its first claim, final; "complete": runs;
#: "kept": a finished row no worker claims (its status must not change).
ROWS: list[tuple[str, dict[str, Any], str, tuple[str, ...]]] = [
    # payload
    ("payload not JSON", {"payload": "not json"}, "failed", ("column payload", JSON)),
    ("payload from a PickleSerializer producer", {"payload": "gASVEAAAAAAAAAB9lIwEYXJnc5RdlHMu"},
     "failed", ("column payload", JSON)),
    ("payload a JSON list", {"payload": "[1, 2]"}, "failed", ("column payload", "args")),
    ("payload args not a list", {"payload": '{"args": 5}'}, "failed", ("column payload",)),
    ("payload kwargs not a dict", {"payload": '{"args": [], "kwargs": [1]}'}, "failed", ("column payload",)),
    ("payload empty text", {"payload": ""}, "failed", ("column payload", JSON)),
    # decodes (Python's json reads NaN), runs, and its echoed result cannot be encoded
    ("payload JSON NaN", {"payload": '{"args": [NaN], "kwargs": {}}'}, "failed",
     ("cannot serialize the result",)),
    ("payload with escaped NUL", {"payload": '{"args": ["a\\u0000b"], "kwargs": {}}'}, "complete", ()),
    ("payload with escaped lone surrogate", {"payload": '{"args": ["x\\udcff"], "kwargs": {}}'},
     "complete", ()),
    ("payload NULL", {"payload": None}, "complete", ()),
    # meta
    ("meta not JSON", {"meta": "{oops"}, "failed", ("column meta", JSON)),
    ("meta a JSON list", {"meta": "[1]"}, "failed", ("column meta", "not a dict")),
    # callbacks
    ("on_success without func", {"on_success": '{"timeout": 1}'}, "failed", ("column on_success",)),
    ("on_failure a JSON string", {"on_failure": '"pkg.mod.fn"'}, "failed", ("column on_failure",)),
    ("on_stopped func not a string", {"on_stopped": '{"func": 5}'}, "failed", ("column on_stopped",)),
    ("on_success timeout text", {"on_success": '{"func": "tests.x.y", "timeout": "soon"}'},
     "failed", ("column on_success",)),
    ("on_success timeout 1e300", {"on_success": '{"func": "tests.x.y", "timeout": 1e300}'},
     "failed", ("column on_success",)),
    # seconds
    ("timeout_secs NaN", {"timeout_secs": NAN}, "failed", ("column timeout_secs", "nan")),
    ("timeout_secs Infinity", {"timeout_secs": INF}, "failed", ("column timeout_secs", "inf")),
    ("timeout_secs 1e300", {"timeout_secs": 1e300}, "failed", ("column timeout_secs",)),
    ("heartbeat_secs NaN", {"heartbeat_secs": NAN}, "failed", ("column heartbeat_secs",)),
    ("heartbeat_secs 1e300", {"heartbeat_secs": 1e300}, "failed", ("column heartbeat_secs",)),
    ("ttl Infinity", {"ttl": INF}, "failed", ("column ttl",)),
    ("result_ttl 1e12", {"result_ttl": 1e12}, "failed", ("column result_ttl",)),
    ("failure_ttl NaN", {"failure_ttl": NAN}, "failed", ("column failure_ttl",)),
    ("retry_intervals Infinity", {"function": FAIL, "max_attempts": 3, "retry_intervals": [INF]},
     "failed", ("column retry_intervals",)),
    ("retry_intervals NULL entry", {"function": FAIL, "max_attempts": 3, "retry_intervals": [None]},
     "failed", ("column retry_intervals",)),
    ("retry_intervals negative", {"function": FAIL, "max_attempts": 3, "retry_intervals": [-5.0]},
     "failed", ("column retry_intervals",)),
    ("repeat_interval_secs Infinity", {"repeat_remaining": 2, "repeat_interval_secs": INF},
     "failed", ("column repeat_interval_secs",)),
    ("repeat_intervals 1e300", {"repeat_remaining": 1, "repeat_intervals": [1e300]},
     "failed", ("column repeat_intervals",)),
    # function
    ("function os.system", {"function": "os.system"}, "failed", ("not allowed",)),
    ("function not a path", {"function": "not a path!"}, "failed", ("not a dotted path",)),
    ("function 5000 characters", {"function": "tests." + "x" * 5000}, "failed", ("not found",)),
    ("function with a newline", {"function": OK + "\n"}, "failed", ("not a dotted path",)),
    ("function in a module whose import raises", {"function": "tests.reliability.hostile_broken_module.f"},
     "failed", ("RuntimeError", "cannot be imported")),
    # timestamps past what Python can load: read clamped, the job runs
    ("scheduled_at -infinity", {"scheduled_at": "-infinity"}, "complete", ()),
    ("enqueued_at -infinity", {"enqueued_at": "-infinity"}, "complete", ()),
    ("expires_at infinity", {"expires_at": "infinity"}, "complete", ()),
    ("expires_at year 20000", {"expires_at": "20000-01-01 00:00Z"}, "complete", ()),
    ("touched_at infinity on a queued row", {"touched_at": "infinity"}, "complete", ()),
    ("started_at -infinity on a queued row", {"started_at": "-infinity"}, "complete", ()),
    ("completed_at infinity on a queued row", {"completed_at": "infinity"}, "complete", ()),
    # integers and status combinations the constraints allow
    ("no attempts left on a queued row", {"attempts": 1, "max_attempts": 1}, "complete", ()),
    ("priority int32 max", {"priority": 2**31 - 1}, "complete", ()),
    ("priority int32 min", {"priority": -(2**31)}, "complete", ()),
    ("max_attempts int32 max", {"max_attempts": 2**31 - 1}, "complete", ()),
    ("repeat_remaining int32 max", {"repeat_remaining": 2**31 - 1, "repeat_interval_secs": 3600.0},
     "repeats", ()),
    ("worker_id of nobody on a queued row", {"worker_id": str(uuid.uuid4())}, "complete", ()),
    ("scheduled, due, no delay", {"status": "scheduled"}, "complete", ()),
    # text the API would refuse (Postgres text cannot hold NUL itself)
    ("key with control characters", {"key": "\x1b[2J\x07" + uuid.uuid4().hex}, "complete", ()),
    ("group_key 10000 characters", {"group_key": "g" * 10000}, "complete", ()),
    ("cron_name with a newline", {"cron_name": "a\nb"}, "complete", ()),
    ("error and result junk on a queued row", {"error": "\x1b]0;x\x07", "result": "not json"},
     "complete", ()),
    # finished rows no worker claims: every sweep must survive them
    ("complete row, result_ttl 1e12", {"status": "complete", "completed_at": "now", "result_ttl": 1e12,
                                       "result": "1"}, "kept", ()),
    ("complete row, result_ttl Infinity", {"status": "complete", "completed_at": "now",
                                           "result_ttl": INF}, "kept", ()),
    ("failed row, failure_ttl 1e300", {"status": "failed", "completed_at": "now", "failure_ttl": 1e300,
                                       "error": "x"}, "kept", ()),
    ("aborted row, failure_ttl NaN", {"status": "aborted", "completed_at": "now", "failure_ttl": NAN},
     "kept", ()),
    # the sweep deletes a finished row at its expires_at (every statement that ends
    # a job sets it from the TTL): one at -infinity goes, one without it stays
    ("failed row expiring at -infinity, failure_ttl Infinity",
     {"status": "failed", "completed_at": "-infinity", "failure_ttl": INF, "expires_at": "-infinity"},
     "deleted", ()),
    ("complete row expiring past year 9999", {"status": "complete", "completed_at": "now", "result_ttl": 1.0,
                                              "expires_at": "20000-01-01"}, "kept", ()),
    ("complete row at -infinity with a result_ttl but no expires_at",
     {"status": "complete", "completed_at": "-infinity", "result_ttl": 1.0}, "kept", ()),
]  # fmt: skip

GOOD_JOBS = 12


def _insert(conn: psycopg.Connection[Any], schema: str, job_id: uuid.UUID, columns: dict[str, Any]) -> None:
    values = {"id": job_id, "function": OK, "payload": GOOD_PAYLOAD, **columns}
    names = list(values)
    casts = [sql.SQL("%s") if n == "id" else sql.SQL("%s::" + TYPES[n]) for n in names]
    conn.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(schema, "_werk_jobs"),
            sql.SQL(", ").join(sql.Identifier(n) for n in names),
            sql.SQL(", ").join(casts),
        ),
        [values[n] for n in names],
    )


def _row(conn: psycopg.Connection[Any], schema: str, job_id: uuid.UUID) -> tuple[Any, ...] | None:
    found = conn.execute(
        sql.SQL("SELECT status, error, attempts, repeat_remaining, worker_id FROM {} WHERE id = %s").format(
            sql.Identifier(schema, "_werk_jobs")
        ),
        [job_id],
    ).fetchone()
    return None if found is None else tuple(found)


async def test_hostile_rows_fail_alone_and_the_worker_exits_cleanly(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    ids: dict[str, uuid.UUID] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for label, columns, _, _ in ROWS:
            ids[label] = uuid.uuid4()
            _insert(conn, schema, ids[label], columns)
    with trio.fail_after(120):
        good = [await app.enqueue(OK, i) for i in range(GOOD_JOBS)]
        env = child_env(dsn, schema)
        argv = worker_argv("--burst", "--concurrency", "4", "--log-level", "INFO")
        async with spawn(argv, env=env, log_path=tmp_path / "w1.log") as worker:
            code = await worker.wait()
        output = worker.output()
        assert code == 0, output
        assert "Traceback" not in output, output
        # a second worker: every bad row is final, so nothing is left to claim
        async with spawn(argv, env=env, log_path=tmp_path / "w2.log") as second:
            assert await second.wait() == 0, second.output()
        assert "stopped (no jobs)" in second.output(), second.output()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for label, columns, expected, fragments in ROWS:
            row = _row(conn, schema, ids[label])
            if expected == "deleted":
                assert row is None, (label, row)
                continue
            assert row is not None, label
            status, error, attempts, _repeat_remaining, _ = row
            if expected == "failed":
                assert status == "failed", (label, status, error)
                assert attempts == 1, (label, attempts)  # its first claim, final: no retry
                for fragment in fragments:
                    assert fragment in (error or ""), (label, fragment, error)
            elif expected == "complete":
                assert status == "complete", (label, status, error)
            elif expected == "repeats":  # ran; its next run is a row of its own, scheduled
                assert status == "complete", (label, status, error)
                nxt = conn.execute(
                    sql.SQL("SELECT status FROM {} WHERE repeat_remaining = %s").format(
                        sql.Identifier(schema, "_werk_jobs")), (2**31 - 2,)
                ).fetchall()  # fmt: skip
                assert nxt == [("scheduled",)], (label, nxt)
            else:
                assert status == columns["status"], (label, status)
        workers = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE status <> 'stopped'").format(
                sql.Identifier(schema, "_werk_workers"))
        ).fetchone()  # fmt: skip
        assert workers == (0,), "a worker was left registered (not deregistered as stopped)"
    for job in good:
        assert job is not None
        done = await app.get_job(job.id)
        assert done.status is JobStatus.COMPLETE, done.error
        assert done.result == {"args": [job.args[0]], "kwargs": {}}
    # rows with clamped times read back through the API as well
    clamped = await app.get_job(ids["expires_at year 20000"])
    assert clamped.expires_at is not None and clamped.expires_at.year == 9999, clamped
