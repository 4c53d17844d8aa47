"""The classification of an attempt's end (werk_trio/actors/classify.py):
every row of its table, without Postgres -- what the runner saw in, the
outcome the completer writes (kind, delay, error) and the exception the hooks
see out."""

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from werk_trio import Cancel, JobStatus, JobTimeout, Snooze, WerkError, WorkerShutdown
from werk_trio.actors.classify import classify, interrupted
from werk_trio.executors import RemoteError
from werk_trio.jobs import Job


def job(**fields: Any) -> Job:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "id": uuid.uuid4(), "function": "tasks.work", "queue": "q", "status": JobStatus.ACTIVE,
        "priority": 0, "attempts": 1, "max_attempts": 3, "scheduled_at": now, "enqueued_at": now,
        "timeout_secs": 5.0,
    }  # fmt: skip
    base.update(fields)
    return Job(**base)


@dataclass
class Stopped:
    aborted: bool = False
    shutdown_at: float = math.inf
    timeout_at: float = math.inf


class Boom(Exception):
    pass


NEXT = uuid.UUID(int=7)

# (name, job fields, classify arguments, kind, delay, the hooks' exception type or None)
TABLE: list[tuple[str, dict[str, Any], dict[str, Any], str, float | None, type | None]] = [
    ("a result", {}, {"result": '"ok"'}, "complete", None, None),
    ("a repeating job's result", {"repeat_remaining": 2, "repeat_interval_secs": 30.0},
     {"result": "1"}, "complete", 30.0, None),
    ("a repeat by intervals: the next one's", {"repeat_remaining": 2, "repeat_intervals": [5.0, 7.0, 9.0]},
     {"result": "1"}, "complete", 7.0, None),
    ("an unstorable result", {}, {"error": WerkError("too big"), "final": True}, "fail_final", None,
     WerkError),
    ("an exception, attempts left", {"retry_intervals": [2.0, 4.0]}, {"error": Boom("x")}, "fail", 2.0, Boom),
    ("the second attempt's interval", {"attempts": 2, "retry_intervals": [2.0, 4.0]},
     {"error": Boom("x")}, "fail", 4.0, Boom),
    ("past the last interval: the last one", {"attempts": 2, "max_attempts": 5, "retry_intervals": [2.0]},
     {"error": Boom("x")}, "fail", 2.0, Boom),
    ("an exception, no attempts left", {"attempts": 3}, {"error": Boom("x")}, "fail", None, Boom),
    ("Snooze", {}, {"error": Snooze(12)}, "snooze", 12.0, Snooze),
    ("Cancel", {}, {"error": Cancel("no")}, "abort", None, Cancel),
    ("a child's Snooze", {}, {"error": RemoteError("Snooze", "s", "tb", original=Snooze(3))},
     "snooze", 3.0, RemoteError),
    ("a child's error that cannot be retried", {},
     {"error": RemoteError("SerializationError", "bad", "tb", final=True)}, "fail_final", None, RemoteError),
    ("a child's ordinary error", {}, {"error": RemoteError("Boom", "x", "tb")}, "fail", 0.0, RemoteError),
    ("abort_job", {}, {"stop": Stopped(aborted=True), "now": 1.0}, "abort", None, WerkError),
    ("shutdown", {}, {"stop": Stopped(shutdown_at=1.0, timeout_at=9.0), "now": 1.0}, "requeue", None,
     WorkerShutdown),
    ("shutdown after the timeout fell: a timeout", {"retry_intervals": [3.0]},
     {"stop": Stopped(shutdown_at=2.0, timeout_at=1.0), "now": 2.0}, "fail", 3.0, JobTimeout),
    ("shutdown still ahead: a timeout", {}, {"stop": Stopped(shutdown_at=5.0, timeout_at=1.0), "now": 1.0},
     "fail", 0.0, JobTimeout),
    ("a timeout on the last attempt", {"attempts": 3}, {"stop": Stopped(timeout_at=1.0), "now": 1.0},
     "fail", None, JobTimeout),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "given", "kind", "delay", "seen"),
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_each_end_of_an_attempt(
    fields: dict[str, Any], given: dict[str, Any], kind: str, delay: float | None, seen: type | None
) -> None:
    j = job(**fields)
    outcome, exc = classify(j, new_id=lambda: NEXT, **given)
    assert outcome.job is j
    assert (outcome.kind, outcome.delay) == (kind, delay)
    if seen is None:
        assert exc is None and outcome.error is None
        assert outcome.result == given["result"]
        assert outcome.next_id == (NEXT if j.repeat_remaining > 0 else None)
    else:
        assert isinstance(exc, seen), exc
        assert outcome.result is None and outcome.error


def test_the_error_texts() -> None:
    timed_out, _ = classify(job(), stop=Stopped(timeout_at=1.0), now=1.0)
    assert timed_out.error is not None and "tasks.work ran longer than its timeout of 5s" in timed_out.error
    assert classify(job(), stop=Stopped(aborted=True))[0].error == "aborted by request (abort_job)"
    requeued, _ = classify(job(), stop=Stopped(shutdown_at=0.0), now=0.0)
    assert requeued.error == "worker shut down while tasks.work ran; requeued"
    # a stop that is none of the three, for a job without a timeout: requeued, not a TypeError
    cut, _ = classify(job(timeout_secs=None), stop=Stopped(), now=0.0)
    assert (cut.kind, cut.error) == ("requeue", "tasks.work was cancelled while it ran; requeued")
    snoozed, _ = classify(job(), error=Snooze(2))
    assert snoozed.error == "snoozed for 2s"
    failed, _ = classify(job(), error=Boom("the message"))
    assert failed.error is not None and failed.error.endswith("Boom: the message")
    remote, _ = classify(job(), error=RemoteError("Boom", "m", "the child's traceback"))
    assert remote.error == "the child's traceback"


def test_an_interrupted_job_goes_back_unspent() -> None:
    j = job()
    out = interrupted(j)
    assert (out.job, out.kind, out.delay) == (j, "requeue", None)
    assert out.as_row() == {"id": str(j.id), "attempt": 1, "kind": "requeue",
                            "error": "interrupted by worker shutdown"}
