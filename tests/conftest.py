"""Shared fixtures: a real Postgres for every test, and a schema of its own.

The database is the embedded Postgres (pgserver) unless ``WERK_TEST_DSN``
names another server. Every test that takes ``app`` or ``schema`` works in a
fresh schema, dropped afterwards, so tests can run in any order.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from werk_trio import Werk
from werk_trio.embedded import embedded_dsn


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """Each test leaves the ``werk_trio`` logger as it found it: a test (or an
    in-process CLI run) that calls configure_logging() installs its handler and
    stops propagation, which would hide later tests' records from caplog."""
    logger = logging.getLogger("werk_trio")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(scope="session")
def dsn() -> str:
    """The test server's DSN: WERK_TEST_DSN, else the embedded Postgres."""
    return os.environ.get("WERK_TEST_DSN") or embedded_dsn()


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    """A fresh schema name for this test; the schema is dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(name)))


@pytest.fixture
async def app(dsn: str, schema: str) -> AsyncIterator[Werk]:
    """A connected Werk in this test's schema."""
    werk = Werk(dsn, schema=schema, task_modules=["tests"])
    async with werk:
        yield werk
