"""Validation that happens before any database access: names, settings, DSNs."""

from __future__ import annotations

import pytest

from werk_trio import ConfigError, Werk, WerkConfig
from werk_trio.config import check_name, describe_dsn, mask_dsn, resolve_dsn
from werk_trio.sql import Statements

HOSTILE = [
    'x"; drop table t; --',
    "x; drop table t",
    'a"b',
    "a.b",
    "a b",
    "",
    "1abc",
    "ünïcode",
    "a" * 41,
    "jobs\x00",
    "x'--",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_prefix_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid table prefix"):
        Werk("postgresql://u@h/db", prefix=name)
    with pytest.raises(ConfigError):
        Statements(None, name)


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_schema_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid schema name"):
        Werk("postgresql://u@h/db", schema=name)
    with pytest.raises(ConfigError):
        Statements(name, "_werk")


@pytest.mark.parametrize("value", [None, 5, b"_werk", ["_werk"]])
def test_non_string_names_are_refused(value: object) -> None:
    with pytest.raises(ConfigError):
        check_name("table prefix", value)


@pytest.mark.parametrize("name", ["_werk", "jobs", "Werk_2", "_", "a" * 40])
def test_good_names_pass(name: str) -> None:
    assert check_name("table prefix", name) == name
    WerkConfig(prefix=name, schema=name)


def test_identifiers_are_quoted_in_statements() -> None:
    """Names reach SQL only as quoted identifiers, schema-qualified."""
    st = Statements("MySchema", "Pre")
    assert '"MySchema"."Pre_jobs"' in st.GET_JOB
    assert '"MySchema"."Pre_executions"' in st.GET_EXECUTIONS
    plain = Statements(None, "_werk")
    assert '"_werk_jobs"' in plain.GET_JOB
    assert "." not in plain.GET_JOB.split("FROM")[1].split("WHERE")[0]


def test_statements_render_every_placeholder() -> None:
    st = Statements("s", "p")
    for name in ("INSERT_JOBS", "LIST_JOBS", "CANCEL_JOB", "PURGE_JOBS", "TRUNCATE", "VACUUM"):
        text = getattr(st, name)
        assert "{" not in text.replace("{}", ""), name
    with pytest.raises(AttributeError):
        st.NO_SUCH_STATEMENT  # noqa: B018


def test_notify_channels_fit_postgres_names() -> None:
    """Postgres refuses NOTIFY channels of 64 bytes or more."""
    for schema, prefix in [(None, "_werk"), ("s" * 40, "p" * 40), ("s", "p" * 40)]:
        st = Statements(schema, prefix)
        for channel in (st.jobs_channel, st.done_channel):
            assert 0 < len(channel.encode()) < 64, channel
        assert st.jobs_channel != st.done_channel
    # distinct apps get distinct channels, even when the names are long
    a = Statements("s" * 40, "p" * 39 + "a")
    b = Statements("s" * 40, "p" * 39 + "b")
    assert a.jobs_channel != b.jobs_channel


# --- DSNs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "secret"),
    [
        ("postgresql://user:hunter2@db.example.com:5432/app", "hunter2"),
        ("postgres://user:hunter2@/app?host=/tmp", "hunter2"),
        ("postgresql://user:hun:ter2@host/app", "hun:ter2"),
        ("host=db password=hunter2 dbname=app", "hunter2"),
        ("host=db password = hunter2 dbname=app", "hunter2"),
        ("host=db password='hunter 2' dbname=app", "hunter 2"),
        ("host=db PASSWORD=hunter2", "hunter2"),
        ("postgresql://user@host/app?password=hunter2&sslmode=disable", "hunter2"),
        # a mistyped URL, as libpq quotes it back in an error message
        ('missing "=" after "postgres//user:hunter2@host" in connection info string', "hunter2"),
    ],
)
def test_mask_dsn_hides_the_password(dsn: str, secret: str) -> None:
    masked = mask_dsn(dsn)
    assert secret not in masked
    assert "***" in masked


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://user@host:5432/app", "host=/tmp dbname=app user=me", "postgresql:///app?host=/tmp"],
)
def test_mask_dsn_leaves_passwordless_dsns_alone(dsn: str) -> None:
    assert mask_dsn(dsn) == dsn


def test_describe_dsn() -> None:
    assert describe_dsn("postgresql://me:pw@db.example.com:6543/app") == (
        "database app at db.example.com:6543 as me"
    )
    text = describe_dsn("host=/run/pg dbname=app user=me password=pw")
    assert text == "database app at socket /run/pg as me"
    assert "pw" not in describe_dsn("postgres//me:pw@host")


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db password=hunter2 bogus=1",
        "postgresql://u:hunter2@h/db?bogus=1",
        "postgres//u:hunter2@h/db",
        "postgresql://u:hunter2@[::1/db",
        "host=db password='hunter2",
    ],
)
def test_bad_dsn_is_a_config_error_without_the_password(dsn: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_dsn(dsn)
    assert "hunter2" not in str(info.value)
    assert "not a valid Postgres DSN" in str(info.value)


def test_werk_repr_and_config_repr_hide_the_password() -> None:
    app = Werk("postgresql://me:hunter2@db.example.com/app")
    assert "hunter2" not in repr(app)
    assert "hunter2" not in repr(app.config)
    assert "hunter2" not in str(app.config)
    assert "***" in repr(app.config)
