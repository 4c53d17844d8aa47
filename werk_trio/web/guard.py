"""The checks every request passes before any endpoint runs (one ASGI middleware).

* **Trio only**: each request notes the async library it runs on
  (``x-werk-async-library``); werk_trio's driver is Trio-native, and a request
  served on asyncio is refused with a 500 instead of failing half-way.
* **Host**: without a token, only loopback ``Host`` headers are served
  (127.0.0.1, localhost, ::1), so a web page cannot reach the API through DNS
  rebinding.
* **Cross-site**: a state change (any method but GET/HEAD/OPTIONS) from a
  browser page of another origin is refused (``Origin`` not this host, or
  ``Sec-Fetch-Site: cross-site``). Auth is a bearer header, never a cookie, so
  a forged form post carries no credentials either.
* **Read-only**: every state change is refused with 403.
* **Body size**: a body over ``max_body_bytes`` is refused with 413 (by its
  ``content-length``, or once that many bytes arrived: the guard reads the
  bounded body before the app runs).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import sniffio

__all__ = ["LOOPBACK_HOSTS", "Guard"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_name(value: str) -> str:
    """The host of a ``Host`` header or URL netloc, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") > 1:  # a bare IPv6 address
        return value
    return value.partition(":")[0]


class Guard:
    def __init__(self, app: ASGIApp, *, read_only: bool, allowed_hosts: Collection[str] | None,
                 max_body_bytes: int) -> None:
        self.app = app
        self.read_only = read_only
        self.allowed_hosts = None if allowed_hosts is None else {host_name(h) for h in allowed_hosts}
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        library = sniffio.current_async_library()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refused = self._refusal(scope, headers, library)
        if refused is not None:
            await _reply(send, *refused, library=library)
            return
        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []),
                                      (b"x-werk-async-library", library.encode())]
            await send(message)

        # The body is read here, whole, before the app runs (it is bounded): one
        # that grows past the limit is refused before any endpoint sees it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _reply(send, 413, f"the request body is larger than {self.max_body_bytes} bytes",
                             library=library)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: bytes | None = b"".join(chunks)

        async def receiving() -> dict[str, Any]:
            nonlocal body
            if body is not None:
                message = {"type": "http.request", "body": body, "more_body": False}
                body = None
                return message
            return await receive()  # after the body: wait for the disconnect

        await self.app(scope, receiving, sending)

    def _refusal(self, scope: Scope, headers: dict[str, str], library: str) -> tuple[int, str] | None:
        if library != "trio":
            return 500, f"this request runs on {library}: werk_trio's API must be served by Trio"
        host = host_name(headers.get("host", ""))
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return 400, (f"Host {host!r} is not served without a token (allowed: "
                         f"{', '.join(sorted(self.allowed_hosts))}); start the API with a token")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return 400, "content-length must be a number of bytes"
            if int(length) > self.max_body_bytes:
                return 413, f"the request body is larger than {self.max_body_bytes} bytes"
        method = scope.get("method", "GET")
        if method in SAFE_METHODS:
            return None
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, "cross-site requests may not change state"
        origin = headers.get("origin")
        if origin is not None:
            netloc = urllib.parse.urlsplit(origin).netloc.lower()
            if origin == "null" or netloc != headers.get("host", "").strip().lower():
                return 403, f"requests from origin {origin!r} may not change state"
        if self.read_only:
            return 403, f"the API is read-only: {method} {scope.get('path', '')} is refused"
        return None


async def _reply(send: Send, status: int, message: str, *, library: str) -> None:
    body = json.dumps({"error": message, "field": None}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"x-werk-async-library", library.encode())],
    })
    await send({"type": "http.response.body", "body": body})
