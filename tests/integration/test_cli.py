"""The ``werk`` command line, through click's runner and as real processes,
against the test server: what each command prints (rows, counts, ids, the
``--json`` lines parsed), what it changes, its exit status, and that untrusted
text is printed escaped."""

from __future__ import annotations

import json
import re
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from tests.integration._cli_support import APP, Ran, invoke, werk
from tests.proctools import child_env, spawn
from werk_trio import Werk
from werk_trio.testing import until

# A queue/error text that would retitle the terminal, clear it, and fake a row.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\nqueue default: complete=999"


async def _fill(dsn: str, schema: str) -> dict[str, str]:
    """Three ``add`` jobs on default, one ``boom`` on a hostile queue, one
    ``nap`` scheduled an hour out with a key; drained by a burst worker run
    through the runner with pgwerk's short flags. Returns ids by name."""
    ids: dict[str, str] = {}
    for i in range(3):
        ran = (await invoke(dsn, schema, "enqueue", APP, "tests.cliapp.add", "--args", f"[{i}, 10]",
                            "--json")).ok()  # fmt: skip
        ids[f"add{i}"] = ran.json()[0]["id"]
    boom = await invoke(dsn, schema, "enqueue", APP, "tests.cliapp.boom", "--kwargs",
                        json.dumps({"message": HOSTILE}), "-q", "other")
    match = re.fullmatch(r"enqueued (\S+) \(tests\.cliapp\.boom on queue other, queued\)\n", boom.ok().stdout)
    assert match, boom.stdout
    ids["boom"] = match.group(1)
    nap = (await invoke(dsn, schema, "enqueue", APP, "tests.cliapp.nap", "--args", "[0.01]", "--delay",
                        "3600", "-k", "nap-1", "-p", "5", "--json")).ok().json()[0]  # fmt: skip
    assert (nap["status"], nap["priority"], nap["key"]) == ("scheduled", 5, "nap-1")
    ids["nap"] = nap["id"]
    again = await invoke(dsn, schema, "enqueue", APP, "tests.cliapp.nap", "--args", "[1]", "-k", "nap-1")
    assert again.code == 1 and "nothing enqueued: a job with key 'nap-1' exists" in again.stderr
    drained = await invoke(dsn, schema, "worker", APP, "-q", "default,other", "-c", "4", "-w", "thread",
                           "--burst", "-l", "WARNING", "--log-format", "json", "--no-color")  # fmt: skip
    drained.ok()
    return ids


async def test_read_commands_print_rows_counts_and_json(app: Werk, dsn: str, schema: str) -> None:
    with trio.fail_after(90):
        ids = await _fill(dsn, schema)

        info = (await invoke(dsn, schema, "info", APP)).ok().stdout
        assert re.search(r"│ default +│ +1 │ +0 │ +0 │ +0 │ +0 │ +3 │ +0 │ +0 │ +4 │", info), info
        assert re.search(r"│ other +│ .*│ +1 │ +0 │ +1 │", info), info
        # the burst worker, gone (listed for an hour as stopped)
        assert re.search(r"│ thread │ default,other │ +4 │ .*│ stopped │", info), info
        lines = (await invoke(dsn, schema, "info", APP, "--json")).ok().json()
        assert lines[0]["kind"] == "server" and lines[0]["schema"] == schema
        assert lines[0]["pg_version"].startswith("PostgreSQL ") and lines[0]["db_size_bytes"] > 0
        assert any(t["name"] == "_werk_jobs" for t in lines[0]["tables"])
        assert re.search(r"PostgreSQL [\d.]+.*, database [\d.]+ MB; .*_werk_jobs [\d.]+ MB", info), info
        queues = {o["queue"]: o for o in lines if o["kind"] == "queue"}
        assert queues["default"]["counts"] == {"complete": 3, "scheduled": 1}
        assert queues["other"]["counts"] == {"failed": 1} and queues["default"]["total"] == 4

        one = (await invoke(dsn, schema, "jobs", APP, "-q", "other", "-s", "failed,complete", "-n", "5",
                            "--offset", "0", "--json")).ok().json()  # fmt: skip
        assert [(j["id"], j["status"], j["function"]) for j in one] == [(ids["boom"], "failed",
                                                                         "tests.cliapp.boom")]
        assert one[0]["error"].rstrip().endswith("ValueError: " + HOSTILE)  # JSON carries the raw text
        table = (await invoke(dsn, schema, "jobs", APP, "--queue", "other", "--status", "failed")).ok().stdout
        assert ids["boom"] in table and "1 jobs (offset 0)" in table
        assert "\x1b" not in table and "\x07" not in table  # escaped, not sent to the terminal
        assert "ValueError: \\x1b]0;pwned\\x07\\x1b[2J" in table  # the error's first line
        assert "complete=999" not in table

        page1 = (await invoke(dsn, schema, "jobs", APP, "-n", "2", "--json")).ok().json()
        page2 = (await invoke(dsn, schema, "jobs", APP, "-n", "10", "--offset", "2", "--json")).ok().json()
        assert len(page1) == 2 and len(page2) == 3
        assert {j["id"] for j in page1 + page2} == set(ids.values())
        assert "next page: --offset 2" in (await invoke(dsn, schema, "jobs", APP, "-n", "2")).ok().stdout
        adds = (await invoke(dsn, schema, "jobs", APP, "-f", "tests.cliapp.add", "-s", "complete",
                             "--json")).ok().json()  # fmt: skip
        assert sorted(j["id"] for j in adds) == sorted(ids[f"add{i}"] for i in range(3))

        stats = (await invoke(dsn, schema, "stats", APP, "--json")).ok().json()
        assert stats[-1] == {"queue": None, "counts": {"scheduled": 1, "complete": 3, "failed": 1},
                             "total": 5, "workers_online": 0, "concurrency_online": 0}  # fmt: skip
        assert [s["queue"] for s in stats[:-1]] == ["default", "other"]
        text = (await invoke(dsn, schema, "stats", APP, "-q", "default")).ok().stdout
        assert "status distribution (4 jobs)" in text and re.search(r"│ complete +│ +3 │ +75\.0% │", text)

        slow = (await invoke(dsn, schema, "slowest", APP, "--since", "1h", "-n", "5", "--json")).ok().json()
        by = {f["function"]: f for f in slow}
        assert set(by) == {"tests.cliapp.add", "tests.cliapp.boom"}
        assert (by["tests.cliapp.add"]["runs"], by["tests.cliapp.add"]["failures"]) == (3, 0)
        assert (by["tests.cliapp.boom"]["runs"], by["tests.cliapp.boom"]["failures"]) == (1, 1)
        assert all(f["p50"] <= f["p95"] <= f["max"] for f in slow)
        only = (await invoke(dsn, schema, "slowest", APP, "-q", "other", "--json")).ok().json()
        assert [f["function"] for f in only] == ["tests.cliapp.boom"]
        assert "tests.cliapp.add" in (await invoke(dsn, schema, "slowest", APP, "--since", "2d")).ok().stdout

        hours = (await invoke(dsn, schema, "throughput", APP, "--hours", "2", "--json")).ok().json()
        assert len(hours) == 2 and hours[-1]["completed"] == 3 and hours[-1]["failed"] == 1, hours
        assert hours[0]["time"] < hours[1]["time"]
        other = (await invoke(dsn, schema, "throughput", APP, "-q", "other", "--json")).ok().json()
        assert len(other) == 24 and sum(h["failed"] for h in other) == 1
        assert sum(h["completed"] for h in other) == 0
        chart = (await invoke(dsn, schema, "throughput", APP, "--hours", "3")).ok().stdout
        assert "finished jobs per hour, last 3h" in chart and "total: 3 complete, 1 failed" in chart

        shown = (await invoke(dsn, schema, "job", "show", APP, ids["boom"], "--json")).ok().json()[0]
        assert shown["kwargs"] == {"message": HOSTILE} and shown["status"] == "failed"
        assert [(e["attempt"], e["status"]) for e in shown["executions"]] == [(1, "failed")]
        assert shown["executions"][0]["error"].rstrip().endswith(HOSTILE)
        text = (await invoke(dsn, schema, "job", "show", APP, ids["add1"])).ok().stdout
        assert f"job {ids['add1']}" in text and re.search(r"│ result +│ 11 +│", text) and "executions" in text


async def test_job_operations_report_what_changed(app: Werk, dsn: str, schema: str) -> None:
    with trio.fail_after(90):
        ids = await _fill(dsn, schema)
        cancel = await invoke(dsn, schema, "job", "cancel", APP, ids["nap"])
        assert cancel.ok().stdout == f"cancelled {ids['nap']} (now aborted)\ncancelled 1 of 1 jobs\n"
        again = await invoke(dsn, schema, "job", "cancel", APP, ids["nap"], "--json")
        assert again.code == 1 and again.json()[0]["changed"] is False
        assert "it is aborted" in again.json()[0]["error"]

        missing = "00000000-0000-7000-8000-000000000000"
        mixed = await invoke(dsn, schema, "job", "requeue", APP, ids["boom"], missing)
        assert mixed.code == 1 and f"requeued {ids['boom']} (now queued)" in mixed.stdout
        assert "requeued 1 of 2 jobs" in mixed.stdout and missing in mixed.stderr
        assert (await app.get_job(ids["boom"])).status.value == "queued"

        # abort applies to a running job only (pgwerk's): a queued one is cancelled
        unstarted = await invoke(dsn, schema, "job", "abort", APP, ids["boom"], "--json")
        assert unstarted.code == 1 and "it is queued" in unstarted.json()[0]["error"]
        cancelled = (await invoke(dsn, schema, "job", "cancel", APP, ids["boom"], "--json")).ok().json()
        assert cancelled == [{"id": ids["boom"], "changed": True, "status": "aborted"}]

        bulk = (await invoke(dsn, schema, "requeue", APP, "--failed", "-q", "other", "--json")).ok().json()
        assert bulk[0]["requeued"] == 1 and (await app.get_job(ids["boom"])).status.value == "queued"
        nap = (await invoke(dsn, schema, "requeue", APP, "--failed", "--queue", "default")).ok()
        assert nap.stdout == "requeued 1 jobs\n"  # the cancelled (aborted) nap
        assert (await app.get_job(ids["nap"])).status.value == "queued"
        none = await invoke(dsn, schema, "requeue", APP, "--failed", "--queue", "default")
        assert none.code == 1 and none.stdout == "requeued 0 jobs\n"
        assert (await invoke(dsn, schema, "requeue", APP)).code == 2

        deleted = (await invoke(dsn, schema, "job", "delete", APP, ids["add0"])).ok()
        assert f"deleted {ids['add0']} (now deleted)" in deleted.stdout
        gone = await invoke(dsn, schema, "job", "show", APP, ids["add0"])
        assert gone.code == 1 and f"no job {ids['add0']}" in gone.stderr

        # purge asks first: "n" deletes nothing, "y" deletes; --yes skips the question
        no = await invoke(dsn, schema, "purge", APP, "-s", "complete", input="n\n")
        assert no.code == 1 and "Delete up to 2 jobs (status complete)?" in no.stderr
        assert (await app.counts())["default"] == {"complete": 2, "queued": 1}
        yes = (await invoke(dsn, schema, "purge", APP, "--status", "complete", input="y\n")).ok()
        assert yes.stdout == "purged 2 jobs (status complete)\n"
        assert (await app.counts())["default"] == {"queued": 1}
        await app.enqueue("tests.cliapp.add", 1)
        old = (await invoke(dsn, schema, "purge", APP, "-s", "aborted,queued", "-q", "other", "--older-than",
                            "1", "--yes", "--json")).ok().json()  # fmt: skip
        assert old[0]["purged"] == 0 and old[0]["queue"] == "other"
        purged = (await invoke(dsn, schema, "purge", APP, "-s", "queued", "-q", "other", "-y")).ok()
        assert purged.stdout == "purged 1 jobs (status queued, queue other)\n"
        assert await app.counts() == {"default": {"queued": 2}}  # the nap and the new add


async def test_purge_deletes_a_big_table_in_batches(app: Werk, dsn: str, schema: str) -> None:
    with trio.fail_after(120):
        async with app.connection() as conn:  # 25,000 finished rows: three batches of the purge
            await conn.execute(app.sql.render(
                "INSERT INTO {jobs} (id, function, status, enqueued_at, completed_at) "
                "SELECT gen_random_uuid(), 'tests.cliapp.add', 'complete', now(), now() "
                "FROM generate_series(1, 25000)"))  # fmt: skip
        ran = (await invoke(dsn, schema, "purge", APP, "--yes")).ok()
        assert ran.stdout == "purged 25000 jobs (status complete,failed,aborted)\n"
        assert await app.counts() == {}


async def test_errors_are_one_line_with_the_exit_status(app: Werk, dsn: str, schema: str) -> None:
    password = "s3cr'et/@ x"
    unreachable = f"postgresql://u:{password.replace('/', '%2F').replace('@', '%40').replace(' ', '%20')}" \
                  "@127.0.0.1:1/db"  # fmt: skip
    cases = {
        "flag": (["jobs", APP, "--bogus"], 2, "No such option '--bogus'"),
        "level": (["worker", APP, "--log-level", "bogus"], 2, "'bogus' is not one of"),
        "status": (["jobs", APP, "-s", "done"], 2, "unknown status 'done'"),
        "app": (["info", "nosuch.module:app"], 2, "cannot import 'nosuch.module'"),
        "app-form": (["stats", "nocolon"], 2, "APP must be 'module:attribute'"),
        "id": (["job", "show", APP, "nope"], 2, "'nope' is not a job id"),
        "args": (["enqueue", APP, "tests.cliapp.add", "--args", "{"], 2,
                 "Invalid value for '--args': not JSON"),
        "since": (["slowest", APP, "--since", "soon"], 2, "is not a duration"),
        "missing": (["job", "show", APP, "00000000-0000-7000-8000-000000000000"], 1, "no job 00000000"),
        "db": (["info", APP], 1, "cannot connect to database db at 127.0.0.1:1 as u"),
    }
    processes = ("flag", "level", "app", "missing", "db", "db-debug")  # the rest through the runner
    cases["db-debug"] = (["info", APP, "-l", "DEBUG"], 1, "cannot connect")
    with trio.fail_after(120):
        results: dict[str, Ran] = {}

        async def one(name: str, argv: list[str]) -> None:
            env = {"WERK_DSN": unreachable} if name.startswith("db") else {}
            results[name] = await (werk if name in processes else invoke)(dsn, schema, *argv, **env)

        for name, (argv, _, _) in cases.items():
            if name not in processes:
                await one(name, argv)
        async with trio.open_nursery() as nursery:
            for name in processes:
                nursery.start_soon(one, name, cases[name][0])
    debug = results.pop("db-debug")
    assert debug.code == 1 and "Traceback (most recent call last)" in debug.stderr, debug
    assert debug.stderr.splitlines()[-1].startswith("werk: error: cannot connect")
    assert password not in debug.stderr
    for name, (_, code, needle) in cases.items():
        if name == "db-debug":
            continue
        ran = results[name]
        assert ran.code == code, (name, ran)
        assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("werk: error: "), (name, ran.stderr)
        assert needle in ran.stderr, (name, ran.stderr)
        assert "Traceback" not in ran.stderr and password not in ran.stderr and "s3cr" not in ran.stderr


async def test_version_completion_and_colour(app: Werk, dsn: str, schema: str) -> None:
    with trio.fail_after(90):
        listed = (await invoke(dsn, schema, "--help")).ok().stdout
        names = re.findall(r"^  ([a-z]+) ", listed.split("Commands:")[1], flags=re.MULTILINE)
        expected = {"worker", "info", "jobs", "stats", "throughput", "slowest", "purge", "dashboard",
                    "migrate", "demo", "job", "requeue", "enqueue"}  # fmt: skip
        assert set(names) >= expected, listed
        bare = await invoke(dsn, schema)
        assert bare.code == 2 and "Commands:" in bare.stderr
        version = (await invoke(dsn, schema, "--version")).ok().stdout
        assert re.fullmatch(r"werk \d+\.\d+\.\d+\n", version)
        script = (await werk(dsn, schema, _WERK_COMPLETE="bash_source")).ok().stdout
        assert "_werk_completion()" in script and "complete -o nosort -F _werk_completion werk" in script
        words = (await werk(dsn, schema, COMP_WORDS="werk jo", COMP_CWORD="1",
                            _WERK_COMPLETE="bash_complete")).ok().stdout  # fmt: skip
        assert words.split() == ["plain,job", "plain,jobs"]
        flags = (await werk(dsn, schema, COMP_WORDS="werk worker APP --worker-type ", COMP_CWORD="4",
                            _WERK_COMPLETE="bash_complete")).ok().stdout  # fmt: skip
        assert flags.split() == ["plain,async", "plain,thread", "plain,process", "plain,fork"]

        await app.enqueue("tests.cliapp.add", 1)
        coloured = (await invoke(dsn, schema, "jobs", APP, FORCE_COLOR="1")).ok().stdout
        assert "\x1b[34mqueued" in coloured  # the status colour
        for env, flags_ in (({"NO_COLOR": "1"}, ()), ({}, ("--no-color",))):
            plain = (await invoke(dsn, schema, "jobs", APP, *flags_, FORCE_COLOR="1", **env)).ok().stdout
            assert "queued" in plain and not re.search(r"\x1b\[3\dm", plain), (env, plain)


async def test_worker_prefetch_option(app: Werk, dsn: str, schema: str) -> None:
    """--prefetch reaches the worker and a negative one is refused: one runner
    with three prefetched claims all four jobs in one statement (one started_at,
    the claim's transaction time); without it, each claim takes one."""
    with trio.fail_after(90):
        bad = await invoke(dsn, schema, "worker", APP, "--prefetch", "-1", "--burst")
        assert bad.code == 2 and "--prefetch" in bad.stderr and "-1" in bad.stderr, bad.stderr
        jobs = [await app.enqueue("tests.cliapp.add", i) for i in range(4)]
        (await invoke(dsn, schema, "worker", APP, "-c", "1", "--prefetch", "3", "--burst",
                      "-l", "WARNING")).ok()  # fmt: skip
        done = [await app.get_job(job.id) for job in jobs if job]
        assert [j.status for j in done] == ["complete"] * 4
        assert len({j.started_at for j in done}) == 1, [j.started_at for j in done]


async def test_pgwerk_command_lines_run_unchanged(app: Werk, dsn: str, schema: str, tmp_path: Path) -> None:
    """The command lines of pgwerk's CLI guide, APP aside, as real processes."""
    workers = {
        "queues": f"worker {APP} --queues default,high --concurrency 20",
        "thread-json": f"worker {APP} --worker-type thread --log-format json",
        "process": f"worker {APP} --worker-type process --concurrency 4",
    }
    env = child_env(dsn, schema)
    with trio.fail_after(240):
        for i in range(4):
            await app.enqueue("tests.cliapp.add", i)
        failed = [(await app.enqueue("tests.cliapp.boom", f"no {i}", _queue="high")) for i in range(2)]
        async with AsyncExitStack() as stack:
            children = {name: await stack.enter_async_context(spawn(
                [sys.executable, "-m", "werk_trio.cli", *line.split()], env=env, log_path=tmp_path / name))
                for name, line in workers.items()}  # fmt: skip
            await until(lambda: _finished(app, 6))
            await until(lambda: _running(app, 3))  # each has its signal handlers by now
            for child in children.values():
                child.send_signal(signal.SIGTERM)
            for name, child in children.items():
                assert await child.wait() == 0, (name, child.output())
        logged = [json.loads(line) for line in children["thread-json"].output().splitlines() if line.strip()]
        assert logged and all("msg" in obj and "level" in obj for obj in logged)

        async def run(line: str, input: str | None = None) -> Ran:
            return (await werk(dsn, schema, *line.split(), input=input)).ok()

        info, high, paged, stats, hourly, slowest = [await run(line) for line in (
            f"info {APP}", f"jobs {APP} --queue high --status failed", f"jobs {APP} --limit 50 --offset 50",
            f"stats {APP}", f"throughput {APP}", f"slowest {APP}")]  # fmt: skip
        assert re.search(r"│ high +│ .*│ +2 │ +0 │ +2 │", info.stdout), info.stdout
        assert all(str(job.id) in high.stdout for job in failed if job) and "2 jobs (offset 0)" in high.stdout
        assert "0 jobs (offset 50)" in paged.stdout
        assert "status distribution (6 jobs)" in stats.stdout
        assert "finished jobs per hour, last 24h" in hourly.stdout
        assert "total: 4 complete, 2 failed" in hourly.stdout
        assert re.search(r"│ tests\.cliapp\.add +│ +4 │", slowest.stdout), slowest.stdout
        old = await run(f"purge {APP} --status failed --older-than 7", input="y\n")
        assert "purged 0 jobs (status failed, ended more than 7 days ago)" in old.stdout
        done = await run(f"purge {APP} --status complete", input="y\n")
        assert "purged 4 jobs (status complete)" in done.stdout
        assert await app.counts() == {"high": {"failed": 2}}


async def _running(app: Werk, n: int) -> bool:
    return sum(w["status"] == "running" for w in await app.list_workers()) == n


async def _finished(app: Werk, n: int) -> bool:
    counts = await app.counts()
    return sum(c.get("complete", 0) + c.get("failed", 0) for c in counts.values()) == n


async def test_hostile_names_from_rows_are_printed_escaped(app: Werk, dsn: str, schema: str) -> None:
    """Issue 10, finding 8: a queue (and function, error) carrying terminal
    escapes, inserted directly, is printed escaped by every command."""
    with trio.fail_after(60):
        async with app.connection() as conn:
            await conn.execute(
                app.sql.render("INSERT INTO {jobs} (id, function, queue, status, error, completed_at, "
                               "started_at) VALUES (gen_random_uuid(), %(f)s, %(q)s, 'failed', %(e)s, now(), "
                               "now())"),
                {"f": "tests.cliapp.add\x1b[8m", "q": HOSTILE, "e": "Boom\u202e: \x1b[2J"},
            )  # fmt: skip
        escaped = "\\x1b]0;pwned\\x07\\x1b[2J\\x0aqueue default: complete=999"
        for argv in (["info", APP], ["stats", APP], ["jobs", APP], ["slowest", APP],
                     ["dashboard", APP, "--once"], ["throughput", APP]):  # fmt: skip
            out = (await invoke(dsn, schema, *argv)).ok().stdout
            assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", out), (argv, out)
            assert not re.search(r"^queue default: complete=999", out, flags=re.MULTILINE), argv
            if argv[0] in ("info", "stats", "jobs", "dashboard"):
                assert escaped in out, (argv, out)
        jobs = (await invoke(dsn, schema, "jobs", APP)).stdout
        assert "tests.cliapp.add\\x1b[8m" in jobs and "Boom\\u202e: \\x1b[2J" in jobs
        lines = (await invoke(dsn, schema, "info", APP, "--json")).ok()
        assert "\x1b" not in lines.stdout and {o.get("queue") for o in lines.json()} >= {HOSTILE}


async def test_job_operations_as_real_processes(dsn: str, schema: str) -> None:
    with trio.fail_after(180):
        fresh = (await invoke(dsn, schema, "migrate", APP, "--json")).ok().json()
        assert fresh[0]["applied"][0] == 1 and fresh[0]["schema"] == schema
        assert (await werk(dsn, schema, "migrate", APP)).ok().stdout == "schema is up to date\n"
        made = (await werk(dsn, schema, "enqueue", APP, "tests.cliapp.add", "--args", "[2]", "--kwargs",
                           '{"b": 3}', "-q", "ops", "--delay", "600", "--json")).ok().json()  # fmt: skip
        jid = made[0]["id"]
        assert (made[0]["status"], made[0]["queue"]) == ("scheduled", "ops")
        shown = (await werk(dsn, schema, "job", "show", APP, jid, "--json")).ok().json()[0]
        assert (shown["args"], shown["kwargs"], shown["executions"]) == ([2], {"b": 3}, [])
        cancelled = (await werk(dsn, schema, "job", "cancel", APP, jid)).ok().stdout
        assert cancelled == f"cancelled {jid} (now aborted)\ncancelled 1 of 1 jobs\n"
        requeued = (await werk(dsn, schema, "requeue", APP, "--failed", "-q", "ops", "--json")).ok().json()
        assert requeued[0]["requeued"] == 1
        unstarted = await werk(dsn, schema, "job", "abort", APP, jid, "--json")  # running jobs only
        assert unstarted.code == 1 and unstarted.json()[0]["changed"] is False
        shown = (await werk(dsn, schema, "job", "show", APP, jid, "--json")).ok().json()[0]
        assert shown["status"] == "queued"
        deleted = (await werk(dsn, schema, "job", "delete", APP, jid)).ok().stdout
        assert deleted == f"deleted {jid} (now deleted)\ndeleted 1 of 1 jobs\n"
        again = await werk(dsn, schema, "job", "delete", APP, jid)
        assert again.code == 1 and f"no job with id {jid}" in again.stderr
        assert (await werk(dsn, schema, "jobs", APP, "--json")).ok().stdout == ""
