"""The ledger: the one owner of the jobs this worker holds.

A job is *held* from the claim that took it until its outcome is written (or
given up on): claimed and waiting for a runner, running, or finished with its
outcome still on the way to the database. Anything active for this worker in
the table beyond the held jobs came from a claim whose reply was lost.

Who calls what (and nobody else):

* poller -- :meth:`Ledger.claimed` for every claimed row; reads
  :attr:`Ledger.idle` and :attr:`Ledger.writes` in burst mode.
* runner -- :meth:`Ledger.start` / :meth:`Ledger.stop_running` around a job,
  :meth:`Ledger.count` for each outcome, :meth:`Ledger.strand` for an outcome
  it could not hand to the completer while being cancelled; reads
  :attr:`Ledger.shutdown_deadline`.
* completer -- :meth:`Ledger.settled` once a batch is written (or refused),
  :meth:`Ledger.take_stranded` in the final flush.
* abort-watcher -- :meth:`Ledger.running_job` (reads).
* heartbeater -- :meth:`Ledger.held_ids` (reads).
* the worker -- :meth:`Ledger.reset` before registering, :meth:`Ledger.shut_down`
  when stopping.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from ..jobs import Context, Job
    from .completer import Outcome

__all__ = ["Ledger", "RunningJob"]


@dataclass(slots=True)
class RunningJob:
    """A job in a runner, as the abort-watcher and shutdown see it.

    ``scope`` is its runner's cancel scope, which the runner's other jobs run
    in too, so a stop reaches it only through :meth:`abort` and
    :meth:`shutdown`, and only while the handler runs (from :meth:`arm` until
    the runner deregisters the job): a stop asked for during the
    before-hooks takes effect when the handler starts, and once the job ended
    (a RunningJob kept past its job) it stops nothing."""

    job: Job
    scope: trio.CancelScope
    timeout_at: float = math.inf
    shutdown_at: float = math.inf
    aborted: bool = False
    ctx: Context | None = field(default=None)
    #: The handler is running: a stop cancels the scope at once.
    armed: bool = False
    #: The job ended: its runner deregistered it.
    ended: bool = False

    def abort(self) -> None:
        if not self.ended:
            self.aborted = True
            if self.armed:
                self.scope.cancel()

    def shutdown(self, deadline: float) -> None:
        if not self.ended:
            self.shutdown_at = min(self.shutdown_at, deadline)
            if self.armed:
                self.scope.deadline = min(self.scope.deadline, deadline)

    def arm(self) -> None:
        """The handler starts: the stops asked for so far reach the scope now,
        and later ones at once."""
        self.armed = True
        deadline = min(self.timeout_at, self.shutdown_at)
        if deadline != math.inf:
            self.scope.deadline = deadline
        if self.aborted:
            self.scope.cancel()


class Ledger:
    """The jobs one worker holds, running and counted (see the module docstring)."""

    __slots__ = ("_held", "_running", "_stats", "_stranded", "shutdown_deadline", "writes")

    def __init__(self) -> None:
        self._held: set[uuid.UUID] = set()
        self._running: dict[uuid.UUID, RunningJob] = {}
        self._stats: dict[str, int] = {}
        self._stranded: list[Outcome] = []
        #: Trio time the running jobs must end by (None: not stopping).
        self.shutdown_deadline: float | None = None
        #: Outcomes written so far (the poller compares it across a claim).
        self.writes = 0

    # --- the worker ---------------------------------------------------------

    def reset(self) -> None:
        """A new registration holds nothing yet."""
        self._held.clear()

    def shut_down(self, deadline: float) -> None:
        """Running jobs (and jobs that start from now on) end by ``deadline``."""
        self.shutdown_deadline = deadline
        for running in list(self._running.values()):
            running.shutdown(deadline)

    # --- poller -------------------------------------------------------------

    def claimed(self, rows: Iterable[Any]) -> None:
        self._held.update(row[0] for row in rows)

    @property
    def idle(self) -> bool:
        """Nothing held: no job claimed, running or waiting to be written."""
        return not self._held

    # --- runner -------------------------------------------------------------

    def start(self, running: RunningJob) -> None:
        if self.shutdown_deadline is not None:
            running.shutdown(self.shutdown_deadline)
        self._running[running.job.id] = running

    def stop_running(self, job_id: uuid.UUID) -> None:
        running = self._running.pop(job_id, None)
        if running is not None:
            running.ended = True

    def count(self, kind: str) -> None:
        stats = self._stats
        stats[kind] = stats.get(kind, 0) + 1

    def strand(self, outcome: Outcome) -> None:
        """An outcome the runner could not send (cancelled): the final flush writes it."""
        self._stranded.append(outcome)

    # --- completer ----------------------------------------------------------

    def settled(self, outcomes: Iterable[Outcome], written: int) -> None:
        """These outcomes were written (``written`` of them accepted) or refused."""
        held = self._held
        for outcome in outcomes:
            held.discard(outcome.job.id)
        self.writes += written

    def take_stranded(self) -> list[Outcome]:
        stranded, self._stranded = self._stranded, []
        return stranded

    # --- readers --------------------------------------------------------------

    def held_ids(self) -> list[uuid.UUID]:
        return list(self._held)

    def is_held(self, job_id: uuid.UUID) -> bool:
        return job_id in self._held

    def running_job(self, job_id: uuid.UUID) -> RunningJob | None:
        return self._running.get(job_id)

    @property
    def running(self) -> Mapping[uuid.UUID, RunningJob]:
        """The jobs running now, by id (read-only)."""
        return MappingProxyType(self._running)

    @property
    def stats(self) -> Mapping[str, int]:
        """Outcomes so far, by kind (read-only)."""
        return MappingProxyType(self._stats)

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self._stats.items())) or "no jobs"
