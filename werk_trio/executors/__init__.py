"""Executors: where a handler runs. One protocol, several implementations.

An executor gets a :class:`JobCall` (the resolved function, its arguments and
the Context to inject) and runs it under the runner's cancel scope:

* ``await executor.run(call)`` returns an :class:`outcome.Outcome` (trio-parallel's
  contract): ``Value(text)``, the handler's result already encoded by the
  serializer where it ran, or ``Error(exc)``, what the handler raised. A result
  that cannot be encoded is ``Error`` of an exception marked ``final``
  (:func:`unencodable`: retrying cannot help); a handler that itself raises
  SerializationError is an ordinary error. The executor's own failure (the
  job's process died: ChildDied; used outside ``running()``) raises, as
  trio-parallel's BrokenWorkerError does. A Trio cancel of the caller must stop
  the work (or, for threads, abandon it on time) and propagate; so does a
  BaseException (SystemExit, KeyboardInterrupt) out of the handler.
* ``async with executor.running():`` brackets the worker's life
  (pools, bridges) -- it is entered before the first job and left after the last.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import outcome

from ..errors import SerializationError, WerkError
from ..jobs import Context
from ..serializers import JSONSerializer, encode

__all__ = [
    "ChildDied", "Executor", "HandlerKind", "JobCall", "RemoteError",
    "asyncio_handler", "describe_exit", "encoded", "handler_kind", "unencodable", "wants_context",
]  # fmt: skip

ASYNCIO_MARK = "__werk_asyncio__"


def asyncio_handler(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an asyncio coroutine function: workers run it through trio-asyncio
    (``@asyncio_handler`` or ``@app.task(asyncio=True)``)."""
    if not inspect.iscoroutinefunction(inspect.unwrap(func)):
        from ..errors import ConfigError

        raise ConfigError(f"asyncio_handler needs an async def function, got {func!r}")
    setattr(func, ASYNCIO_MARK, True)
    return func


class HandlerKind:
    TRIO = "trio"
    SYNC = "sync"
    ASYNCIO = "asyncio"


def handler_kind(func: Callable[..., Any]) -> str:
    """``trio`` (async def), ``sync`` (plain def) or ``asyncio`` (marked for the bridge)."""
    target = inspect.unwrap(func)
    if getattr(func, ASYNCIO_MARK, False) or getattr(target, ASYNCIO_MARK, False):
        return HandlerKind.ASYNCIO
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - async callable objects
    ):
        return HandlerKind.TRIO
    return HandlerKind.SYNC


@functools.lru_cache(maxsize=4096)
def wants_context(func: Callable[..., Any]) -> bool:
    """True when the first parameter is named ``ctx`` or annotated ``Context``."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        return False
    first = params[0]
    if first.name == "ctx":
        return True
    ann = first.annotation
    return ann is Context or ann == "Context" or (isinstance(ann, str) and ann.endswith(".Context"))


@dataclass(slots=True)
class JobCall:
    """Everything an executor needs to run one attempt."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    ctx: Context | None
    kind: str
    #: The job's function path (``job.function``): what an encoding error names.
    function: str = ""

    def positional(self) -> tuple[Any, ...]:
        return (self.ctx, *self.args) if self.ctx is not None else self.args


class Executor(Protocol):
    """Where a worker's handlers run (pass one as ``Worker(executor=...)``).

    ``name`` is the worker type it serves (async, thread, process, fork: the
    workers table shows it). ``running()`` is an async context manager around
    the worker's life: pools and bridges open on entry, close on exit.
    """

    name: str

    def running(self) -> AbstractAsyncContextManager[None]: ...

    async def run(self, call: JobCall) -> outcome.Outcome[str]:
        """Run one attempt: ``Value`` of the handler's result encoded where it
        ran, or ``Error`` of its exception (:func:`unencodable` when the result
        could not be encoded). Cancellation: a cancel of the caller stops the
        work (a thread is abandoned on time, a child process killed) and
        propagates."""


def encoded(serializer: Any, value: Any, function: str) -> outcome.Outcome[str]:
    """``Value`` of ``value`` encoded by ``serializer``, or ``Error`` of the
    SerializationError, marked final (the inline and thread executors' step;
    a child process does the same in ``_child.py``)."""
    if value is None and type(serializer) is JSONSerializer:
        # the common result (a handler with no return value), without the encoder;
        # another serializer, which need not be deterministic, encodes every result
        return outcome.Value("null")
    try:
        return outcome.Value(encode(serializer, value, f"result of {function}"))
    except SerializationError as exc:
        exc.final = True
        return outcome.Error(exc)


def unencodable(exc: BaseException) -> bool:
    """True for an executor's error that retrying cannot help: the result could
    not be encoded (or a child could not even read its request)."""
    return isinstance(exc, SerializationError | RemoteError) and exc.final


class RemoteError(WerkError):
    """A handler's exception from a child process, with the child's traceback.

    ``type_name`` is the original exception's qualified name; ``original`` is
    the exception itself when it could be pickled; ``final`` means retrying
    cannot help (e.g. an unserializable result)."""

    def __init__(self, type_name: str, message: str, traceback_text: str, *,
                 final: bool = False, original: BaseException | None = None) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.traceback_text = traceback_text
        self.final = final
        self.original = original


class ChildDied(WerkError):
    """The process running the job died (a crash, a signal, os._exit)."""


def describe_exit(returncode: int | None) -> str:
    """``exited with code 3`` / ``killed by signal SIGSEGV (11)``."""
    import signal

    if returncode is None:
        return "vanished (exit status unknown)"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by signal {name} ({-returncode})"
    return f"exited with code {returncode}"


def remote_error_from_reply(reply: tuple[Any, ...]) -> RemoteError:
    import pickle

    _, type_name, message, text, final, pickled = reply
    original = None
    if pickled is not None:
        try:
            original = pickle.loads(pickled)
        except Exception:
            original = None
    return RemoteError(type_name, message, text, final=final, original=original)


def child_request(call: JobCall, serializer: Any) -> Any:
    """The picklable request a child process runs: the Context becomes a
    snapshot (job data and worker identity; no live app or worker); the
    running job and the parent's configure_logging() arguments go along."""
    from .. import _logging
    from ._child import ChildRequest

    ctx = call.ctx
    if ctx is not None:
        progress = ctx._progress
        ctx = Context(job=ctx.job, worker_id=ctx.worker_id, worker_name=ctx.worker_name)
        if progress is not None:  # the child writes its progress itself (werk_trio._progress)
            ctx._progress = progress.for_child()
    # the running job and the parent's logging setup: the child's records
    # carry the job and look like the worker's own
    return ChildRequest(call.func, call.args, call.kwargs, ctx, call.kind, serializer,
                        _logging.current_job.get(), _logging.active_setup)


def reply_to_result(reply: tuple[Any, ...]) -> outcome.Outcome[str]:
    """A child's reply as the executor's outcome: the encoded result or its error."""
    if reply[0] == "ok":
        return outcome.Value(reply[1])
    return outcome.Error(remote_error_from_reply(reply))
