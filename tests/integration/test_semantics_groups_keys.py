"""Issue 5, concurrency groups and idempotency keys, with racing processes.

Groups: two worker processes with batched claims drain 120 jobs in 4 groups;
each job records its interval in the side table. Within a group no two
intervals overlap -- neither the handlers' (side table, ``clock_timestamp()``)
nor the attempts' (execution rows: claim to completion on the database clock)
-- while different groups run at the same time.

Keys: producers race on separate connections (two apps in one Trio program,
and two worker processes whose jobs enqueue the same keys at the same
instant); every key is won exactly once and its job runs exactly once.
"""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio

from tests import procapp
from tests._support import runs
from werk_trio import EnqueueParams, JobStatus, Werk, Worker
from werk_trio._rows import job_from_row
from werk_trio.testing import until

from ._semantics_support import make_tables, overlaps, query, wait_terminal, workers

GROUPS = 4
PER_GROUP = 30
JOB_SECONDS = 0.05


def _peak(intervals: list[tuple[Any, Any, str]]) -> int:
    """The most groups running at one instant."""
    events = sorted([(s, 1, g) for s, _, g in intervals] + [(e, -1, g) for _, e, g in intervals])
    running: dict[str, int] = {}
    peak = 0
    for _, step, group in events:
        running[group] = running.get(group, 0) + step
        peak = max(peak, sum(1 for n in running.values() if n > 0))
    return peak


async def test_groups_never_overlap_across_two_processes_but_run_in_parallel(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        args = (
            "--queues",
            "grouped",
            "--concurrency",
            "8",
            "--sweep-interval",
            "600",
            "--poll-interval",
            "5",
        )
        started = time.monotonic()
        async with workers(app, dsn, schema, tmp_path, *args) as children:
            # enqueued once both listen (a worker started first could drain every chain
            # alone on a loaded machine), group by group, so each claim's candidates are
            # mostly one group
            jobs = await app.enqueue_many(
                EnqueueParams(procapp.sleep_job, args=(JOB_SECONDS,), queue="grouped", group=f"g{g}")
                for g in range(GROUPS)
                for _ in range(PER_GROUP)
            )
            ids = [j.id for j in jobs if j is not None]
            assert len(ids) == GROUPS * PER_GROUP
            ended = await wait_terminal(app, ids)
            elapsed = time.monotonic() - started
            for child in children:
                assert "Traceback" not in child.output(), child.output()
        assert all(j.status is JobStatus.COMPLETE for j in ended.values())

        side = await query(
            app,
            "SELECT j.group_key, r.started_at, r.ended_at, r.pid"
            " FROM {runs} r JOIN {jobs} j ON j.id = r.job_id ORDER BY r.started_at",
        )
        assert len(side) == len(ids), "each job ran exactly once"
        # (Execution rows are no proof here: their times are now(), the start of
        # the claim's and of the completion's transactions, which can precede
        # the snapshot that saw the previous job end by a fraction of a millisecond.)
        by_group: dict[str, list[tuple[Any, Any]]] = {}
        for row in side:
            by_group.setdefault(row[0], []).append((row[1], row[2]))
        assert sorted(by_group) == [f"g{g}" for g in range(GROUPS)]
        for group, spans in by_group.items():
            for before, after in itertools.pairwise(spans):
                assert before[1] <= after[0], f"intervals of {group} overlap: {before} {after}"
        gaps = [
            (after[0] - before[1]).total_seconds()
            for spans in by_group.values()
            for before, after in itertools.pairwise(spans)
        ]
        pids_per_group = {g: {r[3] for r in side if r[0] == g} for g in {r[0] for r in side}}
        assert {r[3] for r in side} == {c.pid for c in children}, "both processes ran grouped jobs"
        cross = sum(
            1
            for i, a in enumerate(side)
            for b in side[i + 1 :]
            if a[0] != b[0] and overlaps((a[1], a[2]), (b[1], b[2]))
        )
        peak = _peak([(r[1], r[2], r[0]) for r in side])
        span = (max(r[2] for r in side) - min(r[1] for r in side)).total_seconds()
        serial = GROUPS * PER_GROUP * JOB_SECONDS
        print(
            f"{len(ids)} jobs in {GROUPS} groups on 2 processes (concurrency 8 each): 0 overlapping "
            f"intervals within a group (next start - previous end: min {min(gaps) * 1000:.2f} ms, median "
            f"{statistics.median(gaps) * 1000:.1f} ms); {cross} overlapping pairs across "
            f"groups; up to {peak} groups at once; first start to last end {span:.2f}s "
            f"(one group alone needs >= {PER_GROUP * JOB_SECONDS:.1f}s, all in series {serial:.1f}s); "
            f"wall {elapsed:.2f}s; processes per group {[len(p) for p in pids_per_group.values()]}"
        )
        assert peak >= 3, f"groups did not run in parallel (peak {peak})"
        assert cross > 0
        assert span < serial * 0.6, f"groups ran nearly in series: {span:.2f}s"


async def test_a_batched_claim_takes_one_job_per_group(app: Werk) -> None:
    """The claim statement itself, for a worker with 20 free slots: one job of
    each group -- its first in queue order -- and every ungrouped job; the next
    claim finds nothing of a group whose job is active."""
    with trio.fail_after(30):
        jobs = await app.enqueue_many(
            [EnqueueParams(procapp.record, queue="batch", group=f"g{i % 3}") for i in range(12)]
            + [EnqueueParams(procapp.record, queue="batch") for _ in range(3)]
        )
        worker = Worker(app, queues=["batch"], concurrency=20, handle_signals=False)
        claimed = await worker.poller.claim(20)  # rows: each runner decodes its own
        decoded = [job_from_row(r, app.serializer) for r in claimed]
        groups = [j.group_key for j in decoded]
        assert sorted(g for g in groups if g) == ["g0", "g1", "g2"], groups
        # one priority, one enqueue time: queue order is id order, the enqueue order
        first = {j.group_key: j.id for j in reversed(jobs) if j is not None and j.group_key}
        assert {j.id for j in decoded if j.group_key} == set(first.values())
        assert groups.count(None) == 3
        again = await worker.poller.claim(20)
        assert again == [], "a group with an active job gives nothing more"
        other = Worker(app, queues=["batch"], concurrency=20, handle_signals=False)
        assert await other.poller.claim(20) == [], "not to another worker either"
        counts = await app.counts()
        assert counts["batch"] == {"active": 6, "queued": 9}


async def test_the_database_itself_refuses_a_second_active_job_in_a_group(app: Werk) -> None:
    """The guarantee is the unique partial index, not the claim's NOT EXISTS
    check: an UPDATE that skips the check is refused; and claims racing on
    separate connections never make two jobs of one group active."""
    with trio.fail_after(30):
        jobs = await app.enqueue_many(
            EnqueueParams(procapp.record, queue="uniq", group="solo") for _ in range(3)
        )
        first, second = jobs[0], jobs[1]
        assert first and second
        mark_active = app.sql.render(
            "UPDATE {jobs} SET status = 'active', attempts = 1, started_at = now(),"
            " worker_id = gen_random_uuid() WHERE id = %(id)s"
        )
        async with app.connection() as conn:
            await conn.execute(mark_active, {"id": first.id})
            with pytest.raises(psycopg.errors.UniqueViolation):
                await conn.execute(mark_active, {"id": second.id})
        await app.delete_job(first.id)

        # 20 rounds of 4 workers' claims at once, each on its own connection
        more = await app.enqueue_many(
            EnqueueParams(procapp.record, queue="uniq", group="solo") for _ in range(40)
        )
        racers = [Worker(app, queues=["uniq"], concurrency=5, handle_signals=False) for _ in range(4)]
        claimed_per_round = []
        refused = 0

        async def claim(worker: Worker, got: list[Any]) -> None:
            nonlocal refused
            try:
                got.extend(await worker.poller.claim(5))
            except psycopg.errors.UniqueViolation:
                refused += 1  # lost the race at the index: the poller retries such a claim

        for _ in range(20):
            got: list[Any] = []
            async with trio.open_nursery() as nursery:
                for worker in racers:
                    nursery.start_soon(claim, worker, got)
            claimed_per_round.append(len(got))
            active = await query(app, "SELECT id FROM {jobs} WHERE status = 'active'")
            assert len(active) <= 1 and len(got) <= 1, (active, got)
            if active:
                await app.delete_job(active[0][0])
        print(
            f"20 rounds of 4 concurrent claims on one group: {sum(claimed_per_round)} claimed one job, "
            f"{refused} claims refused by the unique index, never two active"
        )
        assert sum(claimed_per_round) >= 10, claimed_per_round
        assert len(more) == 40


# --- idempotency keys -------------------------------------------------------------------------


async def test_taken_key_returns_none_and_inserts_nothing(app: Werk) -> None:
    with trio.fail_after(30):
        first = await app.enqueue(procapp.record, _queue="idle", _key="k1")
        assert first is not None and first.key == "k1"
        assert await app.enqueue(procapp.record, _queue="idle", _key="k1") is None
        assert await app.enqueue(procapp.record, "other payload", _queue="other", _key="k1") is None
        got = await app.enqueue_many(
            [
                EnqueueParams(procapp.record, queue="idle", key="k2"),
                EnqueueParams(procapp.record, queue="idle", key="k2"),  # twice in one batch
                EnqueueParams(procapp.record, queue="idle", key="k1"),  # taken before
                EnqueueParams(procapp.record, queue="idle"),
                EnqueueParams(procapp.record, queue="idle", key="k3"),
            ]
        )
        assert [None if j is None else j.key for j in got] == ["k2", None, None, None, "k3"]
        assert got[3] is not None and got[3].key is None
        rows = await query(app, "SELECT key, id FROM {jobs} ORDER BY key NULLS LAST")
        assert [r[0] for r in rows] == ["k1", "k2", "k3", None]
        assert {r[1] for r in rows} == {first.id, *(j.id for j in got if j is not None)}
        # with dependencies (the transactional path) too: nothing extra, no dependency rows
        dep = await app.enqueue(procapp.record, _queue="idle", _key="k4", _depends_on=first)
        assert dep is not None
        assert await app.enqueue(procapp.record, _queue="idle", _key="k4", _depends_on=first) is None
        assert await query(app, "SELECT job_id FROM {job_deps}") == [(dep.id,)]
        # the key is free again once its row is gone
        await app.delete_job(first.id)
        again = await app.enqueue(procapp.record, _queue="idle", _key="k1")
        assert again is not None and again.id != first.id


async def test_two_producers_on_separate_connections_race_for_the_same_keys(
    app: Werk, dsn: str, schema: str
) -> None:
    keys = [f"race-{i}" for i in range(300)]
    with trio.fail_after(60):
        other = Werk(dsn, schema=schema, task_modules=["tests"])
        async with other:
            go = trio.Event()
            won: dict[str, dict[str, Any]] = {"one": {}, "many": {}}

            async def one_by_one() -> None:
                await go.wait()
                for key in keys:
                    job = await app.enqueue(procapp.record, _queue="idle", _key=key)
                    if job is not None:
                        won["one"][key] = job.id

            async def in_batches() -> None:
                await go.wait()
                backwards = keys[::-1]
                for i in range(0, len(backwards), 25):
                    chunk = backwards[i : i + 25]
                    jobs = await other.enqueue_many(
                        EnqueueParams(procapp.record, queue="idle", key=k) for k in chunk
                    )
                    for key, job in zip(chunk, jobs, strict=True):
                        if job is not None:
                            won["many"][key] = job.id

            async with trio.open_nursery() as nursery:
                nursery.start_soon(one_by_one)
                nursery.start_soon(in_batches)
                await trio.sleep(0)
                go.set()
        assert not set(won["one"]) & set(won["many"]), "a key was won twice"
        assert set(won["one"]) | set(won["many"]) == set(keys)
        assert won["one"] and won["many"], f"no race: one producer won everything {len(won['one'])}"
        rows = dict(await query(app, "SELECT key, id FROM {jobs}"))
        assert len(rows) == len(keys)
        assert rows == {**won["one"], **won["many"]}
        print(
            f"two producers, 300 keys: one-by-one won {len(won['one'])}, batches of 25 won {len(won['many'])}"
        )


async def test_two_worker_processes_enqueue_the_same_keys_at_once(
    app: Werk, dsn: str, schema: str, tmp_path: Path
) -> None:
    keys = [f"proc-{i}" for i in range(200)]
    with trio.fail_after(60):
        await make_tables(dsn, schema)
        per_worker = [("--queues", "prod_a,keyed"), ("--queues", "prod_b,keyed")]
        async with workers(
            app, dsn, schema, tmp_path, "--concurrency", "4", per_worker=per_worker
        ) as children:
            at = time.time() + 0.3
            a = await app.enqueue(procapp.enqueue_keys, keys, at, 1, _queue="prod_a")
            b = await app.enqueue(procapp.enqueue_keys, keys[::-1], at, 20, _queue="prod_b")
            assert a and b
            producers = await wait_terminal(app, [a.id, b.id])
            assert all(p.status is JobStatus.COMPLETE for p in producers.values()), producers

            async def keyed_done() -> bool:
                rows = await query(
                    app,
                    "SELECT count(*) FILTER (WHERE status = 'complete'), count(*)"
                    " FROM {jobs} WHERE queue = 'keyed'",
                )
                return rows[0] == (len(keys), len(keys))

            await until(keyed_done)
            for child in children:
                assert "Traceback" not in child.output(), child.output()
        won_a, won_b = producers[a.id].result["won"], producers[b.id].result["won"]
        assert {producers[a.id].result["pid"], producers[b.id].result["pid"]} == {c.pid for c in children}
        assert not set(won_a) & set(won_b)
        assert set(won_a) | set(won_b) == set(keys)
        rows = dict(await query(app, "SELECT key, id::text FROM {jobs} WHERE queue = 'keyed'"))
        assert rows == {**won_a, **won_b}
        ran = await query(
            app,
            "SELECT count(*), count(DISTINCT r.job_id)"
            " FROM {runs} r JOIN {jobs} j ON j.id = r.job_id WHERE j.queue = 'keyed'",
        )
        assert ran == [(len(keys), len(keys))], "every keyed job ran exactly once"
        print(
            f"two processes, 200 keys at the same instant: enqueue won {len(won_a)}, "
            f"enqueue_many won {len(won_b)}"
        )
        assert await runs(app, a.id) and await runs(app, b.id)
