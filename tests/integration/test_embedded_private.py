"""Issue 10, finding 10: the embedded Postgres trusts every local connection,
so its data directory and its socket stay private -- 0700, owned by the
server's user -- and the directories above them are left exactly as they
were (pgserver, run as root, made every parent group/other-readable and put
the socket of a long data path in a 0777 directory). Where that cannot be
ensured (as root, a parent others cannot pass through), werk_trio refuses
with a ConfigError that says what to do, and changes nothing."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from werk_trio import ConfigError
from werk_trio import embedded as emb

AS_ROOT = os.geteuid() == 0


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def base() -> Iterator[Path]:
    """A fresh directory under /tmp that others may pass through (mkdtemp makes it 0700)."""
    path = Path(tempfile.mkdtemp(prefix="werk-emb-", dir="/tmp"))
    path.chmod(0o711)  # others may pass through, not list: pgserver would add the r bits
    yield path
    for data, server in list(emb._servers.items()):
        if base_of(data, path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server.cleanup()
            emb._servers.pop(data, None)
    shutil.rmtree(path, ignore_errors=True)


def base_of(data: Path, base: Path) -> bool:
    return str(data).startswith(str(base))


def _check_private(data: Path, dsn: str) -> None:
    owner = data.stat().st_uid
    assert _mode(data) == 0o700, oct(_mode(data))
    socket_dir = Path(conninfo_to_dict(dsn)["host"])
    assert _mode(socket_dir) & 0o077 == 0, (socket_dir, oct(_mode(socket_dir)))
    assert socket_dir.stat().st_uid == owner
    with psycopg.connect(dsn) as conn:  # and it still serves
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("long_path", [False, True], ids=["socket-in-data-dir", "long-path-socket-elsewhere"])
def test_data_dir_and_socket_are_private_and_parents_untouched(base: Path, long_path: bool) -> None:
    parent = base / ("p" * 90 if long_path else "p")
    parent.mkdir(mode=0o711)
    data = parent / "pgdata"
    watched = [parent, base, *base.parents]
    before = {p: _mode(p) for p in watched}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        from pgserver.postgres_server import PostgresServer

    runtime = Path(PostgresServer.runtime_path)
    runtime_before = {p: _mode(p) for p in [runtime, *runtime.parents] if p.exists()}
    dsn = emb.embedded_dsn(data)
    _check_private(data, dsn)
    if long_path:  # the socket could not live in the data directory
        assert Path(conninfo_to_dict(dsn)["host"]).resolve() != data.resolve()
    assert {p: _mode(p) for p in watched} == before
    assert {p: _mode(p) for p in runtime_before} == runtime_before


def test_a_closed_parent_is_refused_as_root_and_kept_as_it_is(base: Path) -> None:
    closed = base / "closed"
    closed.mkdir(mode=0o700)
    data = closed / "inner" / "pgdata"
    if AS_ROOT:
        with pytest.raises(ConfigError) as info:
            emb.embedded_dsn(data)
        message = str(info.value)
        assert str(closed) in message and "WERK_EMBEDDED_DIR" in message and "WERK_DSN" in message
        assert not (closed / "inner").exists()  # nothing created, nothing loosened
    else:
        # an ordinary user's server runs as that user: a private parent is fine
        _check_private(data, emb.embedded_dsn(data))
    assert _mode(closed) == 0o700


def test_the_default_directory_as_root_with_a_private_home(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`werk demo` and `pytest` as root on a machine whose home is 0700 (the
    usual /root): the default data directory must be one the server's
    ``pgserver`` user can reach, or the README's two commands fail."""
    for name in ("WERK_EMBEDDED_DIR", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    home = base / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    in_home = home / ".local" / "share" / "werk-trio" / "pgdata"
    if AS_ROOT:
        assert emb.default_dir() == emb.ROOT_DIR
        in_home.mkdir(parents=True)  # one left from a run when the home was open: unreachable now
        assert emb.default_dir() == emb.ROOT_DIR
    else:
        assert emb.default_dir() == in_home
    home.chmod(0o711)
    shutil.rmtree(home / ".local", ignore_errors=True)
    assert emb.default_dir() == in_home  # a home others may pass through: the data stays there
    monkeypatch.setenv("WERK_EMBEDDED_DIR", str(base / "mine"))
    assert emb.default_dir() == base / "mine"
