"""``werk worker APP``: run a worker (pgwerk's flags, short and long)."""

from __future__ import annotations

from typing import Any

import click

from ..worker import WORKER_TYPES
from ._common import app_argument, comma_list, connected, log_options, run


@click.command("worker")
@app_argument
@click.option("-q", "--queues", default="default", show_default=True,
              help="Comma-separated queues to consume.")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=10, show_default=True,
              help="Maximum concurrent jobs.")
@click.option("--prefetch", type=click.IntRange(min=0), default=None,
              help="Jobs claimed ahead of free runners (default: 0; process and fork: "
                   "--concurrency). Short jobs drain faster with --prefetch = --concurrency.")
@click.option("-w", "--worker-type", type=click.Choice(WORKER_TYPES), default="async", show_default=True)
@click.option("--burst", is_flag=True, help="Exit once nothing is left to do.")
@click.option("--shutdown-timeout", type=float, default=None, help="Seconds running jobs get at shutdown.")
@click.option("--heartbeat-interval", type=float, default=None)
@click.option("--poll-interval", type=float, default=None)
@click.option("--sweep-interval", type=float, default=None)
@click.option("--abort-interval", type=float, default=None)
@click.option("--dequeue-strategy", type=click.Choice(["priority", "round_robin", "random"]),
              default="priority", show_default=True)
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve this worker's Prometheus counters on this port "
                   "(0: a free one; the log says which).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port.")
@log_options(default_level="INFO")
def command(app: str, queues: str, concurrency: int, worker_type: str, burst: bool, log_level: str,
            log_format: str, no_color: bool, **intervals: Any) -> None:  # fmt: skip
    """Run a worker until SIGINT/SIGTERM (or, with --burst, until nothing is left)."""
    names = comma_list(queues)
    if not names:
        raise click.BadParameter("name at least one queue", param_hint="'-q' / '--queues'")

    async def body(werk: Any) -> None:
        from ..worker import worker_class

        cls = worker_class(worker_type)
        async with connected(werk):
            await cls(werk, queues=names, concurrency=concurrency, burst=burst, **intervals).run()

    run(app, log_level, log_format, body, connect=False, no_color=no_color)
