"""Fixtures of the dashboard tests: a real ``werk api`` server (werk_trio.web.serve
under this test's Trio loop, on a free port), live workers in the same loop,
and a real headless Chromium driven by Playwright's sync API in a thread.

Every wait is bounded: Playwright's own timeouts on the browser side,
``trio.fail_after`` around the Trio side (the browser thread is abandoned
if the Trio side gives up, and the browser dies with its Playwright driver).
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.web import dashboard_tasks
from werk_trio import Werk
from werk_trio.testing import make_worker
from werk_trio.web import serve

CHROMIUM = os.environ.get("WERK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
#: Milliseconds any single Playwright wait may take.
BROWSER_TIMEOUT_MS = 30_000
#: Seconds a whole browser session may take.
SESSION_TIMEOUT = 300
TOKEN = "dashboard-test-token-0123456789"


@pytest.fixture
async def web_app(app: Werk) -> Werk:
    dashboard_tasks.GATE.clear()
    dashboard_tasks.register(app)
    return app


@asynccontextmanager
async def served(app: Werk, *, workers: int = 1, queues: tuple[str, ...] = ("default",),
                 sweep_interval: float | None = None, **options: Any) -> AsyncIterator[str]:
    """The API and dashboard of ``app`` on a free port of 127.0.0.1, with
    ``workers`` live workers; yields the base URL."""
    async with trio.open_nursery() as nursery:
        for i in range(workers):
            worker = make_worker(app, queues=queues, concurrency=10, heartbeat_interval=1.0,
                                 name=f"dash-worker-{i}", sweep_interval=sweep_interval)
            await nursery.start(worker.run)
        binds = await nursery.start(functools.partial(serve, app, host="127.0.0.1", port=0, **options))
        yield binds[0]
        nursery.cancel_scope.cancel()


class Session:
    """One browser page plus what it logged."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda ex: self.errors.append(f"pageerror: {ex}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def open(self, view: str = "#/", refresh: int = 1) -> None:
        """Load the dashboard at ``view`` (polling every ``refresh`` seconds)."""
        self.page.goto(f"{self.base}/?refresh={refresh}{view}")
        self.page.wait_for_selector("main h1")


@contextmanager
def browser_session(base: str, *, color_scheme: str = "light", width: int = 1280,
                    height: int = 900) -> Iterator[Session]:
    with sync_playwright() as pw:
        browser: Browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                              timeout=BROWSER_TIMEOUT_MS)
        try:
            context = browser.new_context(color_scheme=color_scheme,  # type: ignore[arg-type]
                                          viewport={"width": width, "height": height})
            context.set_default_timeout(BROWSER_TIMEOUT_MS)
            yield Session(context.new_page(), base)
        finally:
            browser.close()


async def in_browser(base: str, body: Callable[[Session], Any], **options: Any) -> Any:
    """Run ``body(session)`` in a thread with its own browser (Playwright's sync API)."""

    def run() -> Any:
        # trio-asyncio (imported by werk_trio) makes asyncio loops Trio-hosted;
        # Playwright needs a plain one: a thread-local policy for this thread
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
        try:
            with browser_session(base, **options) as session:
                return body(session)
        finally:
            asyncio.set_event_loop_policy(None)

    with trio.fail_after(SESSION_TIMEOUT):
        return await trio.to_thread.run_sync(run, abandon_on_cancel=True)


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """Where screenshots go: WERK_SCREENSHOT_DIR (e.g. docs/screenshots), else a temp dir."""
    target = Path(os.environ.get("WERK_SCREENSHOT_DIR") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target
