"""configure_logging (pgwerk's signature): formats, colour on a TTY and off
on request, custom format strings, the running job on every record, and
clear errors for bad arguments. Output goes to the real stream the logger
was configured with: a StringIO, or a real pseudo-terminal for the TTY case."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Iterator

import pytest

from werk_trio import ConfigError, Werk, configure_logging
from werk_trio import _logging as wlog

JOB = ("6f1c2a9e-0000-4000-8000-000000000001", "app.tasks.send", 3)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    logger = logging.getLogger("werk_trio")
    level, propagate, handlers = logger.level, logger.propagate, list(logger.handlers)
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate
    wlog.active_setup = None


def emit(stream: io.StringIO | None = None, *, in_job: bool = True, msg: str = "hello") -> str:
    """Log ``msg`` on werk_trio.worker (inside a job unless told); what was written."""
    token = wlog.current_job.set(JOB if in_job else None)
    try:
        logging.getLogger("werk_trio.worker").warning(msg)
    finally:
        wlog.current_job.reset(token)
    return stream.getvalue() if stream is not None else ""


def configured(monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> io.StringIO:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging(**kwargs)  # type: ignore[arg-type]
    return stream


def test_default_text_format_names_the_running_job(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = configured(monkeypatch, level="INFO", color=False)
    line = emit(stream).rstrip("\n")
    assert line.endswith("WARNING werk_trio.worker: [job 6f1c2a9e app.tasks.send #3] hello"), line
    outside = emit(io.StringIO(), in_job=False)
    assert outside == ""  # another stream: the handler wrote to the configured one
    assert stream.getvalue().splitlines()[-1].endswith("werk_trio.worker: hello")


def test_custom_format_and_datefmt(monkeypatch: pytest.MonkeyPatch) -> None:
    fmt = "%(asctime)s|%(job_id)s|%(job_function)s|%(job_attempt)s|%(message)s"
    stream = configured(monkeypatch, fmt=fmt, datefmt="%Y", color=False)
    emit(stream)
    emit(stream, in_job=False, msg="idle")
    first, second = stream.getvalue().splitlines()
    year = first.split("|")[0]
    assert len(year) == 4 and year.isdigit()
    assert first.split("|", 1)[1] == f"{JOB[0]}|{JOB[1]}|3|hello"
    assert second.split("|", 1)[1] == "-|-|-|idle", "outside a job the fields default to '-'"


def test_colour_on_request_and_off_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = configured(monkeypatch, color=True)
    emit(stream)
    assert "\x1b[33mWARNING\x1b[0m" in stream.getvalue()
    stream = configured(monkeypatch, color=False)
    emit(stream)
    assert "\x1b[" not in stream.getvalue()


def test_colour_follows_the_terminal_when_not_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    leader, follower = os.openpty()
    with open(follower, "w", encoding="utf-8", closefd=True) as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        configure_logging()  # color=None: a TTY gets colour
        emit()
        tty.flush()
        written = os.read(leader, 4096).decode()
        assert "\x1b[33mWARNING\x1b[0m" in written
        monkeypatch.setenv("NO_COLOR", "1")
        configure_logging()  # NO_COLOR wins over the TTY
        emit()
        tty.flush()
        assert "\x1b[" not in os.read(leader, 4096).decode()
    os.close(leader)
    monkeypatch.delenv("NO_COLOR")
    stream = configured(monkeypatch)  # not a TTY: no colour
    emit(stream)
    assert "\x1b[" not in stream.getvalue()


def test_json_lines_carry_the_job_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = configured(monkeypatch, format="json")
    emit(stream)
    emit(stream, in_job=False, msg="idle")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (inside["job_id"], inside["job_function"], inside["job_attempt"]) == JOB
    assert inside["msg"] == "hello" and "job_id" not in outside


def test_another_logger_name(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = configured(monkeypatch, logger_name="myapp", fmt="%(name)s %(job_id)s %(message)s")
    try:
        token = wlog.current_job.set(JOB)
        try:
            logging.getLogger("myapp.jobs").warning("mine")
        finally:
            wlog.current_job.reset(token)
        assert stream.getvalue() == f"myapp.jobs {JOB[0]} mine\n"
    finally:
        logging.getLogger("myapp").handlers.clear()
        logging.getLogger("myapp").propagate = True


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"level": "LOUD"}, "level"),
        ({"level": True}, "level"),
        ({"format": "xml"}, "format must be 'text' or 'json'"),
        ({"color": "yes"}, "color"),
        ({"fmt": "%(nope)s"}, "does not format a record"),
        ({"fmt": "%(message"}, "does not format a record"),
        ({"datefmt": 3}, "datefmt"),
        ({"logger_name": None}, "logger_name"),
    ],
)
def test_bad_arguments_are_config_errors_and_change_nothing(kwargs: dict[str, object], match: str) -> None:
    before = list(logging.getLogger("werk_trio").handlers)
    with pytest.raises(ConfigError, match=match):
        configure_logging(**kwargs)  # type: ignore[arg-type]
    assert logging.getLogger("werk_trio").handlers == before


def test_werk_log_color_and_log_fmt(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    Werk("postgresql://nobody@127.0.0.1:1/x", log_color=True, log_fmt="%(levelname)s %(job)s%(message)s")
    emit(stream)
    assert stream.getvalue() == "\x1b[33mWARNING\x1b[0m [job 6f1c2a9e app.tasks.send #3] hello\n"
    assert wlog.active_setup is not None and wlog.active_setup["fmt"] == "%(levelname)s %(job)s%(message)s"
    with pytest.raises(ConfigError, match="log_color"):
        Werk("postgresql://nobody@127.0.0.1:1/x", log_color="auto")
    with pytest.raises(ConfigError, match="does not format a record"):
        Werk("postgresql://nobody@127.0.0.1:1/x", log_fmt="%(job_idx)s")
