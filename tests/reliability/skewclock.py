"""Run a Python program whose wall clock is off by some seconds.

``install(offset)`` makes ``time.time``, ``time.time_ns`` and
``datetime.datetime.now/utcnow/today`` (and ``datetime.date.today``) return
the real time plus ``offset`` seconds. It must run before werk_trio is
imported (werk_trio binds ``time.time_ns`` for its job ids at import).

As an entry point it installs the offset, then runs the ``werk`` command
line with the remaining arguments::

    python -m tests.reliability.skewclock 3600 worker tests.reliability.relapp:app ...

The monotonic clocks (``time.monotonic``, Trio's clock) are left alone: they
have no epoch, so no program can be "an hour off" on them.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from typing import Any

__all__ = ["install"]


def install(offset: float) -> None:
    real_time, real_time_ns = time.time, time.time_ns
    offset_ns = int(offset * 1_000_000_000)

    def skewed_time() -> float:
        return real_time() + offset

    def skewed_time_ns() -> int:
        return real_time_ns() + offset_ns

    real_datetime, real_date = _dt.datetime, _dt.date

    class SkewedDatetime(real_datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real_datetime.now(tz) + _dt.timedelta(seconds=offset)

        @classmethod
        def utcnow(cls) -> Any:
            return real_datetime.now(_dt.UTC).replace(tzinfo=None) + _dt.timedelta(seconds=offset)

        @classmethod
        def today(cls) -> Any:
            return cls.now()

    class SkewedDate(real_date):
        @classmethod
        def today(cls) -> Any:
            return (real_datetime.now() + _dt.timedelta(seconds=offset)).date()

    time.time = skewed_time
    time.time_ns = skewed_time_ns
    _dt.datetime = SkewedDatetime  # type: ignore[misc]
    _dt.date = SkewedDate  # type: ignore[misc]


def main(argv: list[str]) -> int:
    offset = float(argv[0])
    install(offset)
    from werk_trio.cli import main as werk_main

    return werk_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
