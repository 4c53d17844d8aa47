"""Commands that change things: ``job show|cancel|abort|requeue|delete``,
``requeue --failed``, ``enqueue``, ``purge`` and ``migrate``.

Each reports what it changed and exits 1 when nothing matched.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ..errors import JobNotFound
from ..jobs import TERMINAL_STATUSES
from ._common import (
    Failed,
    app_argument,
    comma_list,
    emit_json,
    first_line,
    job_dict,
    json_option,
    log_options,
    make_console,
    run,
    safe,
    table,
    when,
)
from .inspect import STATUSES

_PURGE_BATCH = 10_000


class JobId(click.ParamType):  # type: ignore[type-arg]
    """A job id (a UUID); anything else is a usage error."""

    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> uuid.UUID:
        if isinstance(value, uuid.UUID):
            return value
        try:
            return uuid.UUID(str(value))
        except ValueError:
            self.fail(f"{safe(value)!r} is not a job id (a UUID like 0190c5d8-...)", param, ctx)


def _progress(no_color: bool, *, bar: bool) -> Progress:
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if bar:
        columns += [BarColumn(), MofNCompleteColumn()]
    console = make_console(no_color, stderr=True)
    return Progress(*columns, TimeElapsedColumn(), console=console, transient=True,
                    disable=not console.is_terminal)


@click.group("job")
def job() -> None:
    """One job by id: show it, or cancel / abort / requeue / delete jobs."""


@job.command("show")
@app_argument
@click.argument("job_id", metavar="ID", type=JobId())
@json_option
@log_options()
def show(app: str, job_id: uuid.UUID, as_json: bool, log_level: str, log_format: str, no_color: bool) -> None:
    """A job's fields, its executions with their errors, and its dependencies."""

    async def body(werk: Any) -> None:
        try:
            found = await werk.get_job(job_id)
        except JobNotFound:
            raise Failed(f"no job {job_id}") from None
        executions = await werk.get_executions(job_id)
        deps = await werk.get_job_dependencies(job_id)
        data = {**job_dict(found), "args": found.args, "kwargs": found.kwargs, "result": found.result,
                "meta": found.meta, "group": found.group_key, "cron_name": found.cron_name,
                "executions": [{"attempt": e.attempt, "status": e.status.value, "worker_id": e.worker_id,
                                "started_at": e.started_at, "finished_at": e.finished_at, "error": e.error}
                               for e in executions],
                "dependencies": [{"job_id": str(d["job_id"]), "allow_failure": d["allow_failure"],
                                  "status": None if d["status"] is None else d["status"].value}
                                 for d in deps]}  # fmt: skip
        if as_json:
            emit_json([data])
            return
        out = make_console(no_color)
        fields = [(k, _cell(v)) for k, v in data.items() if k not in ("executions", "dependencies", "error")]
        out.print(table(f"job {job_id}", ("field", "value"), fields))
        if found.error:
            out.print("error:")
            out.print("\n".join(safe(line) for line in found.error.rstrip().splitlines()))
        runs = [(e["attempt"], e["status"], e["worker_id"] or "", when(e["started_at"]),
                 when(e["finished_at"]), first_line(e["error"])) for e in data["executions"]]  # fmt: skip
        out.print(table("executions", ("attempt", "status", "worker", "started", "finished", "error"), runs))
        if deps:
            out.print(table("depends on", ("id", "status", "allow failure"),
                            [(d["job_id"], d["status"] or "(gone)", d["allow_failure"])
                             for d in data["dependencies"]]))  # fmt: skip

    run(app, log_level, log_format, body, no_color=no_color)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if hasattr(value, "strftime"):
        return when(value)
    return json.dumps(value, default=str)


def _job_action(name: str, past: str, method: str) -> click.Command:
    @job.command(name)
    @app_argument
    @click.argument("job_ids", metavar="ID...", nargs=-1, required=True, type=JobId())
    @json_option
    @log_options()
    def action(app: str, job_ids: tuple[uuid.UUID, ...], as_json: bool, log_level: str, log_format: str,
               no_color: bool) -> None:  # fmt: skip
        async def body(werk: Any) -> None:
            call: Callable[[Any], Awaitable[Any]] = getattr(werk, method)
            changed, missed = 0, 0
            for jid in dict.fromkeys(job_ids):
                # the calls answer True/False (pgwerk's); the job read first names
                # the state that refused the change
                error = None
                try:
                    before = await werk.get_job(jid)
                except JobNotFound as ex:
                    error = str(ex)
                else:
                    if await call(jid) is False:
                        error = f"cannot {name} job {jid}: it is {before.status.value}"
                if error is not None:
                    missed += 1
                    if as_json:
                        emit_json([{"id": str(jid), "changed": False, "error": error}])
                    else:
                        click.echo(f"werk: {safe(error)}", err=True)
                    continue
                changed += 1
                status = "deleted" if name == "delete" else (await werk.get_job(jid)).status.value
                if as_json:
                    emit_json([{"id": str(jid), "changed": True, "status": status}])
                else:
                    click.echo(f"{past} {jid} (now {status})")
            if not as_json:
                click.echo(f"{past} {changed} of {changed + missed} jobs")
            if missed:
                raise click.exceptions.Exit(1)

        run(app, log_level, log_format, body, no_color=no_color)

    action.help = f"{name.capitalize()} jobs by id; exit status 1 if any id did not match."
    return action


for _name, _past, _method in (
    ("cancel", "cancelled", "cancel_job"),
    ("abort", "aborted", "abort_job"),
    ("requeue", "requeued", "requeue_job"),
    ("delete", "deleted", "delete_job"),
):
    _job_action(_name, _past, _method)


@click.command("requeue")
@app_argument
@click.option("--failed", is_flag=True, help="Requeue every failed or aborted job (required).")
@click.option("-q", "--queue", default=None, help="Only this queue.")
@click.option("-f", "--function", default=None, help="Only this function.")
@json_option
@log_options()
def requeue(app: str, failed: bool, queue: str | None, function: str | None, as_json: bool, log_level: str,
            log_format: str, no_color: bool) -> None:  # fmt: skip
    """Requeue failed and aborted jobs in bulk (``werk job requeue`` for single ids)."""
    if not failed:
        raise click.UsageError("say --failed to requeue every failed/aborted job "
                               "(or use 'werk job requeue APP ID')")

    async def body(werk: Any) -> int:
        with _progress(no_color, bar=False) as progress:
            progress.add_task("requeueing failed and aborted jobs", total=None)
            n = int(await werk.bulk_requeue_jobs(queue=queue, function_name=function))
        if as_json:
            emit_json([{"requeued": n, "queue": queue, "function": function}])
        else:
            click.echo(f"requeued {n} jobs")
        return n

    if not run(app, log_level, log_format, body, no_color=no_color):
        raise click.exceptions.Exit(1)


@click.command("enqueue")
@app_argument
@click.argument("function")
@click.option("--args", "args_json", default="[]", help="Positional arguments as a JSON array.")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments as a JSON object.")
@click.option("-q", "--queue", default=None, help="Queue (default: the app's).")
@click.option("--delay", type=float, default=None, help="Seconds from now.")
@click.option("-p", "--priority", type=int, default=None)
@click.option("-k", "--key", default=None, help="Idempotency key: nothing is enqueued if a job has it.")
@json_option
@log_options()
def enqueue(app: str, function: str, args_json: str, kwargs_json: str, queue: str | None, delay: float | None,
            priority: int | None, key: str | None, as_json: bool, log_level: str, log_format: str,
            no_color: bool) -> None:  # fmt: skip
    """Enqueue FUNCTION (a registered task name) with JSON arguments."""
    args = _json_arg(args_json, list, "--args", "array")
    kwargs = _json_arg(kwargs_json, dict, "--kwargs", "object")
    options = {f"_{k}": v for k, v in (("queue", queue), ("delay", delay), ("priority", priority),
                                       ("key", key)) if v is not None}  # fmt: skip

    async def body(werk: Any) -> None:
        created = await werk.enqueue(function, *args, **kwargs, **options)
        if created is None:
            raise Failed(f"nothing enqueued: a job with key {safe(key)!r} exists")
        if as_json:
            emit_json([job_dict(created)])
        else:
            click.echo(f"enqueued {created.id} ({safe(created.function)} on queue {safe(created.queue)}, "
                       f"{created.status.value})")  # fmt: skip

    run(app, log_level, log_format, body, no_color=no_color)


def _json_arg(text: str, kind: type, flag: str, what: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as ex:
        raise click.BadParameter(f"not JSON ({ex})", param_hint=f"'{flag}'") from None
    if not isinstance(value, kind):
        raise click.BadParameter(f"must be a JSON {what}, got {text!r}", param_hint=f"'{flag}'")
    return value


@click.command("purge")
@app_argument
@click.option("-s", "--status", default=",".join(TERMINAL_STATUSES), show_default=True,
              help="Comma-separated statuses to delete.")
@click.option("-q", "--queue", default=None, help="Only this queue.")
@click.option("--older-than", type=click.FloatRange(min=0, max=36500), default=0, show_default=True,
              help="Only jobs that ended more than this many days ago.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@log_options()
def purge(app: str, status: str, queue: str | None, older_than: float, yes: bool, as_json: bool,
          log_level: str, log_format: str, no_color: bool) -> None:  # fmt: skip
    """Delete finished jobs (asks first unless --yes), in batches with progress."""
    statuses = comma_list(status)
    for s in statuses:
        if s not in STATUSES:
            raise click.BadParameter(f"unknown status {s!r}", param_hint="'-s' / '--status'")
        if s in ("active", "aborting"):
            raise click.BadParameter("running jobs cannot be purged: abort them first",
                                     param_hint="'-s' / '--status'")
    if not statuses:
        raise click.BadParameter("name at least one status", param_hint="'-s' / '--status'")

    async def body(werk: Any) -> None:
        counts = await werk.counts()
        upto = sum(n for q, by in counts.items() if queue in (None, q)
                   for s, n in by.items() if s in statuses)  # fmt: skip
        what = f"status {','.join(statuses)}" + (f", queue {safe(queue)}" if queue else "") + (
            f", ended more than {older_than:g} days ago" if older_than else "")
        purged = 0
        if upto and not yes:
            prompt = f"Delete up to {upto} jobs ({what})?"
            if not await _confirm(prompt):
                raise Failed("nothing deleted (answer y, or pass --yes)")
        if upto:
            with _progress(no_color, bar=True) as progress:
                task = progress.add_task("deleting", total=upto)
                while True:
                    n = await werk.purge_jobs(statuses, older_than_days=older_than, queue=queue,
                                              limit=_PURGE_BATCH)  # fmt: skip
                    purged += n
                    progress.update(task, completed=min(purged, upto))
                    if n < _PURGE_BATCH:
                        break
        if as_json:
            emit_json([{"purged": purged, "statuses": statuses, "queue": queue,
                        "older_than_days": older_than}])
        else:
            click.echo(f"purged {purged} jobs ({what})")

    run(app, log_level, log_format, body, no_color=no_color)


async def _confirm(prompt: str) -> bool:
    import trio

    return bool(await trio.to_thread.run_sync(lambda: click.confirm(prompt, default=False, err=True)))


@click.command("migrate")
@app_argument
@json_option
@log_options()
def migrate(app: str, as_json: bool, log_level: str, log_format: str, no_color: bool) -> None:
    """Apply the pending schema migrations."""

    async def body(werk: Any) -> None:
        from ._common import connected

        werk.config = werk.config.__class__.build(werk.config, auto_migrate=False)
        async with connected(werk):
            with _progress(no_color, bar=False) as progress:
                progress.add_task(f"migrating schema {safe(werk.config.schema)}", total=None)
                applied = await werk.migrate()
        if as_json:
            emit_json([{"applied": applied, "schema": werk.config.schema}])
        else:
            click.echo(f"applied migrations: {applied}" if applied else "schema is up to date")

    run(app, log_level, log_format, body, connect=False, no_color=no_color)


commands = [job, requeue, enqueue, purge, migrate]
__all__ = ["commands"]
