"""Every SQL statement of werk_trio, named, and the migrations.

Statements are templates whose only substitutions are table and index names,
filled through :class:`psycopg.sql.Identifier` from a validated schema and
prefix; values always travel as query parameters. :class:`Statements` renders
every template once per app, so the hot path executes ready strings.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from psycopg import sql

from ..config import check_name
from . import queries

__all__ = ["TABLES", "Migration", "Statements", "array_literal", "listen", "migrations"]

TABLES = (
    "jobs", "executions", "workers", "job_deps", "migrations", "queue_samples", "throughput",
    "finished_counts", "stats_marks", "cron_schedules", "cron_lease",
    # flow control (0004): the queue controls and the rate windows
    "queues", "rate_log",
    # the finished rows removed since the last recount (0005)
    "finished_removed",
)
#: Functions of the schema, named (and schema-qualified) like the tables.
FUNCTIONS = ("meta_part", "finished_gone", "finished_requeued")

#: Longest channel base that leaves room for the "_jobs" / "_done" suffix
#: within Postgres' 63-byte identifier limit.
_MAX_CHANNEL_BASE = 63 - len("_jobs")


def array_literal(values: Any) -> str:
    """A Postgres array literal (``{"a","b"}``) for a ``%(x)s::uuid[]`` or
    ``::text[]`` parameter: one text value instead of psycopg's element-by-element
    list dumping, which cost ~0.3 ms per 100 UUIDs on the completer's hot path."""
    parts = []
    for value in values:
        text = str(value).replace("\\", "\\\\").replace('"', '\\"')
        parts.append(f'"{text}"')
    return "{" + ",".join(parts) + "}"


def listen(channel: str) -> sql.Composed:
    """``LISTEN "channel"``: the one statement whose name is not a table's (the
    channel is quoted as an identifier, like every name in these statements)."""
    return sql.SQL("LISTEN {channel}").format(channel=sql.Identifier(channel))


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    template: str


def migrations() -> list[Migration]:
    """The numbered migrations shipped in ``sql/migrations``, in order."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    assert versions == list(range(1, len(found) + 1)), f"migrations must be numbered 1..n: {versions}"
    return found


class Statements:
    """All statements rendered for one schema and table prefix."""

    def __init__(self, schema: str | None, prefix: str) -> None:
        check_name("table prefix", prefix)
        if schema is not None:
            check_name("schema name", schema)
        self.schema = schema
        self.prefix = prefix
        self.idents: dict[str, sql.Composable] = {}
        for table in TABLES + FUNCTIONS:
            name = f"{prefix}_{table}"
            self.idents[table] = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        #: NOTIFY channels: new jobs (payload: queue) and finished jobs (payload: id).
        base = f"{schema}.{prefix}" if schema else prefix
        if len(base) > _MAX_CHANNEL_BASE:
            # Postgres refuses channel names of 64 bytes or more (pg_notify
            # raises, LISTEN truncates): long names get a stable digest instead.
            base = "werk_" + hashlib.sha256(base.encode()).hexdigest()[:32]
        self.jobs_channel = f"{base}_jobs"
        self.done_channel = f"{base}_done"
        #: Flow control: queue controls changed (``queue:<name>``) and jobs due
        #: later (``due:<epoch seconds>:<queue>``).
        self.control_channel = f"{base}_ctl"
        self._rendered: dict[str, str] = {}
        for name in dir(queries):
            if name.isupper() and isinstance(getattr(queries, name), str):
                self._rendered[name] = self.render(getattr(queries, name))
        # Plain instance attributes: a lookup that reaches __getattr__ first
        # fails the normal way (an AttributeError raised and caught), ~1 us
        # each on the hot paths.
        self.__dict__.update(self._rendered)

    def render(self, template: str) -> str:
        """Fill the ``{table}`` and ``{name_idx}`` placeholders of ``template``."""
        names = set(re.findall(r"\{(\w+)\}", template))
        fill: dict[str, sql.Composable] = {}
        for name in names:
            if name in self.idents:
                fill[name] = self.idents[name]
            elif name == "schema":
                fill[name] = sql.Identifier(self.schema or "public")
            else:  # indexes and constraints live in their table's schema: unqualified
                fill[name] = sql.Identifier(f"{self.prefix}_{name}")
        return sql.SQL(template).format(**fill).as_string(None)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._rendered[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def lock_key(self) -> str:
        """Text whose hash is the migration advisory-lock key."""
        return f"werk_trio:{self.schema or ''}:{self.prefix}"

    @property
    def schema_lock_key(self) -> str:
        """Text whose hash is the advisory-lock key serialising CREATE SCHEMA."""
        return f"werk_trio:schema:{self.schema or ''}"
