"""Every code block is a test: each ```python block of docs/**/*.md and README.md runs.

The blocks are extracted mechanically (a fence line that is exactly
```` ```python ````, up to the closing fence). Each runs as a program of its own
in a fresh process, against the test server in a fresh schema of its own: the
process gets ``WERK_DSN`` with ``search_path`` set to that schema, so the
documentation's ``Werk()`` (no DSN) lands there. A block must exit 0 within
its time limit.

A block that cannot run here (it needs a server of its own, runs forever, or
is a fragment of a program shown whole elsewhere) is marked with an HTML
comment on the line right before its fence::

    <!-- not-run: why, and how it is checked instead -->

and the mark's reason is required (an empty or token reason fails, and so does
a mark that is not followed by a ```python block).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

REPO = Path(__file__).resolve().parents[2]
NOT_RUN = re.compile(r"^<!--\s*not-run:(?P<reason>.*?)-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    not_run: str | None  # the mark's reason, or None


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            assert j < len(lines), f"{path}:{start + 1}: unclosed ```python block"
            prev = next((lines[k].strip() for k in range(start - 1, -1, -1) if lines[k].strip()), "")
            mark = NOT_RUN.match(prev)
            yield Block(path, start + 1, textwrap.dedent("\n".join(lines[start + 1 : j])) + "\n",
                        mark.group("reason").strip() if mark else None)
            i = j + 1
        else:
            i += 1


ALL = [b for p in markdown_files() for b in blocks(p)]
RUN = [b for b in ALL if b.not_run is None]


def _id(block: Block) -> str:
    return f"{block.path.relative_to(REPO)}:{block.line}"


def test_the_documentation_has_examples_and_most_run() -> None:
    assert len(ALL) >= 20, [_id(b) for b in ALL]
    assert len(RUN) > len(ALL) / 2, "most examples must run, not be marked not-run"


def test_every_not_run_mark_has_a_reason_and_a_block() -> None:
    for path in markdown_files():
        lines = path.read_text().splitlines()
        for n, line in enumerate(lines):
            mark = NOT_RUN.match(line.strip())
            if mark is None:
                malformed = line.strip().startswith("<!--") and "not-run" in line
                assert not malformed, f"{path}:{n + 1}: malformed not-run mark {line!r}"
                continue
            reason = mark.group("reason").strip()
            assert len(reason.split()) >= 4, f"{path}:{n + 1}: a not-run mark needs a reason, got {reason!r}"
            following = next((x.strip() for x in lines[n + 1 :] if x.strip()), "")
            assert following == "```python", f"{path}:{n + 1}: a not-run mark must come right before a block"


@pytest.fixture
def block_dsn(dsn: str, schema: str) -> str:
    """The test DSN with search_path on this test's (fresh, created) schema."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(schema)))
    return make_conninfo(dsn, options=f"-csearch_path={schema}")


@pytest.mark.parametrize("block", RUN, ids=_id)
def test_example_runs(block: Block, block_dsn: str, tmp_path: Path) -> None:
    script = tmp_path / f"example_{uuid.uuid4().hex[:8]}.py"
    script.write_text(block.code)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(WERK_DSN=block_dsn, PYTHONPATH=str(REPO), NO_COLOR="1")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, (
        f"{_id(block)} exited {done.returncode}\n--- code\n{block.code}--- stdout\n{done.stdout}"
        f"--- stderr\n{done.stderr}"
    )
