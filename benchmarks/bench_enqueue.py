"""Enqueue throughput: werk_trio against the raw-SQL floor on the same server.

Two sections, each measured ``--runs`` times (interleaved) and reported as the
median:

* **single-row**: one job per statement, each its own (durable) commit. The
  baseline is a hand-written ``INSERT (id, function, payload)`` through
  werk_trio's own Trio driver; ``app.enqueue`` is compared with it. Sync
  psycopg is there for reference, and ``enqueue(_conn=...)`` on one held
  connection shows what the pool checkout per enqueue costs. The variants
  take turns every 50 jobs, in a rotating order.
* **bulk**: 20,000 jobs in one statement. The baseline is one multi-row
  ``INSERT ... SELECT FROM json_to_recordset(...)`` of 20,000 (id, function,
  payload) rows through the Trio driver, the fastest client-side multi-row
  INSERT measured here (the JSON encoding is inside its time, as werk's
  encoding is inside werk's); ``app.enqueue_many`` of 20,000 ``EnqueueParams``
  is compared with it, both by its binary COPY path (a batch of plain jobs) and
  by INSERT_JOBS (``werk_trio._bulk.COPY_MIN_ROWS`` raised past the batch: what a
  batch with keys, dependencies or delays takes). For reference: the same through sync psycopg, an
  ``unnest`` of three arrays, a ``generate_series`` insert (no data sent at
  all: the server's own cost) and COPY (not an INSERT; the ceiling).

The raw rows go into ``raw_jobs``, created ``(LIKE <werk jobs table> INCLUDING
ALL)``: the same columns, defaults, CHECK constraints and indexes, so the
ratio is werk's own overhead (validation, encoding, ids, the Job objects, the
NOTIFY) and not a cheaper table. Every measurement starts from an empty table.

pgqueuer (and procrastinate), when installed (``pip install -e '.[bench]'``),
run the same two measurements in their own asyncio run, on their own tables in
the same schema.

Run: ``python benchmarks/bench_enqueue.py [--dsn DSN] [--runs 5]``.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any

import psycopg
import trio
from psycopg import sql

try:
    from . import _harness  # python -m benchmarks.bench_enqueue
except ImportError:  # python benchmarks/bench_enqueue.py
    import _harness  # type: ignore[no-redef]

from werk_trio import EnqueueParams, Werk, _bulk
from werk_trio._ids import uuid7
from werk_trio.db import connect as trio_connect

SINGLE = "single-row: one job per statement and commit (jobs/s)"
BULK = "bulk: {n:,} jobs in one statement (rows/s)"

FUNCTION = "benchmarks.bench_enqueue.noop"
SLICE = 50  # single-row jobs per turn
RAW_TRIO = "raw INSERT, werk_trio.db (Trio driver)"
RAW_SYNC = "raw INSERT, sync psycopg"
WERK_CONN = "werk app.enqueue(_conn=...) (one connection held: no pool checkout)"
JSON_TRIO = "raw multi-row INSERT (json_to_recordset), Trio driver"
JSON_SYNC = "raw multi-row INSERT (json_to_recordset), sync psycopg"
WERK_MANY = "werk app.enqueue_many (binary COPY)"
WERK_MANY_INSERT = "werk app.enqueue_many, COPY off (INSERT_JOBS, as for keyed batches)"


def noop(i: int) -> None:
    """The job every measurement enqueues."""


def _payload(i: int) -> str:
    # The payload werk stores for noop(i), so both sides send the same bytes.
    return json.dumps({"args": [i], "kwargs": {}}, separators=(",", ":"))


class Raw:
    """Hand-written SQL on a table shaped exactly like werk's jobs table."""

    def __init__(self, schema: str, jobs_table: str) -> None:
        raw = sql.Identifier(schema, "raw_jobs")
        self.create = sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
            raw, sql.Identifier(schema, jobs_table)
        )
        self.truncate = sql.SQL("TRUNCATE {}").format(raw)
        self.insert_one = sql.SQL("INSERT INTO {} (id, function, payload) VALUES (%s, %s, %s)").format(raw)
        self.insert_json = sql.SQL(
            "INSERT INTO {} (id, function, payload) SELECT id, f, pl "
            "FROM json_to_recordset(%s::json) AS t(id uuid, f text, pl text)"
        ).format(raw)
        self.insert_unnest = sql.SQL(
            "INSERT INTO {} (id, function, payload) SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[])"
        ).format(raw)
        self.copy = sql.SQL("COPY {} (id, function, payload) FROM STDIN").format(raw)
        self.insert_series = sql.SQL(
            "INSERT INTO {} (id, function, payload) "
            "SELECT gen_random_uuid(), %s, '{{\"args\":[' || i || '],\"kwargs\":{{}}}}' "
            "FROM generate_series(1, %s) i"
        ).format(raw)
        self.count = sql.SQL("SELECT count(*) FROM {}").format(raw)


async def measure_werk_and_raw(
    dsn: str, schema: str, runs: int, single: int, bulk: int, results: _harness.Results
) -> None:
    bulk_section = BULK.format(n=bulk)
    for name, base in (
        (RAW_TRIO, True),
        (RAW_SYNC, False),
        ("werk app.enqueue", False),
        (WERK_CONN, False),
    ):
        results.declare(SINGLE, name, "jobs/s", baseline=base)
    for name, base in (
        (JSON_TRIO, True),
        (JSON_SYNC, False),
        ("raw multi-row INSERT (unnest arrays), Trio driver", False),
        ("raw INSERT ... generate_series (no data sent)", False),
        ("raw COPY (not an INSERT), sync psycopg", False),
        (WERK_MANY, False),
        (WERK_MANY_INSERT, False),
    ):
        results.declare(bulk_section, name, "rows/s", baseline=base)

    app = Werk(dsn, schema=schema, task_modules=["benchmarks"])
    async with app:
        raw = Raw(schema, f"{app.config.prefix}_jobs")
        aconn = await trio_connect(dsn, autocommit=True)
        sconn = psycopg.connect(dsn, autocommit=True)
        functions = [FUNCTION] * bulk
        payloads = [_payload(i) for i in range(bulk)]

        def fresh_ids(n: int) -> list[uuid.UUID]:
            return [uuid7() for _ in range(n)]

        def as_json(ids: list[uuid.UUID]) -> str:
            # the raw client's encoding work is part of its time, as werk's is
            rows = [{"id": str(i), "f": FUNCTION, "pl": p} for i, p in zip(ids, payloads, strict=True)]
            return json.dumps(rows)

        async def reset() -> None:
            await aconn.execute(raw.truncate)
            await app.truncate()

        async def raw_one_trio(ids: list[uuid.UUID]) -> None:
            for i, job_id in enumerate(ids):
                await aconn.execute(raw.insert_one, (job_id, FUNCTION, payloads[i]))

        def raw_one_sync(ids: list[uuid.UUID]) -> None:
            for i, job_id in enumerate(ids):
                sconn.execute(raw.insert_one, (job_id, FUNCTION, payloads[i]))

        async def werk_one(n: int) -> None:
            for i in range(n):
                await app.enqueue(noop, i)

        async def werk_one_conn(n: int) -> None:
            async with app.connection() as conn:
                for i in range(n):
                    await app.enqueue(noop, i, _conn=conn)

        async def raw_json_trio(ids: list[uuid.UUID]) -> None:
            await aconn.execute(raw.insert_json, (as_json(ids),))

        def raw_json_sync(ids: list[uuid.UUID]) -> None:
            sconn.execute(raw.insert_json, (as_json(ids),))

        async def raw_unnest_trio(ids: list[uuid.UUID]) -> None:
            await aconn.execute(raw.insert_unnest, (ids, functions, payloads))

        async def raw_series(n: int) -> None:
            await aconn.execute(raw.insert_series, (FUNCTION, n))

        def raw_copy(ids: list[uuid.UUID]) -> None:
            with sconn.cursor() as cur, cur.copy(raw.copy) as copy:
                for row in zip(ids, functions, payloads, strict=True):
                    copy.write_row(row)

        async def werk_many(params: list[EnqueueParams]) -> None:
            jobs = await app.enqueue_many(params)
            if sum(job is not None for job in jobs) != len(params):
                raise AssertionError("enqueue_many did not return a Job for every row")

        try:
            await aconn.execute(raw.create)
            # One unmeasured round of each, to warm caches and prepared statements.
            for i in range(20):
                await app.enqueue(noop, i)
                await aconn.execute(raw.insert_one, (uuid7(), FUNCTION, payloads[i]))
                sconn.execute(raw.insert_one, (uuid7(), FUNCTION, payloads[i]))
            await app.enqueue_many([EnqueueParams(noop, (i,)) for i in range(100)])

            copy_min = _bulk.COPY_MIN_ROWS
            for run in range(runs):
                # --- single-row: slices of SLICE jobs, the variants taking turns
                # (so that a change of commit latency during the run hits all
                # alike) in a rotating order (so that none always runs after
                # the same other one, whose code it finds in the CPU caches)
                await reset()
                names = [RAW_TRIO, RAW_SYNC, "werk app.enqueue", WERK_CONN]
                spent = dict.fromkeys(names, 0.0)
                for turn, start in enumerate(range(0, single, SLICE)):
                    n = min(SLICE, single - start)
                    for k in range(len(names)):
                        name = names[(turn + k) % len(names)]
                        if name == RAW_TRIO:
                            spent[name] += await _harness.atimed(raw_one_trio, fresh_ids(n))
                        elif name == RAW_SYNC:
                            spent[name] += _harness.timed(raw_one_sync, fresh_ids(n))
                        elif name == WERK_CONN:
                            spent[name] += await _harness.atimed(werk_one_conn, n)
                        else:
                            spent[name] += await _harness.atimed(werk_one, n)
                for name, secs in spent.items():
                    results.add(SINGLE, name, single, secs)

                # --- bulk -------------------------------------------------------
                ids = fresh_ids(bulk)
                await reset()
                secs = await _harness.atimed(raw_json_trio, ids)
                results.add(bulk_section, JSON_TRIO, bulk, secs)
                cur = await aconn.execute(raw.count)
                if (await cur.fetchone()) != (bulk,):
                    raise AssertionError("the raw multi-row INSERT did not insert every row")

                ids = fresh_ids(bulk)
                await reset()
                secs = _harness.timed(raw_json_sync, ids)
                results.add(bulk_section, JSON_SYNC, bulk, secs)

                ids = fresh_ids(bulk)
                await reset()
                secs = await _harness.atimed(raw_unnest_trio, ids)
                results.add(bulk_section, "raw multi-row INSERT (unnest arrays), Trio driver", bulk, secs)

                await reset()
                secs = await _harness.atimed(raw_series, bulk)
                results.add(bulk_section, "raw INSERT ... generate_series (no data sent)", bulk, secs)

                ids = fresh_ids(bulk)
                await reset()
                secs = _harness.timed(raw_copy, ids)
                results.add(bulk_section, "raw COPY (not an INSERT), sync psycopg", bulk, secs)

                # the COPY path and the INSERT_JOBS it replaces, in a rotating order
                for name in (WERK_MANY, WERK_MANY_INSERT)[:: 1 if run % 2 else -1]:
                    params = [EnqueueParams(noop, (i,)) for i in range(bulk)]
                    await reset()
                    _bulk.COPY_MIN_ROWS = copy_min if name == WERK_MANY else bulk + 1
                    try:
                        secs = await _harness.atimed(werk_many, params)
                    finally:
                        _bulk.COPY_MIN_ROWS = copy_min
                    results.add(bulk_section, name, bulk, secs)

            await aconn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, "raw_jobs")))
        finally:
            sconn.close()
            await aconn.close()


# --- peers (each in its own asyncio run) -------------------------------------


async def measure_pgqueuer(
    dsn: str, schema: str, runs: int, single: int, bulk: int, results: _harness.Results
) -> None:
    from pgqueuer.queries import Queries

    try:
        import asyncpg  # type: ignore[import-not-found]
    except ImportError:
        asyncpg = None
    if asyncpg is not None:
        driver_name = "asyncpg"
        conn: Any = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        queries = Queries.from_asyncpg_connection(conn)
    else:
        driver_name = "psycopg async"
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, options=f"-c search_path={schema}")
        queries = Queries.from_psycopg_connection(conn)
    one = f"pgqueuer enqueue ({driver_name}, asyncio)"
    many = f"pgqueuer enqueue(list of {bulk:,}) ({driver_name}, asyncio)"
    results.declare(SINGLE, one, "jobs/s")
    results.declare(BULK.format(n=bulk), many, "rows/s")
    try:
        await queries.install()
        payloads = [_payload(i).encode() for i in range(bulk)]
        for i in range(20):
            await queries.enqueue("noop", payloads[i], 0)
        for _ in range(runs):
            await queries.clear_queue()

            async def enqueue_one() -> None:
                for i in range(single):
                    await queries.enqueue("noop", payloads[i], 0)

            results.add(SINGLE, one, single, await _harness.atimed(enqueue_one))
            await queries.clear_queue()

            async def enqueue_many() -> None:
                await queries.enqueue(["noop"] * bulk, payloads, [0] * bulk)

            results.add(BULK.format(n=bulk), many, bulk, await _harness.atimed(enqueue_many))
    finally:
        await conn.close()


async def measure_procrastinate(
    dsn: str, schema: str, runs: int, single: int, bulk: int, results: _harness.Results
) -> None:
    import logging

    import procrastinate

    logging.getLogger("procrastinate").setLevel(logging.ERROR)  # its "app in __main__" notice
    one = "procrastinate defer_async (psycopg pool, asyncio)"
    many = f"procrastinate batch_defer_async({bulk:,}) (psycopg pool, asyncio)"
    results.declare(SINGLE, one, "jobs/s")
    results.declare(BULK.format(n=bulk), many, "rows/s")
    connector = procrastinate.PsycopgConnector(conninfo=dsn, kwargs={"options": f"-c search_path={schema}"})
    papp = procrastinate.App(connector=connector)

    @papp.task(name="noop")
    def _noop(i: int) -> None:  # pragma: no cover - never run
        pass

    async with papp.open_async():
        await papp.schema_manager.apply_schema_async()
        truncate = "TRUNCATE procrastinate_jobs CASCADE"
        for i in range(20):
            await _noop.defer_async(i=i)

        async def defer_one(n: int) -> None:
            for i in range(n):
                await _noop.defer_async(i=i)

        async def defer_many(task_kwargs: list[dict[str, Any]]) -> None:
            await _noop.batch_defer_async(*task_kwargs)

        for _ in range(runs):
            await connector.execute_query_async(truncate)
            results.add(SINGLE, one, single, await _harness.atimed(defer_one, single))
            await connector.execute_query_async(truncate)
            task_kwargs = [{"i": i} for i in range(bulk)]
            results.add(BULK.format(n=bulk), many, bulk, await _harness.atimed(defer_many, task_kwargs))


PEERS = {"pgqueuer": measure_pgqueuer, "procrastinate": measure_procrastinate}


def main(argv: list[str] | None = None) -> int:
    parser = _harness.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=1000, help="jobs per single-row run (default 1000)")
    parser.add_argument("--bulk", type=int, default=20_000, help="jobs per bulk statement (default 20000)")
    _harness.add_peer_options(parser, PEERS)
    args = parser.parse_args(argv)
    peers = _harness.chosen_peers(PEERS, args)
    dsn = _harness.resolve_dsn(args.dsn)
    print(_harness.server_info(dsn))
    print(f"median of {args.runs} runs; single-row runs of {args.single:,} jobs; bulk of {args.bulk:,}")
    print(_harness.load_note("at start"))
    results = _harness.Results()
    with _harness.fresh_schema(dsn) as schema:
        trio.run(measure_werk_and_raw, dsn, schema, args.runs, args.single, args.bulk, results)
        peer_args = (dsn, schema, args.runs, args.single, args.bulk, results)
        _harness.run_peers(peers, args.no_peers, results, *peer_args)
    results.print()
    print("\n" + _harness.load_note("at end"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
