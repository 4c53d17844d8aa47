"""Serializers (SPEC §7): JSON by default, pickle opt-in and loud, any dumps/loads object."""

from __future__ import annotations

import datetime as dt
import warnings
from decimal import Decimal
from typing import Any

import pytest

from werk_trio import ConfigError, JSONSerializer, PickleSerializer, SerializationError, Serializer
from werk_trio.serializers import check_serializer, decode, encode


def test_json_round_trip() -> None:
    s = JSONSerializer()
    value = {"a": [1, 2.5, "x", None, True], "ü": {"nested": []}}
    text = s.dumps(value)
    assert isinstance(text, str)
    assert "ü" in text  # not \\u-escaped: payload size is what Postgres stores
    assert s.loads(text) == value
    assert s.loads(text.encode()) == value


@pytest.mark.parametrize(
    "bad", [{1, 2}, object(), dt.datetime(2024, 1, 1), Decimal("1.5"), float("nan"), b"x"]
)
def test_json_refuses_what_it_cannot_round_trip(bad: Any) -> None:
    with pytest.raises(SerializationError) as info:
        encode(JSONSerializer(), {"kwargs": {"v": bad}}, "payload of m.f")
    assert "payload of m.f" in str(info.value)


def test_json_circular_and_non_string_keys() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(SerializationError):
        encode(JSONSerializer(), loop, "payload")
    s = JSONSerializer()
    assert s.loads(s.dumps({1: "a", None: "b", 2.5: "c"})) == {"1": "a", "null": "b", "2.5": "c"}
    with pytest.raises(SerializationError):
        encode(s, {(1, 2): "tuple key"}, "payload")
    # a failed encode leaves the serializer usable
    assert s.loads(s.dumps({"after": [1]})) == {"after": [1]}


def test_pickle_warns_and_round_trips() -> None:
    with pytest.warns(UserWarning, match="unsafe"):
        s = PickleSerializer()
    value = {"when": dt.datetime(2024, 1, 2, tzinfo=dt.UTC), "set": {1, 2}, "dec": Decimal("1.5")}
    text = s.dumps(value)
    assert isinstance(text, str) and text.isascii()
    assert s.loads(text) == value
    assert s.loads(text.encode()) == value


def test_pickle_warning_can_be_silenced() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PickleSerializer(warn=False)


def test_pickle_unpicklable_is_a_serialization_error() -> None:
    s = PickleSerializer(warn=False)
    with pytest.raises(SerializationError):
        encode(s, {"f": lambda: 1}, "payload")


class Upper:
    """A custom serializer: JSON with upper-cased strings on the way in."""

    def dumps(self, obj: Any) -> str:
        return "U" + JSONSerializer().dumps(obj)

    def loads(self, data: str | bytes) -> Any:
        text = data.decode() if isinstance(data, bytes) else data
        assert text.startswith("U")
        return JSONSerializer().loads(text[1:])


def test_custom_serializer_is_accepted() -> None:
    s = check_serializer(Upper())
    assert isinstance(s, Serializer)
    assert decode(s, encode(s, {"x": 1}, "payload"), "payload") == {"x": 1}


@pytest.mark.parametrize(
    "bad", [object(), JSONSerializer, "json", type("OnlyDumps", (), {"dumps": lambda self, o: ""})()]
)
def test_check_serializer_refuses_non_serializers(bad: Any) -> None:
    with pytest.raises(ConfigError):
        check_serializer(bad)


def test_dumps_must_return_str() -> None:
    class Bytes:
        def dumps(self, obj: Any) -> Any:
            return b"x"

        def loads(self, data: Any) -> Any:
            return None

    with pytest.raises(SerializationError, match="must return str"):
        encode(Bytes(), {}, "payload")


def test_decode_errors_are_serialization_errors() -> None:
    with pytest.raises(SerializationError, match="result"):
        decode(JSONSerializer(), "{not json", "result")
    assert decode(JSONSerializer(), None, "result") is None
