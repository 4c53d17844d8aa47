"""The exceptions, under the module name pgwerk programs import them from.

``from werk_trio.exceptions import JobError`` is ``werk_trio.JobError``: the
same classes, defined in :mod:`werk_trio.errors`.
"""

from .errors import ConfigError as ConfigError
from .errors import DependencyFailed as DependencyFailed
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

__all__ = [
    "ConfigError", "DependencyFailed", "JobError", "JobNotFound", "JobTimeout", "PayloadTooLarge",
    "PoolTimeout", "SerializationError", "UnknownTask", "WaitTimeout", "WerkError", "WorkerShutdown",
]  # fmt: skip
