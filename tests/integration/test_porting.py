"""Issue 12: a pgwerk program ports by search-and-replace.

Each program below is pgwerk source text, written from pgwerk's guide pages
(quickstart, enqueueing, workers, serializers): top-level and submodule
imports, Context-taking handlers, Retry, Repeat, callbacks, dependencies,
``apply`` / ``map`` / ``wait_for`` with ``poll_interval``, ``asyncio.gather``
of a worker and a server. :func:`port` applies the recipe of
docs/porting-from-pgwerk.md mechanically -- text substitution, no hand edits --
and each ported program runs to completion as a real process against the
test's database; the enqueueing program's jobs are run by a real ``werk
worker`` process started from the CLI line of pgwerk's quickstart.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import trio

from tests.proctools import child_env, spawn, worker_argv
from werk_trio.testing import until

# --- the recipe -----------------------------------------------------------------------------


def _gather_to_nursery(source: str) -> str:
    """``await asyncio.gather(\\n a(x),\\n b(),\\n)`` -> a nursery starting ``a, x`` and ``b``."""
    out: list[str] = []
    lines = source.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        match = re.match(r"^(\s*)await asyncio\.gather\($", line)
        if not match:
            out.append(line)
            i += 1
            continue
        indent = match[1]
        out.append(f"{indent}async with trio.open_nursery() as nursery:")
        i += 1
        while lines[i].strip() != ")":
            call = re.match(r"^\s*([\w.]+)\((.*)\),?$", lines[i])
            assert call, f"gather argument not a call: {lines[i]!r}"
            args = f", {call[2]}" if call[2] else ""
            out.append(f"{indent}    nursery.start_soon({call[1]}{args})")
            i += 1
        i += 1  # the closing parenthesis
    return "\n".join(out) + "\n"


def port(source: str) -> str:
    """The porting recipe: pgwerk -> werk_trio, asyncio -> trio."""
    source = re.sub(r"\bpgwerk\b", "werk_trio", source)
    source = _gather_to_nursery(source)
    source = source.replace("import asyncio\n", "import trio\n")
    # asyncio.run takes the coroutine, trio.run the function
    source = re.sub(r"asyncio\.run\((\w+)\(\)\)", r"trio.run(\1)", source)
    source = source.replace("asyncio.sleep(", "trio.sleep(")
    assert "asyncio" not in source, source
    return source


# --- the programs, as pgwerk source ------------------------------------------------------------

QUICKSTART = """
import asyncio
import os

from pgwerk import AsyncWorker, Context, JobStatus, Werk

app = Werk(os.environ["PGWERK_DSN"], schema=os.environ["PGWERK_SCHEMA"])


async def greet(name: str) -> str:
    return f"Hello, {name}!"


async def send_email(ctx: Context, to: str) -> str:
    print(f"Job {ctx.job.id} on worker {ctx.worker.name}")
    await asyncio.sleep(0.01)
    return f"sent to {to} by {ctx.worker.name}"


async def main():
    async with app:
        job = await app.enqueue(greet, name="world")
        mail = await app.enqueue(send_email, to="user@example.com")
        worker = AsyncWorker(app=app, queues=["default"], concurrency=5, burst=True)
        await worker.run()
        done = await app.get_job(job.id)
        assert done.status == JobStatus.Complete, done
        print("greet:", done.result)
        sent = await app.get_job(mail.id)
        assert sent.status is JobStatus.Complete and sent.result.startswith("sent to user@example.com")
        print("send_email:", sent.status.value)


asyncio.run(main())
"""

# Enqueueing: the handlers and the app, for a `werk worker pgtasks:app` process.
TASKS = """
import asyncio
import os

from pgwerk import Werk
from pgwerk.schemas import Context

app = Werk(os.environ["PGWERK_DSN"], schema=os.environ["PGWERK_SCHEMA"])


def note(text):
    with open(os.environ["PGWERK_NOTES"], "a") as out:
        out.write(text + "\\n")


async def greet(name: str) -> str:
    return f"Hello, {name}!"


async def process_item(item_id: int) -> int:
    await asyncio.sleep(0.01)
    return item_id * 10


def process(item_id: int) -> int:
    return item_id + 1


async def flaky(ctx: Context) -> int:
    if ctx.job.attempts < 3:
        raise RuntimeError(f"attempt {ctx.job.attempts} fails")
    return ctx.job.attempts


async def fails_once(ctx: Context) -> int:
    raise RuntimeError("no retries")


async def cleanup(ctx: Context) -> str:
    note(f"cleanup {ctx.job.id} remaining={ctx.job.repeat_remaining}")
    return f"run {ctx.job.id}"


async def step_one() -> str:
    return "one"


async def step_two() -> str:
    return "two"


async def step_three() -> str:
    return "three"


async def on_done(ctx):
    note(f"on_done {ctx.job.id} {ctx.job.status.value}")


async def on_error(ctx):
    note(f"on_error {ctx.job.id} {ctx.job.error.splitlines()[-1]}")


async def on_success_job(job):
    note(f"on_success_job {job.id} {job.result}")
"""

ENQUEUEING = """
import asyncio
import os
from datetime import datetime, timedelta, timezone

from pgwerk import Callback, EnqueueParams, JobError, JobStatus
from pgwerk.commons import ExecutionStatus
from pgwerk.exceptions import JobError as JobErrorFromExceptions
from pgwerk.schemas import Dependency, Repeat, Retry

from pgtasks import (
    app, cleanup, fails_once, flaky, greet, on_done, on_error, on_success_job, process,
    process_item, step_one, step_three, step_two,
)


async def main():
    async with app:
        assert JobErrorFromExceptions is JobError
        result = await app.apply(greet, name="world", timeout=30, poll_interval=0.2)
        assert result == "Hello, world!", result
        print("apply:", result)

        results = await app.map(
            process_item, [{"item_id": 1}, {"item_id": 2}, {"item_id": 3}], timeout=60,
            poll_interval=0.2,
        )
        assert results == [10, 20, 30], results
        print("map:", results)

        bulk = await app.enqueue_many([
            EnqueueParams(func=process, kwargs={"item_id": i}, queue="bulk") for i in range(5)
        ])
        for job in bulk:
            done = await app.wait_for(job.id, timeout=30, poll_interval=0.2)
            assert done.status == JobStatus.Complete and done.result == job.kwargs["item_id"] + 1
        print("enqueue_many:", len(bulk))

        retried = await app.enqueue(flaky, _retry=Retry(max=4, intervals=[0.1, 0.2]))
        done = await app.wait_for(retried.id, timeout=30, poll_interval=0.2)
        assert done.status == JobStatus.Complete and done.result == 3, done
        statuses = [e.status for e in await app.get_executions(retried.id)]
        assert statuses == [ExecutionStatus.Failed, ExecutionStatus.Failed, ExecutionStatus.Complete]
        print("retry:", [s.value for s in statuses])

        once = await app.enqueue(fails_once, _retry=0, _on_failure=on_error)
        try:
            await app.apply(fails_once, _retry=0, timeout=30)
        except JobError as exc:
            assert exc.job.status == JobStatus.Failed and exc.job.attempts == 1
            print("apply failed:", exc.job.error.splitlines()[-1])
        done = await app.wait_for(once.id, timeout=30)
        assert done.attempts == 1 and done.max_attempts == 1

        first = await app.enqueue(cleanup, _repeat=Repeat(times=2), _on_success=on_done)
        ran = await app.wait_for(first.id, timeout=30)
        assert ran.status == JobStatus.Complete
        print("repeat first run:", ran.repeat_remaining)

        job_a = await app.enqueue(step_one, _on_success=Callback(func=on_success_job, timeout=10))
        job_b = await app.enqueue(step_two, _depends_on=job_a)
        job_c = await app.enqueue(step_three, _depends_on=[job_a, Dependency(job_b, allow_failure=True)])
        assert sorted(await app.get_job_dependencies(job_c.id)) == sorted([job_a.id, job_b.id])
        done = await app.wait_for(job_c.id, timeout=30, poll_interval=0.2)
        assert done.result == "three"
        print("dependencies:", (await app.get_job(job_b.id)).result, done.result)

        later = await app.enqueue(greet, name="later", _at=datetime.now(timezone.utc) + timedelta(seconds=60))
        assert later.status == JobStatus.Scheduled
        assert await app.cancel_job(later.id) is True
        print("cancel:", (await app.get_job(later.id)).status.value)


asyncio.run(main())
"""

WORKERS = """
import asyncio
import os

from pgwerk import Context, DequeueStrategy, JobStatus, ThreadWorker, Werk
from pgwerk.worker import AsyncWorker, BaseWorker

app = Werk(os.environ["PGWERK_DSN"], schema=os.environ["PGWERK_SCHEMA"])
seen = []


def blocking_add(x: int, y: int) -> int:
    return x + y


async def boom() -> None:
    raise ValueError("boom")


async def log_start(ctx: Context) -> None:
    seen.append(("start", ctx.job.function.rsplit(".", 1)[-1]))


async def log_end(ctx: Context) -> None:
    if ctx.exception:
        seen.append(("failed", str(ctx.exception).splitlines()[-1]))
    else:
        seen.append(("completed", sum(ctx.job.payload["args"])))


async def report_error(job, exc):
    seen.append(("handler", job.function.rsplit(".", 1)[-1], type(exc).__name__))


async def run_web_server(jobs):
    for job in jobs:
        await app.wait_for(job.id, timeout=30, poll_interval=0.2)
    seen.append(("server", "done"))


async def main():
    async with app:
        jobs = [
            await app.enqueue(blocking_add, 1, 2, _queue="a"),
            await app.enqueue(blocking_add, 3, 4, _queue="b"),
            await app.enqueue(boom, _queue="c"),
        ]
        worker = ThreadWorker(
            app=app, queues=["a", "b", "c"], concurrency=2, burst=True,
            dequeue_strategy=DequeueStrategy.RoundRobin, before_process=[log_start],
        )
        worker.add_after_process(log_end)
        worker.push_exception_handler(report_error)
        await asyncio.gather(
            run_web_server(jobs),
            worker.run(),
        )
        assert [(await app.get_job(j.id)).status for j in jobs] == [
            JobStatus.Complete, JobStatus.Complete, JobStatus.Failed]
        assert ("completed", 3) in seen and ("completed", 7) in seen, seen
        assert ("handler", "boom", "ValueError") in seen, seen
        assert ("failed", "boom") in seen, seen
        assert ("server", "done") in seen
        print("workers:", sorted(s[0] for s in seen))
        assert isinstance(worker, BaseWorker) and issubclass(AsyncWorker, BaseWorker)


asyncio.run(main())
"""

SERIALIZERS = """
import asyncio
import json
import os
from dataclasses import dataclass

from pgwerk import AsyncWorker, PickleSerializer, Serializer, Werk

DSN, SCHEMA = os.environ["PGWERK_DSN"], os.environ["PGWERK_SCHEMA"]


@dataclass
class Point:
    x: int
    y: int


class HexJSONSerializer:
    def dumps(self, obj) -> str:
        return json.dumps(obj).encode().hex()

    def loads(self, s: str | bytes):
        data = bytes.fromhex(s) if isinstance(s, str) else s
        return json.loads(data)


async def norm(p: Point) -> Point:
    return Point(p.x * 2, p.y * 2)


async def total(numbers: list) -> int:
    return sum(numbers)


async def main():
    assert isinstance(HexJSONSerializer(), Serializer)
    pickled = Werk(DSN, schema=SCHEMA, prefix="pickled", serializer=PickleSerializer())
    async with pickled:
        job = await pickled.enqueue(norm, Point(1, 2))
        await AsyncWorker(app=pickled, burst=True).run()
        assert (await pickled.get_job(job.id)).result == Point(2, 4)
    custom = Werk(DSN, schema=SCHEMA, prefix="hexjson", serializer=HexJSONSerializer())
    async with custom:
        job = await custom.enqueue(total, [1, 2, 3])
        await AsyncWorker(app=custom, burst=True).run()
        assert (await custom.get_job(job.id)).result == 6
    print("serializers: pickle and custom")


asyncio.run(main())
"""


# --- running them ------------------------------------------------------------------------------


def test_the_recipe_is_text_substitution() -> None:
    ported = port(WORKERS)
    assert "from werk_trio.worker import AsyncWorker" in ported
    assert "async with trio.open_nursery() as nursery:" in ported
    assert "nursery.start_soon(run_web_server, jobs)" in ported
    assert "nursery.start_soon(worker.run)" in ported
    assert ported.rstrip().endswith("trio.run(main)")


def _write(tmp_path: Path, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(port(source))


async def _run_program(tmp_path: Path, env: dict[str, str], name: str, *, as_module: bool = False) -> str:
    # run as a script (`python program.py`), as pgwerk's guide programs are, or with `python -m`
    argv = [sys.executable, *(["-m", name] if as_module else [str(tmp_path / f"{name}.py")])]
    async with spawn(argv, env=env, log_path=tmp_path / f"{name}.log") as child:
        rc = await child.wait()
    out = child.output()
    assert rc == 0, f"{name} exited {rc}:\n{out}"
    return out


def _env(tmp_path: Path, dsn: str, schema: str) -> dict[str, str]:
    return child_env(
        dsn,
        schema,
        PGWERK_DSN=dsn,
        PGWERK_SCHEMA=schema,
        PGWERK_NOTES=str(tmp_path / "notes.txt"),
        PYTHONPATH=os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p),
    )


async def test_quickstart_workers_and_serializers_programs_run_ported(
    dsn: str, schema: str, tmp_path: Path
) -> None:
    env = _env(tmp_path, dsn, schema)
    with trio.fail_after(90):
        for name, source in (
            ("pg_quickstart", QUICKSTART),
            ("pg_workers", WORKERS),
            ("pg_serializers", SERIALIZERS),
        ):
            _write(tmp_path, name, source)
        out = await _run_program(tmp_path, env, "pg_quickstart")
        assert "greet: Hello, world!" in out and "send_email: complete" in out, out
        # `python -m`: the in-process worker runs the handlers of the running module, not a second copy
        out = await _run_program(tmp_path, env, "pg_quickstart", as_module=True)
        assert out.count("greet: Hello, world!") == 1 and "send_email: complete" in out, out
        out = await _run_program(tmp_path, env, "pg_workers")
        expected = ["completed", "completed", "failed", "handler", "server", "start", "start", "start"]
        assert f"workers: {expected}" in out, out
        out = await _run_program(tmp_path, env, "pg_serializers")
        assert "serializers: pickle and custom" in out, out


async def test_enqueueing_program_runs_ported_against_a_werk_worker_process(
    dsn: str, schema: str, tmp_path: Path
) -> None:
    env = _env(tmp_path, dsn, schema)
    _write(tmp_path, "pgtasks", TASKS)
    _write(tmp_path, "pg_enqueueing", ENQUEUEING)
    with trio.fail_after(120):
        # pgwerk's quickstart: `werk worker myapp.tasks:app --queues default --concurrency 10`
        argv = worker_argv(
            "--queues", "default,bulk", "--concurrency", "10", "--poll-interval", "0.2", app="pgtasks:app"
        )
        async with spawn(argv, env=env, log_path=tmp_path / "worker.log") as worker:
            out = await _run_program(tmp_path, env, "pg_enqueueing")
            # the repeats (no interval) and the callbacks run in the worker after each commit
            notes_path = tmp_path / "notes.txt"

            async def noted() -> list[str]:
                notes = notes_path.read_text().splitlines() if notes_path.exists() else []
                kinds = ("cleanup", "on_done", "on_success_job", "on_error")
                counts = [sum(n.startswith(k) for n in notes) for k in kinds]
                return notes if counts == [3, 3, 1, 1] else []

            notes = await until(noted)
            worker.send_signal(signal.SIGTERM)
            assert await worker.wait() == 0, worker.output()
    for line in (
        "apply: Hello, world!",
        "map: [10, 20, 30]",
        "enqueue_many: 5",
        "retry: ['failed', 'failed', 'complete']",
        "apply failed: RuntimeError: no retries",
        "repeat first run: 2",
        "dependencies: two three",
        "cancel: aborted",
    ):
        assert line in out, (line, out)
    # Repeat(times=2): three runs, each a job of its own, each with its own on_success (a ctx one)
    cleanups = [n for n in notes if n.startswith("cleanup")]
    assert [c.rsplit("=", 1)[1] for c in cleanups] == ["2", "1", "0"], notes
    run_ids = [c.split()[1] for c in cleanups]
    assert len(set(run_ids)) == 3
    assert sorted(n.split()[1] for n in notes if n.startswith("on_done")) == sorted(run_ids)
    # a callback whose first parameter is not ctx gets the Job, as pgwerk passes it
    assert any(n.startswith("on_success_job ") and n.endswith(" one") for n in notes), notes
    assert any(n.startswith("on_error ") and n.endswith("RuntimeError: no retries") for n in notes), notes
