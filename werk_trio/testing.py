"""Helpers for your own test suites, on a real Postgres (werk_trio has no
in-memory fake on purpose: what you test is what runs). Modelled on River's
``rivertest``.

* A database of its own: ``temporary_schema(dsn)`` gives a Werk on a fresh
  schema that is dropped afterwards, so tests never share state.
* Running jobs: ``run_until_idle(app)`` drains the queue with a burst worker
  in-process; ``make_worker(app)`` builds a worker with short intervals and
  ``async with running(worker):`` runs it for a block.
* Waiting: ``until(predicate)`` polls a condition, ``wait_for_status(app, id,
  *statuses)`` a job's status. Neither has a deadline of its own unless given
  one: put the test under ``trio.fail_after``.
* Assertions: ``assert_enqueued(app, func, args=..., queue=...)`` and
  ``assert_not_enqueued`` look at the jobs table and raise AssertionError
  showing what they found instead.
"""

from __future__ import annotations

import inspect
import math
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypedDict, Unpack

import trio

from .app import Werk
from .errors import ConfigError
from .jobs import Job, JobStatus, _seconds
from .tasks import caller_package, function_path
from .worker import Worker, worker_class

__all__ = [
    "JobFilters",
    "assert_enqueued",
    "assert_not_enqueued",
    "make_worker",
    "run_until_idle",
    "running",
    "temporary_schema",
    "until",
    "wait_for_status",
]

#: The intervals (seconds) of a test worker: short, so a test waits little.
TEST_POLL_INTERVAL = 0.05
TEST_ABORT_INTERVAL = 0.05
#: How often the waits look again (seconds).
DEFAULT_INTERVAL = 0.02
#: Found jobs an assertion message lists at most.
_SHOWN = 10


async def until(
    predicate: Callable[[], Any], *, interval: float = DEFAULT_INTERVAL, timeout: float | None = None
) -> Any:
    """Call ``predicate`` (a plain or an async function, no arguments) every
    ``interval`` seconds until it returns something truthy; return that value.

    Without ``timeout`` it waits as long as it takes: bound it with the test's
    ``trio.fail_after``. With ``timeout`` (seconds) it raises AssertionError
    naming the predicate and its last value once that much time has passed.
    What the predicate raises propagates at once. ConfigError for an
    ``interval`` or ``timeout`` that is not a positive number of seconds. Cancellation:
    safe, it leaves nothing behind (the predicate's own call is cancelled with
    it).
    """
    if not callable(predicate):
        raise ConfigError(f"until() takes a function to call, got {predicate!r}")
    step = _seconds("interval", interval)
    limit = None if timeout is None else _seconds("timeout", timeout)
    last: Any = None
    with trio.move_on_after(math.inf if limit is None else limit):
        while True:
            last = predicate()
            if inspect.isawaitable(last):
                last = await last
            if last:
                return last
            await trio.sleep(step)
    name = getattr(predicate, "__qualname__", repr(predicate))
    raise AssertionError(f"{name}() was still not true after {limit}s; its last value: {last!r}")


def _status_values(statuses: Sequence[Any]) -> frozenset[str]:
    out = set()
    for status in statuses:
        try:
            out.add(JobStatus(status).value)
        except ValueError:
            raise ConfigError(
                f"unknown job status {status!r}; statuses: {', '.join(s.value for s in JobStatus)}"
            ) from None
    return frozenset(out)


async def wait_for_status(
    app: Werk, job_id: Any, *statuses: str | JobStatus, interval: float = DEFAULT_INTERVAL,
    timeout: float | None = None,
) -> Job:
    """Wait until the job's status is one of ``statuses``; return the job.

    Unlike :meth:`Werk.wait_for` (which waits for the end), any status can be
    waited for: ``"active"``, ``"waiting"``, ``"complete", "failed"``.
    ConfigError when no status or an unknown one is given; JobNotFound if the
    row does not exist (or is deleted while waiting); ``timeout`` as in
    :func:`until`. Cancellation: safe, it only reads.
    """
    if not statuses:
        raise ConfigError("wait_for_status() needs at least one status to wait for, e.g. 'complete'")
    wanted = _status_values(statuses)

    async def reached() -> Job | None:
        job = await app.get_job(job_id)
        return job if job.status.value in wanted else None

    job: Job = await until(reached, interval=interval, timeout=timeout)
    return job


def make_worker(app: Werk, worker_type: str | type[Worker] = "async", **kwargs: Any) -> Worker:
    """A worker for tests: ``poll_interval`` and ``abort_interval`` 0.05 s and
    no signal handlers (the test runner keeps its own), unless ``kwargs`` say
    otherwise; every other setting is the worker's default.

    ``worker_type`` is ``"async"``, ``"thread"``, ``"process"``, ``"fork"`` or
    a worker class; ConfigError otherwise, or for a bad setting.
    """
    if isinstance(worker_type, type) and issubclass(worker_type, Worker):
        cls = worker_type
    elif isinstance(worker_type, str):
        cls = worker_class(worker_type)
    else:
        raise ConfigError(
            f"worker_type must be async, thread, process, fork or a Worker class, got {worker_type!r}"
        )
    kwargs.setdefault("poll_interval", TEST_POLL_INTERVAL)
    kwargs.setdefault("abort_interval", TEST_ABORT_INTERVAL)
    kwargs.setdefault("handle_signals", False)
    return cls(app, **kwargs)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[trio.Nursery]:
    """Run ``worker`` for the block, which starts once the worker has started
    (registered, listening); yield the nursery it runs in.

    On exit the worker is stopped at once (``stop(now=True)``: running jobs
    are cancelled and requeued without spending an attempt) and the block ends
    when its ``run`` has returned. What the worker's ``run`` or the block
    raises comes out in an ExceptionGroup, as from any Trio nursery; ConfigError
    (plain) if ``worker`` is not a worker. Cancellation: a cancel of the block
    stops the worker the same way.
    """
    if not isinstance(worker, Worker):
        raise ConfigError(f"running() takes a worker (make_worker(app)), got {type(worker).__name__}")
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        try:
            yield nursery
        finally:
            worker.stop(now=True)


async def run_until_idle(app: Werk, *, worker_type: str = "async", **worker_kwargs: Any) -> Worker:
    """Run a burst worker until nothing is claimable and nothing runs; return it.

    The worker is :func:`make_worker`'s (short intervals, no signal handlers);
    ``worker_type`` is async, thread, process or fork (ConfigError otherwise);
    ``worker_kwargs`` go to the worker class. Cancellation: as the worker's
    ``run`` -- running jobs go back to the queue without spending an attempt.
    """
    worker = make_worker(app, worker_type, burst=True, **worker_kwargs)
    await worker.run()
    return worker


def _describe(job: Job) -> str:
    return (f"{job.id} {job.status.value} queue={job.queue!r} args={job.args!r} kwargs={job.kwargs!r} "
            f"priority={job.priority}")


def _listing(jobs: Sequence[Job]) -> str:
    shown = "\n".join(f"  {_describe(j)}" for j in jobs[:_SHOWN])
    more = f"\n  ... and {len(jobs) - _SHOWN} more" if len(jobs) > _SHOWN else ""
    return shown + more


async def _jobs_of(app: Werk, path: str, queue: str | None, status: Any) -> list[Job]:
    """Every job of ``path`` (in ``queue``, with ``status``), oldest first."""
    found: list[Job] = []
    while True:
        page = await app.list_jobs(queue=queue, status=status, function=path, limit=10_000, offset=len(found))
        found += page
        if len(page) < 10_000:
            found.reverse()  # list_jobs gives newest first
            return found


class JobFilters(TypedDict, total=False):
    """The filters of :func:`assert_enqueued` and :func:`assert_not_enqueued`;
    only those given count."""

    #: The positional arguments, compared whole (a list or a tuple).
    args: Sequence[Any]
    #: The keyword arguments, compared whole.
    kwargs: dict[str, Any]
    queue: str
    #: One status or several.
    status: str | JobStatus | Sequence[str | JobStatus]


def _checked(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters given (None: not given), checked; ConfigError otherwise."""
    unknown = set(filters) - set(JobFilters.__annotations__)
    if unknown:
        known = ", ".join(JobFilters.__annotations__)
        raise ConfigError(f"unknown filter {', '.join(sorted(unknown))}; the filters are {known}")
    given = {k: v for k, v in filters.items() if v is not None}
    args = given.get("args")
    if args is not None and (isinstance(args, str | bytes) or not isinstance(args, Sequence)):
        raise ConfigError(f"args must be a list or tuple of the positional arguments, got {args!r}")
    if "kwargs" in given and not isinstance(given["kwargs"], dict):
        raise ConfigError(f"kwargs must be a dict of the keyword arguments, got {given['kwargs']!r}")
    return given


def _wanted(path: str, filters: dict[str, Any]) -> str:
    parts = [f"of {path}"]
    for name in ("args", "kwargs", "queue"):
        if name in filters:
            parts.append(f"{name}={filters[name]!r}")
    if "status" in filters:
        status = filters["status"]
        named = [status] if isinstance(status, str) else list(status)
        parts.append(f"status={'|'.join(getattr(s, 'value', str(s)) for s in named)}")
    return " ".join(parts)


async def _matching(
    app: Werk, func: Callable[..., Any] | str, filters: dict[str, Any]
) -> tuple[str, list[Job], list[Job]]:
    """The function's path, the jobs matching every filter, and every job of the function."""
    if not isinstance(app, Werk):
        raise ConfigError(f"app must be a Werk instance, got {type(app).__name__}")
    path = function_path(func)
    every = await _jobs_of(app, path, None, None)
    queue, status = filters.get("queue"), filters.get("status")
    # the filters SQL can apply run there too: a bad queue or status is refused by list_jobs
    listed = every if queue is None and status is None else await _jobs_of(app, path, queue, status)
    args = list(filters["args"]) if "args" in filters else None
    matching = [j for j in listed if (args is None or j.args == args)
                and ("kwargs" not in filters or j.kwargs == filters["kwargs"])]
    return path, matching, every


async def assert_enqueued(
    app: Werk, func: Callable[..., Any] | str, *, count: int | None = None, **filters: Unpack[JobFilters]
) -> list[Job]:
    """Assert that jobs of ``func`` (the function or its dotted path) are in
    the jobs table; return the matching ones, oldest first.

    Only the filters given count: ``args`` (the positional arguments, compared
    whole), ``kwargs`` (the keyword arguments, compared whole), ``queue``, and
    ``status`` (one or several). With ``count`` exactly that many must match,
    else at least one. AssertionError when they do not, listing the jobs of
    ``func`` that were found instead; ConfigError for a bad or unknown filter
    (use :func:`assert_not_enqueued` for "none"). Cancellation: safe, it only
    reads.
    """
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ConfigError(f"count must be an int >= 1, got {count!r} (for none, use assert_not_enqueued)")
    given = _checked(dict(filters))
    path, matching, every = await _matching(app, func, given)
    if (count is None and matching) or len(matching) == count:
        return matching
    wanted = _wanted(path, given)
    expected = f"expected a job {wanted}" if count is None else f"expected {count} jobs {wanted}"
    if not every:
        raise AssertionError(f"{expected}, found no job of {path} at all")
    if matching:
        raise AssertionError(f"{expected}, found {len(matching)} that match:\n{_listing(matching)}")
    raise AssertionError(f"{expected}, found none that match; the jobs of {path}:\n{_listing(every)}")


async def assert_not_enqueued(
    app: Werk, func: Callable[..., Any] | str, **filters: Unpack[JobFilters]
) -> None:
    """Assert that no job of ``func`` matching the filters (as in
    :func:`assert_enqueued`; none given: no job of ``func`` at all) is in the
    jobs table. AssertionError listing the ones found; ConfigError for a bad
    or unknown filter. Cancellation: safe, it only reads.
    """
    given = _checked(dict(filters))
    path, matching, _ = await _matching(app, func, given)
    if matching:
        wanted = _wanted(path, given)
        raise AssertionError(f"expected no job {wanted}, found {len(matching)}:\n{_listing(matching)}")


@asynccontextmanager
async def temporary_schema(dsn: str | None = None, **settings: Any) -> AsyncIterator[Werk]:
    """A connected Werk on a new schema ``werk_test_<random>``, dropped on exit.

    ``settings`` go to :class:`~werk_trio.Werk`; ConfigError if the database
    cannot be reached. The schema is dropped on exit whatever the body raised;
    if the exit is cancelled, the DROP may not run and the schema is left
    behind (its name starts with ``werk_test_``, safe to drop).
    """
    schema = f"werk_test_{uuid.uuid4().hex[:10]}"
    # the home package is the caller's (the test suite's), not werk_trio's
    settings.setdefault("home_package", caller_package() or "")
    app = Werk(dsn, schema=schema, **settings)
    async with app:
        try:
            yield app
        finally:
            async with app.connection() as conn:
                await conn.execute(app.sql.DROP_SCHEMA)
