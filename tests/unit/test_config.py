"""WerkConfig: defaults (SPEC §1), precedence, validation, DSN resolution."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from werk_trio import ConfigError, JSONSerializer, Werk, WerkConfig
from werk_trio.config import resolve_dsn, with_params


def test_defaults_match_the_spec() -> None:
    c = WerkConfig()
    assert c.dsn is None
    assert c.schema is None
    assert c.prefix == "_werk"
    assert (c.min_pool_size, c.max_pool_size) == (2, 10)
    assert c.max_active_secs == 3600
    assert c.auto_migrate is True
    assert c.log_level is None
    assert c.log_format == "text"
    assert c.task_modules == ()
    assert c.max_payload_bytes == 1024 * 1024
    assert c.heartbeat_interval == 10
    assert c.poll_interval == 5.0
    assert c.abort_interval == 1.0
    assert c.sweep_interval == 60.0
    assert c.shutdown_timeout == 30.0
    assert c.sigterm_grace == 5
    assert c.cron_standby_retry_interval == 30.0
    assert c.durable_claims is False  # claims commit asynchronously (architecture.md)


def test_config_is_frozen() -> None:
    c = WerkConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.prefix = "other"  # type: ignore[misc]


def test_build_from_dict_and_config_keywords_win() -> None:
    base = WerkConfig(prefix="base", poll_interval=2.0, max_pool_size=4)
    built = WerkConfig.build(base, prefix="kw")
    assert built.prefix == "kw"
    assert built.poll_interval == 2.0
    assert built.max_pool_size == 4
    from_dict = WerkConfig.build({"prefix": "d", "min_pool_size": 1}, min_pool_size=3)
    assert from_dict.prefix == "d"
    assert from_dict.min_pool_size == 3
    assert WerkConfig.build(None) == WerkConfig()


def test_werk_takes_config_and_keywords() -> None:
    app = Werk("postgresql://u@h/db", config={"prefix": "cfg", "schema": "s1"}, schema="s2")
    assert app.config.prefix == "cfg"
    assert app.config.schema == "s2"
    assert app.config.dsn == "postgresql://u@h/db"
    app2 = Werk(config=WerkConfig(dsn="postgresql://u@h/one"))
    assert app2.config.dsn == "postgresql://u@h/one"
    app3 = Werk("postgresql://u@h/two", config=WerkConfig(dsn="postgresql://u@h/one"))
    assert app3.config.dsn == "postgresql://u@h/two"


def test_unknown_setting_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        Werk("postgresql://u@h/db", poll_intervall=3)
    assert "poll_intervall" in str(info.value)
    assert "poll_interval" in str(info.value).split("valid settings:")[1]
    with pytest.raises(ConfigError):
        WerkConfig.build({"nope": 1})
    with pytest.raises(ConfigError):
        WerkConfig.build("prefix=x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_pool_size", -1),
        ("min_pool_size", 1.5),
        ("max_pool_size", 0),
        ("max_pool_size", True),
        ("pool_timeout", 0),
        ("max_active_secs", -5),
        ("heartbeat_interval", float("nan")),
        ("poll_interval", float("inf")),
        ("poll_interval", "5"),
        ("abort_interval", 0),
        ("sweep_interval", None.__class__),
        ("shutdown_timeout", -1),
        ("sigterm_grace", -0.5),
        ("connect_timeout", 0),
        ("max_payload_bytes", 0),
        ("max_payload_bytes", 10.5),
        ("log_format", "xml"),
        ("log_level", "LOUD"),
        ("log_level", True),
        ("task_modules", ["ok.mod", "not a module"]),
        ("task_modules", [3]),
        ("prepare_threshold", -1),
        ("dsn", 5432),
        ("durable_claims", "yes"),
        ("auto_migrate", 1),
        ("use_listen_notify", None),
    ],
)
def test_bad_settings_raise_config_error(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        WerkConfig(**{field: value})
    assert field.split("_")[0] in str(info.value) or field in str(info.value)


def test_min_larger_than_max() -> None:
    with pytest.raises(ConfigError, match="min_pool_size"):
        WerkConfig(min_pool_size=5, max_pool_size=3)


def test_zero_is_allowed_where_it_means_something() -> None:
    c = WerkConfig(min_pool_size=0, shutdown_timeout=0, sigterm_grace=0, prepare_threshold=None)
    assert (c.min_pool_size, c.shutdown_timeout, c.sigterm_grace) == (0, 0, 0)


def test_task_modules_string_becomes_a_tuple() -> None:
    assert WerkConfig(task_modules="app.tasks").task_modules == ("app.tasks",)  # type: ignore[arg-type]
    assert WerkConfig(task_modules=["a", "b.c"]).task_modules == ("a", "b.c")  # type: ignore[arg-type]


def test_log_level_names_and_numbers() -> None:
    assert WerkConfig(log_level="debug").log_level == "debug"
    assert WerkConfig(log_level=logging.WARNING).log_level == logging.WARNING


def test_serializer_is_checked() -> None:
    with pytest.raises(ConfigError, match="dumps"):
        Werk("postgresql://u@h/db", serializer=object())
    assert isinstance(Werk("postgresql://u@h/db").serializer, JSONSerializer)


def test_resolve_dsn_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WERK_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert resolve_dsn(None) == ("", "embedded")
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-database-url/db")
    assert resolve_dsn(None) == ("postgresql://from-database-url/db", "DATABASE_URL")
    monkeypatch.setenv("WERK_DSN", "postgresql://from-werk-dsn/db")
    assert resolve_dsn(None) == ("postgresql://from-werk-dsn/db", "WERK_DSN")
    assert resolve_dsn("postgresql://explicit/db") == ("postgresql://explicit/db", "argument")
    # an empty variable counts as unset
    monkeypatch.setenv("WERK_DSN", "")
    assert resolve_dsn(None)[1] == "DATABASE_URL"


def test_bad_dsn_from_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WERK_DSN", "postgresql://u:pw@host/db?bogus=1")
    with pytest.raises(ConfigError, match="WERK_DSN"):
        resolve_dsn(None)


def test_with_params_keeps_existing_values() -> None:
    out = with_params("host=/tmp dbname=x connect_timeout=7", connect_timeout=3, application_name="w")
    assert "connect_timeout=7" in out
    assert "application_name=w" in out
    assert with_params("host=/tmp", application_name=None) == "host=/tmp"
