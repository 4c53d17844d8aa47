"""Serving the API with hypercorn's Trio worker, in the caller's Trio loop.

``await nursery.start(serve, werk, host=..., port=...)`` returns the bound
addresses once the socket listens (``port=0``: a free port). The bind rule is
checked first: 127.0.0.1 by default, and a non-loopback address only with a
token.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from ..errors import ConfigError
from .app import create_app

if TYPE_CHECKING:
    from ..app import Werk

__all__ = ["check_bind", "serve"]

logger = logging.getLogger("werk_trio.web")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, port: int, token: str | None) -> str:
    """``host:port`` for hypercorn; ConfigError for a bad address, or for a
    non-loopback one without a token."""
    if not isinstance(host, str) or not host or any(c.isspace() or c in "/@" for c in host):
        raise ConfigError(f"host must be an address like 127.0.0.1, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be an int in 0..65535, got {port!r}")
    if not is_loopback(host) and token is None:
        raise ConfigError(
            f"refusing to serve the API on {host} without a token: anyone who can reach it could "
            "change jobs; pass a token (werk api --token-file FILE) or bind 127.0.0.1"
        )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


async def serve(
    werk: Werk,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    graceful_timeout: float = 5.0,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    **app_options: Any,
) -> None:
    """Serve ``create_app(werk, token=token, **app_options)`` until cancelled or
    until ``shutdown_trigger()`` returns (then open requests get
    ``graceful_timeout`` seconds). Started with ``nursery.start``, it returns
    the bound URLs. ConfigError for a non-loopback bind without a token or a
    bad option. Cancellation: the listening socket closes and open requests
    are cancelled; a state change a request was making is one transaction
    (done or not)."""
    bind = check_bind(host, port, token)
    app = create_app(werk, token=token, **app_options)
    config = Config()
    config.bind = [bind]
    config.graceful_timeout = graceful_timeout
    config.accesslog = None
    config.errorlog = logger
    config.include_server_header = False
    kwargs: dict[str, Any] = {}
    if shutdown_trigger is not None:
        kwargs["shutdown_trigger"] = shutdown_trigger
    await hypercorn_serve(app, config, task_status=task_status, **kwargs)  # type: ignore[arg-type]
