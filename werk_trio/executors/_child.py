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
    #: The running job, ``(id, function, attempt)``, for the child's log records.
    job: Any = None
    #: The parent's configure_logging() arguments (None: it never called it).
    log_setup: Any = None


def _call(req: ChildRequest) -> Any:
    args = (req.ctx, *req.args) if req.ctx is not None else req.args
    if req.kind == "trio":
        import trio

        return trio.run(functools.partial(req.func, *args, **req.kwargs))
    if req.kind == "asyncio":
        return asyncio.run(req.func(*args, **req.kwargs))
    return req.func(*args, **req.kwargs)


_configured: Any = None  # the log setup applied in this process


def _logging_like_parent(req: ChildRequest) -> Any:
    """Log records made in this child carry the job (and, when the worker
    configured logging, go out formatted as the worker's own do)."""
    global _configured
    from .. import _logging

    _logging.install_record_factory()
    if req.log_setup is not None and req.log_setup != _configured:
        _logging.configure_logging(**req.log_setup)
        _configured = req.log_setup
    return _logging.current_job.set(req.job)


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
    token = _logging_like_parent(req)
    try:
        result = _call(req)
    except BaseException as exc:
        return _error_reply(exc)
    finally:
        token.var.reset(token)
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
