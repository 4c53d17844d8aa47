"""What every ``werk`` command shares: loading the APP, the log and output
options, the rich console, safe printing of untrusted text, and running a
command's coroutine against a connected Werk.

Exit statuses: 0 done, 1 a runtime failure or nothing matched
(:class:`Failed`), 2 a usage error (bad flag, bad APP, bad value).
"""

from __future__ import annotations

import contextvars
import importlib
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import click
import trio
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import ConfigError, WerkError

__all__ = [
    "DEBUG",
    "Failed",
    "app_argument",
    "comma_list",
    "connected",
    "dump_json",
    "emit_json",
    "first_line",
    "job_dict",
    "json_option",
    "load_app",
    "log_options",
    "make_console",
    "run",
    "safe",
    "seconds_ago",
    "table",
    "when",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Set by ``--log-level DEBUG``: errors then show their traceback.
DEBUG: contextvars.ContextVar[bool] = contextvars.ContextVar("werk_cli_debug", default=False)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Failed(click.ClickException):
    """A runtime failure or nothing matched: one line on stderr, exit status 1."""

    exit_code = 1


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` and return the Werk it names."""
    from ..app import Werk

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"APP must be 'module:attribute' (e.g. 'myapp.tasks:app'), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as ex:
        raise ConfigError(f"cannot import {module_name!r} (from APP {spec!r}): {ex}") from ex
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Werk):
        obj = obj()
    if not isinstance(obj, Werk):
        raise ConfigError(f"{spec} is a {type(obj).__name__}, not a Werk")
    return obj


# --- options --------------------------------------------------------------------


def _set_debug(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value.upper() == "DEBUG":
        DEBUG.set(True)
    return value.upper()


def log_options(default_level: str = "WARNING") -> Callable[[F], F]:
    """``-l/--log-level``, ``--log-format`` and ``--no-color`` (pgwerk's flags)."""

    def deco(f: F) -> F:
        f = click.option("--no-color", is_flag=True,
                         help="No colour in output or logs (NO_COLOR is honoured too).")(f)  # fmt: skip
        f = click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
                         show_default=True, help="Log lines as text or JSON objects.")(f)  # fmt: skip
        f = click.option("-l", "--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
                         default=default_level, show_default=True, callback=_set_debug, is_eager=True,
                         help="Log level; DEBUG also shows tracebacks of errors.")(f)  # fmt: skip
        return f

    return deco


def app_argument(f: F) -> F:
    return click.argument("app", metavar="APP")(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")(f)


def comma_list(value: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


# --- running --------------------------------------------------------------------


def run(spec: str, log_level: str, log_format: str, body: Callable[[Any], Awaitable[Any]],
        *, connect: bool = True, no_color: bool = False) -> Any:  # fmt: skip
    """Load APP, set up logging (no colour with ``no_color``, else colour on a
    terminal), and run ``body(app)`` under Trio (the app connected first
    unless ``connect`` is false)."""
    from .._logging import setup_logging

    color = False if no_color else None
    setup_logging(log_level, log_format, color)
    app = load_app(spec)
    setup_logging(log_level, log_format, color)  # importing APP may have set up its own

    async def main() -> Any:
        if not connect:
            return await body(app)
        async with connected(app):
            return await body(app)

    return trio.run(main)


class connected:
    """``async with connected(app):`` -- like ``async with app``, but a failure
    to connect is a runtime error (exit 1), not a usage error."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __aenter__(self) -> Any:
        try:
            await self.app.connect()
        except WerkError as ex:
            raise Failed(str(ex)) from ex
        return self.app

    async def __aexit__(self, *exc: object) -> None:
        await self.app.disconnect()


# --- output ---------------------------------------------------------------------

# C0 and C1 controls, DEL, zero-width and bidirectional formatting characters,
# line/paragraph separators, the BOM and lone surrogates: everything that could
# move the cursor, retitle the terminal, hide or reorder text, or fail to encode.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: Any) -> str:
    """``value`` as text with every control character escaped (``\\x1b``), for
    names, errors and other text that came from a row."""
    return _UNSAFE.sub(_escape, "" if value is None else str(value))


def first_line(text: str | None) -> str:
    """The line of an error that says what went wrong, escaped: its first
    non-empty line, or for a traceback the exception line at its end."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback"):
        frames = [i for i, line in enumerate(lines) if line.startswith("  File ")]
        after = lines[frames[-1] + 1:] if frames else lines[1:]
        lines = [line for line in after if not line[:1].isspace()] or lines
    return safe(lines[0].strip()) if lines else ""


def make_console(no_color: bool = False, stderr: bool = False) -> Console:
    """A console on stdout (or stderr): colour only on a terminal and without
    NO_COLOR / ``--no-color``; no markup parsing, so data prints literally; wide
    when not a terminal, so piped tables do not wrap."""
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    return Console(
        file=stream, markup=False, highlight=False, emoji=False,
        no_color=no_color or bool(os.environ.get("NO_COLOR")) or None,
        width=None if terminal else 200, force_terminal=None,
    )  # fmt: skip


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
          *, right: Iterable[str] = (), no_wrap: bool = False) -> Table:  # fmt: skip
    """A rich table; every cell is escaped text (numbers right-aligned);
    ``no_wrap``: cells cut with an ellipsis instead of wrapped."""
    justify_right = set(right)
    t = Table(title=title, title_justify="left", header_style="bold", expand=False)
    for col in columns:
        justify: Any = "right" if col in justify_right else "left"
        t.add_column(col, justify=justify, no_wrap=no_wrap or col in ("id", "worker"),
                     overflow="ellipsis" if no_wrap else "fold")
    for row in rows:
        t.add_row(*(cell if hasattr(cell, "__rich_console__") else Text(safe(cell)) for cell in row))
    return t


def dump_json(obj: Any) -> str:
    """One line of JSON; non-ASCII and control characters escaped."""
    return json.dumps(obj, default=_json_default, sort_keys=False)


def emit_json(objects: Iterable[Any]) -> int:
    n = 0
    for obj in objects:
        click.echo(dump_json(obj))
        n += 1
    return n


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value"):  # enums
        return value.value
    return str(value)


#: The mark of a count that is an estimate (the ``estimated`` statuses of
#: ``get_queue_stats`` and ``list_queues``), and the line that explains it.
ESTIMATE_MARK = "~"
ESTIMATE_NOTE = f"{ESTIMATE_MARK} an estimate: more than estimate_limit jobs, counted by the planner"


def shown_count(n: Any, estimated: bool) -> str:
    """A count as a table shows it: ``~1000000`` for an estimate."""
    return f"{ESTIMATE_MARK if estimated else ''}{n}"


def when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def seconds_ago(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def job_dict(job: Any) -> dict[str, Any]:
    """The fields of a job that listings show (``--json`` and tables)."""
    duration = None
    if job.started_at is not None and job.completed_at is not None:
        duration = (job.completed_at - job.started_at).total_seconds()
    return {
        "id": str(job.id), "function": job.function, "queue": job.queue, "status": job.status.value,
        "priority": job.priority, "attempts": job.attempts, "max_attempts": job.max_attempts,
        "enqueued_at": job.enqueued_at, "scheduled_at": job.scheduled_at, "started_at": job.started_at,
        "completed_at": job.completed_at, "duration": duration, "key": job.key,
        "worker_id": None if job.worker_id is None else str(job.worker_id), "error": job.error,
    }  # fmt: skip
