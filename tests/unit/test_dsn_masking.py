"""Issue 10: a password never shows -- for passwords that break naive masking
(quotes, ``/``, ``@``, spaces, ``=``, backslashes, non-ASCII), written every
way a DSN can carry them (a percent-encoded URL, a raw URL, key=value,
``?password=``), through ``repr`` of the config and the app, the INFO line's
description, text and JSON log lines (message, ``extra`` fields, traceback),
exceptions of a failed connect, and the CLI's error line. Finding 4: masking
missed passwords with ' " / @ or a space, and the JSON formatter left
tracebacks and extras unmasked."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from urllib.parse import quote

import pytest
import trio

from werk_trio import ConfigError, Werk
from werk_trio._logging import JSONFormatter, MaskingFormatter
from werk_trio.config import describe_dsn, mask_secrets, remember_secrets, show_dsn

PASSWORDS = [
    "pa'ss", 'pa"ss', "pa/ss", "pa@ss", "pa ss", "a'b\"c/d@e f", "pässwörd", "pa%20ss", "x=y;z",
    "back\\slash", "@@//''", "user:pw@host", "%41%42cd",
]  # fmt: skip


def forms(password: str) -> list[str]:
    """``password`` in every way a DSN can carry it."""
    kv = password.replace("\\", "\\\\").replace("'", "\\'")
    return [
        f"postgresql://postgres:{quote(password, safe='')}@127.0.0.1:1/postgres",
        f"postgresql://postgres:{password}@127.0.0.1:1/postgres",  # raw: may not even parse
        f"host=127.0.0.1 port=1 user=postgres password='{kv}' dbname=postgres",
        f"postgresql://postgres@127.0.0.1:1/postgres?password={quote(password, safe='')}",
    ]


CASES = [(p, d) for p in PASSWORDS for d in forms(p)]


def _leaks(password: str, text: str) -> bool:
    return password in text or quote(password, safe="") in text


@pytest.mark.parametrize(("password", "dsn"), CASES)
def test_repr_and_descriptions_hide_the_password(password: str, dsn: str) -> None:
    remember_secrets(dsn)
    app = Werk(dsn)
    for text in (repr(app.config), str(app.config), repr(app), show_dsn(dsn), describe_dsn(dsn),
                 mask_secrets(f"cannot connect with {dsn}: refused")):  # fmt: skip
        assert not _leaks(password, text), text


@pytest.mark.parametrize(("password", "dsn"), CASES)
def test_text_and_json_log_lines_are_masked_whole(password: str, dsn: str) -> None:
    remember_secrets(dsn)
    try:
        raise RuntimeError(f"connection to {dsn} failed")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("werk_trio", logging.ERROR, __file__, 1, "using %s", (dsn,), exc_info)
    record.where = dsn  # an ``extra`` field
    record.detail = {"dsn": dsn}
    text = MaskingFormatter("%(message)s").format(record)
    line = JSONFormatter().format(record)
    parsed = json.loads(line)
    assert parsed["exc"] and parsed["where"]
    for shown in (text, line, json.dumps(parsed, ensure_ascii=False)):
        assert not _leaks(password, shown), shown


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_failed_connect_raises_without_the_password(password: str) -> None:
    async def main() -> list[str]:
        texts = []
        for dsn in forms(password):
            with trio.fail_after(20), pytest.raises(ConfigError) as info:
                async with Werk(dsn, connect_timeout=2, min_pool_size=1):
                    pass
            exc = info.value
            texts += [str(exc), repr(exc), repr(exc.args), str(exc.__cause__), str(exc.__context__)]
        return texts

    handler_out = io.StringIO()
    handler = logging.StreamHandler(handler_out)
    handler.setFormatter(logging.Formatter("%(message)s"))  # unmasked: what the records carry
    log = logging.getLogger("werk_trio")
    log.addHandler(handler)
    old = log.level
    log.setLevel(logging.DEBUG)
    try:
        texts = trio.run(main)
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
    texts.append(handler_out.getvalue())
    for text in texts:
        assert not _leaks(password, text), text


@pytest.mark.parametrize("password", ["a'b\"c/d@e f", "pa@ss", "pa ss"])
def test_the_cli_error_line_hides_the_password(password: str) -> None:
    for dsn in forms(password):
        proc = subprocess.run(
            [sys.executable, "-m", "werk_trio.cli", "info", "tests.procapp:app"],
            env={**_env(), "WERK_DSN": dsn, "WERK_PROC_DSN": dsn},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert "werk: error:" in out, out
        assert not _leaks(password, out), out


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("WERK_DSN", "DATABASE_URL")}


@pytest.mark.parametrize(
    ("dsn", "shown", "described"),
    [
        ("postgresql://postgres:@/postgres?host=/run/pg", "user=postgres dbname=postgres host=/run/pg",
         "database postgres at socket /run/pg as postgres"),  # the embedded server's form
        ("postgresql://u@h:5/d", "user=u dbname=d host=h port=5", "database d at h:5 as u"),
        ("host=h user=u password=secret1 dbname=d", "user=u dbname=d host=h password=***",
         "database d at h:5432 as u"),
    ],
)  # fmt: skip
def test_dsns_are_shown_from_their_parts(dsn: str, shown: str, described: str) -> None:
    assert show_dsn(dsn) == shown
    assert describe_dsn(dsn) == described
