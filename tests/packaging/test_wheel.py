"""The wheel is whole: built from the sdist, installed outside the repository, it runs.

One test builds the sdist and, from it, the wheel (``python -m build``), in a
copy of the source tree so the repository is left untouched; installs the
wheel with its ``web`` extra into a fresh virtual environment (no system site
packages: the repository's editable install must not be what answers) in a
directory outside the repository; and from that environment, with no
PYTHONPATH and another working directory, runs ``werk --version`` and
``python -m werk_trio --version``, ``werk migrate`` on an empty schema,
``werk demo``, a burst ``werk worker`` draining a job, and ``werk api`` serving
the dashboard page and every asset it links. A file of the package that the
wheel leaves out (a package-data entry missing) fails the file-list check, and
the migrations and assets fail their steps.

The dependencies come from PyPI through pip (its cache makes repeated runs
quick); nothing else is fetched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import psycopg
import pytest

import werk_trio

REPO = Path(__file__).resolve().parents[2]

APP_MODULE = '''\
import os

from werk_trio import Werk

app = Werk(os.environ["WHEEL_DSN"], schema=os.environ["WHEEL_SCHEMA"], task_modules=["wheel_app"])


@app.task
async def double(n: int) -> int:
    return 2 * n
'''


def _run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _ignore(directory: str, names: list[str]) -> set[str]:
    skip = {".git", "__pycache__", "build", "dist", ".pytest_cache", ".mypy_cache", ".ruff_cache", "site",
            ".werk"}
    return {n for n in names if n in skip or n.endswith(".egg-info")}


def _package_files() -> set[str]:
    """Every file of the werk_trio package in the source tree, as wheel paths."""
    out = set()
    for path in (REPO / "werk_trio").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            out.add(path.relative_to(REPO).as_posix())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as ex:
        return ex.code, ex.read()


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repository(tmp_path: Path, dsn: str, schema: str) -> None:
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=_ignore)
    dist = tmp_path / "dist"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WERK_DSN", "DATABASE_URL")}
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)], cwd=tmp_path, env=clean,
         timeout=600)

    version = werk_trio.__version__
    wheels = list(dist.glob("*.whl"))
    assert [w.name for w in wheels] == [f"werk_trio-{version}-py3-none-any.whl"]
    assert (dist / f"werk_trio-{version}.tar.gz").is_file()
    with zipfile.ZipFile(wheels[0]) as zf:
        in_wheel = set(zf.namelist())
    missing = _package_files() - in_wheel
    assert not missing, f"files of werk_trio/ left out of the wheel (package-data?): {sorted(missing)}"

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=clean)
    bin_ = venv / "bin"
    _run([str(bin_ / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
          f"{wheels[0]}[web]"], cwd=tmp_path, env=clean, timeout=600)

    home = tmp_path / "home"
    home.mkdir()
    (home / "wheel_app.py").write_text(APP_MODULE)
    env = {**clean, "WHEEL_DSN": dsn, "WHEEL_SCHEMA": schema, "WERK_DSN": dsn, "NO_COLOR": "1"}
    py, werk = str(bin_ / "python"), str(bin_ / "werk")

    where = _run([py, "-c", "import werk_trio; print(werk_trio.__file__)"], cwd=home, env=env)
    assert Path(where.strip()).is_relative_to(venv), where
    assert _run([werk, "--version"], cwd=home, env=env).strip() == f"werk {version}"
    assert _run([py, "-m", "werk_trio", "--version"], cwd=home, env=env).strip() == f"werk {version}"

    # a migration from an empty database: the schema does not exist yet
    _run([werk, "migrate", "wheel_app:app"], cwd=home, env=env)
    n_migrations = len([n for n in in_wheel if re.fullmatch(r"werk_trio/sql/migrations/\d{4}_\w+\.sql", n)])
    assert n_migrations >= 1
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))}
    assert any(t.endswith("jobs") for t in tables), tables

    # the demo, in a schema of its own (dropped with this test's: it lives under the same name + _demo)
    demo_schema = f"{schema}_demo"
    try:
        out = _run([werk, "demo", "--jobs", "40", "--dsn", dsn, "--schema", demo_schema], cwd=home, env=env)
        assert "40" in out, out
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                psycopg.sql.Identifier(demo_schema)))

    # a worker drains a job enqueued from the command line
    _run([werk, "enqueue", "wheel_app:app", "wheel_app.double", "--args", "[21]"], cwd=home, env=env)
    _run([werk, "worker", "wheel_app:app", "--burst"], cwd=home, env=env)
    rows = [json.loads(line) for line in _run([werk, "jobs", "wheel_app:app", "--json"], cwd=home, env=env)
            .splitlines() if line.strip()]
    assert [(r["function"], r["status"]) for r in rows] == [("wheel_app.double", "complete")], rows
    shown = _run([werk, "job", "show", "wheel_app:app", rows[0]["id"], "--json"], cwd=home, env=env)
    assert json.loads(shown)["result"] == 42, shown

    # werk api serves the dashboard page and every asset it links
    port = _free_port()
    log = home / "api.log"
    with log.open("w") as out, subprocess.Popen([werk, "api", "wheel_app:app", "--port", str(port)], cwd=home,
                                                env=env, stdout=out, stderr=subprocess.STDOUT) as server:
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:  # wait for the server to answer (a condition, with an absolute deadline)
                assert server.poll() is None, log.read_text()
                try:
                    if _get(base + "/api/health")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "werk api did not answer within 60 s"
                time.sleep(0.1)
            status, page = _get(base + "/")
            assert status == 200, page[:500]
            html = page.decode()
            assets = sorted(set(re.findall(r'(?:src|href)="(/[^"#]+)"', html)))
            assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets), assets
            for asset in assets:
                status, body = _get(base + asset)
                assert status == 200 and body, (asset, status)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)
