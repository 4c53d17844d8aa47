"""How an attempt ended, as the completer writes it: one pure function.

:func:`classify` takes the job and what the runner saw -- the encoded result,
the handler's exception, or the cancel of the job's scope (with the times and
the abort flag of its :class:`~werk_trio.actors.ledger.RunningJob`) -- and
returns the :class:`~werk_trio.actors.completer.Outcome` and the exception the
hooks see. No I/O, no clock of its own (``now`` is given), so
``tests/unit/test_classify.py`` checks every row of the table without Postgres:

=====================================  =====================================
what the runner saw                    outcome (kind)
=====================================  =====================================
a result                               complete (repeat: delay, next row id)
a result that cannot be stored         fail_final
an exception, attempts left            fail, with the retry interval as delay
an exception, no attempts left         fail (COMPLETE_BATCH ends it failed)
``Snooze`` / ``Cancel`` raised         snooze (attempt unspent) / abort
a result that cannot be encoded        fail_final
the scope cancelled by abort_job       abort
the scope cancelled by shutdown        requeue (attempt unspent)
the scope's deadline (``_timeout``)    fail (JobTimeout), retried as above
=====================================  =====================================

The worker being cancelled outright (not a stop) is the runner's own case:
:func:`interrupted` puts the job back unspent.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._ids import uuid7
from .._rows import storable
from ..errors import JobTimeout, WerkError, WorkerShutdown
from ..executors import RemoteError, unencodable
from ..flow import Cancel, Snooze
from .completer import Outcome

if TYPE_CHECKING:
    from ..jobs import Job

__all__ = ["MAX_ERROR_CHARS", "Stop", "classify", "error_text", "format_error", "interrupted"]

#: Longest error text stored (characters); longer ones lose their middle.
MAX_ERROR_CHARS = 64 * 1024


class Stop(Protocol):
    """Why a job's cancel scope was cancelled (a RunningJob is one)."""

    aborted: bool
    shutdown_at: float
    timeout_at: float


def classify(
    job: Job, *, result: str | None = None, error: BaseException | None = None,
    stop: Stop | None = None, now: float = math.inf, final: bool = False,
    new_id: Callable[[], Any] = uuid7,
) -> tuple[Outcome, BaseException | None]:
    """The outcome of one attempt of ``job`` and the exception its hooks see.

    Exactly one of: ``stop`` (the job's scope was cancelled; ``now`` is the
    Trio time it ended), ``error`` (what the handler raised, unwrapped;
    ``final``: the result could not be stored, retrying cannot help) or
    ``result`` (the encoded, storable result)."""
    if stop is not None:
        if stop.aborted:
            reason = "aborted by request (abort_job)"
            return Outcome(job, "abort", error=reason), WerkError(reason)
        if stop.shutdown_at <= now and stop.shutdown_at <= stop.timeout_at:
            exc: BaseException = WorkerShutdown(f"worker shut down while {job.function} ran; requeued")
            return Outcome(job, "requeue", error=str(exc)), exc
        if job.timeout_secs is None:
            # no stop of its own cut it (nothing else cancels a job's scope):
            # handled as an interruption, never a crash of the runner
            exc = WorkerShutdown(f"{job.function} was cancelled while it ran; requeued")
            return Outcome(job, "requeue", error=str(exc)), exc
        exc = JobTimeout(f"{job.function} ran longer than its timeout of {job.timeout_secs:g}s")
        return _failed(job, exc), exc
    if error is not None:
        if final:
            return Outcome(job, "fail_final", error=format_error(error)), error
        control = error.original if isinstance(error, RemoteError) else error
        if isinstance(control, Snooze):  # back to the queue, attempt unspent
            return Outcome(job, "snooze", error=str(control), delay=control.seconds), error
        if isinstance(control, Cancel):  # ends aborted, no retry
            return Outcome(job, "abort", error=format_error(error)), error
        if unencodable(error):  # the result could not be encoded (here or in a child)
            return Outcome(job, "fail_final", error=format_error(error)), error
        return _failed(job, error), error
    outcome = Outcome(job, "complete", result=result, delay=_repeat_delay(job))
    if job.repeat_remaining > 0:  # the next run is a row of its own
        outcome.next_id = new_id()
    return outcome, None


def interrupted(job: Job) -> Outcome:
    """The worker itself was cancelled while ``job`` ran: back to the queue, unspent."""
    return Outcome(job, "requeue", error="interrupted by worker shutdown")


def failed(job: Job, exc: BaseException) -> Outcome:
    """A failed attempt: retried after its interval while attempts are left
    (COMPLETE_BATCH ends it ``failed`` when they are not)."""
    return _failed(job, exc)


def _failed(job: Job, exc: BaseException) -> Outcome:
    error = format_error(exc)
    if job.attempts < job.max_attempts:
        intervals = job.retry_intervals or [0.0]
        delay = intervals[min(job.attempts - 1, len(intervals) - 1)]
        return Outcome(job, "fail", error=error, delay=delay)
    return Outcome(job, "fail", error=error)


def _repeat_delay(job: Job) -> float | None:
    if job.repeat_remaining <= 0:
        return None
    if job.repeat_interval_secs is not None:
        return job.repeat_interval_secs
    intervals = job.repeat_intervals or [0.0]
    return intervals[max(0, min(len(intervals) - job.repeat_remaining, len(intervals) - 1))]


def format_error(exc: BaseException) -> str:
    """The full traceback text of ``exc`` (what ``job.error`` holds); for an
    error from a child process, the child's own traceback."""
    if isinstance(exc, RemoteError):
        text = exc.traceback_text
    else:
        try:
            text = "".join(traceback.format_exception(exc)).rstrip()
        except Exception as ex:  # an exception whose __str__ raises
            kind = type(exc)
            text = (f"{kind.__module__}.{kind.__qualname__}: "
                    f"<str() of the exception raised {type(ex).__name__}>")
    return error_text(text)


def error_text(text: str) -> str:
    """An error text Postgres can store and a batch can carry: NULs and lone
    surrogates replaced visibly (``\\x00``, ``\\udcff``); over
    MAX_ERROR_CHARS, the middle cut out (the start names the exception, the
    end is the innermost frame)."""
    text = storable(text)
    if len(text) > MAX_ERROR_CHARS:
        half = MAX_ERROR_CHARS // 2
        cut = len(text) - 2 * half
        note = f"[... {cut} characters cut: error texts are kept to {MAX_ERROR_CHARS} ...]"
        text = f"{text[:half]}\n{note}\n{text[-half:]}"
    return text
