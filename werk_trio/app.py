"""The Werk app: lifecycle, enqueueing, and job management.

All database access goes through the app's pool of Trio-native connections;
every statement is a named one from :mod:`werk_trio.sql`.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
import trio

from . import sql as sqlmod
from ._bulk import copy_jobs, copy_rows, stream_jobs, streamable
from ._logging import setup_logging
from ._maintenance import sweep_once
from ._rows import RowBuilder, bare_job, check_text, execution_from_row, job_from_row, split_options
from ._transitions import jobs_ended
from ._util import call as _call
from ._waiting import DoneWatcher
from .config import WerkConfig, describe_dsn, mask_secrets, remember_secrets, resolve_dsn, with_params
from .db import Connection, Pool
from .embedded import embedded_dsn
from .errors import (
    ConfigError,
    InvalidJobState,
    JobError,
    JobNotFound,
    SerializationError,
    WaitTimeout,
    WerkError,
)
from .flow import FlowControl
from .jobs import (
    TERMINAL_STATUSES,
    EnqueueParams,
    Job,
    JobExecution,
    JobStatus,
    _seconds,
    as_job_id,
)
from .serializers import JSONSerializer, Serializer, check_serializer
from .tasks import TaskRegistry, caller_package

__all__ = ["Werk"]

logger = logging.getLogger("werk_trio")

F = TypeVar("F", bound=Callable[..., Any])
Hook = Callable[[], Any]

_STATUSES = tuple(s.value for s in JobStatus)


class Werk(FlowControl):
    """A job queue on one Postgres database.

    ``Werk(dsn=None, *, config=None, **settings)``: settings are the fields of
    :class:`WerkConfig` (keywords win over ``config``). With no DSN, ``WERK_DSN``,
    then ``DATABASE_URL``, then an embedded Postgres is used.

    Errors and cancellation, for every coroutine method: bad arguments raise
    :class:`ConfigError` before anything is sent; a call on an app that is not
    connected raises :class:`WerkError`; no free pooled connection within
    ``pool_timeout`` raises :class:`PoolTimeout`; a database that fails
    mid-call raises psycopg's ``OperationalError``. Each method's docstring
    says what a cancel (or one of these errors) leaves behind: a write runs in
    one transaction, so it either committed or left nothing.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        config: WerkConfig | dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        self.config = WerkConfig.build(config, dsn=dsn, **settings)
        self.serializer: Serializer = check_serializer(self.config.serializer or JSONSerializer())
        self.sql = sqlmod.Statements(self.config.schema, self.config.prefix)
        home = self.config.home_package
        home = caller_package() if home is None else home or None
        self.tasks = TaskRegistry(self.config.task_modules, home)
        #: The allowlist check that guards decoding, for serializers whose loads()
        #: can run code (PickleSerializer): rows of functions no worker may run
        #: are never decoded, also by get_job / list_jobs / wait_for. None: all are.
        self.decode_allowed: Callable[[str], bool] | None = (
            self.tasks.is_allowed if getattr(self.serializer, "unsafe_loads", False) else None
        )
        cfg = self.config
        if cfg.log_level is not None or cfg.log_color is not None or cfg.log_fmt is not None \
                or cfg.log_format != "text":
            # as pgwerk: any logging setting configures logging (level default INFO)
            setup_logging(cfg.log_level or "INFO", cfg.log_format, cfg.log_color, cfg.log_fmt)
        self._pool: Pool | None = None
        self._dsn: str | None = None
        self._where = "not connected"
        self._lock: trio.Lock | None = None
        self._on_startup: list[Hook] = []
        self._on_shutdown: list[Hook] = []
        self._before_enqueue: list[Callable[[EnqueueParams], Any]] = []
        self._done = DoneWatcher(self)

    # --- lifecycle ------------------------------------------------------------

    def __repr__(self) -> str:
        where = self._where if self._pool is not None else "not connected"
        schema = f" schema={self.config.schema}" if self.config.schema else ""
        return f"<Werk {where}{schema} prefix={self.config.prefix}>"

    @property
    def connected(self) -> bool:
        return self._pool is not None

    @property
    def dsn(self) -> str:
        """The conninfo in use once connected; before, the DSN given (or found in
        WERK_DSN / DATABASE_URL). Contains the password: never log it."""
        if self._dsn is not None:
            return self._dsn
        dsn, source = resolve_dsn(self.config.dsn)
        if source == "embedded":
            raise WerkError(
                "no DSN was given (nor WERK_DSN / DATABASE_URL): the embedded Postgres's DSN "
                "is known once connected; call `await app.connect()` first"
            )
        return dsn

    @property
    def schema(self) -> str | None:
        """The Postgres schema of the tables (``config.schema``)."""
        return self.config.schema

    @property
    def prefix(self) -> str:
        """The table name prefix (``config.prefix``)."""
        return self.config.prefix

    @property
    def max_active_secs(self) -> float:
        """Seconds an untouched active job may run before the sweep takes it for stuck."""
        return self.config.max_active_secs

    def on_startup(self, func: F) -> F:
        """Decorator: run ``func()`` (sync or async) once, at the end of connect()."""
        if not callable(func):
            raise ConfigError(f"on_startup takes a function (sync or async), got {func!r}")
        self._on_startup.append(func)
        return func

    def on_shutdown(self, func: F) -> F:
        """Decorator: run ``func()`` (sync or async) once, at the start of disconnect()."""
        if not callable(func):
            raise ConfigError(f"on_shutdown takes a function (sync or async), got {func!r}")
        self._on_shutdown.append(func)
        return func

    async def connect(self) -> None:
        """Open the pool and apply migrations (``auto_migrate``). Idempotent.

        Cancellation: a cancel while connecting closes what was opened.
        """
        if self._lock is None:
            self._lock = trio.Lock()
        async with self._lock:
            if self._pool is not None:
                return
            dsn, source = resolve_dsn(self.config.dsn)
            if source == "embedded":
                dsn = await trio.to_thread.run_sync(embedded_dsn, self.config.embedded_dir)
            full = with_params(
                dsn,
                connect_timeout=max(2, int(self.config.connect_timeout)),
                application_name="werk_trio",
            )
            remember_secrets(full)
            self._where = describe_dsn(full)
            logger.info("werk_trio using %s (from %s)", self._where, source)
            pool = Pool(
                full,
                min_size=self.config.min_pool_size,
                max_size=self.config.max_pool_size,
                timeout=self.config.pool_timeout,
                prepare_threshold=self.config.prepare_threshold,
            )
            failure = None
            try:
                await pool.open()
            except psycopg.Error as ex:
                failure = mask_secrets(str(ex)).strip()
            if failure is not None:
                # raised outside the except block: the psycopg error (which may
                # quote the DSN) is not kept as the ConfigError's __context__
                raise ConfigError(f"cannot connect to {self._where}: {failure}")
            self._pool, self._dsn = pool, full
            try:
                if self.config.auto_migrate:
                    await self.migrate()
                for hook in self._on_startup:
                    await _call(hook)
            except BaseException:
                self._pool, self._dsn = None, None
                with trio.CancelScope(shield=True):
                    await pool.close()
                raise

    async def disconnect(self) -> None:
        """Run on_shutdown hooks and close the pool. Idempotent. Cancellation:
        the close itself is shielded."""
        if self._lock is None:
            self._lock = trio.Lock()
        async with self._lock:
            pool = self._pool
            if pool is None:
                return
            try:
                for hook in self._on_shutdown:
                    await _call(hook)
            finally:
                self._done.stop()
                self._pool, self._dsn = None, None
                with trio.CancelScope(shield=True):
                    await pool.close()

    async def __aenter__(self) -> Werk:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise WerkError("the app is not connected: use `async with app:` or `await app.connect()`")
        return self._pool

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[Connection[Any]]:
        """A pooled connection (autocommit; use ``conn.transaction()``), returned
        on exit. Pass it as ``_conn=`` to enqueue inside your own transaction.
        PoolTimeout after ``timeout`` seconds (None: ``pool_timeout``) without a
        free connection. Cancellation: the connection goes back to the pool (a
        transaction still open on it is rolled back)."""
        async with self.pool.connection(timeout) as conn:
            yield conn

    @staticmethod
    def _check_conn(conn: Any) -> Connection[Any]:
        """``conn`` if it is a usable ``_conn=``, else ConfigError."""
        if not isinstance(conn, Connection):
            raise ConfigError(f"_conn must be a connection from app.connection(), got {type(conn).__name__}")
        if conn.broken:
            raise ConfigError("_conn is closed or broken: use an open connection")
        return conn

    async def _fetch(self, query: str, params: dict[str, Any] | None = None) -> list[Any]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def migrate(self) -> list[int]:
        """Apply pending migrations under an advisory lock; return the versions applied.

        All pending migrations run in one transaction: a cancel or an error
        leaves the schema as it was (the next call applies them again).
        """
        applied_now: list[int] = []
        async with self.pool.connection() as conn, conn.transaction():
            if self.config.schema:
                # The schema's lock first: apps with other prefixes may be
                # creating the same schema at this moment, and CREATE SCHEMA IF
                # NOT EXISTS fails (duplicate key) against a concurrent create.
                await conn.execute(self.sql.MIGRATE_LOCK, {"key": self.sql.schema_lock_key})
                await conn.execute(self.sql.CREATE_SCHEMA)
            await conn.execute(self.sql.MIGRATE_LOCK, {"key": self.sql.lock_key})
            await conn.execute(self.sql.CREATE_MIGRATIONS)
            cur = await conn.execute(self.sql.APPLIED_MIGRATIONS)
            done = {row[0] for row in await cur.fetchall()}
            for migration in sqlmod.migrations():
                if migration.version in done:
                    continue
                await conn.execute(self.sql.render(migration.template))
                await conn.execute(
                    self.sql.RECORD_MIGRATION, {"version": migration.version, "name": migration.name}
                )
                applied_now.append(migration.version)
            if self.config.ephemeral_tables:
                cur = await conn.execute(self.sql.WORKERS_PERSISTENCE)
                row = await cur.fetchone()
                if row is not None and row[0] != "u":
                    await conn.execute(self.sql.SET_WORKERS_UNLOGGED)
                    logger.info("worker registry table is now UNLOGGED (ephemeral_tables=True)")
        if applied_now:
            logger.info("applied migrations %s", applied_now)
        return applied_now

    # --- tasks ----------------------------------------------------------------

    def task(self, func: F | None = None, *, name: str | None = None, asyncio: bool = False) -> Any:
        """Decorator registering a function workers may run (``@app.task``,
        ``@app.task(name="pkg.mod.fn")``; ``asyncio=True`` marks an asyncio
        coroutine function for the trio-asyncio bridge)."""

        def deco(f: F) -> F:
            if asyncio:
                from .executors import asyncio_handler

                asyncio_handler(f)
            self.tasks.register(f, name)
            return f

        return deco(func) if func is not None else deco

    def register(self, func: F, *, name: str | None = None) -> F:
        """Register ``func`` as a function workers may run; returns it."""
        self.tasks.register(func, name)
        return func

    # --- enqueueing -----------------------------------------------------------

    def register_before_enqueue(self, callback: Callable[[EnqueueParams], Any]) -> None:
        """``callback(params)`` (sync or async) runs before each job is validated and
        inserted; it may change ``params`` or raise to refuse the job."""
        if not callable(callback):
            raise ConfigError(f"before-enqueue callback must be callable, got {callback!r}")
        self._before_enqueue.append(callback)

    def unregister_before_enqueue(self, callback: Callable[[EnqueueParams], Any]) -> None:
        try:
            self._before_enqueue.remove(callback)
        except ValueError:
            raise ConfigError(f"{callback!r} is not a registered before-enqueue callback") from None

    async def enqueue(self, func: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Job | None:
        """Insert one job; return it, or None when its ``_key`` is already taken.

        Keywords starting with ``_`` are options (SPEC §2); the rest are the
        payload. ``_conn=`` joins the caller's transaction. Nothing is inserted
        when validation fails. Cancellation: the insert either committed or not;
        with ``_conn`` it is part of the caller's transaction.
        """
        conn = kwargs.pop("_conn", None)
        options, payload = split_options(kwargs)
        params = EnqueueParams(func, args, payload, **options)
        return (await self._enqueue([params], conn))[0]

    async def enqueue_many(
        self, specs: Iterable[EnqueueParams], *, _conn: Connection[Any] | None = None
    ) -> list[Job | None]:
        """Insert many jobs in one statement; ``None`` at the positions whose key was taken.

        ConfigError (nothing inserted) if any item is invalid. Cancellation: all
        of them were inserted or none; with ``_conn`` they follow the caller's
        transaction.
        """
        if isinstance(specs, EnqueueParams):
            raise ConfigError("enqueue_many takes a list of EnqueueParams; for one job use enqueue()")
        items = list(specs)
        for item in items:
            if not isinstance(item, EnqueueParams):
                raise ConfigError(f"enqueue_many takes EnqueueParams objects, got {type(item).__name__}")
        if not items:
            return []
        return await self._enqueue(items, _conn)

    async def _enqueue(self, items: list[EnqueueParams], conn: Connection[Any] | None) -> list[Job | None]:
        for callback in self._before_enqueue:
            for item in items:
                try:
                    await _call(callback, item)
                except AttributeError as ex:
                    if not isinstance(getattr(ex, "obj", None), EnqueueParams):
                        raise
                    raise ConfigError(
                        f"before-enqueue callback {callback!r} read a field EnqueueParams does not "
                        f"have ({ex}): it is called with the EnqueueParams before the insert, "
                        "not with the inserted Job as in pgwerk (use params.func, .kwargs, .queue, "
                        ".meta...); nothing was enqueued"
                    ) from ex
        builder = RowBuilder(self.serializer, self.config.max_payload_bytes)
        if conn is None:
            # getconn/putconn, not pool.connection(): two context-manager
            # layers are a tenth of a single enqueue's own time.
            pool = self.pool
            if streamable(items):  # large and plain: built while the COPY runs
                own = await pool.getconn()
                try:
                    copied = await stream_jobs(own, self.sql, builder, items)
                finally:
                    await pool.putconn(own)
                if copied is not None:
                    return builder.finish(copied, None)
                builder = RowBuilder(self.serializer, self.config.max_payload_bytes)
            builder.add_all(items)
            own = await pool.getconn()
            try:
                now, keyed = await self._insert(own, builder)
            finally:
                await pool.putconn(own)
        else:
            builder.add_all(items)
            now, keyed = await self._insert(self._check_conn(conn), builder)
        return builder.finish(now, keyed)

    async def _insert(self, conn: Connection[Any], builder: RowBuilder) -> tuple[Any, Any]:
        """Run INSERT_JOBS for the builder's rows: (now(), ids of the keyed rows inserted).
        A large batch of plain jobs goes in by binary COPY instead (werk_trio/_bulk.py)."""
        copy = copy_rows(builder)
        if copy is not None:
            return await copy_jobs(conn, self.sql, *copy), None
        params = {"rows": builder.rows_json()}
        if builder.deps:
            async with conn.transaction():
                return await self._insert_with_deps(conn, builder, params)
        return await self._insert_rows(conn, builder, params)

    async def _insert_rows(
        self, conn: Connection[Any], builder: RowBuilder, params: dict[str, Any]
    ) -> tuple[Any, Any]:
        """INSERT_JOBS (INSERT_JOB for one job): (now(), ids of the keyed rows inserted)."""
        sql = self.sql
        # ON CONFLICT only when some job has a _key: no other row can conflict.
        if len(builder.jobs) == 1:
            cur = await conn.execute(sql.INSERT_JOB if builder.keyed else sql.INSERT_JOB_NO_KEY, params)
            row = await cur.fetchone()
            return (None, ()) if row is None else (row[0], row[1])  # no row: its key was taken
        cur = await conn.execute(sql.INSERT_JOBS if builder.keyed else sql.INSERT_JOBS_NO_KEYS, params)
        now, keyed = (await cur.fetchone())[:2]  # type: ignore[index]
        return now, keyed

    async def _insert_with_deps(
        self, conn: Connection[Any], builder: RowBuilder, params: dict[str, Any]
    ) -> tuple[Any, Any]:
        parents = sorted({p for _, p, _ in builder.deps})
        cur = await conn.execute(self.sql.LOCK_PARENTS, {"ids": parents})
        found = {row[0] for row in await cur.fetchall()}
        missing = [str(p) for p in parents if p not in found]
        if missing:
            raise ConfigError(
                f"cannot depend on job(s) {', '.join(missing)}: no such job (never enqueued, "
                "or already deleted)"
            )
        now, keyed = await self._insert_rows(conn, builder, params)
        inserted = [job.id for job in builder.inserted(keyed)]
        await conn.execute(
            self.sql.INSERT_DEPS,
            {
                "job_id": [d[0] for d in builder.deps],
                "depends_on": [d[1] for d in builder.deps],
                "allow_failure": [d[2] for d in builder.deps],
                "inserted": inserted,
            },
        )
        cur = await conn.execute(
            self.sql.RESOLVE_WAITING, {"ids": inserted}
        )
        resolved = {row[0]: row[1] for row in await cur.fetchall()}
        for job in builder.jobs:
            if job.id in resolved:
                job.status = JobStatus(resolved[job.id])
        return now, keyed

    # --- waiting for results ----------------------------------------------------

    async def wait_for(self, job_id: Any, *, timeout: float | None = None,
                       poll_interval: float | None = None) -> Job:
        """Wait until the job is terminal and return it. Woken by NOTIFY when it
        ends, with a database re-check every ``poll_interval`` seconds (None:
        1 s) as a fallback. Raises WaitTimeout after ``timeout`` seconds (None:
        wait forever), JobNotFound if the row disappears. Cancellation: safe,
        nothing is changed."""
        jid = as_job_id(job_id)
        return (await self._wait_many([jid], timeout, poll_interval))[jid]

    async def apply(self, func: Callable[..., Any] | str, *args: Any, timeout: float | None = None,
                    poll_interval: float | None = None, **kwargs: Any) -> Any:
        """Enqueue a job, wait for it, return its result; JobError (with ``.job``)
        if it failed or was aborted, WaitTimeout after ``timeout`` seconds.
        ``timeout`` and ``poll_interval`` (as in wait_for) are options of apply,
        never handler arguments. Cancellation: once enqueued the job stays
        (a worker still runs it); only the waiting stops."""
        _check_poll(poll_interval)
        job = await self.enqueue(func, *args, **kwargs)
        if job is None:
            raise ConfigError("apply() cannot wait for a job whose _key is already taken")
        done = await self.wait_for(job.id, timeout=timeout, poll_interval=poll_interval)
        if done.status is not JobStatus.COMPLETE:
            raise JobError(done)
        return done.result

    async def map(self, func: Callable[..., Any] | str, kwargs_list: Iterable[dict[str, Any]], *,
                  timeout: float | None = None, poll_interval: float | None = None,
                  return_exceptions: bool = False, **options: Any) -> list[Any]:
        """Enqueue one job per kwargs dict (in one statement), wait for all, and
        return their results in order. A failed job raises JobError, or with
        ``return_exceptions=True`` puts the JobError in its place. WaitTimeout
        after ``timeout`` seconds for all of them. Cancellation: the jobs stay
        enqueued (all or none of them) and run; only the waiting stops."""
        _check_poll(poll_interval)
        opts, extra = split_options(options)
        if extra:
            raise ConfigError(f"map() options must start with '_', got {sorted(extra)}")
        items = []
        for kw in kwargs_list:
            if not isinstance(kw, dict):
                raise ConfigError(f"map() takes a list of kwargs dicts, got {type(kw).__name__}")
            items.append(EnqueueParams(func, (), kw, **opts))
        jobs = await self.enqueue_many(items)
        if any(j is None for j in jobs):
            raise ConfigError("map() cannot wait for jobs whose _key is already taken")
        ids = [j.id for j in jobs if j is not None]
        done = await self._wait_many(ids, timeout, poll_interval)
        out: list[Any] = []
        for jid in ids:
            job = done[jid]
            if job.status is JobStatus.COMPLETE:
                out.append(job.result)
            elif return_exceptions:
                out.append(JobError(job))
            else:
                raise JobError(job)
        return out

    async def _wait_many(self, ids: list[uuid.UUID], timeout: float | None,
                         poll_interval: float | None = None) -> dict[uuid.UUID, Job]:
        if timeout is not None:
            timeout = _seconds("timeout", timeout, allow_zero=True)
        poll = _check_poll(poll_interval)
        await self._done.ensure_started()
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        done: dict[uuid.UUID, Job] = {}
        pending = list(dict.fromkeys(ids))
        while True:
            watching = pending
            event = self._done.register(watching)
            try:
                found = await self.get_jobs(pending)
                missing = [jid for jid in pending if jid not in found]
                if missing:
                    raise JobNotFound(missing[0])
                for jid, job in found.items():
                    if job.status.terminal:
                        done[jid] = job
                pending = [jid for jid in pending if jid not in done]
                if not pending:
                    return done
                if trio.current_time() >= deadline:
                    raise WaitTimeout(
                        f"{len(pending)} job(s) not finished after {timeout:g}s (first: {pending[0]})"
                    )
                with trio.move_on_at(min(deadline, trio.current_time() + poll)):
                    await event.wait()
            finally:
                self._done.unregister(watching, event)

    # --- inspecting -----------------------------------------------------------

    async def get_job(self, job_id: Any) -> Job:
        """The job with this id; JobNotFound if there is none (ConfigError for
        an id that is not a UUID). Cancellation: safe, it only reads."""
        jid = as_job_id(job_id)
        rows = await self._fetch(self.sql.GET_JOB, {"id": jid})
        if not rows:
            raise JobNotFound(jid)
        return job_from_row(rows[0], self.serializer, self.decode_allowed)

    async def get_jobs(self, job_ids: Sequence[Any]) -> dict[uuid.UUID, Job]:
        """The jobs with these ids that exist, by id. Cancellation: safe, it only reads."""
        ids = [as_job_id(j) for j in job_ids]
        rows = await self._fetch(self.sql.GET_JOBS, {"ids": ids})
        return {row[0]: job_from_row(row, self.serializer, self.decode_allowed) for row in rows}

    async def list_jobs(
        self,
        queue: str | None = None,
        status: str | JobStatus | Sequence[str | JobStatus] | None = None,
        worker_id: Any = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
        function: str | None = None,
    ) -> list[Job]:
        """Jobs, newest first, filtered by queue, status(es), worker, function or a
        search text (matched against function, queue, key, id and payload).
        Cancellation: safe, it only reads."""
        statuses = _statuses(status)
        queue = _filter("queue", queue)
        function = _filter("function", function)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= 10_000:
            raise ConfigError(f"limit must be an int in 1..10000, got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ConfigError(f"offset must be an int >= 0, got {offset!r}")
        search = _filter("search", search)
        rows = await self._fetch(
            self.sql.LIST_JOBS,
            {
                "queue": queue,
                "status": statuses,
                "worker_id": None if worker_id is None else _uuid("worker_id", worker_id),
                "function": function,
                "search": None if search is None else f"%{_escape_like(search)}%",
                "limit": limit,
                "offset": offset,
            },
        )
        return [self._listed(row) for row in rows]

    def _listed(self, row: Sequence[Any]) -> Job:
        """A row as a Job for list_jobs and the management calls (cancel, abort,
        requeue); one that does not decode comes back with its typed columns
        only (payload, result, meta empty) rather than failing the listing or
        the change, and says so in the log."""
        try:
            return job_from_row(row, self.serializer, self.decode_allowed)
        except SerializationError as ex:
            logger.warning("job %s: %s; shown without its payload, result and meta", row[0], ex)
            return bare_job(row, error=row[17])

    async def get_executions(self, job_id: Any) -> list[JobExecution]:
        """One row per attempt of the job, oldest first (the complete one with its
        ``result``). Each run of a repeating job is a job of its own, with its own.
        Cancellation: safe, it only reads."""
        rows = await self._fetch(self.sql.GET_EXECUTIONS, {"id": as_job_id(job_id)})
        return [execution_from_row(row, self.serializer, self.decode_allowed) for row in rows]

    async def get_job_dependencies(self, job_id: Any) -> list[uuid.UUID]:
        """The ids of the jobs this one depends on (pgwerk's return);
        :meth:`get_job_dependency_details` also says how each one stands.
        Cancellation: safe, it only reads."""
        return [d["job_id"] for d in await self.get_job_dependency_details(job_id)]

    async def get_job_dependency_details(self, job_id: Any) -> list[dict[str, Any]]:
        """The jobs this one depends on: ``{"job_id", "allow_failure", "status"}``
        (status None when the dependency row outlived its job).
        Cancellation: safe, it only reads."""
        rows = await self._fetch(self.sql.GET_DEPENDENCIES, {"id": as_job_id(job_id)})
        return [
            {"job_id": r[0], "allow_failure": r[1], "status": None if r[2] is None else JobStatus(r[2])}
            for r in rows
        ]

    async def counts(self) -> dict[str, dict[str, int]]:
        """``{queue: {status: count}}`` for every queue with jobs.
        Cancellation: safe, it only reads."""
        out: dict[str, dict[str, int]] = {}
        for queue, status, n in await self._fetch(self.sql.COUNT_BY_STATUS):
            out.setdefault(queue, {})[status] = n
        return out

    async def list_workers(self) -> list[dict[str, Any]]:
        """Registered workers, oldest first: running ones and, for
        ``stopped_worker_retention`` seconds (an hour) after they left, stopped
        ones (``status == "stopped"``). Each a dict with pgwerk's keys --
        ``id`` (UUID), ``name``, ``queue`` (the queues, comma-separated),
        ``status`` (``running``, ``stopped``), ``metadata`` (hostname, pid,
        worker_type, concurrency, heartbeat_interval), ``heartbeat_at``,
        ``started_at``, ``expires_at`` (when a stopped row goes; None while
        running) -- and werk_trio's: ``hostname``, ``pid``, ``worker_type``,
        ``queues`` (list), ``concurrency``, ``heartbeat_interval``,
        ``last_seen`` (= heartbeat_at), ``heartbeat_age`` (seconds),
        ``stopped_at``.
        Cancellation: safe, it only reads."""
        return [_worker_dict(row) for row in await self._fetch(self.sql.LIST_WORKERS)]

    async def get_worker(self, worker_id: Any) -> dict[str, Any] | None:
        """One worker as :meth:`list_workers` shows it, or None if there is no
        such row (never registered, deleted as dead, or stopped longer ago
        than ``stopped_worker_retention``).
        Cancellation: safe, it only reads."""
        rows = await self._fetch(self.sql.GET_WORKER, {"id": _uuid("worker_id", worker_id)})
        return _worker_dict(rows[0]) if rows else None

    async def list_worker_jobs(self, worker_id: Any, limit: int = 50, offset: int = 0) -> list[Job]:
        """The jobs a worker holds now (active or aborting, newest start first),
        then the finished jobs it ran last (newest first): werk_trio keeps
        ``worker_id`` on finished jobs. A job retried elsewhere belongs to the
        worker of its last attempt.
        Cancellation: safe, it only reads."""
        _limit_offset(limit, offset, most=1000)
        rows = await self._fetch(
            self.sql.LIST_WORKER_JOBS,
            {"worker_id": _uuid("worker_id", worker_id), "limit": limit, "offset": offset},
        )
        return [job_from_row(row, self.serializer) for row in rows]

    async def get_queue_stats(self) -> tuple[list[dict[str, Any]], int, int]:
        """``(queues, total_jobs, workers_online)``, as pgwerk.

        ``queues``: one dict per queue with jobs, by name: ``queue``,
        ``scheduled``, ``queued``, ``active``, ``aborting``, ``waiting``,
        ``complete``, ``failed``, ``aborted`` (counts), and werk_trio's
        ``estimated``: the statuses whose count is an estimate (a list in
        that key order; empty when every count is exact). ``total_jobs``:
        the sum of the counts (an estimate when any is). ``workers_online``:
        workers running and heard from within three of their heartbeat
        intervals. One statement.

        Live jobs are counted exactly up to ``estimate_limit`` (50,000) of a
        queue and status; above it the count is the planner's estimate for
        them (as fresh as the table's last ANALYZE, never below what the
        capped count saw) and the status is listed in ``estimated``. Active
        and aborting jobs, and waiting ones, are exact while the whole table
        has at most the limit of each (their indexes do not lead with the
        queue); a queue's queued count is estimated too when it has more
        than the limit of scheduled jobs. :meth:`counts` is always exact,
        and counts every row.
        Finished ones are the sweeper's last recount (every
        ``stats_sample_interval``) plus every job finished since, so a
        purge, delete or requeue of a job that finished before that recount
        shows from the next one on (within a minute by default); before any
        recount, every row is counted.
        Cancellation: safe, it only reads."""
        queues: list[dict[str, Any]] = []
        online = 0
        for row in await self._fetch(self.sql.QUEUE_STATS, {"limit": self.config.estimate_limit}):
            online = int(row[-1])
            if row[0] is not None:
                counts = dict(zip(_QUEUE_STAT_KEYS, row[:-2], strict=True))
                guessed = set(row[-2] or ())
                counts["estimated"] = [k for k in _QUEUE_STAT_KEYS[1:] if k in guessed]
                queues.append(counts)
        total = sum(sum(q[k] for k in _QUEUE_STAT_KEYS[1:]) for q in queues)
        return queues, total, online

    async def get_throughput_history(
        self, minutes: int = 60, *, bucket_secs: int | None = None
    ) -> list[dict[str, Any]]:
        """Finished jobs per minute over the last ``minutes`` (1..10080), per
        queue and per worker, oldest bucket first. ``bucket_secs`` (a multiple
        of 60) sets the bucket; by default a minute for windows up to an
        hour, 5 minutes up to 6 hours, an hour beyond (as pgwerk's steps: a
        day of minutes per queue per worker is tens of thousands of rows).
        Buckets that are not whole hours cover at most a day (1440 minutes):
        the per-minute roll-up is kept 25 hours, the hourly one
        ``stats_retention``.

        Each dict: ``time`` (the bucket's start, UTC, aligned to whole
        buckets; the last one is the current, partial bucket), ``queue``,
        ``worker_id``, ``worker_name`` (the id as text once the worker row is
        gone), ``completed``, ``failed`` (jobs that ended failed: a retried
        attempt is not counted), ``count`` (= completed, pgwerk's key). A
        bucket in which nothing finished appears once, with ``queue``,
        ``worker_id`` and ``worker_name`` None and zero counts. Counts come
        from the sweeper's per-minute roll-up (history: a job purged after
        it was rolled up still counts) and, for the minutes since the last
        roll-up, from the job rows.
        Cancellation: safe, it only reads."""
        _int_in("minutes", minutes, 1, 10080)
        if bucket_secs is None:
            bucket_secs = 60 if minutes <= 60 else 300 if minutes <= 360 else 3600
        _int_in("bucket_secs", bucket_secs, 60, 86400)
        if bucket_secs % 60:
            raise ConfigError(f"bucket_secs must be a multiple of 60, got {bucket_secs}")
        hourly = bucket_secs % 3600 == 0
        if not hourly and minutes > 1440:
            raise ConfigError(
                f"bucket_secs={bucket_secs} over {minutes} minutes: per-minute data is kept a day; "
                "use whole hours (bucket_secs=3600, 7200, ...) for longer windows"
            )
        n = max(1, (minutes * 60) // bucket_secs)
        rows = await self._fetch(
            self.sql.THROUGHPUT_HISTORY, {"bucket": bucket_secs, "n": n, "hourly": hourly}
        )
        return [
            {"time": t, "queue": q, "worker_id": w, "worker_name": name, "completed": c, "failed": f,
             "count": c}
            for t, q, w, name, c, f in rows
        ]

    async def get_queue_depth_history(
        self, minutes: int = 60, *, queue: str | None = None, bucket_secs: int | None = None
    ) -> list[dict[str, Any]]:
        """Queue-depth samples of the last ``minutes`` (1..10080), oldest first:
        one dict per queue per sample -- ``time``, ``queue``, ``queued``,
        ``scheduled``, ``waiting``, ``active`` (active + aborting), and
        ``estimated``: which of those four counts are the planner's estimate
        (above ``estimate_limit``, as in :meth:`get_queue_stats`; ``[]``
        when all are exact; in a bucket, those estimated in any of its
        samples; samples taken before migration 0008 show ``[]``). Workers
        take a sample each ``stats_sample_interval`` (one worker at a time:
        the sweeping one) and keep ``stats_retention``; a queue appears in a
        sample while it has live jobs, and once more with zeros when it
        empties. ``queue``: that queue only. ``bucket_secs``: instead of every
        sample, their average per bucket of that many seconds (aligned to
        the epoch; ``time`` is the bucket's start); by default every sample
        for windows up to 6 hours, 15-minute buckets up to a day, hourly
        beyond.
        Cancellation: safe, it only reads."""
        _int_in("minutes", minutes, 1, 10080)
        if queue is not None and (not isinstance(queue, str) or not queue):
            raise ConfigError(f"queue must be a queue name, got {queue!r}")
        params: dict[str, Any] = {"minutes": minutes, "queue": queue}
        if bucket_secs is None and minutes > 360:
            bucket_secs = 900 if minutes <= 1440 else 3600
        if bucket_secs is None:
            rows = await self._fetch(self.sql.QUEUE_DEPTH_HISTORY, params)
        else:
            params["bucket"] = _int_in("bucket_secs", bucket_secs, 1, 86400)
            rows = await self._fetch(self.sql.QUEUE_DEPTH_HISTORY_BINNED, params)
        keys = ("time", "queue", "queued", "scheduled", "waiting", "active", "estimated")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    async def get_server_info(self) -> tuple[str, int, list[dict[str, Any]]]:
        """``(pg_version, db_size_bytes, tables)``, as pgwerk: the server's
        version string (``version()``), the database's size in bytes, and one
        dict per table of this app -- ``name``, ``size_bytes`` (with indexes
        and TOAST), ``row_count`` (the statistics' live-row estimate) --
        largest first.
        Cancellation: safe, it only reads."""
        names = [self.sql.render("{" + t + "}") for t in sqlmod.TABLES]
        rows = await self._fetch(self.sql.SERVER_INFO, {"tables": names})
        _short, version, size, tables = rows[0]
        return str(version), int(size), [dict(t) for t in tables]

    async def sweep(self) -> list[uuid.UUID]:
        """One maintenance pass (what every worker's sweeper does each
        ``sweep_interval``): rescue jobs of dead workers and stuck jobs, expire
        TTLs, delete rows past their result/failure TTL. Returns the ids of the
        jobs it rescued (pgwerk's return); :meth:`sweep_counts` returns what
        each step did. The pass is one transaction under an advisory lock
        (nothing happens while another sweep holds it): a cancel rolls it
        back whole, and the next sweep does the work. The rows past their
        TTL go after its commit, 1,000 a statement, each statement its own
        transaction; a cancel keeps the statements that committed, and a row
        another transaction holds waits for the next sweep."""
        rescued: list[uuid.UUID] = []
        await sweep_once(self, rescued=rescued)
        return rescued

    async def sweep_counts(self) -> dict[str, int]:
        """:meth:`sweep`, returning the count of each step (dead_workers, rescued,
        expired, deleted, resolved). Cancellation: as :meth:`sweep`."""
        return await sweep_once(self)

    # --- managing -------------------------------------------------------------

    async def _ended(self, conn: Connection[Any], ids: list[uuid.UUID]) -> None:
        """Jobs that ended without a worker (cancelled, aborted before they
        started, deleted), inside the transaction that ended them: wake the
        waiters on the finished-jobs channel and resolve waiting dependents
        (queued, or failed with DependencyFailed), as a worker's completion does."""
        await jobs_ended(conn, self.sql, ids, may_be_failed=False)

    async def _change(self, query: str, job_id: Any) -> bool:
        """Run a one-job state change; True if it applied, False when the job is
        missing or not in a state the call applies to (nothing changed)."""
        jid = as_job_id(job_id)
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(query, {"id": jid})
            rows = await cur.fetchall()
            if rows and JobStatus(rows[0][3]).terminal:
                await self._ended(conn, [jid])
        return bool(rows)

    async def cancel_job(self, job_id: Any) -> bool:
        """A queued, scheduled or waiting job becomes ``aborted`` and never starts.
        True if it was cancelled; False if it is missing or has started or ended.
        Cancellation (of this call): the change and the wake-up of its waiters
        and dependents are one transaction, done or not."""
        return await self._change(self.sql.CANCEL_JOB, job_id)

    async def abort_job(self, job_id: Any) -> bool:
        """An active job becomes ``aborting``: its worker stops it within
        ``abort_interval`` and marks it aborted (no retry). True if it was
        marked; False (nothing changed) if it is missing or not running --
        stop a job that has not started with :meth:`cancel_job`. Cancellation:
        one transaction, marked or not."""
        return await self._change(self.sql.ABORT_JOB, job_id)

    async def requeue_job(self, job_id: Any) -> bool:
        """Queue a finished job (complete, failed or aborted) again now, with a
        fresh attempt budget. True if it was requeued; False (nothing changed)
        if it is missing, queued, scheduled, waiting or running. Cancellation:
        one transaction, requeued or not."""
        return await self._change(self.sql.REQUEUE_JOB, job_id)

    async def delete_job(self, job_id: Any) -> None:
        """Delete the job row (and its executions and dependency rows); nothing
        happens for a missing job. Jobs waiting for it count it as ended.
        Cancellation: one transaction, deleted (with its dependents resolved) or not."""
        jid = as_job_id(job_id)
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(self.sql.DELETE_JOB, {"id": jid})
            if await cur.fetchall():
                await self._ended(conn, [jid])

    async def touch_job(self, job_id: Any) -> None:
        """Mark a running job as alive now (the sweep leaves it alone for
        ``max_active_secs``); nothing happens for a missing or not-running job.
        Cancellation: one statement, touched or not."""
        await self._fetch(self.sql.TOUCH_JOB, {"id": as_job_id(job_id)})

    async def bulk_requeue_jobs(self, queue: str | None = None, function_name: str | None = None) -> int:
        """Requeue every failed or aborted job (of ``queue`` / ``function_name``); return the count.

        One statement: a cancel leaves all of them requeued or none.
        """
        queue = _filter("queue", queue)
        function_name = _filter("function_name", function_name)
        rows = await self._fetch(
            self.sql.BULK_REQUEUE,
            {"queue": queue, "function": function_name},
        )
        return int(rows[0][0])

    async def bulk_cancel_jobs(self, queue: str | None = None) -> int:
        """Cancel every queued, scheduled or waiting job (of ``queue``); return the count.

        One transaction: a cancel leaves all of them cancelled or none.
        """
        queue = _filter("queue", queue)
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(self.sql.BULK_CANCEL, {"queue": queue})
            count, ids = await cur.fetchone()  # type: ignore[misc]
            if ids:
                await self._ended(conn, ids)
        return int(count)

    async def purge_jobs(
        self, statuses: Sequence[str | JobStatus] = TERMINAL_STATUSES, older_than_days: float = 0,
        queue: str | None = None, limit: int | None = None,
    ) -> int:
        """Delete jobs in ``statuses`` (default: the terminal ones) that ended
        more than ``older_than_days`` ago (of ``queue``; at most ``limit`` of
        them, for deleting a big table in batches); return the count.
        ConfigError for running statuses or a bad number. One statement: a
        cancel deletes all of the batch or none."""
        chosen = _statuses(statuses) or list(TERMINAL_STATUSES)
        bad = [s for s in chosen if s in ("active", "aborting")]
        if bad:
            raise InvalidJobState(
                f"cannot purge running jobs ({', '.join(bad)}): abort them first (abort_job), "
                "then purge them once they ended"
            )
        if isinstance(older_than_days, bool) or not isinstance(older_than_days, int | float):
            raise ConfigError(f"older_than_days must be a number of days, got {older_than_days!r}")
        older_than = _seconds("older_than_days (in seconds)", float(older_than_days) * 86400, allow_zero=True)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"limit must be an int >= 1 or None, got {limit!r}")
        queue = _filter("queue", queue)
        rows = await self._fetch(
            self.sql.PURGE_JOBS,
            {"statuses": chosen, "older_than": older_than, "queue": queue, "limit": limit},
        )
        return int(rows[0][0])

    async def run(self, queues: Sequence[str] | None = None, concurrency: int = 10,
                  worker_type: str = "async", **worker_options: Any) -> None:
        """Connect and run a worker of ``worker_type`` (async, thread, process or
        fork) on ``queues`` (None: ``["default"]``) until it is stopped (a signal,
        or cancelling the caller). ``worker_options`` go to the worker class.
        Cancellation: as the worker's ``run`` (running jobs are cancelled and
        put back in the queue without spending an attempt); the app stays
        connected."""
        from .worker import worker_class

        cls = worker_class(worker_type)
        worker = cls(self, queues or ["default"], concurrency, **worker_options)
        await self.connect()
        await worker.run()

    async def get_function_stats(
        self, since: float = 86400, limit: int = 10, queue: str | None = None
    ) -> list[dict[str, Any]]:
        """Per function, over the jobs that finished in the last ``since``
        seconds (of ``queue``), slowest average first: ``{"function", "runs",
        "avg", "p50", "p95", "max", "failures"}`` (seconds of the last attempt).
        ConfigError for a bad ``since`` / ``limit``. Cancellation: safe, it only reads."""
        since = _seconds("since", since)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= 10_000:
            raise ConfigError(f"limit must be an int in 1..10000, got {limit!r}")
        queue = _filter("queue", queue)
        params = {"since": float(since), "limit": limit, "queue": queue}
        rows = await self._fetch(self.sql.FUNCTION_STATS, params)
        keys = ("function", "runs", "avg", "p50", "p95", "max", "failures")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    async def vacuum(self) -> None:
        """VACUUM ANALYZE the werk tables. Cancellation: the VACUUM is
        interrupted; tables done so far stay vacuumed, nothing else changes."""
        async with self.pool.connection() as conn:
            await conn.execute(self.sql.VACUUM)

    async def truncate(self) -> None:
        """Delete every job, execution, dependency and worker row. For tests and resets.

        One TRUNCATE statement: a cancel leaves every row or none.
        """
        async with self.pool.connection() as conn:
            await conn.execute(self.sql.TRUNCATE)

    # --- cron (werk_trio/cron.py) ------------------------------------------------

    async def pause_cron(self, name: str) -> None:
        """Pause the cron schedule ``name`` for every scheduler: the leader stops
        enqueueing it from its next tick. ConfigError if there is no such schedule.
        Cancellation: one statement, paused or not."""
        await self._set_cron_paused(name, True)

    async def resume_cron(self, name: str) -> None:
        """Resume the cron schedule ``name``: it runs again from its next tick.
        ConfigError if there is no such schedule. Cancellation: one statement,
        resumed or not."""
        await self._set_cron_paused(name, False)

    async def _set_cron_paused(self, name: str, paused: bool) -> None:
        if not isinstance(name, str):
            raise ConfigError(f"a cron schedule name is a string, got {name!r}")
        if not await self._fetch(self.sql.CRON_SET_PAUSED, {"name": name, "paused": paused}):
            await self._no_cron_schedule(name)

    async def _no_cron_schedule(self, name: str) -> None:
        state = await self._fetch(self.sql.CRON_SCHEDULE_STATE, {"name": name})
        if state:
            raise ConfigError(f"cron schedule {name!r} was removed (unregistered); register it again")
        names = [row[0] for row in await self._fetch(self.sql.CRON_STATS)]
        raise ConfigError(f"no cron schedule named {name!r}; schedules: {', '.join(names) or 'none'}")

    async def trigger_cron_job(self, name: str) -> Job:
        """Enqueue one run of the cron schedule ``name`` now, outside its
        schedule (also when paused); returns the Job. ConfigError if there is
        no such schedule. Cancellation: the job and the schedule's record of
        it are one transaction, both or neither."""
        from .cron import params_from_row

        if not isinstance(name, str):
            raise ConfigError(f"a cron schedule name is a string, got {name!r}")
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(self.sql.CRON_GET_SCHEDULE, {"name": name})
            row = await cur.fetchone()
            if row is not None:
                params = params_from_row(row[0], row[1], row[2], row[6], self.serializer, None)
                (job,) = await self.enqueue_many([params], _conn=conn)
                assert job is not None  # no key: nothing to collide with
                await conn.execute(self.sql.CRON_RECORD_TRIGGER, {"name": name, "job_id": job.id})
                return job
        await self._no_cron_schedule(name)
        raise AssertionError("unreachable")

    async def list_cron_stats(self) -> list[dict[str, Any]]:
        """Every cron schedule in the database, by name: ``name``, ``function``,
        ``queue``, ``schedule`` (the expression, or ``every Ns``), ``cron``,
        ``interval``, ``tz``, ``next_run_at``, ``last_run_at``, ``last_status``
        (of the last job, None once it is gone), ``last_job_id``, ``total_runs``
        (jobs enqueued), ``failed_runs`` (failed jobs still kept), ``paused``,
        ``removed``, and pgwerk's ``last_enqueued_at`` / ``last_completed_at`` (of
        the last job; None once it is gone). Cancellation: safe, it only reads."""
        out = []
        for (name, function, queue, cron, interval, tz, next_run_at, last_run_at, paused, removed_at,
             total, last_job, last_status, last_enqueued, last_completed,
             failed) in await self._fetch(self.sql.CRON_STATS):  # fmt: skip
            schedule = f"every {interval:g}s" if interval is not None else (
                cron if tz == "UTC" else f"{cron} ({tz})")
            out.append({
                "name": name, "function": function, "queue": queue, "schedule": schedule,
                "cron": cron, "interval": interval, "tz": tz, "next_run_at": next_run_at,
                "last_run_at": last_run_at,
                "last_status": None if last_status is None else JobStatus(last_status),
                "last_job_id": last_job, "total_runs": int(total), "failed_runs": int(failed),
                "paused": paused, "removed": removed_at is not None,
                "last_enqueued_at": last_enqueued, "last_completed_at": last_completed,
            })  # fmt: skip
        return out


_WAIT_POLL = 1.0  # seconds between database re-checks while waiting (default)


def _check_poll(value: Any) -> float:
    """``poll_interval`` of wait_for / apply / map as seconds (None: the default)."""
    if value is None:
        return _WAIT_POLL
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(f"poll_interval must be seconds > 0 or None, got {value!r}")
    return float(value)

_QUEUE_STAT_KEYS = (
    "queue", "scheduled", "queued", "active", "aborting", "waiting", "complete", "failed", "aborted",
)  # fmt: skip


def _worker_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A workers row as list_workers() shows it: pgwerk's keys and werk_trio's."""
    (wid, name, hostname, pid, worker_type, queues, concurrency, heartbeat_interval, started_at,
     last_seen, status, heartbeat_age, stopped_at, expires_at) = row
    return {
        "id": wid, "name": name, "queue": ",".join(queues), "status": status,
        "metadata": {"hostname": hostname, "pid": pid, "worker_type": worker_type,
                     "concurrency": concurrency, "heartbeat_interval": heartbeat_interval},
        "heartbeat_at": last_seen, "started_at": started_at, "expires_at": expires_at,
        "hostname": hostname, "pid": pid, "worker_type": worker_type, "queues": list(queues),
        "concurrency": concurrency, "heartbeat_interval": heartbeat_interval, "last_seen": last_seen,
        "heartbeat_age": float(heartbeat_age), "stopped_at": stopped_at,
    }  # fmt: skip


def _int_in(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an int in {low}..{high}, got {value!r}")
    return value


def _limit_offset(limit: Any, offset: Any, *, most: int) -> None:
    _int_in("limit", limit, 1, most)
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError(f"offset must be an int >= 0, got {offset!r}")


def _statuses(value: Any) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str | JobStatus) else list(value)
    out = []
    for item in items:
        text = item.value if isinstance(item, JobStatus) else item
        if not isinstance(text, str) or text not in _STATUSES:
            raise ConfigError(f"unknown job status {item!r}; statuses: {', '.join(_STATUSES)}")
        out.append(text)
    return out


def _filter(name: str, value: Any) -> Any:
    """A text filter: None, or a string Postgres can compare (no NUL, no lone surrogate)."""
    return None if value is None else check_text(name, value)


def _uuid(name: str, value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ConfigError(f"{name} must be a UUID, got {value!r}") from None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


