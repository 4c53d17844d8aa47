"""The ``werk`` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import trio

from ..config import mask_dsn
from ..errors import ConfigError, WerkError

__all__ = ["load_app", "main"]

WORKER_TYPES = ("async", "thread", "process", "fork")


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` and return the Werk it names."""
    from ..app import Werk

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"APP must be 'module:attribute' (e.g. 'myapp.tasks:app'), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as ex:
        raise ConfigError(f"cannot import {module_name!r} (from APP {spec!r}): {ex}") from ex
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Werk):
        obj = obj()
    if not isinstance(obj, Werk):
        raise ConfigError(f"{spec} is a {type(obj).__name__}, not a Werk")
    return obj


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="werk", description="werk_trio: a Postgres job queue for Trio")
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("worker", help="run a worker")
    w.add_argument("app", metavar="APP", help="module:attribute naming a Werk")
    w.add_argument("--queues", default="default", help="comma-separated queue names")
    w.add_argument("--concurrency", type=int, default=10)
    w.add_argument("--worker-type", choices=WORKER_TYPES, default="async")
    w.add_argument("--burst", action="store_true", help="exit once nothing is left to do")
    w.add_argument("--shutdown-timeout", type=float, default=None)
    w.add_argument("--heartbeat-interval", type=float, default=None)
    w.add_argument("--poll-interval", type=float, default=None)
    w.add_argument("--sweep-interval", type=float, default=None)
    w.add_argument("--abort-interval", type=float, default=None)
    w.add_argument("--dequeue-strategy", choices=("priority", "round_robin", "random"), default="priority")
    _log_args(w)

    d = sub.add_parser("demo", help="enqueue demo jobs and drain them with a live progress bar")
    d.add_argument("--jobs", type=int, default=3000)
    d.add_argument("--concurrency", type=int, default=50)
    d.add_argument("--dsn", default=None, help="default: WERK_DSN, DATABASE_URL, or embedded")
    d.add_argument("--schema", default="werk_demo", help="schema for the demo's tables (emptied first)")
    _log_args(d, default_level="WARNING")

    for name, helptext in (
        ("info", "workers and queue counts"),
        ("stats", "job counts per queue and status"),
        ("migrate", "apply pending migrations"),
    ):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("app", metavar="APP")
        _log_args(c, default_level="WARNING")

    j = sub.add_parser("jobs", help="list jobs")
    j.add_argument("app", metavar="APP")
    j.add_argument("--queue")
    j.add_argument("--status")
    j.add_argument("--limit", type=int, default=20)
    j.add_argument("--offset", type=int, default=0)
    _log_args(j, default_level="WARNING")

    pu = sub.add_parser("purge", help="delete finished jobs")
    pu.add_argument("app", metavar="APP")
    pu.add_argument("--status", default="complete,failed,aborted")
    pu.add_argument("--older-than", type=float, default=0, help="days")
    _log_args(pu, default_level="WARNING")
    return p


def _log_args(p: argparse.ArgumentParser, default_level: str = "INFO") -> None:
    p.add_argument("--log-level", default=default_level)
    p.add_argument("--log-format", choices=("text", "json"), default="text")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .._logging import setup_logging

    try:
        setup_logging(args.log_level, args.log_format)
        if args.command == "demo":
            from .demo import run_demo

            return trio.run(run_demo, args)
        app = load_app(args.app)
        setup_logging(args.log_level, args.log_format)
        return int(trio.run(_COMMANDS[args.command], app, args) or 0)
    except WerkError as ex:
        print(f"werk: error: {mask_dsn(str(ex))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def _worker(app: Any, args: argparse.Namespace) -> int:
    from ..worker import worker_class

    cls = worker_class(args.worker_type)
    async with app:
        worker = cls(
            app,
            queues=[q.strip() for q in args.queues.split(",") if q.strip()],
            concurrency=args.concurrency,
            burst=args.burst,
            shutdown_timeout=args.shutdown_timeout,
            heartbeat_interval=args.heartbeat_interval,
            poll_interval=args.poll_interval,
            sweep_interval=args.sweep_interval,
            abort_interval=args.abort_interval,
            dequeue_strategy=args.dequeue_strategy,
        )
        await worker.run()
    return 0


async def _info(app: Any, args: argparse.Namespace) -> int:
    async with app:
        workers = await app.list_workers()
        print(f"{app!r}")
        print(f"workers: {len(workers)}")
        for w in workers:
            print(
                f"  {w['name']}  {w['worker_type']}  queues={','.join(w['queues'])}  "
                f"concurrency={w['concurrency']}  heartbeat {w['heartbeat_age']:.1f}s ago"
            )
        await _print_counts(app)
    return 0


async def _stats(app: Any, args: argparse.Namespace) -> int:
    async with app:
        await _print_counts(app)
    return 0


async def _print_counts(app: Any) -> None:
    counts = await app.counts()
    if not counts:
        print("no jobs")
    for queue, by_status in counts.items():
        parts = "  ".join(f"{s}={n}" for s, n in sorted(by_status.items()))
        print(f"queue {queue}: {parts}")


async def _migrate(app: Any, args: argparse.Namespace) -> int:
    app.config = app.config.__class__.build(app.config, auto_migrate=False)
    async with app:
        applied = await app.migrate()
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return 0


async def _jobs(app: Any, args: argparse.Namespace) -> int:
    async with app:
        jobs = await app.list_jobs(queue=args.queue, status=args.status, limit=args.limit, offset=args.offset)
    for job in jobs:
        print(json.dumps({
            "id": str(job.id), "function": job.function, "queue": job.queue,
            "status": job.status.value, "attempts": job.attempts, "enqueued_at": str(job.enqueued_at),
        }))  # fmt: skip
    return 0


async def _purge(app: Any, args: argparse.Namespace) -> int:
    async with app:
        n = await app.purge_jobs([s.strip() for s in args.status.split(",")], older_than_days=args.older_than)
    print(f"purged {n} jobs")
    return 0


_COMMANDS = {
    "worker": _worker,
    "info": _info,
    "stats": _stats,
    "migrate": _migrate,
    "jobs": _jobs,
    "purge": _purge,
}
