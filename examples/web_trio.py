"""An ASGI app and a werk_trio worker in one Trio program.

Run it (any Postgres; without WERK_DSN the embedded one is used)::

    WERK_DSN=postgresql://localhost/app python examples/web_trio.py --port 8000

    curl -X POST localhost:8000/jobs -d '{"name": "Ada"}'  # 201 {"id": "...", "status": "queued"}
    curl localhost:8000/jobs/<id>  # 200 {"id": "...", "status": "complete", "result": "hello, Ada", ...}

hypercorn's Trio worker (``hypercorn.trio.serve``) serves the ASGI app and
``worker.run()`` runs the jobs, both in one nursery. One signal receiver owns
SIGTERM/SIGINT: the first signal triggers hypercorn's ``shutdown_trigger``
(stop accepting, finish open requests within ``graceful_timeout``) and
``worker.stop()`` (stop claiming, give running jobs ``shutdown_timeout``,
requeue the rest); a second signal stops both at once. The process exits 0
once both have stopped. With ``--port 0`` the OS picks a free port; the
address is printed as ``listening on http://...``.

Environment: ``WERK_DSN`` (else DATABASE_URL, else embedded Postgres),
``WERK_SCHEMA`` (optional schema for the tables).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from werk_trio import AsyncWorker, ConfigError, JobNotFound, Werk

werk = Werk(schema=os.environ.get("WERK_SCHEMA") or None)


@werk.task
async def greet(name: str) -> str:
    """The job the web app enqueues."""
    await trio.sleep(0.05)  # pretend to do some I/O
    return f"hello, {name}"


# --- the ASGI app ---------------------------------------------------------------


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Any, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    method, path = scope["method"], scope["path"].rstrip("/")
    if method == "POST" and path == "/jobs":
        raw = await _body(receive)
        try:
            data = json.loads(raw or b"{}")
            name = str(data.get("name", "world"))
        except (ValueError, AttributeError):
            await _respond(send, 400, {"error": 'expected a JSON object like {"name": "Ada"}'})
            return
        job = await werk.enqueue(greet, name, _queue="web")
        assert job is not None  # no _key, so never a duplicate
        await _respond(send, 201, {"id": str(job.id), "status": job.status.value})
    elif method == "GET" and path.startswith("/jobs/"):
        try:
            job = await werk.get_job(path.removeprefix("/jobs/"))
        except (JobNotFound, ConfigError):  # ConfigError: not a job id at all
            await _respond(send, 404, {"error": "no such job"})
            return
        await _respond(
            send,
            200,
            {"id": str(job.id), "status": job.status.value, "result": job.result, "error": job.error},
        )
    else:
        await _respond(send, 404, {"error": f"no route for {method} {path}"})


# --- one program: server, worker, signals -------------------------------------------


async def main(host: str, port: int) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.graceful_timeout = 5.0
    config.accesslog = None
    stop_serving = trio.Event()

    # The receiver is opened first and closed last: a signal that arrives while
    # connecting waits in it and is acted on once the program runs; one that
    # arrives while tearing down is ignored (we are stopping already) instead
    # of killing the process half-way through.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with werk:
            # handle_signals=False: the receiver above owns SIGTERM/SIGINT for both.
            worker = AsyncWorker(
                werk, queues=["web"], concurrency=10, shutdown_timeout=5, handle_signals=False
            )
            async with trio.open_nursery() as outer:
                async with trio.open_nursery() as services:

                    async def on_signals() -> None:
                        count = 0
                        async for signum in signals:
                            count += 1
                            print(f"{signal.Signals(signum).name}: stopping", flush=True)
                            if count == 1:
                                stop_serving.set()
                                worker.stop()
                            else:  # the second signal: stop both now
                                worker.stop(now=True)
                                services.cancel_scope.cancel()

                    outer.start_soon(on_signals)
                    await services.start(worker.run)
                    binds = await services.start(
                        functools.partial(serve, asgi_app, config, shutdown_trigger=stop_serving.wait)
                    )
                    print(f"listening on {binds[0]}", flush=True)
                # server and worker both returned
                outer.cancel_scope.cancel()
    print("stopped", flush=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    args = parser.parse_args()
    trio.run(main, args.host, args.port)


if __name__ == "__main__":
    cli()
