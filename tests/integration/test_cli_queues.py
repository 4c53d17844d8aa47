"""``werk queues`` and ``werk queue pause|resume|limit|rate`` against the test
server: what they change (read back through the app), what they print (the
table, ``--json`` parsed), and bad flags as one line with exit status 2."""

from __future__ import annotations

import re

import pytest
import trio

from tests.integration._cli_support import APP, invoke, werk
from tests.integration.test_cli import HOSTILE
from werk_trio import EnqueueParams, Werk


async def test_queue_commands_change_controls_and_queues_lists_them(app: Werk, dsn: str, schema: str) -> None:
    with trio.fail_after(60):
        for i in range(2):
            await app.enqueue("tests.cliapp.add", i, 1, _queue="mail")
        await app.enqueue("tests.cliapp.add", 1, 1, _queue="other", _delay=3600)

        said = (await invoke(dsn, schema, "queue", "pause", APP, "mail")).ok().stdout
        assert said.startswith("paused queue mail\n") and re.search(r"│ mail +│ paused +│ \d{4}-", said), said
        [mail] = (await invoke(dsn, schema, "queue", "limit", APP, "mail", "--max-running", "3",
                               "--partition-by", "meta.customer", "--json")).ok().json()  # fmt: skip
        assert (mail["queue"], mail["paused"], mail["max_running"], mail["limit_by"]) == (
            "mail", True, 3, "meta.customer")
        said = (await invoke(dsn, schema, "queue", "rate", APP, "mail", "50", "--per", "1")).ok().stdout
        assert said.startswith("queue mail: at most 50 started per 1s\n"), said

        [info] = [q for q in await app.list_queues() if q.name == "mail"]
        assert info.paused and info.max_running == 3 and info.limit_by == "meta.customer"
        assert info.rate_limit == (50, 1.0) and info.rate_by is None

        listed = (await invoke(dsn, schema, "queues", APP)).ok().stdout
        row = r"│ mail +│ paused +│ [\d: -]+│ 3 per meta\.customer +│ 50/1s +│ +0 │ +2 │"
        assert re.search(row, listed), listed
        assert re.search(r"│ other +│ active +│ +│ +│ +│ +1 │ +0 │", listed), listed
        lines = {q["queue"]: q for q in (await invoke(dsn, schema, "queues", APP, "--json")).ok().json()}
        assert lines["mail"]["counts"] == {"queued": 2} and lines["mail"]["total"] == 2
        assert (lines["mail"]["rate_n"], lines["mail"]["rate_per_seconds"]) == (50, 1.0)
        assert lines["other"] == {"queue": "other", "paused": False, "paused_at": None, "max_running": None,
                                  "limit_by": None, "rate_n": None, "rate_per_seconds": None, "rate_by": None,
                                  "counts": {"scheduled": 1}, "total": 1, "estimated": []}  # fmt: skip

        # undo each, in a real process too
        (await werk(dsn, schema, "queue", "resume", APP, "mail")).ok()
        [mail] = (await invoke(dsn, schema, "queue", "limit", APP, "mail", "--max-running", "none",
                               "--json")).ok().json()  # fmt: skip
        assert (mail["paused"], mail["max_running"], mail["rate_n"]) == (False, None, 50)
        said = (await invoke(dsn, schema, "queue", "rate", APP, "mail", "--clear")).ok().stdout
        assert said.startswith("queue mail: no rate limit\n"), said
        [info] = [q for q in await app.list_queues() if q.name == "mail"]
        assert (info.paused, info.max_running, info.rate_limit) == (False, None, None)

        # a hostile name is stored as given and printed escaped
        (await invoke(dsn, schema, "queue", "pause", APP, HOSTILE)).ok()
        assert HOSTILE in {q.name for q in await app.list_queues() if q.paused}
        listed = (await invoke(dsn, schema, "queues", APP)).ok().stdout
        assert "\x1b" not in listed and "\\x1b]0;pwned\\x07" in listed


async def test_queues_marks_the_counts_that_are_estimates(app: Werk, dsn: str, schema: str) -> None:
    """Issue 18: list_queues counts as get_queue_stats does -- above
    estimate_limit a count is the planner's estimate, shown as ``~n`` with a
    note, and named in ``--json``'s ``estimated``."""
    with trio.fail_after(60):
        await app.enqueue_many([EnqueueParams("tests.cliapp.add", (n,), queue="big") for n in range(3)])
        await app.enqueue("tests.cliapp.add", 1, _queue="small")
        await app.vacuum()  # the planner's statistics (ANALYZE), as autovacuum keeps them
        listed = (await invoke(dsn, schema, "queues", APP, CLIAPP_ESTIMATE_LIMIT="2")).ok().stdout
        assert re.search(r"│ big +│ active +│ +│ +│ +│ +0 │ +~3 │ .*│ +~3 │", listed), listed
        assert re.search(r"│ small +│ active +│ +│ +│ +│ +0 │ +1 │ .*│ +1 │", listed), listed
        assert "~ an estimate: more than estimate_limit jobs" in listed, listed
        found = {q["queue"]: q for q in (await invoke(dsn, schema, "queues", APP, "--json",
                                                       CLIAPP_ESTIMATE_LIMIT="2")).ok().json()}  # fmt: skip
        assert (found["big"]["counts"], found["big"]["estimated"]) == ({"queued": 3}, ["queued"])
        assert (found["small"]["counts"], found["small"]["estimated"]) == ({"queued": 1}, [])
        listed = (await invoke(dsn, schema, "queues", APP, CLIAPP_ESTIMATE_LIMIT="3")).ok().stdout
        assert re.search(r"│ big +│ active +│ +│ +│ +│ +0 │ +3 │", listed) and "~" not in listed, listed


@pytest.mark.parametrize(("args", "message"), [
    (("limit", APP, "q", "--max-running", "0"), "'--max-running': '0' is not a count >= 1 or 'none'"),
    (("limit", APP, "q", "--max-running", "x"), "'--max-running': 'x' is not a count >= 1 or 'none'"),
    (("limit", APP, "q"), "Missing option '--max-running'"),
    (("limit", APP, "q", "--max-running", "2", "--partition-by", "customer"),
     "'--partition-by': partition_by must be None (the whole queue), '_group'"),
    (("limit", APP, "q", "--max-running", "none", "--partition-by", "_group"),
     "--partition-by goes with a limit"),
    (("rate", APP, "q", "5"), "give N and --per SECONDS"),
    (("rate", APP, "q", "5", "--per", "0"), "'--per': must be a number of seconds > 0"),
    (("rate", APP, "q", "5", "--per", "nan"), "'--per': must be a number of seconds > 0"),
    (("rate", APP, "q", "0", "--per", "1"), "'[N]': 0 is not in the range"),
    (("rate", APP, "q", "5", "--per", "1", "--clear"), "--clear takes no N, --per or --partition-by"),
    (("pause", APP, ""), "NAME: queue name must be a non-empty string"),
    (("pause", APP), "Missing argument 'NAME'"),
])  # fmt: skip
async def test_bad_flags_are_one_line_and_exit_2(
    dsn: str, schema: str, args: tuple[str, ...], message: str
) -> None:
    with trio.fail_after(30):
        ran = await invoke(dsn, schema, "queue", *args)
        assert ran.code == 2, ran
        assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("werk: error: "), ran.stderr
        assert message in ran.stderr, ran.stderr
        assert ran.stdout == ""
