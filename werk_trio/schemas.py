"""The job data types, under the module name pgwerk programs import them from.

``from werk_trio.schemas import Job, Retry`` gives ``werk_trio.Job`` and
``werk_trio.Retry``: the same objects, defined in :mod:`werk_trio.jobs`.
"""

from .jobs import Callback as Callback
from .jobs import Context as Context
from .jobs import Dependency as Dependency
from .jobs import EnqueueParams as EnqueueParams
from .jobs import Job as Job
from .jobs import JobExecution as JobExecution
from .jobs import Repeat as Repeat
from .jobs import Retry as Retry

__all__ = ["Callback", "Context", "Dependency", "EnqueueParams", "Job", "JobExecution", "Repeat", "Retry"]
