"""Shared pieces of the infrastructure-fault scenarios.

* :data:`FULL` / :func:`size`: ``WERK_RELIABILITY_SIZE=full`` selects the full
  sizes; the normal test run uses small ones.
* :class:`PrivatePostgres`: a dedicated embedded Postgres (pgserver) in a
  temporary directory, for the scenarios that stop the server or kill every
  werk backend. The shared test server (other tests, other engineers' runs)
  is never stopped and never has its backends killed.
* :func:`werk_backends_sql` and friends: the queries that find werk's
  backends (``application_name = 'werk_trio'``, set by every Werk pool and
  listener) in this database; the test's own app uses another application
  name, so it never shoots itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import trio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "FULL",
    "PROBE_APP",
    "PrivatePostgres",
    "as_probe",
    "size",
    "terminate_werk_backends_async",
]

FULL = os.environ.get("WERK_RELIABILITY_SIZE", "").strip().lower() == "full"

#: application_name of the test's own connections (never terminated or sampled).
PROBE_APP = "werk_rel_probe"


def size(small: Any, full: Any) -> Any:
    """``full`` when WERK_RELIABILITY_SIZE=full, else ``small``."""
    return full if FULL else small


def as_probe(dsn: str) -> str:
    """``dsn`` with the test's own application_name (werk's default would be werk_trio)."""
    return make_conninfo(dsn, application_name=PROBE_APP)


TERMINATE_WERK = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE application_name = 'werk_trio' AND datname = current_database() AND pid <> pg_backend_pid()
"""


async def terminate_werk_backends_async(app: Any) -> int:
    """``pg_terminate_backend`` on every werk backend of this database, through
    ``app`` (whose own connections are named otherwise); the count."""
    async with app.connection() as conn:
        cur = await conn.execute(TERMINATE_WERK)
        row = await cur.fetchone()
    return int(row[0]) if row else 0


class PrivatePostgres:
    """A dedicated embedded Postgres for one test (or one module).

    ``start()`` (blocking) runs initdb and starts the server in a fresh
    temporary directory; ``stop_server()`` / ``start_server()`` stop it
    (``pg_ctl stop -m fast``: every session is terminated) and start it again
    on the same socket; ``close()`` stops it and deletes the directory.
    The server listens on a Unix socket only (pgserver's way), so its DSN's
    host is a directory.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="werk-rel-pg-"))
        self.pgdata = self.root / "pgdata"
        self.server: Any = None
        self.dsn = ""
        self.socket_dir = ""
        self.system_user: str | None = None
        self.bin: Path | None = None

    def start(self) -> PrivatePostgres:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
            import pgserver
            from pgserver._commands import POSTGRES_BIN_PATH

            self.server = pgserver.get_server(self.pgdata, cleanup_mode="delete")
        self.bin = POSTGRES_BIN_PATH
        self.system_user = self.server.system_user
        self.dsn = str(self.server.get_uri())
        self.socket_dir = str(conninfo_to_dict(self.dsn)["host"])
        return self

    def _pg_ctl(self, *args: str) -> list[str]:
        assert self.bin is not None
        return [str(self.bin / "pg_ctl"), "-D", str(self.pgdata), *args]

    async def _run(self, argv: list[str]) -> None:
        kwargs: dict[str, Any] = {}
        if self.system_user is not None and os.geteuid() == 0:
            kwargs["user"] = self.system_user
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False, **kwargs)
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} failed ({result.returncode}): {result.stdout.decode()} "
                f"{result.stderr.decode()}\n{self.log_tail()}"
            )

    async def stop_server(self, mode: str = "fast") -> float:
        """Stop the server; the seconds it took. ``fast``: sessions are terminated
        and the server shuts down cleanly. ``immediate``: it quits at once, like
        a crash -- nothing is flushed, the next start recovers from the WAL."""
        started = time.monotonic()
        await self._run(self._pg_ctl("-w", "-t", "60", "-m", mode, "stop"))
        return time.monotonic() - started

    async def start_server(self) -> float:
        """Start it again on the same socket directory; the seconds it took."""
        started = time.monotonic()
        await self._run(
            self._pg_ctl(
                "-w",
                "-t",
                "60",
                "-o",
                '-h ""',
                "-o",
                f"-k {self.socket_dir}",
                "-l",
                str(self.pgdata / "log"),
                "start",
            )
        )
        return time.monotonic() - started

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join((self.pgdata / "log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the server (whatever pgserver believes) and delete its directory."""
        if self.bin is not None and (self.pgdata / "postmaster.pid").exists():
            import subprocess

            kwargs: dict[str, Any] = {}
            if self.system_user is not None and os.geteuid() == 0:
                kwargs["user"] = self.system_user
            subprocess.run(
                self._pg_ctl("-w", "-m", "immediate", "stop"),
                capture_output=True,
                check=False,
                timeout=60,
                **kwargs,
            )
        if self.server is not None:
            # pgserver would stop "its" postmaster first: after a restart that
            # one is gone (we stopped the current one above), so skip that step
            self.server._postmaster_info = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    self.server.cleanup()
                except Exception:  # already stopped by us: only the directory is left
                    pass
        shutil.rmtree(self.root, ignore_errors=True)
