"""An asyncio web app beside a werk_trio worker, in one Trio process (trio-asyncio).

Run it (any Postgres; without WERK_DSN the embedded one is used)::

    WERK_DSN=postgresql://localhost/app python examples/web_asyncio.py --port 8001

    curl -X POST localhost:8001/jobs -d '{"name": "Ada"}'  # 201 {"id": "...", "status": "queued"}
    curl localhost:8001/jobs/<id>  # 200 {"id": "...", "status": "complete", "result": "HELLO, ADA", ...}

The program is Trio; ``trio_asyncio.open_loop()`` gives it an asyncio loop, on
which a small HTTP/1.1 server (``asyncio.start_server``, one request per
connection) runs: code written for asyncio, unchanged. The asyncio side reaches
the Trio-native app through ``trio_asyncio.trio_as_aio`` (enqueue, get_job).
The job itself is an asyncio coroutine too (``@werk.task(asyncio=True)``),
which the worker runs through its trio-asyncio bridge.

SIGTERM/SIGINT: the first signal closes the listening socket, lets open
requests finish (up to 5 s) and stops the worker (running jobs get
``shutdown_timeout``, the rest are requeued); a second signal stops at once.
The process exits 0. With ``--port 0`` the OS picks a free port; the address
is printed as ``listening on http://...``.

Environment: ``WERK_DSN`` (else DATABASE_URL, else embedded Postgres),
``WERK_SCHEMA`` (optional schema for the tables).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from typing import Any

import trio
import trio_asyncio

from werk_trio import AsyncWorker, ConfigError, JobNotFound, Werk

werk = Werk(schema=os.environ.get("WERK_SCHEMA") or None)


@werk.task(asyncio=True)
async def shout(name: str) -> str:
    """The job the web app enqueues: an asyncio coroutine."""
    await asyncio.sleep(0.05)  # pretend to do some asyncio I/O
    return f"hello, {name}".upper()


# --- the asyncio web app ------------------------------------------------------------

REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found"}
_handlers: set[asyncio.Task[Any]] = set()


async def route(method: str, path: str, body: bytes) -> tuple[int, Any]:
    """The app's logic (asyncio code); the Trio-native werk calls go through trio_as_aio."""
    path = path.split("?", 1)[0].rstrip("/")
    if method == "POST" and path == "/jobs":
        try:
            data = json.loads(body or b"{}")
            name = str(data.get("name", "world"))
        except (ValueError, AttributeError):
            return 400, {"error": 'expected a JSON object like {"name": "Ada"}'}
        job = await trio_asyncio.trio_as_aio(werk.enqueue)(shout, name, _queue="web")
        assert job is not None
        return 201, {"id": str(job.id), "status": job.status.value}
    if method == "GET" and path.startswith("/jobs/"):
        try:
            job = await trio_asyncio.trio_as_aio(werk.get_job)(path.removeprefix("/jobs/"))
        except (JobNotFound, ConfigError):
            return 404, {"error": "no such job"}
        return 200, {"id": str(job.id), "status": job.status.value, "result": job.result, "error": job.error}
    return 404, {"error": f"no route for {method} {path}"}


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One HTTP/1.1 request per connection (``Connection: close``)."""
    task = asyncio.current_task()
    assert task is not None
    _handlers.add(task)
    try:
        request_line = (await reader.readline()).decode("latin-1")
        parts = request_line.split()
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        if len(parts) != 3:
            status, payload = 400, {"error": "bad request line"}
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            status, payload = await route(parts[0], parts[1], body)
        data = json.dumps(payload).encode()
        writer.write(
            f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode("latin-1")
            + data
        )
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass  # the client went away or sent garbage: nothing to answer
    finally:
        writer.close()
        _handlers.discard(task)


# --- one program: asyncio server, worker, signals -----------------------------------


async def _close_server(server: asyncio.base_events.Server) -> None:
    """asyncio: stop listening, then give open requests up to 5 s."""
    server.close()
    await server.wait_closed()
    if _handlers:
        await asyncio.wait(set(_handlers), timeout=5)


async def main(host: str, port: int) -> None:
    # The receiver is opened first and closed last: a signal that arrives while
    # starting waits in it and is acted on once the server is up; one that
    # arrives while tearing down is ignored (we are stopping already) instead
    # of killing the process half-way through.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio_asyncio.open_loop(), werk:
            # handle_signals=False: the receiver above owns SIGTERM/SIGINT for both.
            worker = AsyncWorker(
                werk, queues=["web"], concurrency=10, shutdown_timeout=5, handle_signals=False
            )
            async with trio.open_nursery() as outer:
                async with trio.open_nursery() as services:
                    await services.start(worker.run)
                    server = await trio_asyncio.aio_as_trio(asyncio.start_server)(handle_client, host, port)
                    bound = server.sockets[0].getsockname()
                    print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)

                    async def on_signals() -> None:
                        count = 0
                        async for signum in signals:
                            count += 1
                            print(f"{signal.Signals(signum).name}: stopping", flush=True)
                            if count == 1:
                                worker.stop()
                                services.start_soon(trio_asyncio.aio_as_trio(_close_server), server)
                            else:  # the second signal: stop both now
                                worker.stop(now=True)
                                services.cancel_scope.cancel()

                    outer.start_soon(on_signals)
                # server closed and worker returned
                outer.cancel_scope.cancel()
    print("stopped", flush=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0: any free port")
    args = parser.parse_args()
    trio.run(main, args.host, args.port)


if __name__ == "__main__":
    cli()
