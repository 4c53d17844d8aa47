"""Logging setup: text or JSON lines on the ``werk_trio`` logger."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from .config import mask_secrets

_HANDLER_MARK = "_werk_trio_handler"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and any ``extra`` fields."""

    _skip = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_secrets(record.getMessage()),
        }
        # the whole record is masked: extras and the traceback may quote a DSN too
        for key, value in record.__dict__.items():
            if key not in self._skip and not key.startswith("_"):
                if isinstance(value, int | float | bool | None):
                    out[key] = value
                else:
                    out[key] = mask_secrets(value if isinstance(value, str) else str(value))
        if record.exc_info:
            out["exc"] = mask_secrets(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = mask_secrets(self.formatStack(record.stack_info))
        return json.dumps(out, default=str)


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


def setup_logging(level: str | int | None, fmt: str = "text") -> None:
    """Attach one stderr handler to ``werk_trio`` at ``level`` (None: do nothing)."""
    if level is None:
        return
    logger = logging.getLogger("werk_trio")
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
