"""The contract suite's app: as tests/conftest.py's, with the handlers module
named in ``task_modules`` so a ForkWorker's fork server imports it before the
worker claims anything (as a deployment names its task modules). Without it
the first fork of each test would import the module inside that job's
``_timeout``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from werk_trio import Werk


@pytest.fixture
async def app(dsn: str, schema: str) -> AsyncIterator[Werk]:
    werk = Werk(dsn, schema=schema, task_modules=["tests.contract.handlers"])
    async with werk:
        yield werk
