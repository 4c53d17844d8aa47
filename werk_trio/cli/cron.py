"""``werk cron APP``: run a cron scheduler for the app's schedules; ``--list`` prints them.

APP is ``module:attribute`` naming a Werk (loaded with
:func:`werk_trio.cli.load_app`). Importing the module creates its
``CronScheduler(app)`` objects and registers their schedules; this command
runs one scheduler with all of them (leader or standby: start as many as you
like). ``--list`` prints the schedules the database holds (every process's
registrations and their shared state) plus the module's registrations not
written there yet.

Exit status: 0 after a clean stop (SIGTERM / SIGINT; a leader releases its
lease first), 2 for bad usage or an APP without schedules.
"""

from __future__ import annotations

import logging
import signal
import sys
from datetime import datetime
from typing import Any

import click
import trio
from rich.console import Console
from rich.table import Table

from ..config import mask_dsn
from ..errors import WerkError

__all__ = ["command"]

logger = logging.getLogger("werk_trio.cron")


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S %Z")


def _table(stats: list[dict[str, Any]], unsynced: list[Any]) -> Table:
    table = Table(title="cron schedules")
    for column in ("name", "function", "queue", "schedule", "next run", "last run", "last status",
                   "runs", "failed", "state"):  # fmt: skip
        table.add_column(column, overflow="fold")
    for s in stats:
        state = "removed" if s["removed"] else ("paused" if s["paused"] else "active")
        table.add_row(
            s["name"], s["function"], s["queue"], s["schedule"], _when(s["next_run_at"]),
            _when(s["last_run_at"]), "-" if s["last_status"] is None else s["last_status"].value,
            str(s["total_runs"]), str(s["failed_runs"]), state,
        )  # fmt: skip
    for job in unsynced:
        table.add_row(job.name, job.function, job.queue, job.timing.describe(), "-", "-", "-", "0", "0",
                      "not started")  # fmt: skip
    return table


async def _list(app: Any, schedulers: list[Any]) -> int:
    async with app:
        stats = await app.list_cron_stats()
    known = {s["name"] for s in stats}
    unsynced = [job for sch in schedulers for job in sch.jobs.values() if job.name not in known]
    console = Console(width=200 if not sys.stdout.isatty() else None)
    if not stats and not unsynced:
        console.print("no cron schedules")
        return 0
    console.print(_table(stats, unsynced))
    return 0


async def _run(app: Any, scheduler: Any) -> int:
    async with app, trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for sig in signals:
                logger.info("cron: %s received, stopping", signal.Signals(sig).name)
                scheduler.stop()
                break
    return 0


@click.command("cron", help="Run a cron scheduler for APP's schedules (or list them).")
@click.argument("app_spec", metavar="APP")
@click.option("--list", "list_only", is_flag=True, help="print the schedules and exit")
@click.option("--standby-retry-interval", type=float, default=None,
              help="seconds between a standby's attempts to lead (default: the app's config, 30)")
@click.option("--lease", type=float, default=None,
              help="seconds a leader's lease lasts unrenewed (default: the app's config, 30)")
@click.option("--catch-up", type=click.Choice(["one", "none"]), default="one", show_default=True,
              help="after downtime: one run for the missed ticks, or none")
@click.option("--log-level", default="INFO", show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def command(
    app_spec: str, list_only: bool, standby_retry_interval: float | None, lease: float | None,
    catch_up: str, log_level: str, log_format: str,
) -> None:  # fmt: skip
    from .._logging import setup_logging
    from ..cron import CronScheduler, schedulers_for
    from . import load_app

    try:
        setup_logging(log_level, log_format)
        app = load_app(app_spec)
        schedulers = schedulers_for(app)
        if list_only:
            sys.exit(trio.run(_list, app, schedulers))
        scheduler = CronScheduler(
            app, standby_retry_interval=standby_retry_interval, lease=lease,
            catch_up=catch_up,  # type: ignore[arg-type]
        )  # fmt: skip
        for other in schedulers:
            for job in other.jobs.values():
                scheduler.register(job)
        if not len(scheduler):
            raise click.UsageError(
                f"{app_spec} has no cron schedules: create `scheduler = CronScheduler(app)` in its "
                "module and register functions with `scheduler.register(func, cron=... | interval=...)`"
            )
        setup_logging(log_level, log_format)
        sys.exit(trio.run(_run, app, scheduler))
    except WerkError as ex:
        click.echo(f"werk cron: error: {mask_dsn(str(ex))}", err=True)
        sys.exit(2)
