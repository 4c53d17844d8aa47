"""The app that ``werk cron`` processes started by the cron tests load.

``python -c "from werk_trio.cli.cron import command; command()" tests.cronapp:app``
imports this module: a Werk on ``WERK_PROC_DSN`` / ``WERK_PROC_SCHEMA`` (with
the poll-only settings PgBouncer's transaction mode needs when
``WERK_CRON_POLL_ONLY`` is set) and one scheduler with one schedule, ``tick``,
every ``WERK_CRON_INTERVAL`` seconds (default 0.5).
"""

from __future__ import annotations

import os

from werk_trio import CronScheduler, Werk, WerkConfig

__all__ = ["app", "scheduler", "tick"]

app = Werk(
    os.environ.get("WERK_PROC_DSN") or None,
    config=WerkConfig(use_listen_notify=False, prepare_threshold=None)
    if os.environ.get("WERK_CRON_POLL_ONLY")
    else None,
    schema=os.environ.get("WERK_PROC_SCHEMA") or None,
    task_modules=["tests"],
)


async def tick() -> str:
    return "tick"


scheduler = CronScheduler(app)
scheduler.register(tick, interval=float(os.environ.get("WERK_CRON_INTERVAL", "0.5")), name="tick")
