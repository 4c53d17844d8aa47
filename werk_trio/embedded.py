"""An embedded Postgres for zero-setup runs and tests.

Used when no DSN is given and neither ``WERK_DSN`` nor ``DATABASE_URL`` is set.
It is the ``pgserver`` package (Postgres shipped in a wheel): the data
directory is kept between runs (default ``~/.local/share/werk-trio/pgdata``,
or ``WERK_EMBEDDED_DIR``; as root with a private home,
``/var/lib/werk-trio/pgdata``: see :func:`default_dir`), the server starts on first use and stops when the
last process using it exits. Several processes share one server.

The server trusts every local connection, so its data directory and socket
are kept private: both 0700, owned by the server's user (as root, pgserver
runs Postgres as a ``pgserver`` user). pgserver itself, as root, makes every
parent of the data directory group/other-readable and, when the data path
is too long for a socket, puts the socket in a 0777 directory: werk_trio puts
the parents' modes back as they were, makes the socket directory 0700 and
checks the result. As root, every parent must already let others traverse it
(the ``pgserver`` user has to reach its data): werk_trio refuses, saying
what to do, rather than loosen a private directory such as a 0700 home.
"""

from __future__ import annotations

import logging
import os
import stat
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


#: The data directory of the embedded Postgres for root, when root's home
#: keeps others out (the usual 0700 ``/root``): the server runs as the
#: ``pgserver`` user, which could not reach a directory below it.
ROOT_DIR = Path("/var/lib/werk-trio/pgdata")


def default_dir() -> Path:
    """Where the embedded Postgres keeps its data when no directory is given.

    ``WERK_EMBEDDED_DIR`` if set; else ``$XDG_DATA_HOME/werk-trio/pgdata``
    (``~/.local/share/werk-trio/pgdata``). As root, with neither variable set
    and a home that others may not pass through, ``/var/lib/werk-trio/pgdata``
    (root's daemons keep their data there).
    """
    env = os.environ.get("WERK_EMBEDDED_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    home = Path(xdg or os.path.join(os.path.expanduser("~"), ".local", "share")) / "werk-trio" / "pgdata"
    if xdg or os.name != "posix" or os.geteuid() != 0:
        return home
    if any(not stat.S_IMODE(p.stat().st_mode) & stat.S_IXOTH for p in _ancestors(home)):
        return ROOT_DIR
    return home


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
                    from pgserver.postgres_server import PostgresServer, get_server
                except ImportError:
                    raise ConfigError(INSTALL_HINT) from None

                as_root = os.name == "posix" and os.geteuid() == 0
                _make_parents(path, as_root)
                modes = _modes(_ancestors(path) + _ancestors(Path(PostgresServer.runtime_path) / "x"))
                try:
                    server = get_server(path, cleanup_mode="stop")
                except Exception as ex:
                    _restore(modes)
                    raise ConfigError(
                        f"the embedded Postgres in {path} did not start: {ex}. Check the log in "
                        f"{path / 'log'}, or set WERK_DSN to a server of your own."
                    ) from ex
                _restore(modes)
                _make_private(path, server)
            _servers[path] = server
            logger.info("embedded Postgres running, data in %s", path)
        return str(server.get_uri())


def _ancestors(path: Path) -> list[Path]:
    """The existing parents of ``path``, nearest first."""
    return [p for p in path.parents if p.exists()]


def _modes(paths: list[Path]) -> dict[Path, int]:
    return {p: stat.S_IMODE(p.stat().st_mode) for p in paths}


def _restore(modes: dict[Path, int]) -> None:
    """Put back the modes pgserver changed on directories that are not its own."""
    for p, mode in modes.items():
        try:
            if stat.S_IMODE(p.stat().st_mode) != mode:
                os.chmod(p, mode)
        except OSError as ex:
            raise ConfigError(
                f"pgserver changed the permissions of {p} and werk_trio could not put them back "
                f"(mode {mode:04o}): {ex}. Set them back yourself, and point WERK_EMBEDDED_DIR at a "
                "directory of its own, or set WERK_DSN to a server of your own."
            ) from None


def _make_parents(path: Path, as_root: bool) -> None:
    """Create the missing parents of ``path`` (0700; as root 0711, so that the
    server's user can pass through without listing them), and, as root,
    refuse when an existing parent would have to be loosened."""
    missing = [p for p in reversed(path.parents) if not p.exists()]
    if as_root:
        closed = [p for p in _ancestors(path) if not stat.S_IMODE(p.stat().st_mode) & stat.S_IXOTH]
        if closed:
            raise ConfigError(
                f"the embedded Postgres runs as the 'pgserver' user when werk_trio runs as root, and "
                f"that user must pass through every parent of its data directory {path}; "
                f"{closed[0]} does not let others through (mode "
                f"{stat.S_IMODE(closed[0].stat().st_mode):04o}) and werk_trio will not loosen it. "
                "Set WERK_EMBEDDED_DIR (or Werk(embedded_dir=...)) to a directory under parents "
                "that others may traverse (for example /var/lib/werk-trio/pgdata), run as an "
                "ordinary user, or set WERK_DSN to a server of your own."
            )
    for p in missing:
        p.mkdir(mode=0o711 if as_root else 0o700, exist_ok=True)


def _make_private(path: Path, server: Any) -> None:
    """Data directory and socket directory 0700, owned by the server's user;
    ConfigError when that cannot be made so."""
    owner = path.stat().st_uid
    dirs = [path]
    info = server.get_postmaster_info()
    socket_dir = getattr(info, "socket_dir", None)
    if socket_dir is not None and Path(socket_dir).resolve() != path:
        socket_dir = Path(socket_dir)
        dirs.append(socket_dir)
        try:
            if socket_dir.stat().st_uid != owner:
                os.chown(socket_dir, owner, path.stat().st_gid)
        except OSError as ex:
            raise ConfigError(
                f"the embedded Postgres socket directory {socket_dir} could not be given to the "
                f"server's user: {ex}. Use a shorter WERK_EMBEDDED_DIR (the socket then lives in "
                "the data directory), or set WERK_DSN to a server of your own."
            ) from None
    for d in dirs:
        try:
            if stat.S_IMODE(d.stat().st_mode) & 0o077:
                os.chmod(d, 0o700)
        except OSError as ex:
            raise ConfigError(
                f"the embedded Postgres directory {d} could not be made private (0700): {ex}. "
                "Fix its permissions, or set WERK_DSN to a server of your own."
            ) from None
        st = d.stat()
        if stat.S_IMODE(st.st_mode) & 0o077 or st.st_uid != owner:
            raise ConfigError(
                f"the embedded Postgres directory {d} is not private (mode "
                f"{stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid}; expected 0700, uid {owner}). "
                "Fix its permissions, or set WERK_DSN to a server of your own."
            )
