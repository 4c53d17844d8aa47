"""Logging setup: text or JSON lines on the ``werk_trio`` logger.

:func:`configure_logging` is pgwerk's (level, format, color, fmt, datefmt,
logger_name); :data:`current_job` puts the running job's id, function and
attempt on every log record written while it runs (see
:func:`install_record_factory`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import threading
from typing import Any

from .config import mask_dsn

_HANDLER_MARK = "_werk_trio_handler"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and any ``extra`` fields."""

    _skip = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_dsn(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in self._skip and not key.startswith("_"):
                out[key] = value if isinstance(value, int | float | str | bool | None) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_dsn(super().format(record))


def setup_logging(level: str | int | None, fmt: str = "text", color: bool | None = None,
                  log_fmt: str | None = None) -> None:
    """Attach one stderr handler to ``werk_trio`` at ``level`` (None: do
    nothing): :func:`configure_logging` with ``fmt`` as its ``format``."""
    if level is None:
        return
    configure_logging(level, fmt, color, log_fmt)


# --- configure_logging: colour, custom formats, the running job on every record

#: The running job as every log record written while it runs sees it:
#: ``(job_id, function, attempt)``. Set by the runner around each job (hooks
#: included), carried into the thread of a thread executor and into the child
#: process of a process or fork executor.
current_job: contextvars.ContextVar[tuple[str, str, int] | None] = contextvars.ContextVar(
    "werk_trio_current_job", default=None
)

#: The record attributes set while a job runs (absent otherwise; the text
#: formatters of configure_logging give them defaults).
JOB_FIELDS = ("job_id", "job_function", "job_attempt", "job")

DEFAULT_FMT = "%(asctime)s %(levelname)-7s %(name)s: %(job)s%(message)s"
DEFAULT_DATEFMT = "%Y-%m-%d %H:%M:%S"

_RESET = "\x1b[0m"
_DIM = "\x1b[90m"
_LEVEL_COLORS = {
    logging.DEBUG: "\x1b[37m",
    logging.INFO: "\x1b[34m",
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[1;31m",
}
_FIELD_DEFAULTS: dict[str, Any] = {"job_id": "-", "job_function": "-", "job_attempt": "-", "job": ""}

#: The arguments of the last configure_logging() call in this process (None:
#: never called), so a worker's child processes log the same way.
active_setup: dict[str, Any] | None = None

_factory_lock = threading.Lock()
_factory_installed = False


def install_record_factory() -> None:
    """Wrap the logging record factory (once per process) so every record
    made while a job runs carries ``job_id``, ``job_function``, ``job_attempt``
    and ``job`` (a short ``[job 1a2b3c4d fn #1] `` label for text formats).
    Whatever factory was installed before keeps making the records."""
    global _factory_installed
    with _factory_lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            running = current_job.get()
            if running is not None:
                job_id, function, attempt = running
                record.job_id = job_id
                record.job_function = function
                record.job_attempt = attempt
                record.job = f"[job {job_id[:8]} {function} #{attempt}] "
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


def check_format(fmt: Any) -> str:
    """``fmt`` if it is a usable %-style logging format string, else ConfigError."""
    from .errors import ConfigError

    if not isinstance(fmt, str) or not fmt:
        raise ConfigError(f"log format string must be a non-empty str, got {fmt!r}")
    record = logging.LogRecord("werk_trio", logging.INFO, __file__, 1, "message", None, None)
    try:
        logging.Formatter(fmt, defaults=_FIELD_DEFAULTS).format(record)
    except (ValueError, KeyError, TypeError) as ex:
        raise ConfigError(
            f"log format string {fmt!r} does not format a record ({type(ex).__name__}: {ex}); "
            "use %-style fields such as '%(asctime)s %(levelname)s %(job_id)s %(message)s'"
        ) from None
    return fmt


def color_wanted(color: bool | None, stream: Any) -> bool:
    """``color`` if given; None: colour when ``stream`` is a TTY and NO_COLOR is unset."""
    if color is not None:
        return color
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class TextFormatter(MaskingFormatter):
    """Text lines with a format string (the job fields default to ``-``), DSN
    passwords masked, and optionally ANSI colour on the level, time and logger."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, *, color: bool = False) -> None:
        super().__init__(fmt or DEFAULT_FMT, datefmt or DEFAULT_DATEFMT, defaults=_FIELD_DEFAULTS)
        self.color = color

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        text = super().formatTime(record, datefmt)
        return f"{_DIM}{text}{_RESET}" if self.color else text

    def format(self, record: logging.LogRecord) -> str:
        if not self.color:
            return super().format(record)
        shown = logging.makeLogRecord(record.__dict__)
        shown.levelname = f"{_LEVEL_COLORS.get(record.levelno, '')}{record.levelname}{_RESET}"
        shown.name = f"{_DIM}{record.name}{_RESET}"
        return super().format(shown)


def configure_logging(
    level: int | str = logging.INFO,
    format: str = "text",  # pgwerk's parameter name
    color: bool | None = None,
    fmt: str | None = None,
    datefmt: str | None = None,
    logger_name: str = "werk_trio",
) -> None:
    """Send ``logger_name``'s records (and its children's: ``werk_trio.worker``
    ...) to stderr, as pgwerk's ``configure_logging``.

    ``level``: a level number or name. ``format``: ``"text"`` or ``"json"``
    (one object per line; the job fields are keys). ``color``: ANSI colour in
    text lines -- None (default) when stderr is a TTY and ``NO_COLOR`` is
    unset, True always, False never. ``fmt``: a %-style format string for
    text (default :data:`DEFAULT_FMT`); besides the standard fields,
    ``%(job_id)s``, ``%(job_function)s``, ``%(job_attempt)s`` and ``%(job)s``
    (a short label, empty outside jobs). ``datefmt``: strftime format of
    ``%(asctime)s``. Calling it again replaces the handler it installed.
    Every record made while a job runs -- in any logger, in every executor,
    child processes included -- carries the job fields. Invalid arguments
    raise ConfigError and change nothing.
    """
    global active_setup
    from .errors import ConfigError

    if isinstance(level, bool) or not isinstance(level, int | str):
        raise ConfigError(f"level must be a logging level such as 'INFO', got {level!r}")
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        if not isinstance(number, int):
            raise ConfigError(f"level must be a logging level such as 'INFO', got {level!r}")
        level = number
    if format not in ("text", "json"):
        raise ConfigError(f"format must be 'text' or 'json', got {format!r}")
    if color is not None and not isinstance(color, bool):
        raise ConfigError(f"color must be True, False or None (auto), got {color!r}")
    if fmt is not None:
        check_format(fmt)
    if datefmt is not None and not isinstance(datefmt, str):
        raise ConfigError(f"datefmt must be a strftime format string, got {datefmt!r}")
    if not isinstance(logger_name, str):
        raise ConfigError(f"logger_name must be a logger name, got {logger_name!r}")
    install_record_factory()
    logger = logging.getLogger(logger_name)
    logger.setLevel(level)
    for old in list(logger.handlers):
        if getattr(old, _HANDLER_MARK, False):
            logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    if format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(TextFormatter(fmt, datefmt, color=color_wanted(color, sys.stderr)))
    logger.addHandler(handler)
    logger.propagate = False
    active_setup = {"level": level, "format": format, "color": color, "fmt": fmt, "datefmt": datefmt,
                    "logger_name": logger_name}
