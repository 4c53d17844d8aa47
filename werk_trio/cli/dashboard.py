"""``werk dashboard APP``: a live full-screen view of the queue.

Every ``--interval`` seconds it reads one round of the introspection API
(``list_queues``: the counts by queue and status, paused queues and
limits; ``get_throughput_history``, ``get_queue_depth_history``, ``list_workers``,
and ``list_jobs`` for running jobs and recent failures) and
redraws in place (rich ``Live`` on the alternate screen: no flicker). Keys:
``q`` quits, ``p`` (or space) pauses refreshing, ``o`` / ``f`` / ``w`` (or
``1`` / ``2`` / ``3``) switch between overview, failures and workers, ``r``
refreshes now. A database error is shown in the header and the view goes on
with the last data; the next refresh tries again.
"""

from __future__ import annotations

import os
import sys
import termios
import time
import tty
from dataclasses import dataclass, field
from typing import Any

import click
import trio
from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ._common import (
    ESTIMATE_NOTE,
    app_argument,
    first_line,
    log_options,
    make_console,
    run,
    safe,
    seconds_ago,
    shown_count,
    table,
    when,
)
from .inspect import STATUSES, state_text, worker_dict, workers_table
from .queues import limit_text, queue_dict, rate_text

VIEWS = {"o": "overview", "1": "overview", "f": "failures", "2": "failures", "w": "workers", "3": "workers"}
_BLOCKS = " ▁▂▃▄▅▆▇█"


@dataclass
class Snapshot:
    """What one refresh read."""

    queues: list[dict[str, Any]] = field(default_factory=list)
    controls: dict[str, dict[str, Any]] = field(default_factory=dict)  # queue -> queue_dict, with controls
    total: int = 0
    online: int = 0
    throughput: list[tuple[Any, int, int]] = field(default_factory=list)  # (minute, completed, failed)
    depth: dict[str, list[int]] = field(default_factory=dict)  # queue -> pending per sample, oldest first
    workers: list[dict[str, Any]] = field(default_factory=list)
    running: dict[str, list[str]] = field(default_factory=dict)  # worker id -> functions it runs
    failures: list[Any] = field(default_factory=list)
    read_at: float = 0.0
    took: float = 0.0
    error: str | None = None


@dataclass
class State:
    view: str = "overview"
    paused: bool = False
    quit: bool = False
    snap: Snapshot = field(default_factory=Snapshot)
    wake: trio.Event = field(default_factory=trio.Event)  # redraw
    reread: trio.Event = field(default_factory=trio.Event)  # read now


async def read(werk: Any, queue: str | None, minutes: int) -> Snapshot:
    """One round of statements."""
    t0 = time.perf_counter()
    snap = Snapshot()
    # list_queues holds get_queue_stats's counts (the same estimates) beside
    # the controls: one count of the live jobs per refresh, not two
    for info in await werk.list_queues():
        q = queue_dict(info)
        snap.total += q["total"]
        if queue not in (None, q["queue"]):
            continue
        snap.queues.append({"queue": q["queue"], **q["counts"], "estimated": q["estimated"]})
        if q["paused"] or q["max_running"] or q["rate_n"]:
            snap.controls[q["queue"]] = q
    per_minute: dict[Any, tuple[int, int]] = {}
    for row in await werk.get_throughput_history(minutes=minutes, bucket_secs=60):
        c, f = per_minute.get(row["time"], (0, 0))
        if row["queue"] is not None and queue in (None, row["queue"]):
            c, f = c + int(row["completed"]), f + int(row["failed"])
        per_minute[row["time"]] = (c, f)
    snap.throughput = [(t, c, f) for t, (c, f) in sorted(per_minute.items())]
    for row in await werk.get_queue_depth_history(minutes=minutes, queue=queue, bucket_secs=60):
        snap.depth.setdefault(row["queue"], []).append(int(row["queued"]) + int(row["scheduled"]))
    snap.workers = [worker_dict(w) for w in await werk.list_workers()]
    # online from the same read as the DEAD mark, so that no worker counts as
    # both (get_queue_stats reads the clock at another instant)
    snap.online = sum(w["state"] == "alive" for w in snap.workers)
    if queue is not None:
        snap.workers = [w for w in snap.workers if queue in w["queues"]]
    for job in await werk.list_jobs(status=["active", "aborting"], queue=queue, limit=1000):
        if job.worker_id is not None:
            snap.running.setdefault(str(job.worker_id), []).append(job.function)
    snap.failures = await werk.list_jobs(status="failed", queue=queue, limit=20)
    snap.read_at = time.time()
    snap.took = time.perf_counter() - t0
    return snap


def columns_chart(values: list[int], height: int, width: int) -> Text:
    """A column chart of ``values`` in ``width`` characters (each value as
    wide as fits; the last ``width`` if they do not), ``height`` rows of
    block characters, then the scale."""
    values = values[-max(width, 1):]
    peak = max(values, default=0)
    each = max(1, width // max(len(values), 1))
    lines = []
    for level in range(height, 0, -1):
        row = []
        for v in values:
            eighths = 0 if peak == 0 else round(v / peak * height * 8)
            fill = min(max(eighths - (level - 1) * 8, 0), 8)
            row.append(_BLOCKS[fill] * each)
        lines.append("".join(row))
    text = Text("\n".join(lines), style="green")
    text.append(f"\npeak {peak}/min, last {values[-1] if values else 0}/min", style="dim")
    return text


def sparkline(values: list[int], width: int = 30) -> str:
    values = values[-width:]
    peak = max(values, default=0)
    return "".join(_BLOCKS[0 if peak == 0 else max(1, round(v / peak * 8)) if v else 0] for v in values)


def controls_text(q: dict[str, Any] | None) -> Text:
    """A queue's flow control in a few words: ``paused  max 3  50/1s``."""
    text = Text()
    if q is None:
        return text
    if q["paused"]:
        text.append("paused", style="bold yellow")
    for part in (f"max {limit_text(q)}" if q["max_running"] else "", rate_text(q)):
        if part:
            text.append(("  " if text else "") + safe(part))
    return text


def _estimated(q: dict[str, Any], *statuses: str) -> bool:
    return any(s in q.get("estimated", ()) for s in statuses)


def any_estimate(snap: Snapshot) -> bool:
    return any(q.get("estimated") for q in snap.queues)


def _counts(snap: Snapshot) -> RenderableType:
    rows = [(q["queue"], *(shown_count(q.get(s, 0), _estimated(q, s)) for s in STATUSES),
             controls_text(snap.controls.get(q["queue"]))) for q in snap.queues]  # fmt: skip
    totals = ("all", *(shown_count(sum(q.get(s, 0) for q in snap.queues),
                                   any(_estimated(q, s) for q in snap.queues)) for s in STATUSES), "")
    shown = table(None, ("queue", *STATUSES, "controls"), [*rows, totals], right=STATUSES)
    if not any_estimate(snap):
        return shown
    return Group(shown, Text(ESTIMATE_NOTE, style="dim"))


def _depth(snap: Snapshot) -> RenderableType:
    now = {q["queue"]: shown_count(q.get("queued", 0) + q.get("scheduled", 0),
                                   _estimated(q, "queued", "scheduled")) for q in snap.queues}
    rows = [(q, now.get(q, 0), sparkline(vals)) for q, vals in sorted(snap.depth.items())]
    if not rows:
        return Text("no samples yet (workers sample queue depth as they sweep)", style="dim")
    return table(None, ("queue", "pending", "history"), rows, right=("pending",))


def _failures(snap: Snapshot, limit: int) -> RenderableType:
    if not snap.failures:
        return Text("no failed jobs", style="dim")
    rows = [(when(j.completed_at)[5:], j.function, j.queue, f"{j.attempts}/{j.max_attempts}",
             first_line(j.error)) for j in snap.failures[:limit]]  # fmt: skip
    return table(None, ("ended", "function", "queue", "tries", "error"), rows, right=("tries",), no_wrap=True)


def render(snap: Snapshot, state: State, title: str, interval: float, width: int, height: int | None
           ) -> RenderableType:  # fmt: skip
    """The current view: a full-screen Layout of ``height`` rows, or with
    ``height`` None the same panels one after the other (``--once``)."""
    head = Text(f"view: {state.view}  ")
    if state.paused:
        head.append("PAUSED  ", style="bold yellow")
    else:
        head.append(f"every {interval:g}s  ")
    head.append(f"read {when_local(snap.read_at)} in {snap.took * 1000:.0f} ms  ", style="dim")
    head.append(f"werk dashboard  {safe(title)}\n", style="bold")
    head.append("keys: q quit  p pause  o overview  f failures  w workers  r refresh", style="cyan")
    if snap.error:
        head.append(f"\ndatabase error (retrying): {safe(snap.error)}", style="bold red")
    dead = sum(w["state"] == "dead" for w in snap.workers)
    summary = Text(f"jobs {shown_count(snap.total, any_estimate(snap))}  workers online {snap.online}")
    if dead:
        summary.append(f"  DEAD workers {dead}", style="bold red")
    paused = sorted(name for name, q in snap.controls.items() if q["paused"])
    if paused:
        summary.append(f"  paused queues: {safe(', '.join(paused))}", style="bold yellow")
    head.no_wrap, head.overflow = True, "ellipsis"  # a long title never pushes the summary out
    header = Panel(Group(summary, head))
    header_rows = 6 if snap.error else 5
    if state.view == "failures":
        failures = Panel(_failures(snap, 20), title="recent failures")
        panels: list[tuple[RenderableType, int | None]] = [(failures, None)]
    elif state.view == "workers":
        shown = workers_table(snap.workers, snap.running) if snap.workers else Text("no workers")
        panels = [(Panel(shown, title="workers"), None)]
    else:
        chart_rows = max(3, min(10, (height or 40) // 5))
        values = [c + f for _, c, f in snap.throughput]
        chart = Panel(columns_chart(values, chart_rows, width // 2 - 4), title="finished jobs per minute")
        counts_rows = len(snap.queues) + 7 + any_estimate(snap)  # the estimate's note: one more line
        panels = [
            (Panel(_counts(snap), title="jobs by queue and status"), counts_rows),
            (side_by_side(chart, Panel(_depth(snap), title="queue depth")), chart_rows + 3),
            (Panel(_compact_workers(snap), title=f"workers ({len(snap.workers)})"), len(snap.workers) + 6),
            (Panel(_failures(snap, 8), title="recent failures"), None),
        ]  # fmt: skip
    if height is None:
        return Group(header, *(p for p, _ in panels))
    layout = Layout()
    layout.split_column(Layout(header, size=header_rows),
                        *(Layout(p, size=size) if size else Layout(p) for p, size in panels))  # fmt: skip
    return layout


def side_by_side(left: RenderableType, right: RenderableType) -> RenderableType:
    """Two renderables side by side, half the width each."""
    grid = Table.grid(expand=True)
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(left, right)
    return grid


def _compact_workers(snap: Snapshot) -> RenderableType:
    if not snap.workers:
        return Text("no workers", style="dim")
    rows = [(w["name"], w["worker_type"], ",".join(w["queues"]),
             f"{len(snap.running.get(w['id'], ()))}/{w['concurrency']}", seconds_ago(w["heartbeat_age"]),
             state_text(w["state"])) for w in snap.workers]  # fmt: skip
    return table(None, ("name", "type", "queues", "running", "heartbeat", "state"), rows,
                 right=("running", "heartbeat"), no_wrap=True)  # fmt: skip


def when_local(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


async def read_keys(state: State) -> None:
    """Keys from the terminal (cbreak mode: no Enter needed, no echo). The
    descriptor stays blocking (the terminal's output shares it): wait until it
    is readable, then read what is there."""
    fd = sys.stdin.fileno()
    while not state.quit:
        await trio.lowlevel.wait_readable(fd)
        data = os.read(fd, 64)
        if not data:
            return
        for key in data.decode("utf-8", "replace").lower():
            if key == "q":
                state.quit = True
            elif key in ("p", " "):
                state.paused = not state.paused
                if not state.paused:
                    state.reread.set()
            elif key in VIEWS:
                state.view = VIEWS[key]
            elif key == "r":
                state.reread.set()
            else:
                continue
            state.wake.set()


async def refresh(werk: Any, state: State, queue: str | None, minutes: int, interval: float) -> None:
    """Read every ``interval`` (or at ``r``) unless paused; a failed read is
    kept as the snapshot's error and tried again next round."""
    while True:
        if not state.paused or not state.snap.read_at:
            try:
                state.snap = await read(werk, queue, minutes)
            except Exception as ex:  # shown in the header, retried
                state.snap.error = f"{type(ex).__name__}: {ex}"
            state.wake.set()
        with trio.move_on_after(interval):
            await state.reread.wait()
        state.reread = trio.Event()


@click.command("dashboard")
@app_argument
@click.option("-i", "--interval", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("-q", "--queue", default=None, help="Only this queue.")
@click.option("-m", "--minutes", type=click.IntRange(5, 1440), default=30, show_default=True,
              help="Minutes of throughput and queue-depth history.")
@click.option("--once", is_flag=True, help="Print one frame and exit (no terminal needed).")
@log_options(default_level="ERROR")
def command(app: str, interval: float, queue: str | None, minutes: int, once: bool, log_level: str,
            log_format: str, no_color: bool) -> None:  # fmt: skip
    """A live view: counts, throughput, queue depth, workers, failures."""
    console = make_console(no_color)
    if not once and not (console.is_terminal and sys.stdin.isatty()):
        raise click.UsageError("the live dashboard needs a terminal; use --once for one frame")

    async def body(werk: Any) -> None:
        title = repr(werk) + (f" queue={queue}" if queue else "")
        state = State()
        if once:
            snap = await read(werk, queue, minutes)
            console.print(render(snap, state, title, interval, console.width, None))
            return
        await live(werk, console, state, title, queue, minutes, interval)

    run(app, log_level, log_format, body, no_color=no_color)


async def live(werk: Any, console: Any, state: State, title: str, queue: str | None, minutes: int,
               interval: float) -> None:  # fmt: skip
    """Draw on every read and every key (keys answer at once, even while a
    slow read is under way), until ``q``."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_keys, state)
            nursery.start_soon(refresh, werk, state, queue, minutes, interval)
            with Live(console=console, screen=True, auto_refresh=False, redirect_stderr=False) as view:
                while not state.quit:
                    frame = render(state.snap, state, title, interval, console.width, console.height)
                    view.update(frame, refresh=True)
                    await state.wake.wait()
                    state.wake = trio.Event()
            nursery.cancel_scope.cancel()
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
