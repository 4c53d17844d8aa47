"""The app that worker processes load in the PgBouncer scenario.

Like :mod:`tests.reliability.relapp` (DSN and schema from ``WERK_PROC_DSN`` /
``WERK_PROC_SCHEMA``), with the poll-only settings PgBouncer's transaction
mode needs: no LISTEN (``use_listen_notify=False``: workers find jobs by
polling) and no server-side prepared statements (``prepare_threshold=None``).
"""

from __future__ import annotations

import os

from werk_trio import Werk, WerkConfig

POLL_ONLY = WerkConfig(use_listen_notify=False, prepare_threshold=None)

app = Werk(
    os.environ.get("WERK_PROC_DSN") or None,
    config=POLL_ONLY,
    schema=os.environ.get("WERK_PROC_SCHEMA") or None,
    task_modules=["tests"],
)
