"""The web dashboard: a thin client of the REST API, served at ``/``.

One HTML page and its assets (``static/``: ``index.html``, ``app.js``,
``app.css``), shipped as package data and read with :mod:`importlib.resources`:
no build step, no CDN, nothing fetched at run time. Every number the page
shows and every action it takes goes through the ``/api`` endpoints with the
same bearer token and read-only rule as any other client; the page itself
holds no data, so it is served without the token (the token is typed into
its login form and kept in the page's memory).

:func:`mount` adds three things to an app made by
:func:`werk_trio.web.create_app`: ``GET /`` (the page; its views are
``/#/jobs`` and the like, so no history fallback is needed), ``GET
/dashboard/{asset}`` and ``GET /api/dashboard`` (behind the token: the
registered task names for the "send job" form, and whether actions are
allowed). Every response of the page carries a strict Content-Security-Policy
(scripts and styles from this origin only, no inline script), so even a job
payload that slipped past the page's escaping could not run.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from ... import __version__

if TYPE_CHECKING:
    from ...app import Werk

__all__ = ["ASSETS", "mount"]

#: The files served under ``/dashboard/``, with their media types.
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

#: The page's optional parts, by the Werk method their endpoints call.
FEATURES = {
    "cron": "list_cron_stats",
    "flow_control": "list_queues",
    "history": "get_throughput_history",
    "server_info": "get_server_info",
}

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}


@cache
def asset(name: str) -> bytes:
    """The bytes of a file of ``static/`` (read once)."""
    return resources.files(__name__).joinpath("static", name).read_bytes()


def _page() -> Response:
    return Response(asset("index.html"), media_type="text/html; charset=utf-8",
                    headers=SECURITY_HEADERS)


def mount(app: FastAPI, authorize: Any) -> None:
    """Serve the dashboard from ``app``; ``authorize`` is the API's token
    dependency, applied to ``/api/dashboard``."""
    pages = APIRouter(include_in_schema=False)

    @pages.get("/")
    async def index() -> Response:
        return _page()

    @pages.get("/dashboard/{name}")
    async def static(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            return Response(b"no such asset", status_code=404, media_type="text/plain")
        return Response(asset(name), media_type=media_type, headers=SECURITY_HEADERS)

    # the page's own settings: not part of the documented API
    settings = APIRouter(prefix="/api", dependencies=[Depends(authorize)], include_in_schema=False)

    @settings.get("/dashboard")
    async def dashboard(request: Request) -> dict[str, Any]:
        werk: Werk = request.app.state.werk
        return {
            "version": __version__,
            "read_only": request.app.state.werk_read_only,
            "allow_truncate": request.app.state.werk_allow_truncate,
            "tasks": sorted(werk.tasks.registered()),
            "task_modules": list(werk.config.task_modules),
            # the optional parts of the API this werk_trio has (the page
            # neither calls nor offers the others)
            "features": {name: callable(getattr(werk, method, None)) for name, method in FEATURES.items()},
        }

    app.include_router(pages)
    app.include_router(settings)
