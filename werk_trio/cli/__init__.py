"""The ``werk`` command line: a click group, output on rich.

pgwerk's commands and flags (``worker``, ``info``, ``jobs``, ``stats``,
``throughput``, ``slowest``, ``purge``, ``dashboard``, ``migrate``, ``demo``)
plus job operations (``job``, ``requeue``, ``enqueue``) and flow control
(``queues``, ``queue``). Commands written in
other modules expose a ``click.Command`` named ``command`` and are listed in
:data:`COMMAND_MODULES`. Errors are one line on stderr (``werk: error: ...``,
password masked, control characters escaped): exit status 2 for usage, 1 for
runtime; a traceback only with ``--log-level DEBUG``.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import click

from .. import __version__
from ..config import mask_dsn
from ..errors import ConfigError, WerkError
from ._common import DEBUG, load_app, safe

__all__ = ["cli", "load_app", "main"]

#: Modules under werk_trio/cli/ each exposing ``command`` (a click.Command) or
#: ``commands`` (a list of them); one line each. ``cron`` (issue 13) and ``api``
#: (issue 15) are written on their own branches: until they are merged their
#: modules are absent and skipped.
COMMAND_MODULES = (
    "worker",
    "inspect",
    "manage",
    "queues",
    "dashboard",
    "demo",
    "cron",
    "api",
)
_NOT_YET_MERGED = frozenset({"cron", "api"})


class WerkGroup(click.Group):
    """The group whose ``main`` turns every error into one line (also under
    click's test runner, which calls ``main`` in standalone mode)."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:  # fmt: skip
        code = _guarded(lambda: super(WerkGroup, self).main(
            args, "werk", complete_var or "_WERK_COMPLETE", standalone_mode=False, **extra))
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=WerkGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="werk", message="%(prog)s %(version)s")
def cli() -> None:
    """werk_trio: a Postgres job queue for Trio. APP is 'module:attribute' naming a Werk."""


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as ex:
            if name in _NOT_YET_MERGED and ex.name == f"{__name__}.{name}":
                continue  # the module itself is absent (not a dependency of it)
            raise
        commands = getattr(module, "commands", None) or [module.command]
        for command in commands:
            cli.add_command(command)


_register()


def _say(message: str) -> None:
    line = safe(" ".join(mask_dsn(message).split()))
    print(f"werk: error: {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``werk`` entry point: run the command line, return the exit status."""
    return int(cli.main(args=list(sys.argv[1:] if argv is None else argv), standalone_mode=False))


def _guarded(invoke: Callable[[], Any]) -> int:
    token = DEBUG.set(False)
    try:
        result = invoke()
        return result if isinstance(result, int) else 0
    except click.exceptions.NoArgsIsHelpError as ex:
        print(ex.format_message(), file=sys.stderr)
        return 2
    except click.UsageError as ex:
        where = f" (see '{ex.ctx.command_path} --help')" if ex.ctx is not None else ""
        _say(ex.format_message() + where)
        return 2
    except click.Abort:
        _say("aborted")
        return 1
    except click.ClickException as ex:
        if DEBUG.get() and ex.__cause__ is not None:
            traceback.print_exception(ex.__cause__)
        _say(ex.format_message())
        return ex.exit_code
    except KeyboardInterrupt:
        return 130
    except (ConfigError, WerkError, Exception) as ex:
        if DEBUG.get():
            traceback.print_exc()
        if isinstance(ex, ConfigError):
            _say(str(ex))
            return 2
        _say(str(ex) if isinstance(ex, WerkError) else f"{type(ex).__name__}: {ex}")
        return 1
    finally:
        DEBUG.reset(token)
