"""Issue 15: ``werk api`` (werk_trio/cli/api.py) -- usage errors through click's
CliRunner (exit 2, a message that says what to fix, nothing served), and the
command as a real process: the WERK_DSN fallback without APP, the token file,
read-only, --metrics, and a clean stop on SIGTERM.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from tests.proctools import child_env, spawn
from werk_trio import Werk
from werk_trio.cli.api import command

from ._api_support import client

TOKEN = "cli-token-0123456789abcdef"
API = [sys.executable, "-c", "from werk_trio.cli.api import command; command()"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--host", "0.0.0.0"], "without a token"),
    (["--host", "10.1.2.3", "--port", "0"], "without a token"),
    (["--token-file", "/nonexistent/token"], "cannot read --token-file"),
    (["--port", "70000"], "70000"),
    (["--metrics-interval", "0"], "metrics-interval"),
    (["nomodule_here:app"], "cannot import"),
    (["not-an-app-spec"], "module:attribute"),
])  # fmt: skip
def test_usage_errors_exit_2(args: list[str], needle: str, dsn: str, schema: str) -> None:
    result = CliRunner().invoke(command, args, env={"WERK_DSN": dsn, "WERK_SCHEMA": schema})
    assert result.exit_code == 2, result.output
    assert needle in result.output, result.output
    assert "Traceback" not in result.output


def test_empty_token_file_exits_2(tmp_path: Path, dsn: str) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    result = CliRunner().invoke(command, ["--token-file", str(empty)], env={"WERK_DSN": dsn})
    assert result.exit_code == 2 and "is empty" in result.output, result.output


async def test_werk_api_as_a_process(app: Werk, dsn: str, schema: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    argv = [*API, "--port", "0", "--token-file", str(token_file), "--metrics", "--metrics-interval", "0.1"]
    with trio.fail_after(60):
        async with spawn(argv, env=child_env(dsn, schema), log_path=tmp_path / "api.log") as child:
            out = await child.wait_for_output("listening on http://")
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", out)
            assert match, out
            job = await app.enqueue("tests.integration.test_api.add", 1, 2, _queue="cli")
            assert job is not None
            async with client(match.group(1)) as http:
                assert (await http.get("/api/health")).status_code == 200
                assert (await http.get("/api/ready")).status_code == 200
                assert (await http.get("/api/jobs")).status_code == 401
                auth = {"authorization": f"Bearer {TOKEN}"}
                r = await http.get(f"/api/jobs/{job.id}", headers=auth)
                assert r.status_code == 200 and r.json()["queue"] == "cli", r.text

                async def counted() -> bool:
                    r = await http.get("/metrics", headers=auth)
                    assert r.status_code == 200
                    for family in text_string_to_metric_families(r.text):
                        for s in family.samples:
                            if s.name == "wrk_jobs" and s.labels == {"queue": "cli", "status": "queued"}:
                                return s.value == 1
                    return False

                while not await counted():
                    await trio.sleep(0.05)
            child.send_signal(signal.SIGTERM)
            code = await child.wait()
        out = child.output()
        assert code == 0, out
        assert "Traceback" not in out, out
        assert out.rstrip().endswith("stopped"), out


async def test_werk_api_with_an_app_read_only(app: Werk, dsn: str, schema: str, tmp_path: Path) -> None:
    argv = [*API, "tests.procapp:app", "--port", "0", "--read-only"]
    with trio.fail_after(60):
        async with spawn(argv, env=child_env(dsn, schema), log_path=tmp_path / "api.log") as child:
            out = await child.wait_for_output("listening on http://")
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+) \(read-only\)", out)
            assert match, out
            async with client(match.group(1)) as http:
                assert (await http.get("/api/jobs")).status_code == 200
                r = await http.post("/api/jobs", json={"function": "tests.integration.test_api.add"})
                assert r.status_code == 403, r.text
            assert await app.list_jobs() == []
            child.send_signal(signal.SIGINT)
            code = await child.wait()
        assert code == 0, child.output()
