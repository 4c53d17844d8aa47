"""Handlers the hostile-row suite's rows name (``tests/reliability/test_hostile_rows.py``).
They live under ``tests``, which ``tests.procapp:app`` allows."""

from __future__ import annotations

from typing import Any

__all__ = ["fail", "ok"]


def ok(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Echo what the row's payload decoded to."""
    return {"args": list(args), "kwargs": kwargs}


def fail(*args: Any, **kwargs: Any) -> None:
    """Fail every attempt: a row's retry intervals are then used."""
    raise RuntimeError("this handler always fails")
