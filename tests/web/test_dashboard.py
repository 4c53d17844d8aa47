"""The web dashboard end to end: a real headless Chromium (Debian's) driving
the page served by ``werk api`` (werk_trio.web.serve on a free port) over a
real Postgres, with live workers running the jobs.

Each test builds its jobs with the Werk, runs one browser session in a
thread (Playwright's sync API), and checks what the page shows and what the
database holds afterwards. See tests/web/conftest.py for the fixtures.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import trio
from playwright.sync_api import expect

from tests.web import dashboard_tasks
from tests.web.conftest import BROWSER_TIMEOUT_MS, TOKEN, Session, in_browser, served
from werk_trio import CronScheduler, EnqueueParams, JobStatus, Werk, Worker

expect.set_options(timeout=BROWSER_TIMEOUT_MS)

ADD = "tests.web.dashboard_tasks.add"
ECHO = "tests.web.dashboard_tasks.echo"
EXPLODE = "tests.web.dashboard_tasks.explode"
GATE = "tests.web.dashboard_tasks.gate"
REPORT = "tests.web.dashboard_tasks.report"
HOUR = 3600.0


async def finished(app: Werk, job_id: Any) -> Any:
    with trio.fail_after(60):
        return await app.wait_for(job_id)


def api_fetch(session: Session, method: str, path: str, token: str | None = None) -> dict[str, Any]:
    """A request made by the page's own JavaScript context (same origin):
    ``{"status", "body"}``."""
    result: dict[str, Any] = session.page.evaluate(
        """async ([method, path, token]) => {
            const headers = token ? {Authorization: `Bearer ${token}`} : {};
            const r = await fetch(path, {method, headers});
            return {status: r.status, body: await r.text()};
        }""",
        [method, path, token],
    )
    return result


def confirm(session: Session, expected: str | re.Pattern[str]) -> None:
    """The confirmation dialog is open, says ``expected``; confirm it."""
    dialog = session.page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-text")).to_contain_text(expected)
    dialog.locator("#confirm-ok").click()
    expect(dialog).to_be_hidden()


def rows(session: Session, table: str = "#jobs") -> Any:
    return session.page.locator(f"{table} tbody tr[data-id]")


# --- every page, light and dark, laptop and phone ------------------------------


PAGES = {
    "overview": ("#/", "Overview"),
    "jobs": ("#/jobs", "Jobs"),
    "job-failed": (None, None),  # the failed job's detail (id known at run time)
    "workers": ("#/workers", "Workers"),
    "worker": (None, None),
    "queues": ("#/queues", "Queues"),
    "cron": ("#/cron", "Cron"),
    "maintenance": ("#/maintenance", "Maintenance"),
}


async def test_every_page_loads_without_console_errors_light_and_dark(
    web_app: Werk, screenshot_dir: Path
) -> None:
    app = web_app
    done = await app.enqueue(ADD, 2, 3)
    bad = await app.enqueue(EXPLODE, "page-tour")
    await app.enqueue(ECHO, _queue="reports", _delay=HOUR, note="later")
    await app.enqueue(ADD, 1, 1, _queue="reports")
    # no worker serves "reports": its controls are for the queues page to show
    await app.pause_queue("reports")
    await app.set_queue_limit("reports", 2, partition_by="meta.customer")
    await app.set_rate_limit("reports", 10, 1)
    scheduler = CronScheduler(app, lease=2.0, standby_retry_interval=0.2)
    scheduler.register(ECHO, cron="0 3 * * *", queue="reports", kwargs={"what": "nightly"}, name="nightly")
    async with served(app) as base, trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)
        await finished(app, done.id)
        await finished(app, bad.id)
        [worker] = await app.list_workers()
        views = dict(PAGES)
        views["job-failed"] = (f"#/jobs/{bad.id}", EXPLODE)
        views["worker"] = (f"#/workers/{worker['id']}", "Worker")

        def tour(session: Session, scheme: str) -> dict[str, str]:
            page = session.page
            backgrounds = {}
            for name, (view, heading) in views.items():
                assert view is not None and heading is not None
                session.open(view)
                expect(page.locator("main h1")).to_contain_text(heading)
                expect(page.locator("#live")).to_contain_text("updated")
                expect(page.locator("#mode")).to_be_hidden()  # the read-only badge
                page.screenshot(path=str(screenshot_dir / f"{name}-{scheme}.png"), full_page=True)
                backgrounds[name] = page.evaluate("getComputedStyle(document.body).backgroundColor")
            # the overview's charts: time axes and units are drawn
            session.open("#/")
            charts = page.locator("svg.chart")
            expect(charts).to_have_count(3)
            expect(charts.nth(0)).to_contain_text("jobs/min")
            expect(charts.nth(1)).to_contain_text("jobs")
            assert re.search(r"\d\d:\d\d", charts.nth(0).text_content() or ""), "a time axis"
            expect(page.locator("#card-complete .n")).to_have_text("1")
            expect(page.locator("#card-failed .n")).to_have_text("1")
            expect(page.locator("#failures tbody")).to_contain_text("it broke: page-tour")
            # the send-job form lists the registered tasks
            page.locator("#send-open").click()
            expect(page.locator("#send")).to_be_visible()
            options = page.locator("#send-function option").all_text_contents()
            assert set(options) == {ADD, ECHO, EXPLODE, GATE, REPORT}, options
            page.screenshot(path=str(screenshot_dir / f"send-{scheme}.png"))
            page.keyboard.press("Escape")
            expect(page.locator("#send")).to_be_hidden()
            # by keyboard: Tab reaches the skip link first, then the pages; Enter opens one
            page.reload()
            expect(page.locator("main h1")).to_contain_text("Overview")
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.textContent") == "Skip to content"
            for _ in range(10):
                if page.evaluate("document.activeElement.textContent") == "Workers":
                    break
                page.keyboard.press("Tab")
            page.keyboard.press("Enter")
            expect(page.locator("main h1")).to_contain_text("Workers (1)")
            assert session.errors == [], session.errors
            return backgrounds

        def phone(session: Session, scheme: str) -> None:
            page = session.page
            for name in ("overview", "jobs", "job-failed", "maintenance"):
                view, heading = views[name]
                assert view is not None and heading is not None
                session.open(view)
                expect(page.locator("main h1")).to_contain_text(heading)
                page.screenshot(path=str(screenshot_dir / f"{name}-phone-{scheme}.png"), full_page=True)
                # nothing sticks out sideways: wide tables scroll in their own box
                width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                assert width[0] <= width[1], (name, width)
            assert session.errors == [], session.errors

        light = await in_browser(base, lambda s: tour(s, "light"), color_scheme="light")
        dark = await in_browser(base, lambda s: tour(s, "dark"), color_scheme="dark")
        await in_browser(base, lambda s: phone(s, "light"), color_scheme="light", width=390, height=844)
        await in_browser(base, lambda s: phone(s, "dark"), color_scheme="dark", width=390, height=844)
        nursery.cancel_scope.cancel()
    assert all(light[name] != dark[name] for name in views), (light, dark)
    shots = sorted(p.name for p in screenshot_dir.glob("*.png"))
    for scheme in ("light", "dark"):
        for name in [*views, "send"]:
            assert f"{name}-{scheme}.png" in shots, shots
    for shot in screenshot_dir.glob("*.png"):
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000, shot


# --- the jobs list ------------------------------------------------------------------


async def test_filters_narrow_the_list_and_pages_go_on(web_app: Werk) -> None:
    app = web_app
    for i in range(27):
        await app.enqueue(ADD, i, i, _queue="alpha")
    await app.enqueue(ECHO, _queue="beta", tag="plain")
    await app.enqueue(ECHO, _queue="beta", _key="needle-key-42", tag="keyed")
    await app.enqueue(ADD, 5, 5, _queue="beta", _delay=HOUR)
    ran = await app.enqueue(ADD, 7, 8)
    async with served(app) as base:
        await finished(app, ran.id)
        [worker] = await app.list_workers()

        def body(session: Session) -> None:
            page = session.page
            session.open("#/jobs")
            form = page.locator("form.filters")
            # newest first, 25 a page, 31 jobs: a second page of 6
            expect(rows(session)).to_have_count(25)
            page.get_by_role("button", name="Older →").click()
            expect(rows(session)).to_have_count(6)
            expect(page.locator(".pager")).to_contain_text("jobs 26\N{EN DASH}31")
            expect(page.get_by_role("button", name="Older →")).to_be_disabled()

            form.locator("input[name=queue]").fill("beta")
            form.get_by_role("button", name="Filter").click()
            expect(rows(session)).to_have_count(3)
            expect(page.locator("#jobs tbody")).not_to_contain_text("alpha")

            form.locator("select[name=status]").select_option("scheduled")
            form.get_by_role("button", name="Filter").click()
            expect(rows(session)).to_have_count(1)
            expect(page.locator("#jobs tbody")).to_contain_text("scheduled")

            form.locator("select[name=status]").select_option("")
            form.locator("input[name=function]").fill(ECHO)
            form.get_by_role("button", name="Filter").click()
            expect(rows(session)).to_have_count(2)

            form.locator("input[name=search]").fill("needle-key")
            form.get_by_role("button", name="Filter").click()
            expect(rows(session)).to_have_count(1)
            assert "search=needle-key" in page.url  # a filtered view is a link

            page.get_by_role("button", name="Clear").click()
            expect(rows(session)).to_have_count(25)
            form.locator("input[name=worker_id]").fill(str(worker["id"]))
            form.get_by_role("button", name="Filter").click()
            expect(rows(session)).to_have_count(1)
            expect(rows(session).first).to_have_attribute("data-id", str(ran.id))

            form.locator("input[name=worker_id]").fill("not-a-uuid")
            form.get_by_role("button", name="Filter").click()
            expect(page.locator("main")).to_contain_text("worker_id")  # the API's 422, shown
            assert [e for e in session.errors if "422" not in e] == [], session.errors

        await in_browser(base, body)


# --- job detail -------------------------------------------------------------------------


async def test_job_detail_shows_the_failure_traceback_and_dependencies(web_app: Werk) -> None:
    app = web_app
    bad = await app.enqueue(EXPLODE, "marker-xyz", _retry=2)
    async with served(app) as base:
        await finished(app, bad.id)
        child = await app.enqueue(ADD, 1, 2, _queue="later", _depends_on=[bad.id], _delay=HOUR)

        def body(session: Session) -> None:
            page = session.page
            session.open(f"#/jobs/{bad.id}")
            expect(page.locator("main h1")).to_contain_text("failed")
            tracebacks = page.locator("pre.traceback")
            expect(tracebacks).to_have_count(2)  # two attempts, each with its own traceback
            for i in range(2):
                text = tracebacks.nth(i).text_content() or ""
                assert "Traceback (most recent call last)" in text, text
                assert "in deeper" in text and "ValueError: it broke: marker-xyz" in text, text
            expect(page.locator("#payload")).to_contain_text('"marker-xyz"')
            expect(page.locator("#fields")).to_contain_text("2 of 2")
            # a failed job may be requeued or deleted, not cancelled
            assert page.locator("[data-action]").evaluate_all("bs => bs.map(b => b.dataset.action)") == [
                "requeue", "delete"]
            session.open(f"#/jobs/{child.id}")
            link = page.locator("#deps a")
            expect(link).to_have_text(str(bad.id))
            link.click()
            expect(page.locator("#fields")).to_contain_text(str(bad.id))
            assert page.url.endswith(f"#/jobs/{bad.id}")
            assert page.locator("[data-action]").evaluate_all("bs => bs.map(b => b.dataset.action)") == [
                "requeue", "delete"]
            assert session.errors == [], session.errors

        await in_browser(base, body)


# --- actions change the database --------------------------------------------------------------


async def test_actions_ask_first_and_change_the_database(web_app: Werk) -> None:
    app = web_app
    single = await app.enqueue(ADD, 1, 1, _queue="idle", _delay=HOUR)
    bulk = [await app.enqueue(ADD, i, 0, _queue="idle", _delay=HOUR) for i in range(3)]
    raced = await app.enqueue(ADD, 9, 9, _queue="idle", _delay=HOUR)
    done = [await app.enqueue(ADD, i, 1) for i in range(3)]
    async with served(app) as base:
        for job in done:
            await finished(app, job.id)

        def body(session: Session) -> None:
            page = session.page
            # cancel from the detail page: Escape and "Cancel" leave the job alone
            session.open(f"#/jobs/{single.id}")
            page.locator("[data-action=cancel]").click()
            expect(page.locator("#confirm")).to_be_visible()
            page.keyboard.press("Escape")
            expect(page.locator("#confirm")).to_be_hidden()
            assert trio.from_thread.run(app.get_job, single.id).status is JobStatus.SCHEDULED
            page.locator("[data-action=cancel]").click()
            confirm(session, f"Cancel job {str(single.id)[-8:]}")
            expect(page.locator(".toast")).to_contain_text(f"Cancelled job {single.id}")
            assert trio.from_thread.run(app.get_job, single.id).status is JobStatus.ABORTED
            # now aborted: the page offers requeue, which queues it again
            page.locator("[data-action=requeue]").click()
            confirm(session, "again")
            expect(page.locator("main h1")).to_contain_text("queued")
            assert trio.from_thread.run(app.get_job, single.id).status is JobStatus.QUEUED

            # the API's refusal is shown: the job was cancelled behind the page's back
            session.open(f"#/jobs/{raced.id}")
            trio.from_thread.run(app.cancel_job, raced.id)
            page.locator("[data-action=cancel]").click()
            confirm(session, "Cancel job")
            expect(page.locator(".toast.bad")).to_contain_text(f"cannot cancel job {raced.id}")

            # bulk: select two of the three scheduled ones, cancel them, then delete them
            session.open("#/jobs?queue=idle&status=scheduled")
            expect(rows(session)).to_have_count(3)
            for job in bulk[:2]:
                page.get_by_label(f"select job {job.id}").check()
            expect(page.locator("#selected-count")).to_have_text("2 selected")
            page.locator("[data-action=bulk-cancel]").click()
            confirm(session, "Cancel 2 selected jobs?")
            expect(page.locator(".toast").last).to_contain_text("Cancelled 2 of 2 jobs")
            statuses = [trio.from_thread.run(app.get_job, j.id).status for j in bulk]
            assert statuses == [JobStatus.ABORTED, JobStatus.ABORTED, JobStatus.SCHEDULED]
            expect(rows(session)).to_have_count(1)
            session.open("#/jobs?queue=idle&status=aborted")
            page.get_by_label("select every job on this page").check()
            expect(page.locator("#selected-count")).to_have_text("3 selected")
            page.locator("[data-action=bulk-delete]").click()
            confirm(session, "Delete 3 selected jobs for good?")
            expect(page.locator(".toast").last).to_contain_text("Deleted 3 of 3 jobs")
            ids = {j.id for j in trio.from_thread.run(functools.partial(app.list_jobs, queue="idle"))}
            assert ids == {single.id, bulk[2].id}

            # purge: the confirmation names what goes; only complete jobs, any age
            session.open("#/maintenance")
            page.get_by_label("failed", exact=True).uncheck()
            page.get_by_label("aborted", exact=True).uncheck()
            page.locator("#purge-days").fill("0")
            page.locator("[data-action=purge]").click()
            confirm(session, "Delete every complete job whatever their age")
            expect(page.locator(".toast").last).to_contain_text("Purged 3 jobs")
            left = trio.from_thread.run(functools.partial(app.list_jobs, status="complete"))
            assert left == []
            page.locator("#purge-days").fill("-1")
            page.locator("[data-action=purge]").click()
            expect(page.locator("#purge-error")).to_contain_text("0 or more")
            expect(page.locator("#confirm")).to_be_hidden()

            page.locator("[data-action=sweep]").click()
            expect(page.locator(".toast").last).to_contain_text("Sweep:")
            page.locator("[data-action=vacuum]").click()
            confirm(session, "VACUUM ANALYZE")
            expect(page.locator(".toast").last).to_contain_text("Vacuumed")
            # the one refused request (409) is the only thing the console reports
            assert len(session.errors) == 1 and "status of 409" in session.errors[0], session.errors

        await in_browser(base, body)


async def test_send_job_validates_json_before_sending(web_app: Werk) -> None:
    app = web_app
    async with served(app) as base:

        def body(session: Session) -> str:
            page = session.page
            session.open("#/jobs")
            page.locator("#send-open").click()
            page.locator("#send-function").select_option(ADD)
            page.locator("#send-args").fill("[1, 2")
            page.locator("#send-submit").click()
            expect(page.locator("#send-error")).to_contain_text("Args: not valid JSON")
            page.locator("#send-args").fill('{"a": 1}')
            page.locator("#send-submit").click()
            expect(page.locator("#send-error")).to_contain_text("Args: must be a JSON array")
            page.locator("#send-args").fill("[]")
            page.locator("#send-kwargs").fill('{"_queue": "x"}')
            page.locator("#send-submit").click()
            expect(page.locator("#send-error")).to_contain_text("_queue: keys may not start with '_'")
            assert trio.from_thread.run(app.list_jobs) == [], "nothing was sent"
            # the API's own refusal is shown too (a priority out of range)
            page.locator("#send-kwargs").fill('{"b": 40}')
            page.locator("#send-args").fill("[2]")
            page.locator("#send-priority").fill("99999999999")
            page.locator("#send-submit").click()
            expect(page.locator("#send-error")).to_contain_text("The API refused it: priority")
            page.locator("#send-priority").fill("3")
            page.locator("#send-submit").click()
            expect(page.locator("#send")).to_be_hidden()
            expect(page.locator("main h1")).to_contain_text(ADD)
            expect(page.locator("main h1")).to_contain_text("complete")  # the live worker ran it
            expect(page.locator("#result")).to_have_text("42")
            return page.url.rsplit("/", 1)[-1]

        job_id = await in_browser(base, body)
    job = await app.get_job(job_id)
    assert (job.function, job.payload, job.priority, job.result) == (
        ADD, {"args": [2], "kwargs": {"b": 40}}, 3, 42)


# --- live ---------------------------------------------------------------------------------


async def test_overview_counts_move_while_jobs_run_and_stop_when_hidden(web_app: Werk) -> None:
    app = web_app
    async with served(app) as base:
        jobs = [await app.enqueue(GATE, "live") for _ in range(3)]

        def body(session: Session) -> None:
            page = session.page
            session.open("#/", refresh=1)
            page.evaluate("window.sameDocument = true")
            expect(page.locator("#card-active .n")).to_have_text("3")
            expect(page.locator("#card-complete .n")).to_have_text("0")
            trio.from_thread.run_sync(dashboard_tasks.GATE.setdefault("live", trio.Event()).set)
            expect(page.locator("#card-complete .n")).to_have_text("3")
            expect(page.locator("#card-active .n")).to_have_text("0")
            assert page.evaluate("window.sameDocument") is True, "updated without a reload"

            # hidden: no more requests; visible again: one at once
            seen: list[str] = []
            page.on("request", lambda r: seen.append(r.url) if "/api/" in r.url else None)
            page.evaluate("""() => {
                Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
                document.dispatchEvent(new Event('visibilitychange'));
            }""")
            expect(page.locator("#live")).to_have_text("paused (tab hidden)")
            seen.clear()
            page.wait_for_timeout(3500)  # three and a half polling intervals of 1 s
            assert seen == [], seen
            with page.expect_request(re.compile(r".*/api/stats$")):
                page.evaluate("""() => {
                    Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
                    document.dispatchEvent(new Event('visibilitychange'));
                }""")
            expect(page.locator("#live")).to_contain_text("updated")
            assert session.errors == [], session.errors

        await in_browser(base, body)
    for job in jobs:
        assert (await app.get_job(job.id)).status is JobStatus.COMPLETE


async def test_overview_marks_the_counts_that_are_estimates(dsn: str, schema: str) -> None:
    """Issue 18: a count over the app's estimate_limit (the API's ``estimated``)
    is shown as ``~n`` with a note, in the cards and the queue table, and on
    the Queues page; the exact ones stay plain."""
    guessing = Werk(dsn, schema=schema, task_modules=["tests"], estimate_limit=2)
    async with guessing:
        await guessing.enqueue_many([EnqueueParams("tests.cliapp.add", (n,), queue="big") for n in range(3)])
        await guessing.enqueue("tests.cliapp.add", 1, _queue="small")
        await guessing.vacuum()  # the planner's statistics (ANALYZE)
        async with served(guessing, workers=0) as base:

            def body(session: Session) -> None:
                page = session.page
                session.open("#/")
                expect(page.locator("#card-queued .n")).to_have_text("~4")
                expect(page.locator("#card-total .n")).to_have_text("~4")
                expect(page.locator("#card-scheduled .n")).to_have_text("0")
                expect(page.locator('#queues tr[data-id="big"] .estimate')).to_have_text("~3")
                expect(page.locator('#queues tr[data-id="small"]')).not_to_contain_text("~")
                expect(page.locator("#estimate-note")).to_contain_text("estimate_limit")
                # the Queues page (list_queues) marks the same counts
                session.open("#/queues")
                expect(page.locator('#queue-controls tr[data-id="big"] .estimate')).to_have_text("~3")
                expect(page.locator('#queue-controls tr[data-id="small"]')).not_to_contain_text("~")
                expect(page.locator("#estimate-note")).to_contain_text("estimate_limit")
                assert session.errors == [], session.errors

            await in_browser(base, body)


# --- safety ----------------------------------------------------------------------------------


async def test_token_is_asked_for_and_kept_in_memory_only(web_app: Werk) -> None:
    app = web_app
    job = await app.enqueue(ADD, 1, 2, _queue="idle")
    async with served(app, token=TOKEN) as base:

        def body(session: Session) -> None:
            page = session.page
            page.goto(f"{base}/#/jobs")
            expect(page.locator("#login-title")).to_be_visible()
            expect(page.locator("main")).not_to_contain_text(str(job.id))
            page.get_by_label("Token").fill("wrong-token-but-long-enough")
            page.get_by_role("button", name="Log in").click()
            expect(page.locator("#login-error")).to_have_text("That token was refused.")
            page.get_by_label("Token").fill(TOKEN)
            page.get_by_role("button", name="Log in").click()
            expect(rows(session)).to_have_count(1)
            expect(rows(session).first).to_have_attribute("data-id", str(job.id))
            stored = page.evaluate(
                "JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])")
            assert TOKEN not in stored and "token" not in stored.lower(), stored
            assert page.context.cookies() == []
            assert api_fetch(session, "GET", "/api/jobs")["status"] == 401
            assert api_fetch(session, "GET", "/api/jobs", TOKEN)["status"] == 200
            # a reload forgets it
            page.reload()
            expect(page.locator("#login-title")).to_be_visible()
            page.get_by_label("Token").fill(TOKEN)
            page.get_by_role("button", name="Log in").click()
            expect(rows(session)).to_have_count(1)
            page.locator("#logout").click()
            expect(page.locator("#login-title")).to_be_visible()
            expect(page.locator("main")).not_to_contain_text(str(job.id))
            assert all("401" in e for e in session.errors), session.errors

        await in_browser(base, body)
        # the page itself holds no data: served without the token, with a strict CSP
        response = await trio.to_thread.run_sync(lambda: urllib.request.urlopen(f"{base}/", timeout=10))
        assert response.status == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_read_only_hides_and_refuses_every_action(web_app: Werk) -> None:
    app = web_app
    queued = await app.enqueue(ADD, 1, 2, _queue="idle")
    failed = await app.enqueue(EXPLODE, "ro")
    async with served(app, read_only=True) as base:
        await finished(app, failed.id)

        def body(session: Session) -> None:
            page = session.page
            for view in ("#/jobs", f"#/jobs/{queued.id}", f"#/jobs/{failed.id}", "#/maintenance", "#/cron",
                         "#/queues", "#/"):
                session.open(view)
                expect(page.locator("#mode")).to_be_visible()
                expect(page.locator("#live")).to_contain_text("updated")
                assert page.locator("[data-action]").count() == 0, view
                assert page.locator("main input[type=checkbox]").count() == 0, view
                expect(page.locator("#send-open")).to_be_hidden()
            session.open("#/maintenance")
            expect(page.locator("#server")).to_contain_text("read-only")
            assert page.locator("#purge-days").count() == 0
            refused = api_fetch(session, "POST", f"/api/jobs/{queued.id}/cancel")
            assert refused["status"] == 403, refused
            assert "read-only" in json.loads(refused["body"])["error"]
            assert api_fetch(session, "DELETE", f"/api/jobs/{failed.id}")["status"] == 403
            session.open("#/queues")
            expect(rows(session, "#queue-controls")).to_have_count(2)  # listed, not changeable
            assert api_fetch(session, "POST", "/api/queues/idle/pause")["status"] == 403
            assert all("403" in e for e in session.errors), session.errors

        await in_browser(base, body)
    assert (await app.get_job(queued.id)).status is JobStatus.QUEUED
    assert (await app.get_job(failed.id)).status is JobStatus.FAILED


HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"><b>bold</b>"


async def test_job_text_is_shown_as_text_never_as_markup(web_app: Werk) -> None:
    app = web_app
    echo = await app.enqueue(ECHO, _queue="idle", _key=HOSTILE[:60], _meta={"note": HOSTILE}, text=HOSTILE)
    boom = await app.enqueue(EXPLODE, HOSTILE)
    async with served(app) as base:
        await finished(app, boom.id)

        def body(session: Session) -> None:
            page = session.page
            for view in ("#/jobs", f"#/jobs/{echo.id}", f"#/jobs/{boom.id}", "#/", "#/jobs?search=%3Cscript"):
                session.open(view)
                expect(page.locator("#live")).to_contain_text("updated")
                assert page.evaluate("window.__pwned") is None, view
                assert page.locator("main script, main img, main b").count() == 0, view
            session.open(f"#/jobs/{echo.id}")
            expect(page.locator("#payload")).to_contain_text("<script>window.__pwned = 1</script>")
            expect(page.locator("#fields")).to_contain_text("<script>window.__pwned = 1</script><img")
            session.open(f"#/jobs/{boom.id}")
            expect(page.locator("pre.traceback")).to_contain_text(f"ValueError: it broke: {HOSTILE}")
            session.open("#/")
            expect(page.locator("#failures")).to_contain_text(HOSTILE)
            session.open("#/jobs?search=%3Cscript")
            expect(rows(session)).to_have_count(2)
            assert page.evaluate("window.__pwned") is None
            assert session.errors == [], session.errors

        await in_browser(base, body)


# --- workers --------------------------------------------------------------------------------------


async def test_workers_page_shows_running_jobs_and_marks_stopped_and_dead(web_app: Werk, schema: str) -> None:
    app = web_app
    # no sweep while the test looks: a sweep would delete the dead worker's row
    async with served(app, sweep_interval=3600) as base:
        [live] = await app.list_workers()
        held = await app.enqueue(GATE, "workers")
        async with trio.open_nursery() as nursery:
            leaver = Worker(app, queues=["elsewhere"], handle_signals=False, name="leaver",
                            sweep_interval=3600)
            await nursery.start(leaver.run)
            silent = Worker(app, queues=["elsewhere"], handle_signals=False, heartbeat_interval=60,
                            name="silent", sweep_interval=3600)
            await nursery.start(silent.run)
            leaver.stop()
            with trio.fail_after(30):
                while (await app.get_worker(leaver.id) or {}).get("status") != "stopped":
                    await trio.sleep(0.05)
                while (await app.get_job(held.id)).status is not JobStatus.ACTIVE:
                    await trio.sleep(0.05)
            # "silent" has not been heard from for ten minutes: dead, though its row says running
            async with app.connection() as conn:
                await conn.execute(
                    psycopg.sql.SQL("UPDATE {}._werk_workers SET last_seen = now() - interval '10 minutes' "
                                    "WHERE id = %s").format(psycopg.sql.Identifier(schema)), [silent.id])

            def body(session: Session) -> None:
                page = session.page
                session.open("#/workers")
                table = page.locator("#workers")
                expect(table.locator(f"tr[data-id='{live['id']}']")).to_contain_text("running")
                expect(table.locator(f"tr[data-id='{leaver.id}']")).to_contain_text("stopped")
                expect(table.locator(f"tr[data-id='{silent.id}']")).to_contain_text("dead")
                row = table.locator(f"tr[data-id='{live['id']}'] td")
                headers = page.locator("#workers th").all_text_contents()
                expect(row.nth(headers.index("running"))).to_have_text("1")
                table.locator(f"tr[data-id='{live['id']}'] a").click()
                expect(page.locator("main h1")).to_contain_text(live["name"])
                expect(page.locator("#worker-jobs tbody")).to_contain_text("active")
                expect(page.locator("#worker-jobs tbody")).to_contain_text(GATE)
                assert session.errors == [], session.errors

            await in_browser(base, body)
            dashboard_tasks.GATE.setdefault("workers", trio.Event()).set()
            silent.stop()


# --- cron ---------------------------------------------------------------------------------------------


async def test_cron_page_pauses_resumes_and_triggers(web_app: Werk) -> None:
    app = web_app
    scheduler = CronScheduler(app, lease=2.0, standby_retry_interval=0.2)
    scheduler.register(ADD, interval=3600, kwargs={"a": 20, "b": 22}, name="hourly")
    scheduler.register(ECHO, cron="0 3 * * *", kwargs={"at": "three"}, name="nightly")
    async with served(app) as base, trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)

        def stats(name: str) -> dict[str, Any]:
            rows = trio.from_thread.run(app.list_cron_stats)
            [row] = [r for r in rows if r["name"] == name]
            return row

        def body(session: Session) -> str:
            page = session.page
            session.open("#/cron")
            expect(rows(session, "#cron")).to_have_count(2)
            hourly = page.locator("#cron tr[data-id=hourly]")
            expect(hourly).to_contain_text("every 3600s")
            expect(page.locator("#cron tr[data-id=nightly]")).to_contain_text("0 3 * * *")
            runs = stats("hourly")["total_runs"]

            hourly.locator("[data-action=pause]").click()
            expect(page.locator(".toast").last).to_have_text("Paused hourly")
            assert stats("hourly")["paused"] is True
            expect(hourly).to_contain_text("paused")
            hourly.locator("[data-action=resume]").click()
            expect(page.locator(".toast").last).to_have_text("Resumed hourly")
            assert stats("hourly")["paused"] is False

            hourly.locator("[data-action=trigger]").click()
            confirm(session, "Run hourly now")
            toast = page.locator(".toast").last
            expect(toast).to_contain_text("Triggered hourly: job ")
            job_id = (toast.text_content() or "").rsplit(" ", 1)[-1]
            # the live worker runs it; the page shows the run's status, linking the job
            expect(hourly).to_contain_text("complete")
            assert stats("hourly")["total_runs"] == runs + 1
            hourly.get_by_role("link", name="complete").click()
            expect(page.locator("#result")).to_have_text("42")
            assert session.errors == [], session.errors
            return job_id

        job_id = await in_browser(base, body)
        job = await app.get_job(job_id)
        assert (job.cron_name, job.status, job.result) == ("hourly", JobStatus.COMPLETE, 42)
        nursery.cancel_scope.cancel()


# --- queues (flow control) and progress ------------------------------------------------------


async def test_queues_page_pauses_resumes_and_edits_limits(web_app: Werk) -> None:
    app = web_app
    for i in range(3):
        await app.enqueue(ADD, i, 1, _queue="mail")
    await app.enqueue(ECHO, _queue="reports", _delay=HOUR)
    await app.set_rate_limit("reports", 5, 2)
    async with served(app) as base:

        def controls(name: str) -> Any:
            found = {q.name: q for q in trio.from_thread.run(app.list_queues)}
            return found[name]

        def body(session: Session) -> None:
            page = session.page
            session.open("#/queues")
            expect(rows(session, "#queue-controls")).to_have_count(2)
            mail = page.locator("#queue-controls tr[data-id=mail]")
            expect(page.locator("#queue-controls tr[data-id=reports]")).to_contain_text("5 per 2 s")
            expect(mail).to_contain_text("active")

            mail.locator("[data-action=pause]").click()
            confirm(session, "Pause queue mail?")
            expect(page.locator(".toast").last).to_have_text("Paused queue mail")
            assert controls("mail").paused is True
            expect(mail.locator(".badge")).to_have_text("paused")
            session.open("#/")  # the overview marks it too
            expect(page.locator("#queues tr[data-id=mail]")).to_contain_text("paused")
            expect(page.locator("#queues tr[data-id=reports]")).not_to_contain_text("paused")

            session.open("#/queues")
            dialog = page.locator("#limits")
            mail.locator("[data-action=limits]").click()
            expect(dialog).to_be_visible()
            expect(page.locator("#limits-queue")).to_have_text("mail")
            page.locator("#limits-max").fill("3")
            page.locator("#limits-by").fill("meta.customer")
            page.locator("#rate-n").fill("10")
            page.locator("#rate-per").fill("0")
            page.locator("#limits-submit").click()
            expect(page.locator("#limits-error")).to_contain_text("Per seconds: a number of seconds above 0")
            assert controls("mail").max_running is None, "nothing sent"
            page.locator("#rate-per").fill("2.5")
            page.locator("#rate-by").fill("customer")  # the API refuses this one
            page.locator("#limits-submit").click()
            expect(page.locator("#limits-error")).to_contain_text("partition_by: partition_by must be None")
            page.locator("#rate-by").fill("")
            page.locator("#limits-submit").click()
            expect(dialog).to_be_hidden()
            expect(page.locator(".toast").last).to_have_text("Saved the limits of queue mail")
            saved = controls("mail")
            assert (saved.max_running, saved.limit_by, saved.rate_limit, saved.rate_by) == (
                3, "meta.customer", (10, 2.5), None)
            expect(mail).to_contain_text("3 per meta.customer")
            expect(mail).to_contain_text("10 per 2.5 s")

            # emptied counts remove the limits
            mail.locator("[data-action=limits]").click()
            expect(page.locator("#limits-max")).to_have_value("3")
            page.locator("#limits-max").fill("")
            page.locator("#rate-n").fill("")
            page.locator("#limits-submit").click()
            expect(dialog).to_be_hidden()
            mail.locator("[data-action=resume]").click()
            expect(page.locator(".toast").last).to_have_text("Resumed queue mail")
            expect(mail.locator(".badge")).to_have_text("active")
            cleared = controls("mail")
            assert (cleared.paused, cleared.max_running, cleared.rate_limit) == (False, None, None)
            # the browser logs the one refused request, nothing else
            assert len(session.errors) == 1 and "422" in session.errors[0], session.errors

        await in_browser(base, body)


async def test_job_page_shows_progress_as_a_bar(web_app: Werk) -> None:
    app = web_app
    job = await app.enqueue(REPORT, "bar")
    async with served(app) as base:

        def body(session: Session) -> None:
            page = session.page
            session.open(f"#/jobs/{job.id}")
            bar = page.locator("#progress progress")
            expect(bar).to_have_attribute("value", "0.4")
            expect(page.locator("#progress")).to_contain_text("40% · two of five")
            expect(page.locator("main h1 .badge")).to_have_text("active")
            trio.from_thread.run_sync(dashboard_tasks.GATE.setdefault("bar", trio.Event()).set)
            expect(page.locator("main h1 .badge")).to_have_text("complete")
            expect(page.locator("#progress")).to_contain_text("40% · two of five")  # the last report stays
            assert session.errors == [], session.errors

        await in_browser(base, body)
        assert (await app.get_job(job.id)).result == "reported bar"
