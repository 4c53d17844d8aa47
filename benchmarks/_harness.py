"""Shared pieces of the benchmarks: which server, a fresh schema, timing, the table.

* Server: ``--dsn``, else ``WERK_BENCH_DSN``, else :data:`DEFAULT_DSN` (a local
  Postgres with durable commits). Benchmarks never start the embedded Postgres
  on their own: numbers are only comparable on a server you chose.
* Schema: every run works in a schema of its own (``werk_bench_<random>``),
  created at the start and dropped at the end, so runs never see each other's
  rows and nothing is left behind.
* Timing: each measurement runs ``--runs`` times (interleaved with the others,
  so slow drift of the machine hits every row alike); the table shows the
  median rate, the spread, the ratio to the section's baseline and the extra
  microseconds per item, each taken per run (the baseline is measured in the
  same run against the same server) and reported as the median over runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

import psycopg
from psycopg import sql

__all__ = [
    "DEFAULT_DSN",
    "Results",
    "arg_parser",
    "atimed",
    "completed_span",
    "fresh_schema",
    "load_note",
    "resolve_dsn",
    "run_peers",
    "server_info",
    "timed",
]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def arg_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--dsn",
        default=None,
        help=f"Postgres to measure against (default: $WERK_BENCH_DSN, else {DEFAULT_DSN})",
    )
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measurement (median)")
    return parser


def resolve_dsn(arg: str | None) -> str:
    """``--dsn``, else ``WERK_BENCH_DSN``, else :data:`DEFAULT_DSN`."""
    return arg or os.environ.get("WERK_BENCH_DSN") or DEFAULT_DSN


def server_info(dsn: str) -> str:
    """One line naming the server and whether commits are durable."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
        fsync = conn.execute("SHOW fsync").fetchone()[0]  # type: ignore[index]
        where = f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}"
    return f"PostgreSQL {version} at {where} (synchronous_commit={sync}, fsync={fsync})"


def load_note(when: str) -> str:
    """The machine's load average, flagged when other work competes with the run."""
    one, five, _ = os.getloadavg()
    cores = os.cpu_count() or 1
    busy = "  <- busy machine: numbers are noisy, rerun when idle" if one > cores / 2 else ""
    return f"load average {when}: {one:.2f} (1 min), {five:.2f} (5 min) on {cores} cores{busy}"


@contextmanager
def fresh_schema(dsn: str, prefix: str = "werk_bench") -> Iterator[str]:
    """A new, empty schema for this run; dropped (CASCADE) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))


def timed(func: Callable[..., object], *args: Any) -> float:
    """Seconds ``func(*args)`` took (wall clock)."""
    start = time.perf_counter()
    func(*args)
    return time.perf_counter() - start


async def atimed(func: Callable[..., Awaitable[object]], *args: Any) -> float:
    """Seconds ``await func(*args)`` took (wall clock); works on Trio and asyncio."""
    start = time.perf_counter()
    await func(*args)
    return time.perf_counter() - start


@dataclass
class _Row:
    section: str
    name: str
    unit: str
    baseline: bool
    rates: list[float] = field(default_factory=list)
    note: str = ""


def _paired(rates: list[float], base: list[float]) -> tuple[float, float]:
    """(ratio, extra microseconds per item) against the baseline: the median of
    the per-run values when both have one rate per run (run i of each was
    measured side by side), else from the medians."""
    pairs = list(zip(rates, base, strict=True)) if len(rates) == len(base) else []
    if not pairs:
        pairs = [(statistics.median(rates), statistics.median(base))]
    ratio = statistics.median(a / b for a, b in pairs)
    extra = statistics.median(1e6 / a - 1e6 / b for a, b in pairs)
    return ratio, extra


class Results:
    """Rates collected per (section, name); printed as one table per section.

    Each section has one baseline row; every other row shows its ratio to the
    baseline and its extra time per item, each the median over the runs of that
    run's value (the rows of one run were measured side by side).
    """

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], _Row] = {}
        self._skipped: list[str] = []

    def declare(self, section: str, name: str, unit: str, *, baseline: bool = False, note: str = "") -> None:
        """Fix a row's place in the table (rows print in declaration order)."""
        key = (section, name)
        if key not in self._rows:
            self._rows[key] = _Row(section, name, unit, baseline, note=note)

    def add(self, section: str, name: str, count: int, seconds: float) -> None:
        """Record one run: ``count`` things done in ``seconds``."""
        self._rows[(section, name)].rates.append(count / seconds)

    def skip(self, what: str) -> None:
        self._skipped.append(what)

    def median(self, section: str, name: str) -> float:
        return statistics.median(self._rows[(section, name)].rates)

    def print(self, file: TextIO | None = None) -> None:
        out = file or sys.stdout
        sections: dict[str, list[_Row]] = {}
        for row in self._rows.values():
            if row.rates:
                sections.setdefault(row.section, []).append(row)
        for section, rows in sections.items():
            base = next((r for r in rows if r.baseline), None)
            width = max(len(r.name) for r in rows)
            print(f"\n## {section}", file=out)
            header = f"{'':<{width}}  {'median':>12}  {'unit':<7}  {'min..max':>19}  {'runs':>4}  x baseline"
            header += "  us/item vs baseline"
            print(header, file=out)
            print("-" * len(header), file=out)
            for r in rows:
                med = statistics.median(r.rates)
                spread = f"{min(r.rates):,.0f}..{max(r.rates):,.0f}"
                line = f"{r.name:<{width}}  {med:>12,.0f}  {r.unit:<7}  {spread:>19}  {len(r.rates):>4}"
                if r.baseline:
                    line += f"  {'baseline':>10}"
                elif base is not None:
                    ratio, extra = _paired(r.rates, base.rates)
                    line += f"  {ratio:>9.2f}x  {extra:>+18.1f}"
                print(line + (f"  ({r.note})" if r.note else ""), file=out)
        for what in self._skipped:
            print(f"\nskipped: {what}", file=out)


async def completed_span(app: Any, schema: str, expected: int) -> float:
    """Seconds from the first job's start to the last job's completion on the
    database clock, over the complete jobs of ``app``'s table in ``schema``
    (asserting there are ``expected`` of them): a drain rate without the
    worker's own start-up (process pools, interpreters) in it."""
    span = sql.SQL(
        "SELECT count(*), extract(epoch FROM max(completed_at) - min(started_at)) FROM {}"
        " WHERE status = 'complete'"
    ).format(sql.Identifier(schema, f"{app.config.prefix}_jobs"))
    async with app.connection() as conn:
        cur = await conn.execute(span)
        row = await cur.fetchone()
    assert row is not None and row[0] == expected and row[1] is not None, row
    return float(row[1])


def add_peer_options(parser: argparse.ArgumentParser, peers: dict[str, Any]) -> None:
    """``--no-peers`` and ``--peers a,b`` (a subset of ``peers``, in that order)."""
    names = ", ".join(peers)
    parser.add_argument("--no-peers", action="store_true", help=f"skip every peer ({names})")
    parser.add_argument("--peers", default=",".join(peers),
                        help=f"comma-separated peers to run (default: all of {names})")


def chosen_peers(peers: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The peers ``--peers`` names; exits 2 naming an unknown one."""
    wanted = [name.strip() for name in args.peers.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in peers]
    if unknown:
        raise SystemExit(f"--peers: unknown peer(s) {', '.join(unknown)}; choose from {', '.join(peers)}")
    return {name: peers[name] for name in wanted}


def run_peers(peers: dict[str, Any], skip_all: bool, results: Results, *args: Any) -> None:
    """Run each peer's ``measure(*args)`` in its own asyncio loop; a peer that
    is not installed, skipped (``skip_all``: ``--no-peers``) or that fails is
    listed as skipped, never hiding werk's numbers."""
    import asyncio

    for name, measure in peers.items():
        if skip_all:
            results.skip(f"{name} (--no-peers)")
            continue
        try:
            __import__(name)
        except ImportError:
            results.skip(f"{name} (not installed: pip install -e '.[bench]')")
            continue
        try:
            asyncio.run(measure(*args))
        except Exception as ex:  # a peer's failure must not hide werk's numbers
            results.skip(f"{name} failed: {type(ex).__name__}: {ex}")
