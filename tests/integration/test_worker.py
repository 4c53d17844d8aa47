"""The worker page, in process: constructor parameters and defaults, concurrency,
dequeue strategies, burst, hooks, exception handlers, handler kinds, Context,
results and failures. Real Postgres, real workers, no mocks.

Job lifecycle (retries, timeouts, aborts, shutdown, fencing) is in
test_worker_lifecycle.py.
"""

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import sniffio
import trio
import trio.testing

import werk_trio
from tests._support import column, worker_ids
from werk_trio import (
    AsyncWorker,
    ConfigError,
    Context,
    DequeueStrategy,
    EnqueueParams,
    Job,
    PickleSerializer,
    ThreadWorker,
    Werk,
)
from werk_trio.actors.completer import OUTCOMES_PER_SLOT
from werk_trio.testing import make_worker, running, until, wait_for_status

# --- handlers (module level: the app allows functions under tests/) -----------

#: What handlers and hooks saw, in order (list.append is atomic across threads).
LOG: list[Any] = []
CONTEXTS: dict[Any, Context] = {}


class Gauge:
    active = 0
    peak = 0


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    LOG.clear()
    CONTEXTS.clear()
    BARRIER.clear()
    GATES.clear()
    Gauge.active = Gauge.peak = 0
    yield


async def noop() -> None:
    pass


async def label(name: str) -> str:
    LOG.append(name)
    return name


async def measured(duration: float) -> None:
    Gauge.active += 1
    Gauge.peak = max(Gauge.peak, Gauge.active)
    try:
        await trio.sleep(duration)
    finally:
        Gauge.active -= 1


BARRIER: list[threading.Barrier] = []

#: Trio events a ``gated`` job waits for, by name (the AsyncWorker runs in the test's Trio run).
GATES: dict[str, trio.Event] = {}


async def gated(name: str) -> str:
    await GATES.setdefault(name, trio.Event()).wait()
    return name


def sync_rendezvous() -> None:
    BARRIER[0].wait()  # returns only once every party is waiting at the same time


async def sleep_for(duration: float) -> None:
    await trio.sleep(duration)


async def fail_once(ctx: Context) -> str:
    if ctx.job.attempts == 1:
        raise ValueError("first attempt fails")
    return "ok"


async def explode(message: str) -> None:
    _deep_helper(message)


def _deep_helper(message: str) -> None:
    raise ValueError(message)


async def returns(value: Any) -> Any:
    return value


async def returns_unserializable() -> Any:
    return object()


async def trio_kind() -> dict[str, Any]:
    await trio.sleep(0)
    return {"library": sniffio.current_async_library(), "main_thread": _in_main_thread()}


def sync_blocking(seconds: float) -> dict[str, Any]:
    start = time.monotonic()
    time.sleep(seconds)  # blocks this thread only
    return {"start": start, "end": time.monotonic(), "main_thread": _in_main_thread()}


@werk_trio.asyncio_handler
async def asyncio_marked() -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.01)  # awaits an asyncio Future: only works in an asyncio task
    return {
        "loop": type(loop).__name__,
        "library": sniffio.current_async_library(),
        "task": asyncio.current_task() is not None,
    }


async def asyncio_via_task_decorator() -> str:
    asyncio.get_running_loop()
    await asyncio.sleep(0.01)
    assert asyncio.current_task() is not None
    return sniffio.current_async_library()


async def asyncio_unmarked() -> None:
    # without the mark this runs as a Trio task, which cannot await an asyncio Future
    await asyncio.sleep(0.01)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


async def with_ctx(ctx, x: int) -> int:  # type: ignore[no-untyped-def]
    CONTEXTS[ctx.job.id] = ctx
    return x + 1


def annotated_ctx(c: Context, y: str) -> str:
    CONTEXTS[c.job.id] = c
    return y.upper()


async def no_ctx(x: Any, ctx: Any = "default") -> list[Any]:
    return [x, ctx]


# hooks


def before_sync(ctx: Context) -> None:
    LOG.append(("before_sync", ctx.job.id, ctx.exception))


async def before_async(ctx: Context) -> None:
    await trio.sleep(0)
    LOG.append(("before_async", ctx.job.id, ctx.exception))


async def after_async(ctx: Context) -> None:
    await trio.sleep(0)
    LOG.append(("after_async", ctx.job.id, ctx.exception))


def after_sync(ctx: Context) -> None:
    LOG.append(("after_sync", ctx.job.id, ctx.exception))


async def hooked(ctx: Context, fail: bool) -> str:
    LOG.append(("handler", ctx.job.id, None))
    if fail:
        raise ValueError("hooked failure")
    return "fine"


# --- constructor: parameters, defaults, bad values ----------------------------

SEED_PARAMETERS = [
    "app", "queues", "concurrency", "heartbeat_interval", "poll_interval", "dequeue_strategy",
    "burst", "before_process", "after_process", "sweep_interval", "abort_interval", "shutdown_timeout",
]  # fmt: skip


@pytest.fixture
def offline_app() -> Werk:
    """A Werk that is never connected: constructing workers needs no database."""
    return Werk("postgresql://nobody@127.0.0.1:1/none", task_modules=["tests"])


@pytest.mark.parametrize("cls", [AsyncWorker, ThreadWorker])
def test_seed_parameters_and_defaults(offline_app: Werk, cls: type[AsyncWorker]) -> None:
    params = list(inspect.signature(cls).parameters)
    assert params[: len(SEED_PARAMETERS)] == SEED_PARAMETERS

    w = cls(app=offline_app)
    assert w.app is offline_app
    assert w.queues == ["default"]
    assert w.concurrency == 10
    assert w.heartbeat_interval == 10
    assert w.poll_interval == 5.0
    assert w.dequeue_strategy is DequeueStrategy.Priority
    assert w.burst is False
    assert w.before_process == [] and w.after_process == []
    assert w.sweep_interval == 60.0
    assert w.abort_interval == 1.0
    assert w.shutdown_timeout == 30.0
    # the hook lists are the worker's own, not a shared default
    assert cls(app=offline_app).before_process is not w.before_process


def test_explicit_values_and_app_config_defaults(offline_app: Werk) -> None:
    hooks = [before_sync]
    w = AsyncWorker(
        offline_app, ["high", "low", "high"], 3, 0.5, 0.25, DequeueStrategy.RoundRobin, True,
        hooks, [after_sync], 7.0, 0.1, 0,
    )  # fmt: skip
    assert w.queues == ["high", "low"]
    assert (w.concurrency, w.heartbeat_interval, w.poll_interval) == (3, 0.5, 0.25)
    assert w.dequeue_strategy is DequeueStrategy.RoundRobin and w.burst is True
    assert w.before_process == [before_sync] and w.after_process == [after_sync]
    assert (w.sweep_interval, w.abort_interval, w.shutdown_timeout) == (7.0, 0.1, 0.0)
    assert AsyncWorker(offline_app, queues="solo").queues == ["solo"]
    assert AsyncWorker(offline_app, dequeue_strategy="random").dequeue_strategy is DequeueStrategy.Random
    # an unset interval falls back to the app's WerkConfig
    tuned = Werk("postgresql://nobody@127.0.0.1:1/none", heartbeat_interval=3, shutdown_timeout=4)
    w = AsyncWorker(tuned)
    assert (w.heartbeat_interval, w.shutdown_timeout, w.poll_interval) == (3, 4, 5.0)


BAD_VALUES = [
    ("queues", []),
    ("queues", [""]),
    ("queues", [1]),
    ("queues", ""),
    ("concurrency", 0),
    ("concurrency", -1),
    ("concurrency", 1.5),
    ("concurrency", True),
    ("concurrency", "4"),
    ("dequeue_strategy", "fifo"),
    ("dequeue_strategy", 3),
    ("before_process", [1]),
    ("after_process", ["not callable"]),
    ("shutdown_timeout", -1),
    ("shutdown_timeout", float("nan")),
    ("shutdown_timeout", float("inf")),
    ("shutdown_timeout", "30"),
] + [
    (name, value)
    for name in ("heartbeat_interval", "poll_interval", "sweep_interval", "abort_interval")
    for value in (0, -1.0, float("nan"), float("inf"), "10", True)
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=[f"{n}={v!r}" for n, v in BAD_VALUES])
def test_bad_values_raise_config_error(offline_app: Werk, name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=name.split("_")[0].rstrip("s")):
        AsyncWorker(offline_app, **{name: value})


def test_bad_app_and_hooks_raise_config_error(offline_app: Werk) -> None:
    with pytest.raises(ConfigError, match="Werk"):
        AsyncWorker(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Werk"):
        AsyncWorker("postgresql://localhost/db")  # type: ignore[arg-type]
    w = AsyncWorker(offline_app)
    with pytest.raises(ConfigError):
        w.add_before_process(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        w.add_after_process(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        w.push_exception_handler("nope")  # type: ignore[arg-type]
    assert w.before_process == [] and w.after_process == [] and w.exception_handlers == []


# --- queues, concurrency, dequeue strategies, burst ------------------------------


async def test_concurrency_bounds_simultaneous_jobs(app: Werk) -> None:
    with trio.fail_after(15):
        jobs = [await app.enqueue(measured, 0.3) for _ in range(9)]
        w = make_worker(app, concurrency=3, burst=True)
        t0 = trio.current_time()
        await w.run()
        elapsed = trio.current_time() - t0
        assert Gauge.peak == 3  # reached, never exceeded
        for job in jobs:
            assert job and (await app.get_job(job.id)).status == "complete"
        assert elapsed >= 0.9  # three waves of 0.3 s: no more than 3 at a time
        assert w.stats["complete"] == 9


async def test_concurrency_applies_to_sync_handlers_beyond_the_default_thread_limit(app: Werk) -> None:
    # 50 plain functions must all run at once with concurrency=50 (Trio's
    # default thread limiter alone would allow 40: the barrier would break)
    BARRIER.append(threading.Barrier(50, timeout=5))
    with trio.fail_after(15):
        await app.enqueue_many([EnqueueParams(sync_rendezvous) for _ in range(50)])
        w = make_worker(app, concurrency=50, burst=True)
        await w.run()
        assert w.stats == {"complete": 50}


async def test_worker_only_takes_its_queues(app: Werk) -> None:
    with trio.fail_after(10):
        mine = await app.enqueue(noop, _queue="mine")
        other = await app.enqueue(noop, _queue="other")
        assert mine and other
        await make_worker(app, queues=["mine"], burst=True).run()
        assert (await app.get_job(mine.id)).status == "complete"
        assert (await app.get_job(other.id)).status == "queued"


async def test_priority_strategy_orders_by_priority_across_queues(app: Werk) -> None:
    with trio.fail_after(10):
        # enqueue order deliberately differs from priority order
        for queue, prio in [("low", 1), ("low", 5), ("high", 3), ("high", 9), ("low", 7), ("high", 0)]:
            await app.enqueue(label, f"{queue}:{prio}", _queue=queue, _priority=prio)
        w = make_worker(app, queues=["high", "low"], concurrency=1, burst=True)
        assert w.dequeue_strategy is DequeueStrategy.Priority
        await w.run()
        assert [int(x.split(":")[1]) for x in LOG] == [9, 7, 5, 3, 1, 0]


async def _drain_three_queues_round_robin(app: Werk) -> None:
    """c's jobs are the oldest and a's have the highest priority, so neither
    may win alone; one RoundRobin burst worker at concurrency 1 drains them."""
    for queue, n, prio in [("c", 3, 0), ("b", 2, 0), ("a", 4, 5)]:
        for i in range(n):
            await app.enqueue(label, f"{queue}{i}", _queue=queue, _priority=prio)
    w = make_worker(
        app, queues=["a", "b", "c"], concurrency=1, burst=True,
        dequeue_strategy=DequeueStrategy.RoundRobin,
    )  # fmt: skip
    await w.run()


def _assert_turns_across_three_queues() -> None:
    order = [x[0] for x in LOG]
    assert len(order) == 9, order
    # while all three queues have jobs, every run of three takes one from each
    assert sorted(order[0:3]) == ["a", "b", "c"], order
    assert sorted(order[3:6]) == ["a", "b", "c"], order
    # then b is empty and a and c alternate
    assert sorted(order[6:9]) == ["a", "a", "c"] and order[6] != order[7], order
    # within a queue, the usual order (index = enqueue order)
    assert [x for x in LOG if x[0] == "a"] == ["a0", "a1", "a2", "a3"]


async def test_round_robin_takes_turns_across_queues(app: Werk) -> None:
    with trio.fail_after(10):
        await _drain_three_queues_round_robin(app)
        _assert_turns_across_three_queues()


async def test_random_strategy_serves_every_queue(app: Werk) -> None:
    with trio.fail_after(15):
        for i in range(20):
            await app.enqueue(label, f"a{i}", _queue="a", _priority=10)
            await app.enqueue(label, f"b{i}", _queue="b", _priority=0)
        w = make_worker(
            app, queues=["a", "b"], concurrency=1, burst=True, dequeue_strategy=DequeueStrategy.Random
        )
        await w.run()
        assert sorted(LOG) == sorted([f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)])
        first = [x[0] for x in LOG[:20]]
        # Priority would run all 20 a's first; a random start queue mixes them in
        # (all 20 from one queue has probability 2**-19)
        assert "a" in first and "b" in first
        # and it is not the strict alternation of RoundRobin (probability 2**-39)
        assert [x[0] for x in LOG] != ["a", "b"] * 20 and [x[0] for x in LOG] != ["b", "a"] * 20


async def test_round_robin_and_random_hold_on_limited_queues(app: Werk) -> None:
    """A worker serving limited queues claims through CLAIM_LIMITED_BY_QUEUE:
    its strategy still decides the order (not priority, as CLAIM_LIMITED's)."""
    with trio.fail_after(20):
        # a and b limited (b also rate-limited), c plain: one claim statement serves all three
        await app.set_queue_limit("a", 50)
        await app.set_queue_limit("b", 50)
        await app.set_rate_limit("b", 1000, 1)
        await _drain_three_queues_round_robin(app)
        _assert_turns_across_three_queues()  # Priority would run a's four first

        LOG.clear()
        for i in range(20):
            await app.enqueue(label, f"a{i}", _queue="a", _priority=10)
            await app.enqueue(label, f"b{i}", _queue="b", _priority=0)
        w = make_worker(
            app, queues=["a", "b"], concurrency=1, burst=True, dequeue_strategy=DequeueStrategy.Random
        )
        await w.run()
        assert sorted(LOG) == sorted([f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)])
        first = [x[0] for x in LOG[:20]]
        assert "a" in first and "b" in first  # all 20 a's first: probability 2**-19


async def test_burst_returns_at_once_when_nothing_is_claimable(app: Werk) -> None:
    with trio.fail_after(10):
        later = await app.enqueue(noop, _delay=60)
        elsewhere = await app.enqueue(noop, _queue="elsewhere")
        assert later and elsewhere
        w = make_worker(app, burst=True, poll_interval=30)
        t0 = trio.current_time()
        await w.run()
        assert trio.current_time() - t0 < 2
        assert w.burst_done.is_set() and w.stopped.is_set()
        assert w.id not in await worker_ids(app)
        assert (await app.get_job(later.id)).status == "scheduled"
        assert (await app.get_job(elsewhere.id)).status == "queued"


async def test_burst_waits_for_running_jobs_and_their_retries(app: Werk) -> None:
    with trio.fail_after(15):
        slow = [await app.enqueue(sleep_for, 0.4) for _ in range(3)]
        retried = await app.enqueue(fail_once, _retry=2)
        w = make_worker(app, concurrency=2, burst=True, poll_interval=30)
        await w.run()
        # run() returned only once everything had run and been written
        for job in slow:
            assert job is not None
            assert (await app.get_job(job.id)).status == "complete"
        assert retried is not None
        done = await app.get_job(retried.id)
        assert (done.status, done.attempts, done.result) == ("complete", 2, "ok")
        assert len(await app.get_executions(retried.id)) == 2


async def test_burst_runs_dependents_released_by_its_own_jobs(app: Werk) -> None:
    with trio.fail_after(10):
        parent = await app.enqueue(sleep_for, 0.2)
        child = await app.enqueue(label, "child", _depends_on=parent)
        grandchild = await app.enqueue(label, "grandchild", _depends_on=child)
        assert parent and child and grandchild
        await make_worker(app, burst=True, poll_interval=30).run()
        for job in (parent, child, grandchild):
            assert (await app.get_job(job.id)).status == "complete"
        assert LOG == ["child", "grandchild"]


# --- hooks and exception handlers ------------------------------------------------


async def test_before_and_after_hooks_sync_and_async(app: Werk) -> None:
    with trio.fail_after(10):
        ok = await app.enqueue(hooked, False)
        bad = await app.enqueue(hooked, True)
        assert ok and bad
        w = make_worker(
            app, concurrency=1, burst=True, before_process=[before_sync], after_process=[after_async]
        )
        w.add_before_process(before_async)
        w.add_after_process(after_sync)
        await w.run()

        def seen(job: Job) -> list[tuple[str, Any]]:
            return [(name, exc) for name, jid, exc in LOG if jid == job.id]

        assert seen(ok) == [
            ("before_sync", None), ("before_async", None), ("handler", None),
            ("after_async", None), ("after_sync", None),
        ]  # fmt: skip
        steps = seen(bad)
        assert [name for name, _ in steps] == [
            "before_sync",
            "before_async",
            "handler",
            "after_async",
            "after_sync",
        ]
        assert [exc for _, exc in steps[:3]] == [None, None, None]
        for _, exc in steps[3:]:
            assert isinstance(exc, ValueError) and str(exc) == "hooked failure"
        assert (await app.get_job(bad.id)).status == "failed"


@pytest.fixture
def worker_log() -> Iterator[list[logging.LogRecord]]:
    """Records of the werk_trio.worker logger (whatever the app's log settings)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    log = logging.getLogger("werk_trio.worker")
    log.addHandler(handler)
    yield records
    log.removeHandler(handler)


async def test_exception_handlers_most_recent_first(app: Werk, worker_log: list[logging.LogRecord]) -> None:
    calls: list[tuple[str, Any, BaseException]] = []

    def first(job: Job, exc: BaseException) -> None:
        calls.append(("first", job.id, exc))

    async def second(job: Job, exc: BaseException) -> None:
        await trio.sleep(0)
        calls.append(("second", job.id, exc))

    def broken(job: Job, exc: BaseException) -> None:
        calls.append(("broken", job.id, exc))
        raise RuntimeError("the handler itself fails")

    with trio.fail_after(10):
        w = make_worker(app, concurrency=1)
        w.push_exception_handler(first)
        w.push_exception_handler(second)
        w.push_exception_handler(broken)
        async with running(w):
            ok = await app.enqueue(noop)
            bad = await app.enqueue(explode, "kaboom")
            assert ok and bad
            await wait_for_status(app, ok.id, "complete")
            failed = await wait_for_status(app, bad.id, "failed")
            assert [name for name, _, _ in calls] == ["broken", "second", "first"]
            for _, jid, exc in calls:
                assert jid == bad.id
                assert isinstance(exc, ValueError) and str(exc) == "kaboom"
            assert failed.error is not None and "ValueError: kaboom" in failed.error
            raised = [r for r in worker_log if r.exc_info and "exception handler" in r.getMessage()]
            assert len(raised) == 1 and "the handler itself fails" in str(raised[0].exc_info[1])

            assert w.pop_exception_handler() is broken
            calls.clear()
            again = await app.enqueue(explode, "again")
            assert again
            await wait_for_status(app, again.id, "failed")
            assert [name for name, _, _ in calls] == ["second", "first"]
        assert w.pop_exception_handler() is second
        assert w.pop_exception_handler() is first
        with pytest.raises(IndexError):
            w.pop_exception_handler()


# --- handler kinds, Context, results, failures -----------------------------------


async def test_trio_coroutine_handlers_run_in_the_worker_loop(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(trio_kind)
        assert job
        await make_worker(app, burst=True).run()
        done = await app.get_job(job.id)
        assert done.result == {"library": "trio", "main_thread": True}


async def test_sync_handler_runs_in_a_thread_without_blocking_the_loop(app: Werk) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await trio.sleep(0.01)

    with trio.fail_after(10):
        w = make_worker(app)
        async with running(w) as nursery:
            nursery.start_soon(ticker)
            job = await app.enqueue(sync_blocking, 0.6)
            assert job
            done = await wait_for_status(app, job.id, "complete")
            nursery.cancel_scope.cancel()
        res = done.result
        assert res["main_thread"] is False
        during = [t for t in ticks if res["start"] < t < res["end"]]
        # a blocked loop would tick 0 times in that window; ~60 ticks when free
        assert len(during) >= 20, f"only {len(during)} ticks while the sync handler slept"


async def test_asyncio_handlers_run_under_asyncio(app: Werk) -> None:
    app.task(asyncio=True)(asyncio_via_task_decorator)
    with trio.fail_after(10):
        marked = await app.enqueue(asyncio_marked)
        decorated = await app.enqueue(asyncio_via_task_decorator)
        unmarked = await app.enqueue(asyncio_unmarked)
        assert marked and decorated and unmarked
        await make_worker(app, burst=True).run()
        m = await app.get_job(marked.id)
        assert m.status == "complete", m.error
        assert m.result["library"] == "asyncio" and m.result["task"] is True
        assert "Loop" in m.result["loop"]
        d = await app.get_job(decorated.id)
        assert (d.status, d.result) == ("complete", "asyncio"), d.error
        # without the mark an async def is a Trio handler: asyncio awaits fail
        u = await app.get_job(unmarked.id)
        assert u.status == "failed" and u.error is not None
        assert "TypeError: trio.run received unrecognized yield message" in u.error


async def test_context_injection(app: Werk) -> None:
    with trio.fail_after(10):
        by_name = await app.enqueue(with_ctx, 41)
        by_annotation = await app.enqueue(annotated_ctx, "shout")
        without = await app.enqueue(no_ctx, "x")
        assert by_name and by_annotation and without
        w = make_worker(app, burst=True)
        await w.run()
        assert (await app.get_job(by_name.id)).result == 42
        assert (await app.get_job(by_annotation.id)).result == "SHOUT"
        assert (await app.get_job(without.id)).result == ["x", "default"]
        for job in (by_name, by_annotation):
            ctx = CONTEXTS[job.id]
            assert isinstance(ctx, Context)
            assert ctx.job.id == job.id and ctx.job.function == job.function
            assert ctx.worker is w and ctx.app is app
            assert ctx.worker_id == w.id and ctx.worker_name == w.name
            assert ctx.exception is None
        assert CONTEXTS[by_name.id].job.args == [41]


async def test_results_are_stored_through_the_serializer(app: Werk) -> None:
    value = {"n": 3, "items": [1, "two", None, 2.5], "nested": {"ok": True}}
    with trio.fail_after(10):
        job = await app.enqueue(returns, value)
        bad = await app.enqueue(returns_unserializable, _retry=3)
        assert job and bad
        await make_worker(app, burst=True).run()
        assert (await app.get_job(job.id)).result == value
        raw = await column(app, job.id, "result")
        assert isinstance(raw, str) and app.serializer.loads(raw) == value
        # a result the serializer refuses fails the job (no retry: it would refuse again)
        failed = await app.get_job(bad.id)
        assert failed.status == "failed" and failed.attempts == 1
        assert failed.error is not None and "SerializationError" in failed.error


async def test_results_with_another_serializer(dsn: str, schema: str) -> None:
    with pytest.warns(UserWarning, match="unsafe"):
        serializer = PickleSerializer()
    with trio.fail_after(10):
        async with Werk(dsn, schema=schema, task_modules=["tests"], serializer=serializer) as papp:
            job = await papp.enqueue(returns, {1, 2, 3})  # a set: not JSON
            assert job
            await make_worker(papp, burst=True).run()
            assert (await papp.get_job(job.id)).result == {1, 2, 3}
            raw = await column(papp, job.id, "result")
            assert serializer.loads(raw) == {1, 2, 3}


async def test_failure_keeps_the_full_traceback(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(explode, "the reason")
        assert job
        await make_worker(app, burst=True).run()
        failed = await app.get_job(job.id)
        assert failed.status == "failed"
        error = failed.error
        assert error is not None
        assert error.startswith("Traceback (most recent call last):")
        assert "in explode" in error and "in _deep_helper" in error  # every frame
        assert "test_worker.py" in error
        assert error.rstrip().endswith("ValueError: the reason")
        (execution,) = await app.get_executions(job.id)
        assert execution.status == "failed" and execution.error == error


async def test_thread_worker_runs_every_kind_in_threads(app: Werk) -> None:
    with trio.fail_after(10):
        jobs = [await app.enqueue(measured, 0.2) for _ in range(6)]
        sync = await app.enqueue(sync_blocking, 0.05)
        aio = await app.enqueue(asyncio_marked)
        w = make_worker(app, ThreadWorker, concurrency=2, burst=True)
        await w.run()
        assert Gauge.peak <= 2
        for job in [*jobs, sync, aio]:
            assert job
            done = await app.get_job(job.id)
            assert done.status == "complete", done.error
        assert (await app.get_job(sync.id)).result["main_thread"] is False  # type: ignore[union-attr]
        assert (await app.get_job(aio.id)).result["library"] == "asyncio"  # type: ignore[union-attr]


async def test_started_worker_is_registered_and_listening(app: Werk) -> None:
    with trio.fail_after(10):
        w = make_worker(app, poll_interval=30, queues=["live"])
        async with running(w):
            assert w.started.is_set()
            workers = {r["id"]: r for r in await app.list_workers()}
            assert workers[w.id]["queues"] == ["live"] and workers[w.id]["worker_type"] == "async"
            # nothing polls for 30 s: only the NOTIFY of the enqueue can wake it
            t0 = trio.current_time()
            job = await app.enqueue(noop, _queue="live")
            assert job
            with trio.fail_after(2):
                await wait_for_status(app, job.id, "complete")
            assert trio.current_time() - t0 < 2
        assert w.stopped.is_set()
        assert w.id not in await worker_ids(app)


async def test_stats_and_running(app: Werk) -> None:
    with trio.fail_after(10):
        w = make_worker(app, concurrency=2)
        async with running(w):
            job = await app.enqueue(sleep_for, 30)
            assert job
            await until(lambda: job.id in w.running)
            assert w.running[job.id].job.id == job.id
            await app.enqueue(noop)
            await until(lambda: w.stats.get("complete", 0) == 1)
        assert w.running == {}


# --- claim settings --------------------------------------------------------------


SETTINGS_NOW = ("SELECT current_setting('synchronous_commit'), current_setting('plan_cache_mode'),"
                " current_setting('jit')")


@pytest.mark.parametrize("durable", [False, True])
async def test_claims_run_on_a_connection_of_their_own_with_its_settings(
    dsn: str, schema: str, durable: bool
) -> None:
    """The poller claims on a connection of its own whose session has the
    claim's settings (a generic plan, no JIT, and -- unless durable_claims --
    an asynchronous commit), set once: a claim is one statement. The app's
    pooled connections never get them; the connection closes with the worker."""
    with trio.fail_after(20):
        async with Werk(dsn, schema=schema, task_modules=["tests"], min_pool_size=2,
                        max_pool_size=2, durable_claims=durable) as app:  # fmt: skip
            async with app.connection() as conn:  # the server's own settings
                before = await (await conn.execute(SETTINGS_NOW)).fetchone()
            assert before is not None and before[:2] == ("on", "auto")
            jobs = await app.enqueue_many([EnqueueParams(noop) for _ in range(30)])
            worker = make_worker(app, concurrency=5)
            async with running(worker):
                await until(lambda: worker.stats.get("complete", 0) == 30)
                claims = worker.poller.claim_pool
                assert claims is not None and claims.size == 1
                async with claims.connection() as conn:  # (the idle poller's, between two claims)
                    cur = await conn.execute(SETTINGS_NOW)
                    assert await cur.fetchone() == ("on" if durable else "off", "force_generic_plan", "off")
                    pid = conn.info.backend_pid
            assert worker.poller.claims >= 6 and worker.poller.claim_pool is None
            done = await app.get_jobs([j.id for j in jobs if j])
            assert len(done) == 30 and all(j.status == "complete" for j in done.values())
            async with app.connection() as one, app.connection() as two:  # the whole pool
                for conn in (one, two):
                    cur = await conn.execute(SETTINGS_NOW)
                    assert await cur.fetchone() == before and conn.info.backend_pid != pid

                async def gone() -> bool:  # closed with the worker (the backend exits soon after)
                    cur = await one.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
                    return await cur.fetchone() == (0,)

                await until(gone)


@pytest.mark.parametrize("durable", [False, True])
@pytest.mark.parametrize("poll_only", ["no listen", "no prepare"])
async def test_behind_pgbouncer_claim_settings_are_local_to_each_claim(
    dsn: str, schema: str, durable: bool, poll_only: str
) -> None:
    """Without LISTEN or with prepare_threshold=None (PgBouncer in transaction
    mode: a session is not the client's) there is no claim connection: each
    claim sets its settings local to its own pipeline on a pooled connection,
    and no pooled connection keeps them afterwards."""
    setting: dict[str, Any] = (
        {"use_listen_notify": False} if poll_only == "no listen" else {"prepare_threshold": None}
    )
    with trio.fail_after(20):
        async with Werk(dsn, schema=schema, task_modules=["tests"], min_pool_size=2, max_pool_size=2,
                        durable_claims=durable, **setting) as app:  # fmt: skip
            sql = app.sql
            settings = sql.GENERIC_PLANS if durable else sql.CLAIM_SETTINGS
            async with app.connection() as conn:
                before = await (await conn.execute(SETTINGS_NOW)).fetchone()
                async with conn.pipeline():
                    await conn.execute(settings)
                    inside = await conn.execute(SETTINGS_NOW)
                assert await inside.fetchone() == ("on" if durable else "off", "force_generic_plan", "off")
            assert before is not None and before[:2] == ("on", "auto")

            jobs = await app.enqueue_many([EnqueueParams(noop) for _ in range(30)])
            worker = make_worker(app, burst=True, concurrency=5)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker.run)
                await until(lambda: worker.poller.claims > 0)
                assert worker.poller.claim_pool is None
            assert worker.poller.claims >= 6  # the claims ran on the pool's connections
            done = await app.get_jobs([j.id for j in jobs if j])
            assert len(done) == 30 and all(j.status == "complete" for j in done.values())
            async with app.connection() as one, app.connection() as two:  # the whole pool
                for conn in (one, two):
                    cur = await conn.execute(SETTINGS_NOW)
                    assert await cur.fetchone() == before


async def test_an_idle_worker_claims_for_a_woken_job_and_once_after_writing_its_end(app: Werk) -> None:
    """An idle worker (LISTEN, no poll within the test) that a NOTIFY wakes
    claims the job, and claims once more when its completer has written the
    job's end (what the end made claimable) -- not also when its runner frees
    the slot: the short claim found nothing more, and a freed slot alone makes
    nothing claimable (that claim was empty for every woken job)."""
    with trio.fail_after(30):
        worker = make_worker(app, concurrency=4, poll_interval=30)
        poller, ledger = worker.poller, worker.ledger
        async with running(worker):
            await until(lambda: poller.waiting)
            first = poller.claims
            for n in range(1, 6):
                await app.enqueue(noop)

                def settled(n: int = n) -> bool:  # its end written, the claim after it done
                    return worker.stats.get("complete", 0) == n and ledger.idle and poller.waiting

                await until(settled)
                assert poller.claims - first == 2 * n, f"{poller.claims - first} claims for {n} jobs"
            assert poller.claimed == 5


class _PollerSteps(trio.abc.Instrument):
    """Counts the scheduler turns of the poller's task."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("Poller.run"):
            self.steps += 1


async def test_the_poller_takes_the_free_slots_for_a_claim_in_one_turn(app: Werk) -> None:
    """Claiming after a full claim, the poller takes every free slot without
    a scheduler turn per slot: a claim and the wait before it cost the poller
    a few turns (its wake-up and the claim's I/O), not one per slot -- an
    ``acquire`` of a free slot yields to every other task before it returns,
    and gathering 25 slots that way delayed each claim of a c=50 drain by
    0.8 ms (26 turns per claim)."""
    with trio.fail_after(60):
        await app.enqueue_many([EnqueueParams(noop) for _ in range(2000)])
        worker = make_worker(app, concurrency=50, burst=True, poll_interval=0.5)
        turns = _PollerSteps()
        trio.lowlevel.add_instrument(turns)
        try:
            await worker.run()
        finally:
            trio.lowlevel.remove_instrument(turns)
        assert worker.stats.get("complete") == 2000
        claims = worker.poller.claims
        assert claims <= 2000 // 50 * 2, f"{claims} claims for 2,000 jobs at concurrency 50"
        assert turns.steps / claims < 8, f"{turns.steps} turns of the poller for {claims} claims"


async def test_a_group_job_that_ends_wakes_idle_workers_for_the_groups_next_job(app: Werk) -> None:
    """The end of a job of a concurrency group makes the group's next job
    claimable, and the completion NOTIFYs its queue: an idle worker that found
    that job blocked by the group claims it at once, not at its next poll
    (30 s here), while the worker that ran the group's job is busy."""
    with trio.fail_after(20):
        # A serves both queues, one job at a time; B only "shared" and is idle
        a = make_worker(app, queues=["shared", "own"], concurrency=1, prefetch=0, poll_interval=30)
        b = make_worker(app, queues=["shared"], concurrency=1, prefetch=0, poll_interval=30)
        async with running(a):
            first = await app.enqueue(gated, "first", _queue="shared", _group="g")
            await wait_for_status(app, first.id, "active")
            # what A takes when the group's first job frees its slot (the
            # group's next job is not claimable until the end is written)
            other = await app.enqueue(gated, "other", _queue="own")
            assert first is not None and other is not None
            async with running(b):
                await until(lambda: b.poller.waiting)
                claims = b.poller.claims
                nxt = await app.enqueue(gated, "next", _queue="shared", _group="g")
                assert nxt is not None
                # B heard it and claimed, but the group's first job still runs
                await until(lambda: b.poller.claims > claims and b.poller.waiting)
                assert b.poller.claimed == 0
                GATES.setdefault("first", trio.Event()).set()
                await wait_for_status(app, other.id, "active")
                started = await wait_for_status(app, nxt.id, "active")
                assert started.worker_id == b.id
                assert (await app.get_job(first.id)).status == "complete"
                for name in ("other", "next"):
                    GATES.setdefault(name, trio.Event()).set()
                await wait_for_status(app, nxt.id, "complete")


async def test_burst_drains_a_concurrency_group_chain(app: Werk) -> None:
    """Only one job of a group is claimable at a time, so a burst worker keeps
    finding nothing while the group's running job is being acked. It must not
    take such an empty claim for the end: a claim that began before the ack
    committed could not see the next job of the group."""
    with trio.fail_after(30):
        for round_no in range(3):
            jobs = await app.enqueue_many([EnqueueParams(noop, group=f"chain-{round_no}") for _ in range(40)])
            worker = make_worker(app, burst=True, concurrency=4)
            await worker.run()
            done = await app.get_jobs([j.id for j in jobs if j])
            left = [j.status.value for j in done.values() if j.status != "complete"]
            assert not left, f"round {round_no}: burst stopped with {len(left)} of 40 not run: {left[:3]}"


async def test_async_worker_starts_threads_only_for_plain_functions(app: Werk) -> None:
    """AsyncWorker runs plain functions on the thread executor's pool, whose
    threads start on demand: none for coroutines, at most ``concurrency``."""
    with trio.fail_after(20):
        await app.enqueue_many([EnqueueParams(noop) for _ in range(20)])
        worker = make_worker(app, concurrency=3)
        pool = worker.executor.threads  # type: ignore[attr-defined]
        async with running(worker):
            await until(lambda: worker.stats.get("complete") == 20)
            assert pool.threads_started == 0
            await app.enqueue_many([EnqueueParams(sync_blocking, (0.05,)) for _ in range(12)])
            await until(lambda: worker.stats.get("complete") == 32)
            assert 1 <= pool.threads_started <= 3


async def test_a_stalled_database_write_stops_claiming_instead_of_piling_up_outcomes(app: Werk) -> None:
    """Backpressure: while the completer's write cannot commit (a lock on the
    table its statement reads), runners hand their outcomes to a channel
    bounded to OUTCOMES_PER_SLOT x the worker's capacity, then wait with their slots held, and
    the poller claims nothing more. Once the write goes through, every job
    completes."""
    with trio.fail_after(60):
        jobs = await app.enqueue_many([EnqueueParams(noop, queue="stall") for _ in range(60)])
        w = make_worker(app, queues=["stall"], concurrency=2, sweep_interval=3600)
        assert w.capacity == 2

        bound = OUTCOMES_PER_SLOT * 2

        def stalled() -> bool:
            outcomes = w.completer._outcomes.statistics()
            return outcomes.current_buffer_used == bound and outcomes.tasks_waiting_send == 2

        async with trio.open_nursery() as nursery:
            async with app.connection() as blocker, blocker.transaction():
                await blocker.execute(app.sql.render("LOCK TABLE {job_deps} IN ACCESS EXCLUSIVE MODE"))
                await nursery.start(w.run)
                await until(stalled)
                assert w.slots.value == 0, "the waiting runners keep their slots: no claim can start"
                # one batch in flight + a full channel + one outcome per waiting runner
                assert w.poller.claimed <= 2 + bound + 2, w.poller.claimed
                counts = await app.counts()
                assert counts["stall"]["queued"] >= 60 - (2 + bound + 2), counts
            # the lock is gone: the stalled write commits and draining resumes
            for job in jobs:
                assert job
                await wait_for_status(app, job.id, "complete")
            w.stop(now=True)


async def test_actors_fire_their_test_pulses(app: Werk) -> None:
    """Tests can await the cause instead of polling the table: the poller's
    claim, the completer's write, the heartbeater's beat and the sweeper's
    sweep each fire a re-arming pulse (and fire again at the next step)."""
    with trio.fail_after(30):
        w = make_worker(app, queues=["pulses"], heartbeat_interval=0.1, sweep_interval=0.1)
        async with running(w):
            for _ in range(2):  # re-armed: the second wait needs a second step
                await w.heartbeater.on_beat.wait()
                await w.sweeper.on_sweep.wait()
            beats, sweeps = w.heartbeater.beats, w.sweeper.sweeps
            assert beats >= 2 and sweeps >= 2
            async with trio.open_nursery() as nursery:
                claimed = trio.Event()
                written = trio.Event()

                async def on(pulse: Any, event: trio.Event) -> None:
                    await pulse.wait()
                    event.set()

                nursery.start_soon(on, w.poller.on_claim, claimed)
                nursery.start_soon(on, w.completer.on_write, written)
                await trio.testing.wait_all_tasks_blocked()
                job = await app.enqueue(noop, _queue="pulses")
                assert job
                await claimed.wait()
                await written.wait()
            assert (await app.get_job(job.id)).status == "complete"
            assert w.completer.written >= 1


class _BareResultExecutor:
    """An executor written for the old contract: run() returns the bare result."""

    name = "bare"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        yield

    async def run(self, call: Any) -> Any:
        return await call.func(*call.positional(), **call.kwargs)


async def test_an_executor_returning_a_bare_result_fails_the_job_saying_what_to_return(app: Werk) -> None:
    with trio.fail_after(20):
        job = await app.enqueue(noop, _retry=3)
        assert job
        async with running(make_worker(app, executor=_BareResultExecutor())):
            done = await wait_for_status(app, job.id, "failed", "complete")
        assert (done.status, done.attempts) == ("failed", 1), done.error
        assert done.error is not None
        assert "_BareResultExecutor.run() returned NoneType, not an outcome.Outcome" in done.error
        assert "outcome.Value(" in done.error
