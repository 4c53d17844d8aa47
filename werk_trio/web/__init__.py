"""The REST API, health checks and Prometheus metrics, served from Trio.

``create_app(werk, token=..., read_only=...)`` is an ASGI app (FastAPI on
Starlette/anyio) to serve with hypercorn's Trio worker, alone (``werk api``,
:func:`serve`) or mounted in your own Trio web app. See
``docs/architecture.md`` ("Web").
"""

from .app import create_app
from .metrics import DatabaseMetrics
from .serve import check_bind, serve

__all__ = ["DatabaseMetrics", "check_bind", "create_app", "serve"]
