"""The child side of the process and fork executors. Imports no Trio at module
level (a Trio handler's child imports it when it runs one).

:func:`run_request` runs one attempt from a pickled :class:`ChildRequest` and
returns a pickled reply: ``("ok", result_text)`` with the result already
encoded by the app's serializer (so a result that cannot be encoded fails at
once, in the child, with SerializationError), or ``("err", type_name,
message, traceback_text, final, pickled_exception_or_None)``.
"""

from __future__ import annotations

import asyncio
import functools
import pickle
import traceback
from dataclasses import dataclass
from typing import Any

__all__ = ["ChildRequest", "run_request"]


@dataclass
class ChildRequest:
    func: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    ctx: Any  # a picklable Context snapshot, or None
    kind: str
    serializer: Any


def _call(req: ChildRequest) -> Any:
    args = (req.ctx, *req.args) if req.ctx is not None else req.args
    if req.kind == "trio":
        import trio

        return trio.run(functools.partial(req.func, *args, **req.kwargs))
    if req.kind == "asyncio":
        return asyncio.run(req.func(*args, **req.kwargs))
    return req.func(*args, **req.kwargs)


def _error_reply(exc: BaseException, *, final: bool = False) -> bytes:
    kind = type(exc)
    try:
        pickled: bytes | None = pickle.dumps(exc)
    except Exception:
        pickled = None
    text = "".join(traceback.format_exception(exc)).rstrip()
    return pickle.dumps(("err", f"{kind.__module__}.{kind.__qualname__}", str(exc), text, final, pickled))


def run_request(payload: bytes) -> bytes:
    """Run one attempt in this (child) process; never raises."""
    try:
        req: ChildRequest = pickle.loads(payload)
    except BaseException as exc:
        return _error_reply(exc, final=True)
    try:
        result = _call(req)
    except BaseException as exc:
        return _error_reply(exc)
    try:
        text = req.serializer.dumps(result)
        if not isinstance(text, str):
            raise TypeError(f"{req.serializer!r}.dumps() returned {type(text).__name__}, not str")
    except BaseException as exc:
        from ..errors import SerializationError

        err = SerializationError(
            f"cannot serialize the result of {getattr(req.func, '__qualname__', req.func)} "
            f"with {req.serializer!r}: {type(exc).__name__}: {exc}"
        )
        err.__cause__ = exc
        return _error_reply(err, final=True)
    return pickle.dumps(("ok", text))
