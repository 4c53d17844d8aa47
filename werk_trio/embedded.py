"""An embedded Postgres for zero-setup runs and tests.

Used when no DSN is given and neither ``WERK_DSN`` nor ``DATABASE_URL`` is set.
It is the ``pgserver`` package (Postgres shipped in a wheel): the data
directory is kept between runs (default ``~/.local/share/werk-trio/pgdata``,
or ``WERK_EMBEDDED_DIR``), the server starts on first use and stops when the
last process using it exits. Several processes share one server.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["default_dir", "embedded_dsn"]

logger = logging.getLogger("werk_trio")

_lock = threading.Lock()
_servers: dict[Path, Any] = {}

INSTALL_HINT = (
    "no database configured: pass a DSN to Werk(...), or set WERK_DSN or DATABASE_URL, "
    "or install the embedded Postgres with: pip install 'werk-trio[embedded]'"
)


def default_dir() -> Path:
    env = os.environ.get("WERK_EMBEDDED_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "werk-trio" / "pgdata"


def embedded_dsn(directory: str | os.PathLike[str] | None = None) -> str:
    """Start (or join) the embedded Postgres and return its DSN. Blocking: call
    it from a thread in async code."""
    path = Path(directory).expanduser() if directory else default_dir()
    path = path.resolve()
    with _lock:
        server = _servers.get(path)
        if server is None:
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI)
                warnings.simplefilter("ignore")
                try:
                    # the package first: a submodule already imported would
                    # otherwise hide that the package itself is not importable
                    import pgserver  # noqa: F401
                    from pgserver.postgres_server import get_server
                except ImportError:
                    raise ConfigError(INSTALL_HINT) from None
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    server = get_server(path, cleanup_mode="stop")
                except Exception as ex:
                    raise ConfigError(
                        f"the embedded Postgres in {path} did not start: {ex}. Check the log in "
                        f"{path / 'log'}, or set WERK_DSN to a server of your own."
                    ) from ex
            _servers[path] = server
            logger.info("embedded Postgres running, data in %s", path)
        return str(server.get_uri())
