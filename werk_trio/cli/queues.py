"""Flow control from the command line: ``queues`` lists every queue with its
controls and counts; ``queue pause|resume|limit|rate`` change one queue's
controls (:class:`werk_trio.flow.FlowControl`'s methods).

Values are checked before connecting, by the same rules as the app's methods
(a bad one is one line, exit 2). Each change prints the queue as it is after
the change (``--json``: the same object ``queues --json`` prints).
"""

from __future__ import annotations

import math
from typing import Any

import click
from rich.console import Group
from rich.text import Text

from ..errors import ConfigError
from ..flow import QueueInfo, _partition, _queue_name
from ._common import (
    ESTIMATE_NOTE,
    app_argument,
    emit_json,
    json_option,
    log_options,
    make_console,
    run,
    safe,
    shown_count,
    table,
    when,
)
from .inspect import STATUSES


def queue_dict(q: QueueInfo) -> dict[str, Any]:
    """A queue for output (``--json`` and tables)."""
    rate_n, rate_secs = q.rate_limit if q.rate_limit is not None else (None, None)
    return {
        "queue": q.name, "paused": q.paused, "paused_at": q.paused_at, "max_running": q.max_running,
        "limit_by": q.limit_by, "rate_n": rate_n, "rate_per_seconds": rate_secs, "rate_by": q.rate_by,
        "counts": dict(q.counts), "total": sum(q.counts.values()), "estimated": list(q.estimated),
    }  # fmt: skip


def limit_text(q: dict[str, Any]) -> str:
    """``"3"``, ``"2 per meta.customer"``, or ``""`` (no limit)."""
    if q["max_running"] is None:
        return ""
    return f"{q['max_running']}" + (f" per {q['limit_by']}" if q["limit_by"] else "")


def rate_text(q: dict[str, Any]) -> str:
    """``"50/1s"``, ``"10/2.5s per _group"``, or ``""`` (no rate limit)."""
    if q["rate_n"] is None:
        return ""
    return f"{q['rate_n']}/{q['rate_per_seconds']:g}s" + (f" per {q['rate_by']}" if q["rate_by"] else "")


def queues_table(queues: list[dict[str, Any]]) -> Any:
    """Queues: state, limit, rate, then the job counts by status (``~n``: an
    estimate, explained under the table)."""
    rows = [
        (q["queue"], Text("paused", style="bold yellow") if q["paused"] else Text("active", style="green"),
         when(q["paused_at"]), limit_text(q), rate_text(q),
         *(shown_count(q["counts"].get(s, 0), s in q["estimated"]) for s in STATUSES),
         shown_count(q["total"], bool(q["estimated"])))
        for q in queues
    ]  # fmt: skip
    cols = ("queue", "state", "paused since", "max running", "rate", *STATUSES, "total")
    shown = table(f"queues ({len(queues)})", cols, rows, right=(*STATUSES, "total"))
    if not any(q["estimated"] for q in queues):
        return shown
    return Group(shown, Text(ESTIMATE_NOTE, style="dim"))


def _checked(check: Any, param_hint: str) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except ConfigError as ex:
            raise click.BadParameter(str(ex), ctx, param_hint=param_hint) from None

    return callback


class MaxRunning(click.ParamType):  # type: ignore[type-arg]
    """A count >= 1, or ``none`` (remove the limit)."""

    name = "N|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | None:
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "none":
            return None
        try:
            n = int(value)
        except ValueError:
            n = 0
        if not 1 <= n < 2**31:
            self.fail(f"{value!r} is not a count >= 1 or 'none' (to remove the limit)", param, ctx)
        return n


def _per_seconds(value: float) -> float:
    if not math.isfinite(value) or not 0 < value <= 86400 * 366:
        raise ConfigError(f"must be a number of seconds > 0 (at most a year), got {value!r}")
    return value


queue_name = click.argument("name", metavar="NAME", callback=_checked(_queue_name, "NAME"))
partition_option = click.option(
    "--partition-by", default=None, metavar="_group|meta.KEY",
    callback=_checked(_partition, "'--partition-by'"),
    help="Apply the limit per job group (_group) or per value of a meta key (meta.customer).",
)  # fmt: skip


async def _show(werk: Any, name: str, as_json: bool, no_color: bool, said: str) -> None:
    """The queue as it is now: one JSON object, or the line ``said`` and its table row."""
    found = {q.name: q for q in await werk.list_queues()}
    q = queue_dict(found.get(name) or QueueInfo(name))
    if as_json:
        emit_json([q])
        return
    out = make_console(no_color)
    out.print(safe(said))
    out.print(queues_table([q]))


@click.command("queues")
@app_argument
@json_option
@log_options()
def queues(app: str, as_json: bool, log_level: str, log_format: str, no_color: bool) -> None:
    """Every queue with jobs or controls: paused or not, limits, rates, job counts."""

    async def body(werk: Any) -> None:
        found = [queue_dict(q) for q in await werk.list_queues()]
        if as_json:
            emit_json(found)
            return
        make_console(no_color).print(queues_table(found) if found else "no queues")

    run(app, log_level, log_format, body, no_color=no_color)


@click.group("queue")
def queue() -> None:
    """One queue's flow control: pause, resume, concurrency limit, rate limit."""


@queue.command("pause")
@app_argument
@queue_name
@json_option
@log_options()
def pause(app: str, name: str, as_json: bool, log_level: str, log_format: str, no_color: bool) -> None:
    """Stop every worker from starting NAME's jobs (running ones finish); persisted."""

    async def body(werk: Any) -> None:
        await werk.pause_queue(name)
        await _show(werk, name, as_json, no_color, f"paused queue {name}")

    run(app, log_level, log_format, body, no_color=no_color)


@queue.command("resume")
@app_argument
@queue_name
@json_option
@log_options()
def resume(app: str, name: str, as_json: bool, log_level: str, log_format: str, no_color: bool) -> None:
    """Let workers start NAME's jobs again (at once)."""

    async def body(werk: Any) -> None:
        await werk.resume_queue(name)
        await _show(werk, name, as_json, no_color, f"resumed queue {name}")

    run(app, log_level, log_format, body, no_color=no_color)


@queue.command("limit")
@app_argument
@queue_name
@click.option("--max-running", type=MaxRunning(), required=True,
              help="At most N of NAME's jobs running at once across all workers; 'none' removes it.")
@partition_option
@json_option
@log_options()
def limit(app: str, name: str, max_running: int | None, partition_by: str | None, as_json: bool,
          log_level: str, log_format: str, no_color: bool) -> None:  # fmt: skip
    """Set (or with --max-running none, remove) NAME's global concurrency limit."""
    if max_running is None and partition_by is not None:
        raise click.UsageError("--partition-by goes with a limit: drop it with --max-running none")

    async def body(werk: Any) -> None:
        await werk.set_queue_limit(name, max_running, partition_by=partition_by)
        per = f" per {partition_by}" if partition_by else ""
        said = (f"queue {name}: no concurrency limit" if max_running is None
                else f"queue {name}: at most {max_running} running{per}")  # fmt: skip
        await _show(werk, name, as_json, no_color, said)

    run(app, log_level, log_format, body, no_color=no_color)


@queue.command("rate")
@app_argument
@queue_name
@click.argument("n", metavar="[N]", type=click.IntRange(1, 2**31 - 1), required=False)
@click.option("--per", "per_seconds", type=float, default=None, metavar="SECONDS",
              callback=_checked(_per_seconds, "'--per'"), help="The window N starts are counted in.")
@click.option("--clear", is_flag=True, help="Remove NAME's rate limit.")
@partition_option
@json_option
@log_options()
def rate(app: str, name: str, n: int | None, per_seconds: float | None, clear: bool, partition_by: str | None,
         as_json: bool, log_level: str, log_format: str, no_color: bool) -> None:  # fmt: skip
    """At most N of NAME's jobs started per --per SECONDS across all workers (or --clear it)."""
    if clear:
        if n is not None or per_seconds is not None or partition_by is not None:
            raise click.UsageError("--clear takes no N, --per or --partition-by")
    elif n is None or per_seconds is None:
        raise click.UsageError("give N and --per SECONDS (e.g. 'rate APP NAME 50 --per 1'), or --clear")

    async def body(werk: Any) -> None:
        await werk.set_rate_limit(name, None if clear else n, per_seconds, partition_by=partition_by)
        said = (f"queue {name}: no rate limit" if clear else
                f"queue {name}: at most {n} started per {per_seconds:g}s"
                + (f" per {partition_by}" if partition_by else ""))  # fmt: skip
        await _show(werk, name, as_json, no_color, said)

    run(app, log_level, log_format, body, no_color=no_color)


commands = [queues, queue]
__all__ = ["commands", "limit_text", "queue_dict", "queues_table", "rate_text"]
