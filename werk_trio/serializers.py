"""Serializers for payloads, results and meta.

A serializer is any object with ``dumps(obj) -> str`` and
``loads(data: str | bytes) -> object``. The default is :class:`JSONSerializer`.
"""

from __future__ import annotations

import base64
import json
import pickle
import warnings
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigError, SerializationError

__all__ = ["JSONSerializer", "PickleSerializer", "Serializer", "check_serializer"]


@runtime_checkable
class Serializer(Protocol):
    def dumps(self, obj: Any) -> str: ...

    def loads(self, data: str | bytes) -> Any: ...


class JSONSerializer:
    """JSON (the default): safe with any producer; values must be JSON types."""

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        # JSONEncoder.encode builds a new C encoder on every call, most of the
        # cost of a small payload: build it once. Without the circular-reference
        # markers, since one shared markers dict is neither thread-safe nor
        # cleaned up after an error; a cycle ends in RecursionError instead.
        make = getattr(json.encoder, "c_make_encoder", None)
        self._fast: Any = None
        if make is not None:
            self._fast = make(
                None, self._encoder.default, json.encoder.encode_basestring, None, ":", ",",
                False, False, False,
            )  # fmt: skip

    def dumps(self, obj: Any) -> str:
        fast = self._fast
        if fast is not None:
            try:
                return "".join(fast(obj, 0))
            except Exception:  # noqa: S110 - the standard encoder below raises json's own error
                pass
        return self._encoder.encode(obj)

    def loads(self, data: str | bytes) -> Any:
        return json.loads(data)

    def __reduce__(self) -> tuple[Any, ...]:
        # the C encoder cannot be pickled; process and fork executors send the
        # serializer to their children, which build their own
        return (JSONSerializer, ())

    def __repr__(self) -> str:
        return "JSONSerializer()"


class PickleSerializer:
    """Pickle, base64 in a text column: any picklable Python object.

    UNSAFE unless every writer of the jobs table is trusted: unpickling runs
    code, so anyone who can insert or update a job row can run arbitrary code
    in every process that decodes it -- the workers, and any app that reads
    jobs (``get_job``, ``list_jobs``, ``wait_for``, ``apply``, ``map``, the
    dashboard, callbacks). werk_trio unpickles a row only if the app's task
    allowlist allows its function (checked first, nothing imported), which
    stops rows naming arbitrary functions; it cannot stop a hostile payload
    for an allowed function. Use it only when the database and every producer
    are trusted.
    """

    #: loads() can run code: rows are decoded only for allowed functions.
    unsafe_loads = True

    def __init__(self, *, protocol: int = pickle.HIGHEST_PROTOCOL, warn: bool = True) -> None:
        self.protocol = protocol
        if warn:
            warnings.warn(
                "PickleSerializer is unsafe unless every writer of the jobs table is trusted: "
                "unpickling a job row can run arbitrary code in every process that reads it "
                "(workers, and apps calling get_job/list_jobs/wait_for/apply). Rows are "
                "unpickled only for functions the task allowlist allows, but a hostile payload "
                "for an allowed function still runs code. Pass warn=False once only trusted "
                "code can write to the database.",
                UserWarning,
                stacklevel=2,
            )

    def dumps(self, obj: Any) -> str:
        return base64.b64encode(pickle.dumps(obj, protocol=self.protocol)).decode("ascii")

    def loads(self, data: str | bytes) -> Any:
        return pickle.loads(base64.b64decode(data))

    def __repr__(self) -> str:
        return "PickleSerializer()"


def check_serializer(serializer: Any) -> Serializer:
    """Return ``serializer`` if it has callable ``dumps`` and ``loads``, else ConfigError."""
    if isinstance(serializer, type):
        raise ConfigError(
            f"serializer must be an instance, got the class {serializer.__name__}: "
            f"pass {serializer.__name__}() instead"
        )
    if not (callable(getattr(serializer, "dumps", None)) and callable(getattr(serializer, "loads", None))):
        raise ConfigError(
            f"serializer {serializer!r} must have dumps(obj) -> str and loads(str | bytes); "
            "use JSONSerializer(), PickleSerializer() or an object with both methods"
        )
    return serializer  # type: ignore[no-any-return]


def encode(serializer: Serializer, obj: Any, what: str) -> str:
    """``serializer.dumps(obj)`` with a SerializationError that names ``what``."""
    try:
        data = serializer.dumps(obj)
    except Exception as ex:
        raise SerializationError(
            f"cannot serialize the {what} with {serializer!r}: {type(ex).__name__}: {ex}. "
            "Pass values the serializer supports (JSON: dict, list, str, int, float, bool, None) "
            "or choose another serializer."
        ) from ex
    if not isinstance(data, str):
        raise SerializationError(
            f"{serializer!r}.dumps() returned {type(data).__name__}; it must return str"
        )
    return data


def decode(serializer: Serializer, data: str | None, what: str) -> Any:
    if data is None:
        return None
    try:
        return serializer.loads(data)
    except Exception as ex:
        raise SerializationError(
            f"cannot deserialize the {what} with {serializer!r}: {type(ex).__name__}: {ex}"
        ) from ex
