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
from urllib.parse import unquote

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import ConfigError
from .jobs import INT32_MAX, MAX_SECONDS

__all__ = ["WerkConfig", "mask_dsn", "mask_secrets", "remember_secrets", "resolve_dsn", "show_dsn"]

#: Table prefixes, schema and queue-channel names: a letter or underscore, then
#: letters, digits or underscores; short enough for Postgres' 63-byte names
#: once suffixes like ``_jobs_group_active_idx`` are added.
_MODULE_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}\Z")


def check_name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ConfigError(
            f"invalid {kind} {value!r}: use 1-40 characters, letters, digits and underscores, "
            "not starting with a digit (for example '_werk' or 'jobs')"
        )
    return value


#: Largest byte limit a setting may name (max_payload_bytes, max_result_bytes):
#: Postgres refuses any single value over 1 GB, and a batch carries several.
MAX_BYTES_SETTING = 256 * 1024 * 1024


def _positive(
    name: str, value: Any, *, integer: bool = False, allow_zero: bool = False, maximum: float | None = None
) -> Any:
    """``value`` checked: a number (seconds: finite, at most MAX_SECONDS) or an
    int (at most ``maximum``, default the 32-bit limit); ConfigError naming
    ``name`` and the range otherwise."""
    ok_type = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        kind = "an int" if integer else "a number"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    top = maximum if maximum is not None else (INT32_MAX if integer else MAX_SECONDS)
    try:
        inside = math.isfinite(value) and 0 <= value <= top and (value > 0 or allow_zero)
    except OverflowError:  # an int too large for a float
        inside = False
    if not inside:
        low = "0" if allow_zero else "more than 0"
        unit = "" if integer else " seconds" if maximum is None else ""
        raise ConfigError(f"{name} must be from {low} to {top:.0f}{unit}, got {value!r}")
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
    #: True: the worker registry table is UNLOGGED (no WAL for heartbeats;
    #: a database crash empties it and live workers re-register). Applied by
    #: migrate(); jobs and executions are always logged.
    ephemeral_tables: bool = False
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
    #: Jobs of one queue and live status (queued, scheduled, ...) that
    #: get_queue_stats and the queue-depth samples count exactly; above it,
    #: the count is the planner's estimate, named in the queue's ``estimated``
    #: (1 to 2147483647, default 50,000; each queue above it costs one capped
    #: count of this many index entries: see the introspection guide).
    estimate_limit: int = 50_000
    #: Largest encoded job result a worker stores, in bytes (16 MiB); a larger
    #: one fails its job (final) with a SerializationError saying so.
    max_result_bytes: int = 16 * 1024 * 1024
    #: The package whose functions workers may run without registration (the
    #: home-package rule). None: the package of the user's module that created
    #: the Werk (see tasks.caller_package); "" for none at all.
    home_package: str | None = None

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
        _positive("max_payload_bytes", self.max_payload_bytes, integer=True, maximum=MAX_BYTES_SETTING)
        _positive("max_result_bytes", self.max_result_bytes, integer=True, maximum=MAX_BYTES_SETTING)
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
            if not isinstance(m, str) or not re.match(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*\Z", m):
                raise ConfigError(f"task_modules entries must be module names like 'app.tasks', got {m!r}")
        object.__setattr__(self, "task_modules", modules)
        if self.home_package is not None and self.home_package != "" and not (
            isinstance(self.home_package, str) and _MODULE_RE.match(self.home_package)
        ):
            raise ConfigError(
                f"home_package must be a package name like 'app' (or '' for none), got {self.home_package!r}"
            )
        if self.prepare_threshold is not None:
            _positive("prepare_threshold", self.prepare_threshold, integer=True, allow_zero=True)
        for name in ("stopped_worker_retention", "stats_sample_interval", "stats_retention"):
            _positive(name, getattr(self, name))
        _positive("estimate_limit", self.estimate_limit, integer=True)
        if self.log_color is not None and not isinstance(self.log_color, bool):
            raise ConfigError(f"log_color must be True, False or None, got {self.log_color!r}")
        if self.log_fmt is not None:
            from ._logging import check_format

            check_format(self.log_fmt)
        for name in ("durable_claims", "auto_migrate", "use_listen_notify", "ephemeral_tables"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def __repr__(self) -> str:
        # the DSN may hold a password: show it masked
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "dsn" and isinstance(value, str):
                value = show_dsn(value)
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


# --- secrets ----------------------------------------------------------------
#
# A DSN is shown only as rebuilt from its parsed parts, without the password
# (mask_dsn / describe_dsn; one that does not parse cleanly is not shown at
# all), and every password werk_trio has seen in this process is also
# replaced literally in any text shown or logged (mask_secrets): an error
# message that quotes the DSN, a traceback, a JSON log field.

#: Passwords of the DSNs this process resolved (remember_secrets), longest first.
_SECRETS: list[str] = []
#: Shorter passwords are masked in DSNs but not replaced inside free text
#: (replacing "pw" in every log line would garble them, and hides nothing).
MIN_SECRET_CHARS = 4
MASK = "***"
# ``scheme://user:password@``: the password runs to the last ``@`` of the line
# (a password with an unencoded ``@``, ``/``, quote or space is still covered)
_URL_USERINFO = re.compile(r"(://[^\s:/@]*:)([^\n]*)(@)")
# ``user:password@`` without a scheme (a mistyped URL that libpq quotes back)
_PASSWORD_IN_URL = re.compile(r"([^\s:/@\"']*:)([^@\s\"'/]*)(@)")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_PASSWORD_QUERY = re.compile(r"([?&]password=)[^&\s]*", re.IGNORECASE)


def _raw_url_password(dsn: str) -> str | None:
    """The password part of a URL DSN as written (to its last ``@``), if any."""
    match = re.match(r"^\s*[A-Za-z][\w+.-]*://([^?#]*)@", dsn)
    if match and ":" in match[1]:
        return match[1].split(":", 1)[1]
    return None


def dsn_secrets(dsn: str) -> set[str]:
    """Every form of the password ``dsn`` carries: as parsed, and as written."""
    found: set[str] = set()
    try:
        password = conninfo_to_dict(dsn).get("password")
    except Exception:
        password = None
    if password:
        found.add(str(password))
    raw = _raw_url_password(dsn)
    if raw:
        found.update({raw, unquote(raw)})
    for match in _PASSWORD_KV.finditer(dsn):
        value = match[2]
        found.add(value)
        if value.startswith("'") and value.endswith("'") and len(value) > 1:
            found.add(value[1:-1].replace("\\'", "'").replace("\\\\", "\\"))
    for match in _PASSWORD_QUERY.finditer(dsn):
        value = dsn[match.end(1):match.end()]
        found.update({value, unquote(value)})
    return {f for f in found if f}


def remember_secrets(dsn: str) -> None:
    """Note the password of ``dsn``, so that :func:`mask_secrets` replaces it
    wherever it shows up (werk_trio calls it for every DSN it resolves)."""
    new = [s for s in dsn_secrets(dsn) if len(s) >= MIN_SECRET_CHARS and s not in _SECRETS]
    if new:
        _SECRETS.extend(new)
        _SECRETS.sort(key=len, reverse=True)


def mask_secrets(text: str) -> str:
    """``text`` safe to show: every remembered password replaced by ``***``,
    then anything shaped like a password in a DSN (``user:pw@``,
    ``password=pw``, ``?password=pw``) masked too. Use it on any message that
    may quote a DSN: errors, log lines, CLI output."""
    if not isinstance(text, str):
        text = str(text)
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(rf"\1{MASK}\3", text)
    text = _PASSWORD_IN_URL.sub(rf"\1{MASK}\3", text)
    text = _PASSWORD_KV.sub(rf"\1{MASK}", text)
    return _PASSWORD_QUERY.sub(rf"\1{MASK}", text)


def _shown_parts(dsn: str) -> dict[str, Any] | None:
    """The parsed parts of ``dsn`` without the password, or None when they
    cannot be shown safely (unparseable, or a part holds some of the password:
    an unencoded ``@`` or ``/`` in a URL's password splits it across parts)."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return None
    params.pop("password", None)
    secrets = dsn_secrets(dsn)
    raw = _raw_url_password(dsn)
    for value in params.values():
        text = str(value)
        if "@" in text or any(s in text for s in secrets):
            return None
    if raw and unquote(raw) != conninfo_to_dict(dsn).get("password"):
        return None
    return params


def mask_dsn(text: str) -> str:
    """Old name of :func:`mask_secrets` (any text, not only a DSN)."""
    return mask_secrets(text)


def show_dsn(dsn: str) -> str:
    """``dsn`` as it may be shown: rebuilt from its parsed parts, the password
    replaced by ``***``; a DSN that does not parse cleanly is not shown at all."""
    params = _shown_parts(dsn)
    if params is None:
        return "<DSN not shown: it does not parse cleanly (percent-encode special characters in a password)>"
    had_password = bool(dsn_secrets(dsn))
    shown = make_conninfo(**params) if params else ""
    return f"{shown} password={MASK}".strip() if had_password else shown


def describe_dsn(dsn: str) -> str:
    """A one-line description of where ``dsn`` points, without the password."""
    params = _shown_parts(dsn)
    if params is None:
        return "a database (DSN not shown: it does not parse cleanly)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    where = f"socket {host}" if str(host).startswith("/") else f"{host}:{port}"
    user = params.get("user") or "?"
    return mask_secrets(f"database {params.get('dbname') or user!s} at {where} as {user}")


def resolve_dsn(explicit: str | None) -> tuple[str, str]:
    """The DSN to use and where it came from: explicit, WERK_DSN, DATABASE_URL,
    or ``"embedded"`` (an empty string is returned for the embedded case)."""
    if explicit:
        remember_secrets(explicit)
        _check_dsn(explicit)
        return explicit, "argument"
    for var in ("WERK_DSN", "DATABASE_URL"):
        value = os.environ.get(var)
        if value:
            remember_secrets(value)
            _check_dsn(value, var)
            return value, var
    return "", "embedded"


def _check_dsn(dsn: str, source: str = "dsn") -> None:
    try:
        conninfo_to_dict(dsn)
        return
    except Exception as ex:
        reason = mask_secrets(str(ex).strip())
    # raised outside the except block: the original error (which quotes the
    # DSN) is not even kept as the ConfigError's __context__
    raise ConfigError(
        f"{source} is not a valid Postgres DSN ({reason}); expected "
        "'postgresql://user:password@host:5432/dbname' (percent-encode special characters "
        "in the password) or 'host=... dbname=...'"
    )


def with_params(dsn: str, **params: Any) -> str:
    """``dsn`` with extra conninfo parameters (existing ones win)."""
    current = conninfo_to_dict(dsn)
    extra = {k: v for k, v in params.items() if k not in current and v is not None}
    return make_conninfo(dsn, **extra) if extra else dsn
