"""WerkConfig, name validation and DSN resolution.

Defaults are resolved here and nowhere else: the app and the workers read
their settings from one frozen :class:`WerkConfig`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import ConfigError

__all__ = ["WerkConfig", "mask_dsn", "resolve_dsn"]

#: Table prefixes, schema and queue-channel names: a letter or underscore, then
#: letters, digits or underscores; short enough for Postgres' 63-byte names
#: once suffixes like ``_jobs_group_active_idx`` are added.
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


def check_name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ConfigError(
            f"invalid {kind} {value!r}: use 1-40 characters, letters, digits and underscores, "
            "not starting with a digit (for example '_werk' or 'jobs')"
        )
    return value


def _positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> Any:
    ok_type = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        kind = "an int" if integer else "a number"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    if (not integer and not math.isfinite(value)) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


#: Fields whose None is a setting of its own, not "use the default":
#: ``prepare_threshold=None`` turns server-side prepared statements off.
_NONE_IS_A_SETTING = frozenset({"prepare_threshold"})


@dataclass(frozen=True, repr=False)
class WerkConfig:
    """Every setting of an app and its workers, validated once.

    Units are seconds unless stated.
    """

    #: Postgres DSN or conninfo; None: WERK_DSN, DATABASE_URL, then embedded.
    dsn: str | None = None
    #: Postgres schema holding the tables (None: the connection's search_path).
    schema: str | None = None
    #: Table name prefix: tables are {prefix}_jobs, {prefix}_executions, ...
    prefix: str = "_werk"
    #: Connections the pool opens at connect().
    min_pool_size: int = 2
    #: Most connections the pool ever holds.
    max_pool_size: int = 10
    #: Seconds to wait for a free pool connection before PoolTimeout.
    pool_timeout: float = 30.0
    #: Serializer for payload, result and meta (None: JSONSerializer()).
    serializer: Any = None
    #: An active job untouched for this long is stuck and is requeued by the sweep.
    max_active_secs: float = 3600.0
    #: Apply pending migrations at connect().
    auto_migrate: bool = True
    #: Level for the werk_trio loggers (None: leave logging alone).
    log_level: str | int | None = None
    #: "text" or "json" log lines (when log_level is set).
    log_format: str = "text"
    #: Modules or package prefixes whose functions workers may run.
    task_modules: tuple[str, ...] = ()
    #: Largest encoded payload accepted by enqueue, in bytes (1 MiB).
    max_payload_bytes: int = 1024 * 1024
    #: Worker defaults (see the workers page).
    heartbeat_interval: float = 10.0
    poll_interval: float = 5.0
    abort_interval: float = 1.0
    sweep_interval: float = 60.0
    shutdown_timeout: float = 30.0
    #: ForkWorker: seconds between SIGTERM and SIGKILL of a child.
    sigterm_grace: float = 5.0
    #: CronScheduler: seconds between a standby's attempts to take an expired lease.
    cron_standby_retry_interval: float = 30.0
    #: CronScheduler: seconds the leader's lease lasts; the leader renews it
    #: every round (at least every lease/3). A standby leads at most
    #: cron_lease + cron_standby_retry_interval after the leader died.
    cron_lease: float = 30.0
    #: False: no LISTEN; workers find jobs by polling every poll_interval and
    #: wait_for re-checks every second (PgBouncer in transaction mode).
    use_listen_notify: bool = True
    #: Executions of a statement on one connection before psycopg prepares it
    #: on the server; None: never (PgBouncer in transaction mode, where the
    #: next transaction may run on another server connection).
    prepare_threshold: int | None = 5
    #: Seconds a new connection may take before ConnectionTimeout.
    connect_timeout: float = 10.0
    #: True: a worker's claims wait for the WAL flush like every other commit.
    #: False (default): claims commit asynchronously -- a crash of the database
    #: server itself may undo the last ~0.6 s of claims, whose jobs are then
    #: queued again (at-least-once holds; see docs/architecture.md).
    #: Completions and enqueues are always durable.
    durable_claims: bool = False
    #: Directory of the embedded Postgres data (None: the default location).
    embedded_dir: str | None = field(default=None)
    #: ANSI colour in text logs: None (default) colours when stderr is a TTY
    #: and NO_COLOR is unset; True always; False never.
    log_color: bool | None = None
    #: A logging format string for text logs (``%(levelname)s %(message)s``;
    #: the running job's ``%(job_id)s``, ``%(job_function)s`` and
    #: ``%(job_attempt)s`` are available); None: the default format.
    log_fmt: str | None = None
    #: Seconds a stopped worker stays listed (status ``stopped``) before the
    #: sweeper deletes its row (pgwerk: an hour).
    stopped_worker_retention: float = 3600.0
    #: Seconds between queue-depth samples (taken by the sweeping worker, so at
    #: most once per sweep_interval as well).
    stats_sample_interval: float = 60.0
    #: Seconds queue-depth samples are kept (7 days).
    stats_retention: float = 7 * 86400.0

    def __post_init__(self) -> None:
        check_name("table prefix", self.prefix)
        if self.schema is not None:
            check_name("schema name", self.schema)
        if self.dsn is not None and not isinstance(self.dsn, str):
            raise ConfigError(f"dsn must be a string, got {type(self.dsn).__name__}")
        _positive("min_pool_size", self.min_pool_size, integer=True, allow_zero=True)
        _positive("max_pool_size", self.max_pool_size, integer=True)
        if self.min_pool_size > self.max_pool_size:
            raise ConfigError(
                f"min_pool_size ({self.min_pool_size}) is larger than max_pool_size "
                f"({self.max_pool_size})"
            )
        for name in (
            "pool_timeout", "max_active_secs", "heartbeat_interval", "poll_interval",
            "abort_interval", "sweep_interval", "connect_timeout", "cron_standby_retry_interval",
            "cron_lease",
        ):  # fmt: skip
            _positive(name, getattr(self, name))
        _positive("shutdown_timeout", self.shutdown_timeout, allow_zero=True)
        _positive("sigterm_grace", self.sigterm_grace, allow_zero=True)
        _positive("max_payload_bytes", self.max_payload_bytes, integer=True)
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be 'text' or 'json', got {self.log_format!r}")
        if self.log_level is not None and not (
            (isinstance(self.log_level, int) and not isinstance(self.log_level, bool))
            or (isinstance(self.log_level, str)
                and isinstance(logging.getLevelName(self.log_level.upper()), int))
        ):
            raise ConfigError(f"log_level must be a logging level such as 'INFO', got {self.log_level!r}")
        modules = self.task_modules
        if isinstance(modules, str):
            modules = (modules,)
        modules = tuple(modules)
        for m in modules:
            if not isinstance(m, str) or not re.match(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*$", m):
                raise ConfigError(f"task_modules entries must be module names like 'app.tasks', got {m!r}")
        object.__setattr__(self, "task_modules", modules)
        if self.prepare_threshold is not None:
            _positive("prepare_threshold", self.prepare_threshold, integer=True, allow_zero=True)
        for name in ("stopped_worker_retention", "stats_sample_interval", "stats_retention"):
            _positive(name, getattr(self, name))
        if self.log_color is not None and not isinstance(self.log_color, bool):
            raise ConfigError(f"log_color must be True, False or None, got {self.log_color!r}")
        if self.log_fmt is not None:
            from ._logging import check_format

            check_format(self.log_fmt)
        for name in ("durable_claims", "auto_migrate", "use_listen_notify"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def __repr__(self) -> str:
        # the DSN may hold a password: show it masked
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "dsn" and isinstance(value, str):
                value = mask_dsn(value)
            parts.append(f"{f.name}={value!r}")
        return f"WerkConfig({', '.join(parts)})"

    @classmethod
    def build(cls, config: WerkConfig | dict[str, Any] | None, **overrides: Any) -> WerkConfig:
        """``config`` (a WerkConfig or a dict) with ``overrides`` winning."""
        if config is None:
            base: dict[str, Any] = {}
        elif isinstance(config, WerkConfig):
            base = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls)}
        elif isinstance(config, dict):
            base = dict(config)
        else:
            raise ConfigError(f"config must be a WerkConfig or a dict, got {type(config).__name__}")
        # A keyword of None means "not given" (Werk(None) keeps the config's
        # DSN), except where None is itself the setting asked for.
        base.update({k: v for k, v in overrides.items() if v is not None or k in _NONE_IS_A_SETTING})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(base) - known)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; valid settings: {', '.join(sorted(known))}"
            )
        return cls(**base)


# ``user:password@`` anywhere (also in a mistyped URL such as ``postgres//u:pw@h``
# that libpq quotes back in its error message).
_PASSWORD_IN_URL = re.compile(r"([^\s:/@\"']*:)([^@\s\"'/]*)(@)")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``."""
    masked = _PASSWORD_IN_URL.sub(r"\1***\3", dsn)
    masked = _PASSWORD_KV.sub(r"\1***", masked)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", masked, flags=re.IGNORECASE)


def describe_dsn(dsn: str) -> str:
    """A one-line description of where ``dsn`` points, password masked."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return mask_dsn(dsn)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    where = f"socket {host}" if str(host).startswith("/") else f"{host}:{port}"
    user = params.get("user") or "?"
    return f"database {params.get('dbname') or user!s} at {where} as {user}"


def resolve_dsn(explicit: str | None) -> tuple[str, str]:
    """The DSN to use and where it came from: explicit, WERK_DSN, DATABASE_URL,
    or ``"embedded"`` (an empty string is returned for the embedded case)."""
    if explicit:
        _check_dsn(explicit)
        return explicit, "argument"
    for var in ("WERK_DSN", "DATABASE_URL"):
        value = os.environ.get(var)
        if value:
            _check_dsn(value, var)
            return value, var
    return "", "embedded"


def _check_dsn(dsn: str, source: str = "dsn") -> None:
    try:
        conninfo_to_dict(dsn)
    except Exception as ex:
        raise ConfigError(
            f"{source} is not a valid Postgres DSN ({mask_dsn(str(ex))}); expected "
            "'postgresql://user:password@host:5432/dbname' or 'host=... dbname=...'"
        ) from None


def with_params(dsn: str, **params: Any) -> str:
    """``dsn`` with extra conninfo parameters (existing ones win)."""
    current = conninfo_to_dict(dsn)
    extra = {k: v for k, v in params.items() if k not in current and v is not None}
    return make_conninfo(dsn, **extra) if extra else dsn
