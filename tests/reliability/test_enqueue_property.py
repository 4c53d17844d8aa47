"""Issue 10: a property of the whole public enqueue surface (Hypothesis).

Every generated call of ``app.enqueue`` -- any function (a handler, a failing
one, a path nobody may run, a lambda, junk), any payload (JSON or not, NaN,
lone surrogates, NUL, deep nesting) and any value of every ``_`` option
(wrong types, NaN, Infinity, 1e300, 2**63, NUL and surrogates in text, naive
datetimes, huge lists) -- either

* raises a WerkError and inserts nothing; with ``_conn=`` inside the caller's
  transaction, that transaction is still usable afterwards; or
* inserts a job that a worker then drives to a terminal state (or deletes, as
  its failure mode or result TTL asks), the worker staying alive throughout.

Each example runs on the same schema; after Hypothesis is done, time is
moved on for jobs scheduled later (their ``scheduled_at`` set to now) and a
burst worker over every queue seen runs until nothing is left.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from werk_trio import Callback, Repeat, Retry, Werk, WerkError
from werk_trio.worker import AsyncWorker

EXAMPLES = 300

OK = "tests.reliability.hostile_tasks.ok"
FAIL = "tests.reliability.hostile_tasks.fail"


def _lambda(x: int) -> int:
    return x


texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "a\x00b", "x\udcff", "q" * 1001, "\x1b[2J", "default", "é"]),
)
numbers = st.one_of(
    st.sampled_from([0, 0.0, 0.001, 1, 5, -1, math.nan, math.inf, -math.inf, 1e300, 1e13, 9.3e12,
                     2**31, 2**63, 10**400, True, 3.15e9, 3.2e9]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
)
small_seconds = st.sampled_from([0, 0.001, 0.01])
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
odd_values = st.one_of(json_values, st.sampled_from([b"bytes", {1, 2}, object(), 10**400]))


def _retry() -> st.SearchStrategy[Any]:
    good = st.builds(lambda n, iv: Retry(n, iv), st.integers(1, 3), small_seconds)
    raw = st.one_of(numbers, st.just("3"), st.just([1, 2]))
    intervals = st.one_of(numbers, st.lists(numbers, max_size=3))
    bad_retry = st.builds(lambda n, iv: ("Retry", n, iv), numbers, intervals)
    return st.one_of(st.none(), st.integers(1, 3), good, raw, bad_retry)


def _repeat() -> st.SearchStrategy[Any]:
    good = st.builds(lambda n: Repeat(n, interval=0), st.integers(1, 2))
    bad = st.builds(lambda n, iv: ("Repeat", n, iv), numbers, numbers)
    bad_list = st.builds(lambda n, ivs: ("RepeatList", n, ivs), numbers, st.lists(numbers, max_size=4))
    return st.one_of(st.none(), good, bad, bad_list, st.just(3))


def _callback() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.just(OK), st.just("not a path"), st.just(_lambda), st.just(lambda ctx: None),
        st.builds(lambda t: ("Callback", OK, t), numbers), st.just(5),
    )  # fmt: skip


def _datetimes() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),  # naive
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
        st.just(datetime.now(timezone(timedelta(hours=5)))),
        st.just("2030-01-01"),
    )


OPTIONS = {
    "_queue": st.one_of(st.none(), texts, st.just(5)),
    "_priority": st.one_of(st.none(), numbers),
    "_delay": st.one_of(st.none(), numbers, small_seconds),
    "_at": _datetimes(),
    "_retry": _retry(),
    "_timeout": st.one_of(st.none(), numbers, st.just(30)),
    "_heartbeat": st.one_of(st.none(), numbers),
    "_key": st.one_of(st.none(), texts, st.just(uuid.uuid4().hex), st.just(7)),
    "_group": st.one_of(st.none(), texts),
    "_meta": st.one_of(st.none(), st.dictionaries(texts, odd_values, max_size=3), st.just([1]),
                       st.just({"big": "m" * 70_000})),
    "_ttl": st.one_of(st.none(), numbers),
    "_result_ttl": st.one_of(st.none(), numbers),
    "_failure_ttl": st.one_of(st.none(), numbers),
    "_failure_mode": st.one_of(st.none(), st.sampled_from(["hold", "delete", "x", ""])),
    "_on_success": _callback(),
    "_on_failure": _callback(),
    "_on_stopped": _callback(),
    "_repeat": _repeat(),
    "_depends_on": st.one_of(st.none(), st.just("not-a-uuid"), st.just(uuid.uuid4()), st.just(5)),
}

calls = st.fixed_dictionaries(
    {
        "func": st.sampled_from([OK, OK, OK, FAIL, "os.system", "tests.no.such", "bad path", _lambda,
                                 lambda: None, 5, "a." + "x" * 1100]),
        "args": st.lists(odd_values, max_size=3),
        "kwargs": st.dictionaries(st.from_regex(r"\A[a-z]{1,8}\Z"), odd_values, max_size=2),
        "with_conn": st.booleans(),
    },
    optional={name: strategy for name, strategy in OPTIONS.items()},
)


def _realize(value: Any) -> Any:
    """Option values built lazily, so that their own constructors' errors
    count as part of the call (they raise ConfigError, a WerkError)."""
    if isinstance(value, tuple) and value and value[0] == "Retry":
        return Retry(value[1], value[2])
    if isinstance(value, tuple) and value and value[0] == "Repeat":
        return Repeat(value[1], interval=value[2])
    if isinstance(value, tuple) and value and value[0] == "RepeatList":
        return Repeat(value[1], intervals=value[2])
    if isinstance(value, tuple) and value and value[0] == "Callback":
        return Callback(value[1], value[2])
    return value


class Tally:
    def __init__(self) -> None:
        self.calls = 0
        self.refused = 0
        self.jobs: dict[uuid.UUID, str] = {}  # id -> queue


async def _count(app: Werk) -> int:
    async with app.connection() as conn:
        table = sql.Identifier(app.config.schema, "_werk_jobs")
        cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _one_call(dsn: str, schema: str, call: dict[str, Any], tally: Tally) -> None:
    app = Werk(dsn, schema=schema, task_modules=["tests"], min_pool_size=1, max_pool_size=2)
    async with app:
        before = await _count(app)
        kwargs = {k: v for k, v in call.items() if k.startswith("_")}
        args, payload = call["args"], call["kwargs"]
        tally.calls += 1
        job = None
        try:
            options = {k: _realize(v) for k, v in kwargs.items()}
            if call["with_conn"]:
                async with app.connection() as conn, conn.transaction():
                    try:
                        job = await app.enqueue(call["func"], *args, _conn=conn, **payload, **options)
                    finally:
                        # the caller's transaction is usable, whatever enqueue did
                        cur = await conn.execute("SELECT 1")
                        assert await cur.fetchone() == (1,)
            else:
                job = await app.enqueue(call["func"], *args, **payload, **options)
        except WerkError:
            tally.refused += 1
            assert await _count(app) == before, f"a refused call inserted something: {call}"
            return
        assert await _count(app) >= before
        if job is not None:
            tally.jobs[job.id] = job.queue


async def _drain(dsn: str, schema: str, tally: Tally) -> dict[uuid.UUID, str | None]:
    app = Werk(dsn, schema=schema, task_modules=["tests"])
    async with app:
        queues = sorted(set(tally.jobs.values())) or ["default"]
        for _ in range(6):
            async with app.connection() as conn:
                # time passes: what was scheduled for later is due now
                await conn.execute(
                    sql.SQL("UPDATE {} SET scheduled_at = now() WHERE status = 'scheduled'").format(
                        sql.Identifier(schema, "_werk_jobs")
                    )
                )
            worker = AsyncWorker(app, queues=queues, concurrency=8, burst=True, handle_signals=False,
                                 poll_interval=0.1)  # fmt: skip
            await worker.run()  # raises if any actor died
            statuses = {jid: job.status.value for jid, job in (await app.get_jobs(list(tally.jobs))).items()}
            if not any(s in ("scheduled", "queued", "active", "waiting") for s in statuses.values()):
                break
        await app.sweep()  # result_ttl / failure_ttl rows go
        found = await app.get_jobs(list(tally.jobs))
        return {jid: (found[jid].status.value if jid in found else None) for jid in tally.jobs}


TALLY = Tally()


def test_every_enqueue_call_is_refused_cleanly_or_runs_to_an_end(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(call=calls)
    def one(call: dict[str, Any]) -> None:
        async def run() -> None:
            with trio.fail_after(30):
                await _one_call(dsn, schema, call, TALLY)

        trio.run(run)

    one()

    async def drain() -> dict[uuid.UUID, str | None]:
        with trio.fail_after(300):
            return await _drain(dsn, schema, TALLY)

    ends = trio.run(drain)
    assert TALLY.calls >= EXAMPLES
    assert TALLY.refused > 0 and TALLY.jobs, (TALLY.refused, len(TALLY.jobs))
    stuck = {jid: s for jid, s in ends.items() if s not in ("complete", "failed", "aborted", None)}
    assert not stuck, f"{len(stuck)} jobs did not reach an end: {list(stuck.items())[:5]}"
    print(f"\n{TALLY.calls} generated calls: {TALLY.refused} refused with a WerkError, "
          f"{len(TALLY.jobs)} jobs inserted and driven to an end")  # fmt: skip
