"""werk_trio: a Postgres-backed background job queue for Trio programs.

This module is the whole public API; everything else is internal.
"""

from ._logging import configure_logging as configure_logging
from .app import Werk as Werk
from .config import WerkConfig as WerkConfig
from .cron import CronJob as CronJob
from .cron import CronScheduler as CronScheduler
from .db import Connection as Connection
from .errors import ConfigError as ConfigError
from .errors import DependencyFailed as DependencyFailed
from .errors import InvalidJobState as InvalidJobState
from .errors import JobError as JobError
from .errors import JobNotFound as JobNotFound
from .errors import JobTimeout as JobTimeout
from .errors import PayloadTooLarge as PayloadTooLarge
from .errors import PoolTimeout as PoolTimeout
from .errors import SerializationError as SerializationError
from .errors import UnknownTask as UnknownTask
from .errors import WaitTimeout as WaitTimeout
from .errors import WerkError as WerkError
from .errors import WorkerShutdown as WorkerShutdown
from .executors import ChildDied as ChildDied
from .executors import Executor as Executor
from .executors import RemoteError as RemoteError
from .executors import asyncio_handler as asyncio_handler
from .flow import Cancel as Cancel
from .flow import QueueInfo as QueueInfo
from .flow import Snooze as Snooze
from .jobs import Callback as Callback
from .jobs import Context as Context
from .jobs import Dependency as Dependency
from .jobs import DequeueStrategy as DequeueStrategy
from .jobs import EnqueueParams as EnqueueParams
from .jobs import ExecutionStatus as ExecutionStatus
from .jobs import FailureMode as FailureMode
from .jobs import Job as Job
from .jobs import JobExecution as JobExecution
from .jobs import JobStatus as JobStatus
from .jobs import Repeat as Repeat
from .jobs import Retry as Retry
from .serializers import JSONSerializer as JSONSerializer
from .serializers import PickleSerializer as PickleSerializer
from .serializers import Serializer as Serializer
from .worker import AsyncWorker as AsyncWorker
from .worker import BaseWorker as BaseWorker
from .worker import ForkWorker as ForkWorker
from .worker import ProcessWorker as ProcessWorker
from .worker import ThreadWorker as ThreadWorker
from .worker import Worker as Worker

__version__ = "0.1.0"

__all__ = [
    "AsyncWorker", "BaseWorker", "Callback", "Cancel", "ChildDied", "ConfigError", "Connection",
    "Context", "CronJob", "CronScheduler", "Dependency", "DependencyFailed", "DequeueStrategy",
    "EnqueueParams", "ExecutionStatus", "Executor", "FailureMode", "ForkWorker", "InvalidJobState",
    "JSONSerializer", "Job", "JobError", "JobExecution", "JobNotFound", "JobStatus", "JobTimeout",
    "PayloadTooLarge", "PickleSerializer", "PoolTimeout", "ProcessWorker", "QueueInfo", "RemoteError",
    "Repeat", "Retry", "SerializationError", "Serializer", "Snooze", "ThreadWorker", "UnknownTask",
    "WaitTimeout", "Werk", "WerkConfig", "WerkError", "Worker", "WorkerShutdown", "asyncio_handler",
    "configure_logging",
]  # fmt: skip

# The REST API and metrics need the `web` extra (fastapi, prometheus-client):
# imported on first use, so `import werk_trio` works without it.
_WEB_NAMES = {"create_app": ".web", "DatabaseMetrics": ".web", "WorkerMetrics": ".metrics"}
__all__ += ["DatabaseMetrics", "WorkerMetrics", "create_app"]


def __getattr__(name: str) -> object:
    if name not in _WEB_NAMES:
        raise AttributeError(f"module 'werk_trio' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_WEB_NAMES[name], __name__), name)
    globals()[name] = value
    return value
