"""``werk api [APP]``: serve the REST API (hypercorn's Trio worker).

Without APP the Werk comes from the environment, as pgwerk's ``werk api``
does: ``WERK_DSN`` (then ``DATABASE_URL``, then the embedded Postgres) and
``--schema`` (default ``WERK_SCHEMA``). The token is read from
``--token-file`` (or ``WERK_API_TOKEN``), never from the command line, where
``ps`` would show it. SIGTERM/SIGINT stop it: open requests get
``--graceful-timeout`` seconds; a second signal stops at once.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
import trio

from ..config import mask_dsn
from ..errors import ConfigError, WerkError

__all__ = ["command"]


def read_token(path: str | None) -> str | None:
    """The token of ``--token-file`` (its first line), else ``WERK_API_TOKEN``, else None."""
    if path is None:
        value = os.environ.get("WERK_API_TOKEN")
        return value.strip() if value and value.strip() else None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as ex:
        raise ConfigError(f"cannot read --token-file {path}: {ex}") from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not token:
        raise ConfigError(f"--token-file {path} is empty: write the token on its first line")
    return token


async def run_api(app: Any, *, host: str, port: int, token: str | None, graceful_timeout: float,
                  **options: Any) -> None:
    from ..web import serve
    from ..web.serve import check_bind

    check_bind(host, port, token)  # before connecting: a refused bind touches nothing
    stop = trio.Event()
    hard_stop = trio.CancelScope()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with app, trio.open_nursery() as outer:

            async def on_signals() -> None:
                count = 0
                async for signum in signals:
                    count += 1
                    print(f"{signal.Signals(signum).name}: stopping", flush=True)
                    if count == 1:
                        stop.set()  # hypercorn stops accepting, finishes open requests
                    else:
                        hard_stop.cancel()

            outer.start_soon(on_signals)
            with hard_stop:
                async with trio.open_nursery() as services:
                    binds = await services.start(functools.partial(
                        serve, app, host=host, port=port, token=token, shutdown_trigger=stop.wait,
                        graceful_timeout=graceful_timeout, **options))
                    mode = " (read-only)" if options.get("read_only") else ""
                    print(f"listening on {binds[0]}{mode}", flush=True)
            outer.cancel_scope.cancel()
    print("stopped", flush=True)


@click.command("api")
@click.argument("app", metavar="[APP]", required=False)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to bind; a non-loopback one needs a token")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="0: any free port")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="file whose first line is the bearer token (else WERK_API_TOKEN)")
@click.option("--read-only", is_flag=True, help="refuse every state change")
@click.option("--metrics", is_flag=True, help="serve Prometheus gauges on /metrics")
@click.option("--metrics-interval", default=15.0, show_default=True,
              type=click.FloatRange(0, 86_400, min_open=True), help="seconds between database reads")
@click.option("--allow-truncate", is_flag=True, help="let POST /api/server/truncate delete every row")
@click.option("--schema", default=None, help="schema of the tables when APP is omitted (else WERK_SCHEMA)")
@click.option("--graceful-timeout", default=5.0, show_default=True, type=click.FloatRange(0, 3600),
              help="seconds open requests get on SIGTERM")
@click.option("--log-level", default="INFO", show_default=True)
def command(app: str | None, host: str, port: int, token_file: str | None, read_only: bool, metrics: bool,
            metrics_interval: float, allow_truncate: bool, schema: str | None, graceful_timeout: float,
            log_level: str) -> None:
    """Serve the REST API of APP (module:attribute naming a Werk; default: WERK_DSN)."""
    from .._logging import setup_logging
    from ..app import Werk
    from . import load_app

    try:
        setup_logging(log_level, "text")
        token = read_token(token_file)
        werk = load_app(app) if app else Werk(schema=schema or os.environ.get("WERK_SCHEMA") or None)
        trio.run(functools.partial(
            run_api, werk, host=host, port=port, token=token, graceful_timeout=graceful_timeout,
            read_only=read_only, metrics=metrics, metrics_interval=metrics_interval,
            allow_truncate=allow_truncate))
    except WerkError as ex:
        click.echo(f"werk api: error: {mask_dsn(str(ex))}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
