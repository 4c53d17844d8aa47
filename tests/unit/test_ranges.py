"""Issue 10: every number has a range, every string reaching Postgres is
storable -- checked where the value enters, with a ConfigError naming the
option and the range. Finding 3 (1e12 seconds were accepted and overflowed
Postgres timestamps later, in a sweep or the completer) and finding 5 (raw
errors instead of WerkError)."""

from __future__ import annotations

import math

import pytest

from werk_trio import Callback, ConfigError, EnqueueParams, JSONSerializer, Repeat, Retry, Werk, WerkError
from werk_trio._rows import MAX_META_BYTES, RowBuilder
from werk_trio.jobs import INT32_MAX, MAX_INTERVALS, MAX_SECONDS
from werk_trio.tasks import MAX_PATH_CHARS
from werk_trio.worker import AsyncWorker

BAD_SECONDS = [math.nan, math.inf, -math.inf, -1, 1e12, 1e13, 9.3e12, 1e300, 10**400, MAX_SECONDS * 1.01]
DSN = "postgresql://u@localhost/x"


def _add(func: str = "tests.unit.x.y", **fields: object) -> None:
    RowBuilder(JSONSerializer(), 1024 * 1024).add(EnqueueParams(func, **fields))  # type: ignore[arg-type]


@pytest.mark.parametrize("value", BAD_SECONDS)
@pytest.mark.parametrize("option", ["delay", "timeout", "heartbeat", "ttl", "result_ttl", "failure_ttl"])
def test_enqueue_seconds_are_finite_and_at_most_100_years(option: str, value: float) -> None:
    expected = f"_{option} must be a finite number of seconds from .* to 3155760000"
    with pytest.raises(ConfigError, match=expected):
        _add(**{option: value})


@pytest.mark.parametrize("value", [MAX_SECONDS, 3600.0, 1])
def test_the_bound_itself_is_accepted(value: float) -> None:
    _add(delay=value, ttl=value, result_ttl=value)


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_retry_repeat_callback_seconds(value: float) -> None:
    with pytest.raises(ConfigError, match="Retry intervals"):
        Retry(2, value)
    with pytest.raises(ConfigError, match="Retry intervals"):
        Retry(2, [1, value])
    with pytest.raises(ConfigError, match="Repeat interval"):
        Repeat(2, interval=value)
    with pytest.raises(ConfigError, match="Repeat intervals"):
        Repeat(2, intervals=[value])
    with pytest.raises(ConfigError, match="Callback timeout"):
        Callback("a.b", value)


@pytest.mark.parametrize("value", [2**31, 2**63, 0, -1, True, 1.5])
def test_counts_fit_their_integer_columns(value: object) -> None:
    with pytest.raises(ConfigError, match="Retry"):
        Retry(value)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Repeat"):
        Repeat(value, interval=1)  # type: ignore[arg-type]
    if value not in (0, -1):
        with pytest.raises(ConfigError, match="_priority"):
            _add(priority=value)


def test_interval_lists_have_a_limit() -> None:
    Retry(2, [1.0] * MAX_INTERVALS)
    with pytest.raises(ConfigError, match=rf"1 to {MAX_INTERVALS}"):
        Retry(2, [1.0] * (MAX_INTERVALS + 1))
    with pytest.raises(ConfigError, match=r"Repeat\(times=\.\.\.\) with intervals="):
        Repeat(2**30, intervals=[1])  # would have stored a list of 2**30 delays
    Repeat(INT32_MAX, interval=1)  # one interval: no list


@pytest.mark.parametrize(
    "text", ["a\x00b", "x\udcff", "\ud800"], ids=["nul", "low-surrogate", "high-surrogate"]
)
@pytest.mark.parametrize("option", ["queue", "key", "group"])
def test_strings_postgres_cannot_store_are_refused_up_front(option: str, text: str) -> None:
    with pytest.raises(ConfigError, match=f"_{option} contains a (NUL character|lone surrogate)"):
        _add(**{option: text})


def test_payload_and_meta() -> None:
    _add(args=["x\udcff"])  # JSON stores the surrogate escaped: accepted
    with pytest.raises(ConfigError, match=f"over the limit of {MAX_META_BYTES}"):
        _add(meta={"m": "x" * MAX_META_BYTES})

    class RawSerializer(JSONSerializer):
        def dumps(self, obj: object) -> str:
            return "raw\x00" + super().dumps(obj)

    with pytest.raises(WerkError, match="NUL"):
        RowBuilder(RawSerializer(), 1024).add(EnqueueParams("a.b"))


def test_function_paths_have_a_limit() -> None:
    with pytest.raises(ConfigError, match=f"over the limit of {MAX_PATH_CHARS}"):
        _add(func="a." + "b" * MAX_PATH_CHARS)
    with pytest.raises(ConfigError, match="not a dotted path"):
        _add(func="a.b\n")  # ``$`` matched before a trailing newline


@pytest.mark.parametrize(
    "setting",
    ["pool_timeout", "max_active_secs", "heartbeat_interval", "poll_interval", "abort_interval",
     "sweep_interval", "connect_timeout", "cron_standby_retry_interval", "shutdown_timeout", "sigterm_grace"],
)  # fmt: skip
@pytest.mark.parametrize("value", [math.nan, math.inf, 1e12, 10**400])
def test_config_seconds(setting: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"{setting} must be from .* to 3155760000 seconds"):
        Werk(DSN, **{setting: value})


@pytest.mark.parametrize("setting", ["min_pool_size", "max_pool_size", "prepare_threshold",
                                     "max_payload_bytes", "max_result_bytes", "estimate_limit"])  # fmt: skip
def test_config_integers(setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        Werk(DSN, **{setting: 2**40})


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "50000", 2**31])
def test_estimate_limit_is_a_positive_int(value: object) -> None:
    with pytest.raises(ConfigError, match="estimate_limit must be"):
        Werk(DSN, estimate_limit=value)


def test_estimate_limit_default_and_bounds() -> None:
    assert Werk(DSN).config.estimate_limit == 50_000
    assert Werk(DSN, estimate_limit=1).config.estimate_limit == 1
    assert Werk(DSN, estimate_limit=INT32_MAX).config.estimate_limit == INT32_MAX


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"concurrency": 2**31}, "concurrency"), ({"prefetch": 10**9}, "prefetch"),
     ({"claim_batch": 2**40}, "claim_batch"), ({"heartbeat_interval": math.inf}, "heartbeat_interval"),
     ({"poll_interval": 1e12}, "poll_interval"), ({"queues": ["a\x00"]}, "queue name"),
     ({"queues": ["q" * 1001]}, "queue names"), ({"shutdown_timeout": math.nan}, "shutdown_timeout")],
)  # fmt: skip
def test_worker_parameters(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        AsyncWorker(Werk(DSN), **kwargs)  # type: ignore[arg-type]


def test_hooks_must_be_callable() -> None:
    app = Werk(DSN)
    with pytest.raises(ConfigError, match="on_startup"):
        app.on_startup(5)  # type: ignore[type-var]
    with pytest.raises(ConfigError, match="on_shutdown"):
        app.on_shutdown("x")  # type: ignore[type-var]
