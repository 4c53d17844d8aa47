"""Server CPU per job of the claim and the completion write: this tree's statements against a git ref's.

A whole drain's server CPU moves with the machine's load by +-20 %, more
than most statement changes save. Here both versions run on one connection,
alternating claim by claim and write by write, so drift hits both alike; the
backend's CPU is read from ``/proc/<pid>/schedstat`` (nanoseconds on CPU,
not tick samples) around each statement. The server must run on this
machine (its backends in this /proc). Each round enqueues ``--jobs`` no-op
jobs, claims them all (CLAIM_PRIORITY, ``--per-claim`` at a time, with its
settings statement, as the poller does) and completes them (COMPLETE_BATCH
with the dependency statements, ``--per-write`` at a time, as the completer
does); the figures are cumulative over the rounds, in microseconds per job.

Run: ``python benchmarks/bench_statement_cpu.py [--dsn ...] [--against main]
[--jobs 20000] [--runs 4] [--per-claim 50] [--per-write 125]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
import uuid
from pathlib import Path
from typing import Any

import psycopg
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _harness

from werk_trio import EnqueueParams, Werk
from werk_trio.sql import Statements, array_literal

NOOP = "bench_statement_cpu.noop"
ROOT = Path(__file__).resolve().parents[1]


async def noop() -> None:
    """The no-op job (never run: the jobs are claimed and completed by hand)."""


def queries_at(ref: str) -> types.ModuleType:
    """werk_trio/sql/queries.py as it is at git ``ref``, as a module."""
    source = subprocess.run(["git", "show", f"{ref}:werk_trio/sql/queries.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    module = types.ModuleType(f"queries_at_{ref}")
    exec(compile(source, f"{ref}:werk_trio/sql/queries.py", "exec"), module.__dict__)
    return module


def cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


async def fill(dsn: str, schema: str, jobs: int) -> None:
    app = Werk(dsn, schema=schema, task_modules=["bench_statement_cpu", "__main__"])
    app.register(noop, name=NOOP)
    async with app:
        await app.truncate()
        for chunk in range(0, jobs, 20_000):
            await app.enqueue_many([EnqueueParams(NOOP) for _ in range(min(20_000, jobs - chunk))])


def one_round(dsn: str, st: Statements, versions: dict[str, tuple[str, str]], args: Any,
              totals: dict[str, list[int]], flip: bool) -> None:  # fmt: skip
    """Claim every queued job, then complete them, alternating the versions."""
    worker_id = str(uuid.uuid4())
    order = list(versions)[::-1] if flip else list(versions)
    claimed: dict[str, list[tuple[str, int]]] = {name: [] for name in versions}
    params = {"queues": array_literal(["default"]), "n": args.per_claim, "worker_id": worker_id}
    with psycopg.connect(dsn, autocommit=True) as conn:
        pid = conn.info.backend_pid
        drained = False
        while not drained:
            for name in order:
                start = cpu_ns(pid)
                with conn.pipeline():
                    conn.execute(st.CLAIM_SETTINGS, prepare=True)
                    cur = conn.execute(versions[name][0], params, prepare=True)
                rows = [r for r in cur.fetchall() if r[0] is not None]  # not the short claim's info row
                totals[name][0] += cpu_ns(pid) - start
                totals[name][1] += len(rows)
                claimed[name] += [(str(r[0]), r[5]) for r in rows]  # id, attempts
                drained = drained or not rows
        longest = max(len(done) for done in claimed.values())
        for first in range(0, longest, args.per_write):
            for name in order:
                batch = claimed[name][first : first + args.per_write]
                if not batch:
                    continue
                outcomes = json.dumps([{"id": i, "attempt": a, "kind": "complete", "result": "null"}
                                       for i, a in batch], separators=(",", ":"))  # fmt: skip
                ids = array_literal(i for i, _ in batch)
                start = cpu_ns(pid)
                with conn.pipeline():
                    # (a version before COMPLETE_BATCH took the ids ignores them)
                    params = {"outcomes": outcomes, "worker_id": worker_id, "ids": ids}
                    main = conn.execute(versions[name][1], params, prepare=True)
                    conn.execute(st.LOCK_DEPENDENTS, {"ids": ids}, prepare=True)
                    conn.execute(st.RESOLVE_DEPENDENTS_OF, {"ids": ids}, prepare=True)
                written = len(main.fetchall())
                totals[name][2] += cpu_ns(pid) - start
                totals[name][3] += written


def main() -> None:
    parser = _harness.arg_parser(__doc__.splitlines()[0])
    parser.set_defaults(runs=4)
    parser.add_argument("--against", default="main", help="git ref whose statements are the baseline")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--per-claim", type=int, default=50)
    parser.add_argument("--per-write", type=int, default=125)
    args = parser.parse_args()
    dsn = _harness.resolve_dsn(args.dsn)
    print(_harness.server_info(dsn))
    print(_harness.load_note("before"))
    base = queries_at(args.against)
    with _harness.fresh_schema(dsn) as schema:
        st = Werk(dsn, schema=schema).sql  # the app's own rendering (schema, prefix)
        versions = {
            args.against: (st.render(base.CLAIM_PRIORITY), st.render(base.COMPLETE_BATCH)),
            "this tree": (st.CLAIM_PRIORITY, st.COMPLETE_BATCH),
        }
        totals = {name: [0, 0, 0, 0] for name in versions}  # claim ns, claimed, write ns, written
        for run in range(args.runs):
            trio.run(fill, dsn, schema, args.jobs)
            one_round(dsn, st, versions, args, totals, flip=run % 2 == 1)
        per_job = {name: (t[0] / 1e3 / max(1, t[1]), t[2] / 1e3 / max(1, t[3])) for name, t in totals.items()}
        for name, (claim, write) in per_job.items():
            print(f"{name:>12}: claim {claim:.1f} us/job, completion write {write:.1f} us/job")
        (b_claim, b_write), (claim, write) = per_job.values()
        print(f"this tree / {args.against}: claim {claim / b_claim:.3f}x, "
              f"completion write {write / b_write:.3f}x")
    print(_harness.load_note("after"))


if __name__ == "__main__":
    main()
