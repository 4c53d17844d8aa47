"""werk_trio's top-level namespace is the whole public API (STYLE.md 1).

When you add a public name, add it here too: this test is the reminder that
the public surface changed.
"""

from __future__ import annotations

import importlib
import types

import werk_trio

EXPECTED = {
    # the app and its settings
    "Werk", "WerkConfig", "Connection",
    # serializers (SPEC §7)
    "JSONSerializer", "PickleSerializer", "Serializer",
    # jobs and enqueue options (SPEC §2-3)
    "Job", "JobStatus", "JobExecution", "ExecutionStatus", "Retry", "Repeat", "Dependency",
    "Callback", "EnqueueParams", "Context", "DequeueStrategy", "FailureMode",
    # the exception tree (SPEC §3)
    "WerkError", "JobNotFound", "JobTimeout", "JobError", "DependencyFailed", "WorkerShutdown",
    "UnknownTask", "SerializationError", "PayloadTooLarge", "ConfigError", "PoolTimeout",
    "WaitTimeout", "InvalidJobState",
    # workers (SPEC §4-5)
    "Worker", "BaseWorker", "AsyncWorker", "ThreadWorker", "ProcessWorker", "ForkWorker", "asyncio_handler",
    # the executor contract and the errors of child processes (issue 11)
    "Executor", "RemoteError", "ChildDied",
    # logging as pgwerk users expect (issue 12)
    "configure_logging",
    # cron (SPEC §6)
    "CronScheduler", "CronJob",
    # the REST API and metrics (issue 15; the `web` extra, imported on first use)
    "create_app", "DatabaseMetrics", "WorkerMetrics",
    # flow control (SPEC §10)
    "Snooze", "Cancel", "QueueInfo",
}  # fmt: skip


def test_all_is_exactly_the_public_names() -> None:
    assert set(werk_trio.__all__) == EXPECTED
    assert len(werk_trio.__all__) == len(set(werk_trio.__all__)), "duplicates in __all__"


def test_every_name_is_importable_and_defined_in_the_package() -> None:
    for name in werk_trio.__all__:
        obj = getattr(werk_trio, name)
        assert obj.__module__.startswith("werk_trio."), (name, obj.__module__)
        # `from werk_trio import Name` gives the same object
        assert importlib.import_module("werk_trio").__dict__[name] is obj


def test_star_import_gives_exactly_all() -> None:
    ns: dict[str, object] = {}
    exec("from werk_trio import *", ns)
    ns.pop("__builtins__")
    assert set(ns) == EXPECTED


def test_nothing_else_is_public() -> None:
    """Besides __all__, the namespace holds only submodules and dunders."""
    extra = {
        name
        for name, value in vars(werk_trio).items()
        if not name.startswith("_")
        and name not in werk_trio.__all__
        and not (isinstance(value, types.ModuleType) and value.__name__.startswith("werk_trio."))
    }
    assert extra == set()


def test_the_web_names_load_on_first_use() -> None:
    import subprocess
    import sys

    code = ("import sys, werk_trio; assert 'fastapi' not in sys.modules; "
            "werk_trio.create_app; assert 'fastapi' in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr


def test_version_is_a_string() -> None:
    assert isinstance(werk_trio.__version__, str) and werk_trio.__version__


def test_exception_tree() -> None:
    errors = [
        werk_trio.JobNotFound, werk_trio.JobTimeout, werk_trio.JobError, werk_trio.DependencyFailed,
        werk_trio.WorkerShutdown, werk_trio.UnknownTask, werk_trio.SerializationError,
        werk_trio.PayloadTooLarge, werk_trio.ConfigError, werk_trio.PoolTimeout, werk_trio.WaitTimeout,
        werk_trio.InvalidJobState, werk_trio.RemoteError, werk_trio.ChildDied,
    ]  # fmt: skip
    for cls in errors:
        assert issubclass(cls, werk_trio.WerkError), cls
    assert issubclass(werk_trio.WerkError, Exception)
    assert issubclass(werk_trio.InvalidJobState, werk_trio.ConfigError)
    assert not issubclass(werk_trio.WerkError, BaseExceptionGroup)
