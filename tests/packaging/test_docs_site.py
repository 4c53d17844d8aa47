"""The documentation site builds in strict mode, and strict mode catches what it should.

``mkdocs build --strict`` (mkdocs.yml: MkDocs, the Material theme,
mkdocstrings for the reference) must succeed on the tree as it is; every public
name of werk_trio (``__all__``) must be in docs/reference.md; and the same build
of a copy with a broken page link and a reference to a name that does not
exist must fail naming both -- so a later broken link or a renamed API fails
the suite, not a reader.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import werk_trio

REPO = Path(__file__).resolve().parents[2]
# the web extra's names are imported lazily by werk_trio.__getattr__: documented at their home
LAZY = {"create_app": "werk_trio.web.create_app", "DatabaseMetrics": "werk_trio.web.DatabaseMetrics",
        "WorkerMetrics": "werk_trio.metrics.WorkerMetrics"}


def _build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(root), NO_MKDOCS_2_WARNING="1", NO_COLOR="1")
    config = str(root / "mkdocs.yml")
    args = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config, "-d", str(site)]
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)


def test_every_public_name_is_in_the_reference() -> None:
    text = (REPO / "docs" / "reference.md").read_text()
    documented = set(re.findall(r"^::: (\S+)$", text, re.MULTILINE))
    missing = [n for n in werk_trio.__all__ if LAZY.get(n, f"werk_trio.{n}") not in documented]
    assert not missing, f"public names missing from docs/reference.md: {missing}"


def test_the_site_builds_strict(tmp_path: Path) -> None:
    done = _build(REPO, tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    for name in werk_trio.__all__:
        anchor = LAZY.get(name, f"werk_trio.{name}")
        assert f'id="{anchor}"' in reference, f"{anchor} not rendered in the reference"
    # the figures are the reliability suite's own, included at build time
    assert "Infrastructure faults" in (tmp_path / "site" / "reliability" / "index.html").read_text()


def test_a_broken_link_or_reference_fails_the_build(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copytree(REPO / "werk_trio", root / "werk_trio", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    for readme in ("tests/reliability/README.md", "benchmarks/README.md"):
        (root / readme).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / readme, root / readme)
    assert _build(root, tmp_path / "ok").returncode == 0  # the copy alone builds

    with (root / "docs" / "index.md").open("a") as f:
        f.write("\nSee [the missing page](guides/no-such-page.md) and [`Nope`][werk_trio.NoSuchName].\n")
    done = _build(root, tmp_path / "broken")
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "no-such-page.md" in out and "werk_trio.NoSuchName" in out, out
