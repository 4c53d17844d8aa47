"""The exception tree.

Every error werk_trio raises on purpose is a :class:`WerkError`. Each subclass
names one distinction a caller may want to act on; the message says what was
wrong and how to fix it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jobs import Job

__all__ = [
    "ConfigError",
    "DependencyFailed",
    "InvalidJobState",
    "JobError",
    "JobNotFound",
    "JobTimeout",
    "PayloadTooLarge",
    "PoolTimeout",
    "SerializationError",
    "UnknownTask",
    "WaitTimeout",
    "WerkError",
    "WorkerShutdown",
]


class WerkError(Exception):
    """Base class of every error werk_trio raises on purpose."""


class ConfigError(WerkError, ValueError):
    """A bad name, option, DSN or setting. Raised before anything is written."""


class InvalidJobState(ConfigError):
    """A management call met a job in a state it does not apply to (e.g.
    purging running jobs); the message names the state and what to do instead."""


class JobNotFound(WerkError, LookupError):
    """No job row has the given id (it never existed, or was deleted or purged)."""

    def __init__(self, job_id: Any) -> None:
        super().__init__(f"no job with id {job_id!s}: it does not exist or was deleted")
        self.job_id = job_id


class JobTimeout(WerkError):
    """The attempt ran longer than the job's ``_timeout`` and was stopped."""


class JobError(WerkError):
    """A job you waited for ended ``failed`` or ``aborted``; ``.job`` is the terminal row."""

    def __init__(self, job: Job) -> None:
        detail = ""
        if job.error:
            last = job.error.strip().splitlines()[-1:]
            detail = f": {last[0]}" if last else ""
        super().__init__(f"job {job.id} ({job.function}) ended {job.status}{detail}")
        self.job = job

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job,))


class DependencyFailed(WerkError):
    """A job this one depends on ended failed or aborted (without ``allow_failure``)."""


class WorkerShutdown(WerkError):
    """The worker shut down while the job was running; it was put back in the queue."""


class UnknownTask(WerkError):
    """The job names a function this worker is not allowed to run, or cannot find."""


class SerializationError(WerkError):
    """A payload, result or meta value the serializer cannot encode or decode.

    ``final`` is true when it is a handler's result that could not be encoded
    (the executor marks it): the attempt fails for good, since running the
    handler again would return the same. One the handler raises itself is
    retried as any error."""

    final: bool = False


class PayloadTooLarge(WerkError):
    """The encoded payload is larger than ``max_payload_bytes``; nothing was inserted."""


class PoolTimeout(WerkError, TimeoutError):
    """No database connection became free within the pool timeout."""


class WaitTimeout(WerkError, TimeoutError):
    """``wait_for`` / ``apply`` / ``map`` gave up: the job had not ended within ``timeout``."""
