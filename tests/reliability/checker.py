"""The checker: compares the side-table history with the jobs table.

``await check(app, dsn, schema)`` returns a :class:`Report`; ``report.assert_ok()``
fails with the details when any promise of the README is broken:

* every job is terminal: ``complete``, or ``failed`` with attempts = max_attempts;
* no job is lost (every expected id has a row) or left ``active``/``aborting``;
* every complete job's body finished at least once;
* every re-run coincides with a fault: ``reruns_after_kill`` counts re-runs
  whose earlier run never finished or ran in a process the test killed (the
  body's own process, or the worker it ran under: a process-pool child can
  finish a run after its worker was killed);
  ``reruns_after_finish`` counts re-runs after a run that finished in a live
  process -- only a lost ack explains those, so a scenario without cut
  connections expects 0 and one that cuts them expects at most the cuts.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
import trio
from psycopg import sql

from werk_trio import Werk

from .relapp import history_table


@dataclass
class Report:
    jobs: int = 0
    complete: int = 0
    failed: int = 0
    lost: list[uuid.UUID] = field(default_factory=list)
    stuck: list[uuid.UUID] = field(default_factory=list)
    bad_failed: list[uuid.UUID] = field(default_factory=list)
    never_finished: list[uuid.UUID] = field(default_factory=list)
    reruns: int = 0
    reruns_after_kill: int = 0
    reruns_after_finish: int = 0
    finished_rerun_jobs: list[uuid.UUID] = field(default_factory=list)
    runs: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.stuck or self.bad_failed or self.never_finished)

    def summary(self) -> str:
        return (f"jobs={self.jobs} complete={self.complete} failed={self.failed} runs={self.runs} "
                f"reruns={self.reruns} lost={len(self.lost)} stuck={len(self.stuck)} "
                f"bad_failed={len(self.bad_failed)} never_finished={len(self.never_finished)} "
                f"reruns_after_kill={self.reruns_after_kill} "
                f"reruns_after_finish={self.reruns_after_finish}")

    def assert_ok(self, *, max_reruns_after_finish: int = 0) -> None:
        assert self.reruns_after_finish <= max_reruns_after_finish, (
            f"{self.reruns_after_finish} re-runs after a finished run (allowed "
            f"{max_reruns_after_finish}): {self.finished_rerun_jobs[:5]}\n{self.summary()}"
        )
        assert self.ok, self.summary() + (
            f"\nlost={self.lost[:5]} stuck={self.stuck[:5]} bad_failed={self.bad_failed[:5]} "
            f"never_finished={self.never_finished[:5]}"
        )


def _history(dsn: str, schema: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            sql.SQL(
                "SELECT job_id, attempt, pid, started_at, ended_at, worker_pid FROM {} ORDER BY run_id"
            ).format(history_table(schema))
        ).fetchall()


async def check(app: Werk, dsn: str, schema: str, expected: list[uuid.UUID],
                killed_pids: set[int] | None = None) -> Report:
    """Compare ``expected`` job ids, the jobs table and the history."""
    rows = await trio.to_thread.run_sync(_history, dsn, schema)
    runs: dict[uuid.UUID, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        runs[row[0]].append(row)
    jobs = await app.get_jobs(expected)
    report = Report(jobs=len(expected), runs=len(rows))
    killed = killed_pids or set()
    for jid in expected:
        job = jobs.get(jid)
        if job is None:
            report.lost.append(jid)
            continue
        status = job.status.value
        if status in ("active", "aborting", "queued", "scheduled", "waiting"):
            report.stuck.append(jid)
            continue
        history = runs.get(jid, [])
        if status == "complete":
            report.complete += 1
            if not any(r[4] is not None for r in history):
                report.never_finished.append(jid)
        elif status == "failed":
            report.failed += 1
            if job.attempts != job.max_attempts:
                report.bad_failed.append(jid)
        if len(history) > 1:
            report.reruns += len(history) - 1
            for earlier in history[:-1]:
                if earlier[4] is None or earlier[2] in killed or earlier[5] in killed:
                    report.reruns_after_kill += 1
                else:
                    report.reruns_after_finish += 1
                    report.finished_rerun_jobs.append(jid)
    return report
