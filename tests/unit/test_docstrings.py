"""Every public coroutine function says what a cancel leaves behind (issue 19).

The coroutine functions werk_trio defines on its public names (``__all__``:
functions, and the methods of classes, inherited ones included), plus
``werk_trio.testing`` and ``werk_trio.web.serve``, must each have a docstring
that speaks of cancellation -- as trio documents its own. Methods inherited
from psycopg (``Connection``) are psycopg's to document.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import werk_trio
import werk_trio.testing
import werk_trio.web


def _public_coroutines() -> Iterator[tuple[str, Any]]:
    roots: list[tuple[str, Any]] = [(n, getattr(werk_trio, n)) for n in werk_trio.__all__]
    roots += [(f"testing.{n}", getattr(werk_trio.testing, n)) for n in werk_trio.testing.__all__]
    roots.append(("web.serve", werk_trio.web.serve))
    for name, obj in roots:
        members = [(name, obj)]
        if inspect.isclass(obj):
            members = [(f"{name}.{k}", v) for k, v in inspect.getmembers(obj) if not k.startswith("_")]
        for label, member in members:
            func = inspect.unwrap(getattr(member, "__func__", member)) if callable(member) else member
            if (inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)) \
                    and getattr(func, "__module__", "").startswith("werk_trio"):
                yield label, func


def test_there_are_public_coroutines_to_check() -> None:
    names = {label for label, _ in _public_coroutines()}
    assert {"Werk.enqueue", "Werk.wait_for", "AsyncWorker.run", "CronScheduler.run",
            "testing.temporary_schema"} <= names, sorted(names)


def test_every_public_coroutine_documents_cancellation() -> None:
    missing = sorted({label for label, func in _public_coroutines()
                      if "cancel" not in (func.__doc__ or "").lower()})
    assert not missing, f"coroutine functions whose docstring does not say what a cancel does: {missing}"
