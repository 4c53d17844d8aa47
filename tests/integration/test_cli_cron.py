"""``werk cron APP [--list]`` through click's CliRunner (in process) and as a
real process. The APP is a module written for each test, naming the test's
database and schema."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from werk_trio import Werk
from werk_trio.cli.cron import command

MODULE = """
from werk_trio import CronScheduler, Werk

app = Werk({dsn!r}, schema={schema!r}, task_modules=["tests"])
scheduler = CronScheduler(app)
{registrations}
"""


def write_app(tmp_path: Path, dsn: str, schema: str, registrations: str) -> str:
    """A module in ``tmp_path`` defining ``app``; returns its APP spec."""
    name = f"cronapp_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(MODULE.format(dsn=dsn, schema=schema, registrations=registrations))
    return f"{name}:app"


REGISTRATIONS = """
scheduler.register("tests.integration.test_cron.beat", interval=60, name="every-minute")
scheduler.register("tests.integration.test_cron.other_beat", cron="0 9 * * 1-5", tz="Europe/Berlin",
                   name="weekday-report", queue="reports")
"""


def test_list_shows_code_registrations_before_any_scheduler_ran(
    dsn: str, schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = write_app(tmp_path, dsn, schema, REGISTRATIONS)
    result = CliRunner().invoke(command, [spec, "--list", "--log-level", "WARNING"])
    assert result.exit_code == 0, result.output
    for text in ("every-minute", "weekday-report", "every 60s", "0 9 * * 1-5 (Europe/Berlin)", "reports",
                 "not started"):  # fmt: skip
        assert text in result.output, (text, result.output)


def test_list_shows_the_shared_state_after_a_run(
    dsn: str, schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = write_app(tmp_path, dsn, schema, REGISTRATIONS)
    # a real `werk cron` process writes the schedules and leads; SIGTERM stops it
    proc = subprocess.Popen(
        [sys.executable, "-c", "from werk_trio.cli.cron import command; command()", spec],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "started as" in line:
                assert "started as leader" in line, line
                break
        else:
            raise AssertionError(f"werk cron exited with {proc.wait()}")
        proc.terminate()
        rest = proc.stdout.read()
        assert proc.wait(timeout=30) == 0, rest
        assert "released the lease" in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    async def pause() -> None:
        async with Werk(dsn, schema=schema) as app:
            await app.pause_cron("weekday-report")

    trio.run(pause)
    result = CliRunner().invoke(command, [spec, "--list", "--log-level", "WARNING"])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 5}
    assert "paused" in lines["weekday-report"] and "active" in lines["every-minute"], result.output
    assert "not started" not in result.output
    # the next run of the weekday report is a 09:00 Berlin time, shown in UTC
    assert (" 07:00:00 UTC" in lines["weekday-report"]) or (" 08:00:00 UTC" in lines["weekday-report"])


def test_app_without_schedules_is_a_usage_error(
    dsn: str, schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = write_app(tmp_path, dsn, schema, "")
    result = CliRunner().invoke(command, [spec])
    assert result.exit_code == 2
    assert "has no cron schedules" in result.output and "scheduler.register" in result.output


def test_bad_app_and_options_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(command, ["no_such_module:app"])
    assert result.exit_code == 2 and "cannot import 'no_such_module'" in result.output
    result = CliRunner().invoke(command, ["nocolon"])
    assert result.exit_code == 2 and "module:attribute" in result.output
    result = CliRunner().invoke(command, ["x:app", "--catch-up", "all"])
    assert result.exit_code == 2 and "'one'" in result.output
    result = CliRunner().invoke(command, ["x:app", "--lease", "soon"])
    assert result.exit_code == 2


def test_bad_lease_is_a_config_error(dsn: str, schema: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    spec = write_app(tmp_path, dsn, schema, REGISTRATIONS)
    result = CliRunner().invoke(command, [spec, "--lease", "0"])
    assert result.exit_code == 2 and "lease must be" in result.output
