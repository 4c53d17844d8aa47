"""The enums, under the module name pgwerk programs import them from.

``from werk_trio.commons import JobStatus`` is ``werk_trio.JobStatus``: the
same objects, defined in :mod:`werk_trio.jobs`.
"""

from .jobs import DequeueStrategy as DequeueStrategy
from .jobs import ExecutionStatus as ExecutionStatus
from .jobs import FailureMode as FailureMode
from .jobs import JobStatus as JobStatus

__all__ = ["DequeueStrategy", "ExecutionStatus", "FailureMode", "JobStatus"]
