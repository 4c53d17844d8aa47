"""Helpers for the REST API tests: a real hypercorn Trio server on a free
loopback port, a real HTTP client (httpx), and optionally a live worker, all in
the test's own Trio loop.

Every response any client here receives is checked to have been served on
Trio (the ``x-werk-async-library`` header the API's guard sets per request):
a request path that ever ran on asyncio fails the test that made it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from werk_trio import AsyncWorker, Werk
from werk_trio.testing import make_worker, until
from werk_trio.web import serve


async def _served_on_trio(response: httpx.Response) -> None:
    library = response.headers.get("x-werk-async-library")
    assert library == "trio", f"{response.request.method} {response.request.url} was served on {library!r}"


def client(base: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, timeout=20, event_hooks={"response": [_served_on_trio]}, **kwargs)


@dataclass
class Server:
    base: str
    http: httpx.AsyncClient
    worker: AsyncWorker | None


@asynccontextmanager
async def api_server(app: Werk, *, worker: bool = True, queues: tuple[str, ...] = ("default",),
                     token: str | None = None, headers: dict[str, str] | None = None,
                     **options: Any) -> AsyncIterator[Server]:
    """``werk_trio.web.serve`` on 127.0.0.1:0 (and an AsyncWorker on ``queues``)
    for the block; both stopped at once on exit."""
    async with trio.open_nursery() as nursery:
        live = None
        if worker:
            live = make_worker(app, queues=list(queues), concurrency=5)
            await nursery.start(live.run)
        binds = await nursery.start(lambda task_status: serve(
            app, host="127.0.0.1", port=0, token=token, task_status=task_status, **options))
        sent = dict(headers or {})
        if token is not None and "authorization" not in {k.lower() for k in sent}:
            sent["authorization"] = f"Bearer {token}"
        async with client(binds[0], headers=sent) as http:
            try:
                yield Server(binds[0], http, live)
            finally:
                if live is not None:
                    live.stop(now=True)
                nursery.cancel_scope.cancel()


async def job_status(http: httpx.AsyncClient, job_id: str, *statuses: str) -> dict[str, Any]:
    """GET the job until its status is one of ``statuses``; return its JSON."""

    async def check() -> dict[str, Any] | None:
        r = await http.get(f"/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body if body["status"] in statuses else None

    result: dict[str, Any] = await until(check)
    return result
