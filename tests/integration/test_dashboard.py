"""``werk dashboard`` in a real terminal: tmux (a private server of its own)
runs it against a schema with live worker processes; the test reads the
screen with ``capture-pane``, presses keys with ``send-keys``, kills a worker
and watches it marked dead, and quits with ``q``. Every wait polls the pane
for a condition under the test's ``trio.fail_after``."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import trio

from tests.integration._cli_support import APP, invoke
from tests.proctools import REPO, child_env, describe, spawn, worker_argv
from werk_trio import EnqueueParams, Werk
from werk_trio.cli import dashboard
from werk_trio.testing import until


class Tmux:
    """One tmux server (``-L`` socket of its own) with one 160x50 session."""

    def __init__(self) -> None:
        self.socket = f"werk-test-{uuid.uuid4().hex[:10]}"
        self.t0 = trio.current_time()
        self.waiting_for = ""

    def cmd(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=False)
        return done.stdout

    def start(self, command: str) -> None:
        subprocess.run(["tmux", "-L", self.socket, "new-session", "-d", "-x", "160", "-y", "50", "-s", "dash",
                        command], check=True)  # fmt: skip

    def screen(self) -> str:
        return self.cmd("capture-pane", "-p", "-t", "dash")

    def keys(self, *keys: str) -> None:
        self.cmd("send-keys", "-t", "dash", *keys)

    def kill(self) -> None:
        self.cmd("kill-server")

    async def until(self, check: Callable[[str], object], what: str) -> str:
        """Poll the screen until ``check(screen)`` holds (the caller's fail_after bounds it)."""
        self.last = ""
        self.waiting_for = what
        while True:
            self.last = await trio.to_thread.run_sync(self.screen)
            if check(self.last):
                print(f"{trio.current_time() - self.t0:6.1f}s {what}")
                return self.last
            await trio.sleep(0.1)


def _row(queue: str, complete: int) -> Callable[[str], bool]:
    """The counts table shows ``complete`` complete jobs on ``queue``."""
    pattern = re.compile(rf"│ {queue} +│ +\d+ │ +\d+ │ +\d+ │ +\d+ │ +\d+ │ +{complete} │")
    return lambda screen: bool(pattern.search(screen))


async def test_dashboard_live_in_a_terminal(app: Werk, dsn: str, schema: str, tmp_path: Path) -> None:
    env = child_env(dsn, schema)
    tmux = Tmux()
    status_file = tmp_path / "status"
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(("WERK_", "PYTHON")))
    # (-u: a COLUMNS/LINES the pane may inherit would pin rich to 80x24)
    command = (f"cd {shlex.quote(str(REPO))} && env -u COLUMNS -u LINES {exports} "
               f"{shlex.quote(sys.executable)} -m werk_trio.cli "
               f"dashboard {APP} --interval 0.5 --minutes 10 -l ERROR 2>{tmp_path / 'stderr'}; "
               f"echo exit=$? > {status_file}")  # fmt: skip
    wargs = ("--heartbeat-interval", "0.5", "--sweep-interval", "600", "-l", "WARNING")
    with trio.fail_after(150):
        for i in range(3):
            await app.enqueue("tests.cliapp.add", i, _queue="default")
        async with spawn(worker_argv("-q", "default", "-c", "4", "-w", "thread", *wargs, app=APP),
                         env=env, log_path=tmp_path / "w1.log") as w1, \
                spawn(worker_argv("-q", "other", "-c", "2", *wargs, app=APP), env=env,
                      log_path=tmp_path / "w2.log") as w2:  # fmt: skip
            try:
                await until(lambda: _online(app, 2))
                tmux.start(command)
                await tmux.until(lambda s: "jobs by queue and status" in s and "workers online 2" in s,
                                 "the overview with two live workers")  # fmt: skip
                await tmux.until(_row("default", 3), "3 complete on default")

                # counts change while it runs
                for i in range(5):
                    await app.enqueue("tests.cliapp.add", i, _queue="default")
                await app.enqueue("tests.cliapp.boom", "kaboom", _queue="other")
                screen = await tmux.until(_row("default", 8), "8 complete on default")
                screen = await tmux.until(lambda s: "ValueError: kaboom" in s, "the recent failure")
                assert re.search(r"│ \S+ +│ thread │ default │ +\d+/4 │ .*│ alive", screen), screen
                assert re.search(r"│ \S+ +│ async +│ other +│ +\d+/2 │ .*│ alive", screen), screen

                # a killed worker is marked dead (silent for 3 heartbeat intervals)
                w2.send_signal(signal.SIGKILL)
                screen = await tmux.until(lambda s: "DEAD workers 1" in s, "the killed worker marked dead")
                assert re.search(r"│ \S+ +│ async +│ other +│ .*│ DEAD", screen), screen
                assert re.search(r"│ \S+ +│ thread │ default │ .*│ alive", screen), screen
                assert "workers online 1" in screen

                # a paused, limited queue is marked in the counts and the summary
                await app.pause_queue("other")
                await app.set_rate_limit("other", 5, 1)
                screen = await tmux.until(lambda s: "paused queues: other" in s, "the paused queue")
                assert re.search(r"│ other +│ .*│ paused  5/1s +│", screen), screen
                assert re.search(r"│ default +│ [^a-z]*│ +│", screen), screen  # no controls

                # keys: failures view, workers view, pause, overview, quit
                tmux.keys("f")
                screen = await tmux.until(lambda s: "view: failures" in s, "the failures view")
                assert "ValueError: kaboom" in screen and "jobs by queue and status" not in screen
                tmux.keys("w")
                screen = await tmux.until(lambda s: "view: workers" in s and "functions" in s,
                                          "the workers view")  # fmt: skip
                assert "concurrency" in screen and "DEAD" in screen
                tmux.keys("p")
                await tmux.until(lambda s: "PAUSED" in s, "paused")
                await app.enqueue("tests.cliapp.add", 1, _queue="default")
                await until(lambda: _complete(app, "default", 9))
                tmux.keys("o")  # a key redraws, but paused: the last read's counts stay
                screen = await tmux.until(lambda s: "view: overview" in s, "the overview again")
                assert _row("default", 8)(screen) and "PAUSED" in screen, screen
                tmux.keys("p")
                await tmux.until(_row("default", 9), "refreshing again: 9 complete")
                tmux.keys("q")
                await until(lambda: _exists(status_file))
                assert status_file.read_text().strip() == "exit=0", (tmp_path / "stderr").read_text()
                assert (tmp_path / "stderr").read_text() == ""
            except BaseException:
                err = tmp_path / "stderr"
                print(f"waiting for {tmux.waiting_for}; last screen:\n" + getattr(tmux, "last", "") + "\n"
                      + describe([w1, w2]),
                      tmux.cmd("display", "-p", "-t", "dash", "#{pane_width}x#{pane_height}"),
                      err.read_text() if err.exists() else "")  # fmt: skip
                raise
            finally:
                tmux.kill()


async def _online(app: Werk, n: int) -> bool:
    workers = await app.list_workers()
    return sum(w["status"] == "running" for w in workers) == n


async def _complete(app: Werk, queue: str, n: int) -> bool:
    return (await app.counts()).get(queue, {}).get("complete") == n


async def _exists(path: Path) -> bool:
    return path.exists() and path.read_text().strip() != ""


async def test_dashboard_once_and_without_a_terminal(app: Werk, dsn: str, schema: str) -> None:
    with trio.fail_after(60):
        await app.enqueue("tests.cliapp.add", 1, _queue="reports")
        frame = (await invoke(dsn, schema, "dashboard", APP, "--once", "-q", "reports")).ok().stdout
        assert "jobs by queue and status" in frame and re.search(r"│ reports +│ +0 │ +1 │", frame), frame
        assert "no workers" in frame and "no failed jobs" in frame
        assert "paused" not in frame
        await app.pause_queue("reports")
        await app.set_queue_limit("reports", 3, partition_by="_group")
        await app.set_rate_limit("reports", 50, 1)
        await app.pause_queue("elsewhere")  # another queue: -q reports leaves it out
        frame = (await invoke(dsn, schema, "dashboard", APP, "--once", "-q", "reports")).ok().stdout
        assert re.search(r"│ reports +│ +0 │ +1 │ .*│ paused  max 3 per _group  50/1s │", frame), frame
        assert "paused queues: reports " in frame and "elsewhere" not in frame, frame
        live = await invoke(dsn, schema, "dashboard", APP)
        assert live.code == 2 and "the live dashboard needs a terminal; use --once" in live.stderr


class CountingCalls:
    """The app, with a record of the introspection calls made through it."""

    def __init__(self, app: Werk) -> None:
        self.app = app
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> object:
        self.calls.append(name)
        return getattr(self.app, name)


async def test_a_refresh_counts_the_live_jobs_once(app: Werk, dsn: str, schema: str) -> None:
    """One refresh is one count of the jobs by queue and status (list_queues,
    which carries the controls too), not get_queue_stats and list_queues both;
    a paused queue with no jobs still has its row, with its controls."""
    with trio.fail_after(60):
        await app.enqueue_many([EnqueueParams("tests.cliapp.add", (n,), queue="reports") for n in range(3)])
        await app.pause_queue("idle")
        spy = CountingCalls(app)
        snap = await dashboard.read(spy, None, 60)
        counting = [c for c in spy.calls if c in ("get_queue_stats", "list_queues", "counts")]
        assert counting == ["list_queues"], spy.calls
        assert snap.total == 3
        assert {q["queue"]: q.get("queued", 0) for q in snap.queues} == {"idle": 0, "reports": 3}
        assert snap.controls["idle"]["paused"] and "reports" not in snap.controls
        frame = (await invoke(dsn, schema, "dashboard", APP, "--once")).ok().stdout
        assert re.search(r"│ idle +│ +0 │ +0 │ .*│ paused +│", frame), frame
        assert re.search(r"│ all +│ +0 │ +3 │", frame) and "jobs 3 " in frame, frame


async def test_dashboard_marks_the_counts_that_are_estimates(app: Werk, dsn: str, schema: str) -> None:
    """Issue 18: above estimate_limit a count is the planner's estimate, shown
    as ``~n`` with a note; the counts at or under it stay plain."""
    with trio.fail_after(60):
        await app.enqueue_many([EnqueueParams("tests.cliapp.add", (n,), queue="big") for n in range(3)])
        await app.enqueue("tests.cliapp.add", 1, _queue="small")
        await app.vacuum()  # the planner's statistics (ANALYZE), as autovacuum keeps them
        frame = (await invoke(dsn, schema, "dashboard", APP, "--once", CLIAPP_ESTIMATE_LIMIT="2")).ok().stdout
        assert re.search(r"│ big +│ +0 │ +~3 │", frame), frame
        assert re.search(r"│ small +│ +0 │ +1 │", frame), frame
        assert re.search(r"│ all +│ +0 │ +~4 │", frame), frame
        assert "jobs ~4 " in frame and "~ an estimate" in frame, frame
        frame = (await invoke(dsn, schema, "dashboard", APP, "--once", CLIAPP_ESTIMATE_LIMIT="3")).ok().stdout
        assert re.search(r"│ big +│ +0 │ +3 │", frame) and "~" not in frame, frame
