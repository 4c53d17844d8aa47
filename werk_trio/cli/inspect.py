"""Read-only commands: ``info``, ``jobs``, ``stats``, ``throughput``, ``slowest``.

Each prints rich tables, or with ``--json`` one JSON object per line.
"""

from __future__ import annotations

import re
from typing import Any

import click
from rich.bar import Bar
from rich.text import Text

from ..jobs import JobStatus
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
    seconds_ago,
    table,
    when,
)

STATUSES = [s.value for s in JobStatus]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "": 3600}


def parse_since(value: str) -> float:
    """``"24h"``, ``"30m"``, ``"7d"``, ``"90s"``, ``"2w"`` (a bare number is hours) -> seconds."""
    m = _DURATION.match(value)
    if not m or float(m.group(1)) <= 0:
        raise click.BadParameter(f"{safe(value)!r} is not a duration like 24h, 30m, 7d or 90s",
                                 param_hint="'--since'")
    return float(m.group(1)) * _UNIT[m.group(2)]


def worker_dict(w: dict[str, Any]) -> dict[str, Any]:
    """A worker row for output: ``state`` is ``alive``, ``stopped`` (it left),
    or ``dead`` (silent for three heartbeat intervals: the sweeper's rule)."""
    age = float(w["heartbeat_age"] or 0)
    stopped = w.get("status") == "stopped"
    alive = not stopped and age <= 3 * float(w["heartbeat_interval"])
    return {
        "id": str(w["id"]), "name": w["name"], "hostname": w["hostname"], "pid": w["pid"],
        "worker_type": w["worker_type"], "queues": list(w["queues"]), "concurrency": w["concurrency"],
        "started_at": w["started_at"], "heartbeat_age": round(age, 3), "alive": alive,
        "state": "alive" if alive else "stopped" if stopped else "dead",
    }  # fmt: skip


_STATE_STYLE = {"alive": "green", "stopped": "dim", "dead": "bold red"}


def state_text(state: str) -> Text:
    return Text(state.upper() if state == "dead" else state, style=_STATE_STYLE[state])


def workers_table(workers: list[dict[str, Any]], running: dict[str, list[str]] | None = None) -> Any:
    """Workers: type, queues, concurrency, heartbeat age and state (and, given
    ``running`` -- worker id to the functions it runs -- its running jobs)."""
    rows = []
    for w in workers:
        extra = () if running is None else (len(running.get(w["id"], ())),
                                             ", ".join(sorted(set(running.get(w["id"], ()))))[:60])
        rows.append((w["name"], w["worker_type"], ",".join(w["queues"]), w["concurrency"], *extra,
                     w["hostname"], w["pid"], seconds_ago(w["heartbeat_age"]), state_text(w["state"])))
    cols = ("name", "type", "queues", "concurrency", *(() if running is None else ("running", "functions")),
            "host", "pid", "heartbeat", "state")
    return table(f"workers ({len(workers)})", cols, rows,
                 right=("concurrency", "running", "pid", "heartbeat"))


def counts_table(counts: dict[str, dict[str, int]]) -> Any:
    rows = []
    for queue in sorted(counts):
        by = counts[queue]
        rows.append((queue, *(by.get(s, 0) for s in STATUSES), sum(by.values())))
    return table("jobs by queue and status", ("queue", *STATUSES, "total"), rows, right=(*STATUSES, "total"))


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _filter(counts: dict[str, dict[str, int]], queue: str | None) -> dict[str, dict[str, int]]:
    return counts if queue is None else {q: c for q, c in counts.items() if q == queue}


@click.command("info")
@app_argument
@click.option("-q", "--queue", default=None, help="Only this queue's counts.")
@json_option
@log_options()
def info(app: str, queue: str | None, as_json: bool, log_level: str, log_format: str, no_color: bool) -> None:
    """Where the database is, the workers, and job counts per queue."""

    async def body(werk: Any) -> None:
        workers = [worker_dict(w) for w in await werk.list_workers()]
        counts = _filter(await werk.counts(), queue)
        version, size, tables = await werk.get_server_info()
        if as_json:
            emit_json([{"kind": "server", "app": repr(werk), "schema": werk.config.schema,
                        "pg_version": version, "db_size_bytes": size, "tables": tables}])  # fmt: skip
            emit_json({"kind": "worker", **w} for w in workers)
            emit_json({"kind": "queue", "queue": q, "counts": c, "total": sum(c.values())}
                      for q, c in sorted(counts.items()))  # fmt: skip
            return
        out = make_console(no_color)
        out.print(safe(repr(werk)))
        sizes = ", ".join(f"{safe(t['name'])} {_mb(t['size_bytes'])} (~{t['row_count']} rows)"
                          for t in tables)  # fmt: skip
        out.print(f"{safe(version.split(' on ')[0])}, database {_mb(size)}; {sizes}")
        out.print(workers_table(workers) if workers else "no workers")
        out.print(counts_table(counts) if counts else "no jobs")

    run(app, log_level, log_format, body, no_color=no_color)


@click.command("jobs")
@app_argument
@click.option("-q", "--queue", default=None, help="Only this queue.")
@click.option("-s", "--status", default=None, help=f"Comma-separated statuses ({', '.join(STATUSES)}).")
@click.option("-f", "--function", default=None, help="Only this function (its registered name).")
@click.option("--search", default=None, help="Text matched against function, key, id and payload.")
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@json_option
@log_options()
def jobs(app: str, queue: str | None, status: str | None, function: str | None, search: str | None,
         limit: int, offset: int, as_json: bool, log_level: str, log_format: str,
         no_color: bool) -> None:  # fmt: skip
    """List jobs, newest first: tries, duration and the first error line."""
    statuses = comma_list(status) or None
    for s in statuses or ():
        if s not in STATUSES:
            raise click.BadParameter(f"unknown status {s!r}; statuses: {', '.join(STATUSES)}",
                                     param_hint="'-s' / '--status'")  # fmt: skip

    async def body(werk: Any) -> None:
        found = [job_dict(j) for j in await werk.list_jobs(queue=queue, status=statuses, function=function,
                                                             search=search, limit=limit, offset=offset)]
        if as_json:
            emit_json(found)
            return
        out = make_console(no_color)
        rows = [(j["id"], j["function"], j["queue"], _status_text(j["status"]),
                 f"{j['attempts']}/{j['max_attempts']}", when(j["enqueued_at"]),
                 "" if j["duration"] is None else f"{j['duration']:.3f}s", first_line(j["error"]))
                for j in found]  # fmt: skip
        out.print(table(None, ("id", "function", "queue", "status", "tries", "enqueued", "duration", "error"),
                        rows, right=("tries", "duration")))  # fmt: skip
        more = f"; next page: --offset {offset + limit}" if len(found) == limit else ""
        out.print(f"{len(found)} jobs (offset {offset}){more}")

    run(app, log_level, log_format, body, no_color=no_color)


_STATUS_STYLE = {"complete": "green", "failed": "red", "aborted": "magenta", "active": "cyan",
                 "aborting": "yellow", "queued": "blue", "scheduled": "blue", "waiting": "white"}  # fmt: skip


def _status_text(status: str) -> Text:
    return Text(safe(status), style=_STATUS_STYLE.get(status, ""))


@click.command("stats")
@app_argument
@click.option("-q", "--queue", default=None, help="Only this queue.")
@json_option
@log_options()
def stats(app: str, queue: str | None, as_json: bool, log_level: str, log_format: str,
          no_color: bool) -> None:
    """Status distribution (bars and %), counts by queue, workers online."""

    async def body(werk: Any) -> None:
        counts = _filter(await werk.counts(), queue)
        workers = [worker_dict(w) for w in await werk.list_workers()]
        totals = {s: sum(c.get(s, 0) for c in counts.values()) for s in STATUSES}
        total = sum(totals.values())
        if as_json:
            emit_json({"queue": q, "counts": c, "total": sum(c.values())} for q, c in sorted(counts.items()))
            emit_json([{"queue": None, "counts": {s: n for s, n in totals.items() if n}, "total": total,
                        "workers_online": sum(w["alive"] for w in workers),
                        "concurrency_online": sum(w["concurrency"] for w in workers if w["alive"])}])
            return
        out = make_console(no_color)
        rows = [(_status_text(s), n, f"{100 * n / total:5.1f}%" if total else "",
                 Bar(max(total, 1), 0, n, width=40, color=_STATUS_STYLE[s]))
                for s, n in totals.items()]  # fmt: skip
        out.print(table(f"status distribution ({total} jobs)", ("status", "jobs", "%", ""), rows,
                        right=("jobs", "%")))  # fmt: skip
        out.print(counts_table(counts) if counts else "no jobs")
        alive = [w for w in workers if w["alive"]]
        out.print(f"workers online: {len(alive)}, concurrency {sum(w['concurrency'] for w in alive)}")

    run(app, log_level, log_format, body, no_color=no_color)


@click.command("throughput")
@app_argument
@click.option("--hours", type=click.IntRange(1, 168), default=24, show_default=True,
              help="Hours to show (at most a week).")
@click.option("-q", "--queue", default=None, help="Only this queue.")
@json_option
@log_options()
def throughput(app: str, hours: int, queue: str | None, as_json: bool, log_level: str, log_format: str,
               no_color: bool) -> None:  # fmt: skip
    """Finished jobs per hour as a chart, and a summary."""

    async def body(werk: Any) -> None:
        history = await werk.get_throughput_history(minutes=hours * 60, bucket_secs=3600)
        buckets = per_bucket(history, queue)
        if as_json:
            emit_json({"time": t, "completed": c, "failed": f} for t, (c, f) in buckets.items())
            return
        out = make_console(no_color)
        peak = max((c + f for c, f in buckets.values()), default=0)
        rows = [(t.strftime("%m-%d %H:00"), c, f, Bar(max(peak, 1), 0, c + f, width=50, color="green"))
                for t, (c, f) in buckets.items()]  # fmt: skip
        where = f" on queue {safe(queue)}" if queue else ""
        out.print(table(f"finished jobs per hour, last {hours}h{where}", ("hour", "complete", "failed", ""),
                        rows, right=("complete", "failed")))  # fmt: skip
        done = sum(c for c, _ in buckets.values())
        failed = sum(f for _, f in buckets.values())
        line = f"total: {done} complete, {failed} failed; {(done + failed) / hours:.1f} jobs/hour on average"
        if peak:
            hour, (c, f) = max(buckets.items(), key=lambda kv: sum(kv[1]))
            line += f"; busiest hour {hour:%m-%d %H:00} ({c + f} jobs)"
        out.print(line)

    run(app, log_level, log_format, body, no_color=no_color)


def per_bucket(history: list[dict[str, Any]], queue: str | None) -> dict[Any, tuple[int, int]]:
    """get_throughput_history's rows summed per bucket time (of ``queue``):
    ``{time: (completed, failed)}``, oldest first, every bucket present."""
    out: dict[Any, tuple[int, int]] = {}
    for row in history:
        c, f = out.get(row["time"], (0, 0))
        if row["queue"] is not None and queue in (None, row["queue"]):
            c, f = c + int(row["completed"]), f + int(row["failed"])
        out[row["time"]] = (c, f)
    return dict(sorted(out.items()))


@click.command("slowest")
@app_argument
@click.option("-q", "--queue", default=None, help="Only this queue.")
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--since", default="24h", show_default=True, help="Jobs finished within this (24h, 30m, 7d).")
@json_option
@log_options()
def slowest(app: str, queue: str | None, limit: int, since: str, as_json: bool, log_level: str,
            log_format: str, no_color: bool) -> None:  # fmt: skip
    """Functions by average run time: runs, avg, p50, p95, max, failures."""
    window = parse_since(since)

    async def body(werk: Any) -> None:
        found = await werk.get_function_stats(since=window, limit=limit, queue=queue)
        if as_json:
            emit_json(found)
            return
        out = make_console(no_color)
        rows = [(f["function"], f["runs"], *(f"{f[k]:.3f}s" for k in ("avg", "p50", "p95", "max")),
                 f["failures"]) for f in found]  # fmt: skip
        cols = ("function", "runs", "avg", "p50", "p95", "max", "failures")
        out.print(table(f"slowest functions, finished in the last {since}", cols, rows, right=cols[1:]))
        if not found:
            out.print("no finished jobs in that window")

    run(app, log_level, log_format, body, no_color=no_color)


commands = [info, jobs, stats, throughput, slowest]
__all__ = ["Failed", "commands", "counts_table", "parse_since", "per_bucket", "state_text", "worker_dict",
           "workers_table"]  # fmt: skip
