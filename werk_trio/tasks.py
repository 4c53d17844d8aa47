"""Which functions a worker may run, and how a dotted path becomes a callable.

A job row names its function by dotted path (``module.qualname``). Anyone who
can insert a row must not be able to run ``os.system``, so a worker runs a
function only if it was registered (``@app.task`` / ``app.register``), or lives
in a module listed in ``task_modules`` (a module or a package prefix), or lives
in the package of the module that created the ``Werk``. Anything else raises
:class:`~werk_trio.errors.UnknownTask` *before* anything is imported.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import sysconfig
from collections.abc import Callable, Iterable
from typing import Any

from .errors import ConfigError, UnknownTask

__all__ = ["TaskRegistry", "function_path"]

_PATH_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+\Z")
#: Longest function path stored (characters).
MAX_PATH_CHARS = 1000


def function_path(func: Callable[..., Any] | str) -> str:
    """The dotted path stored for ``func``; ConfigError for what no worker could import."""
    if isinstance(func, str):
        if len(func) > MAX_PATH_CHARS:
            raise ConfigError(
                f"function path {func[:60]!r}... is {len(func)} characters, "
                f"over the limit of {MAX_PATH_CHARS}"
            )
        if not _PATH_RE.match(func):
            raise ConfigError(
                f"function path {func!r} is not a dotted path like 'package.module.function'"
            )
        return func
    if not callable(func):
        raise ConfigError(f"expected a function or a dotted path, got {func!r}")
    func = inspect.unwrap(func)
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname:
        raise ConfigError(
            f"{func!r} has no importable name (__module__ and __qualname__): pass a module-level "
            "function or its dotted path"
        )
    if qualname == "<lambda>" or "<lambda>" in qualname:
        raise ConfigError(
            f"a lambda ({module}.{qualname}) cannot be a job: a worker could not import it. "
            "Define a module-level function instead."
        )
    if "<locals>" in qualname:
        raise ConfigError(
            f"{module}.{qualname.replace('.<locals>', '')} is defined inside another function, "
            "so a worker could not import it. Move it to module level."
        )
    if module == "__main__":
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name:
            module = spec.name
    path = f"{module}.{qualname}"
    if len(path) > MAX_PATH_CHARS:
        raise ConfigError(
            f"the path of {func!r} is {len(path)} characters, over the limit of {MAX_PATH_CHARS}"
        )
    return path


class TaskRegistry:
    """The functions an app's workers may run."""

    def __init__(self, task_modules: Iterable[str] = (), home_package: str | None = None) -> None:
        self._registered: dict[str, Callable[..., Any]] = {}
        self.task_modules = tuple(task_modules)
        self.home_package = home_package
        self._cache: dict[str, Callable[..., Any]] = {}

    def register(self, func: Callable[..., Any], name: str | None = None) -> str:
        path = function_path(func) if name is None else function_path(name)
        self._registered[path] = func
        self._cache.pop(path, None)
        return path

    def registered(self) -> dict[str, Callable[..., Any]]:
        return dict(self._registered)

    def _module_allowed(self, module: str) -> bool:
        prefixes = self.task_modules + ((self.home_package,) if self.home_package else ())
        return any(module == p or module.startswith(p + ".") for p in prefixes)

    def is_allowed(self, path: str) -> bool:
        if path in self._registered:
            return True
        return any(self._module_allowed(module) for module, _ in _splits(path))

    def resolve(self, path: str) -> Callable[..., Any]:
        """The callable for ``path``; UnknownTask if it may not run or does not exist."""
        found = self._registered.get(path) or self._cache.get(path)
        if found is not None:
            return found
        if not _PATH_RE.match(path):
            raise UnknownTask(f"job function {path!r} is not a dotted path")
        allowed = [(m, q) for m, q in _splits(path) if self._module_allowed(m)]
        if not allowed:
            raise UnknownTask(
                f"{path} is not allowed to run: register it with @app.task or app.register(fn), "
                "or list its module in Werk(task_modules=[...])"
            )
        errors: list[str] = []
        for module_name, qualname in allowed:
            try:
                obj: Any = _import(module_name)
            except ImportError as ex:
                errors.append(f"cannot import {module_name}: {ex}")
                continue
            try:
                for part in qualname.split("."):
                    obj = getattr(obj, part)
                    if inspect.ismodule(obj) and not self._module_allowed(obj.__name__):
                        # ``allowed_mod.os.system``: a module the allowed one imported
                        raise UnknownTask(
                            f"{path} is not allowed to run: {module_name}.{qualname} reaches into "
                            f"module {obj.__name__}, which is not allowed: register the function "
                            "with @app.task or app.register(fn), or list its module in "
                            "Werk(task_modules=[...])"
                        )
            except AttributeError:
                errors.append(f"{module_name} has no attribute {qualname}")
                continue
            if not callable(obj):
                raise UnknownTask(f"{path} is not callable")
            home = getattr(obj, "__module__", None)
            if home == "__main__":  # the running script's own function, by its module name
                home = _main_name() or home
            if not isinstance(home, str) or not self._module_allowed(home):
                # the function must live in an allowed module, not merely be
                # reachable from one (``from os import system`` in a task module)
                raise UnknownTask(
                    f"{path} is not allowed to run: it is {home}.{getattr(obj, '__qualname__', qualname)}, "
                    "which does not live in an allowed module: register it with @app.task or "
                    "app.register(fn), or list its module in Werk(task_modules=[...])"
                )
            self._cache[path] = obj
            return obj  # type: ignore[no-any-return]
        raise UnknownTask(f"{path} not found: {'; '.join(errors)}")


def _splits(path: str) -> list[tuple[str, str]]:
    """Candidate (module, qualname) splits of ``path``, longest module first."""
    parts = path.split(".")
    return [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]


def _main_name() -> str | None:
    """The module name of ``__main__`` when it was started with ``python -m name``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None)
    return name if isinstance(name, str) and name else None


def _import(module_name: str) -> Any:
    """``importlib.import_module``, except that the module a ``python -m`` run
    started is the running ``__main__`` (function_path names its functions by
    that module name): importing it again would run the program a second time."""
    if module_name not in sys.modules and module_name == _main_name():
        return sys.modules["__main__"]
    return importlib.import_module(module_name)
def _is_stdlib(filename: str) -> bool:
    if filename.startswith("<frozen"):
        return True
    if "site-packages" in filename or "dist-packages" in filename:
        return False
    return any(filename.startswith(p) for p in _STDLIB_DIRS)


_STDLIB_DIRS = tuple(
    {os.path.join(sysconfig.get_paths()[k], "") for k in ("stdlib", "platstdlib")}
)
_WERK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")


def caller_package(depth: int = 2) -> str | None:
    """The home package: the package of the user's code that created the Werk.

    The rule, walking outward from the frame ``depth`` levels up (the one that
    called ``Werk(...)``): frames of the standard library are passed over
    (``contextlib``'s context managers, ``functools``, import machinery); the
    first other frame is the creator. If it is werk_trio's own code (``werk
    demo``, ``testing.temporary_schema``), there is no home package (None):
    werk_trio code that creates a Werk on a user's behalf passes
    ``home_package`` explicitly. So the package allowed is never werk_trio's,
    and never a library that merely drove werk_trio (trio, contextlib)."""
    frame: Any = sys._getframe(depth)
    while frame is not None and _is_stdlib(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None or os.path.abspath(frame.f_code.co_filename).startswith(_WERK_DIR):
        return None
    name = frame.f_globals.get("__name__")
    if not name or name.split(".")[0] == "werk_trio":
        return None
    if name == "__main__":
        spec = frame.f_globals.get("__spec__")
        if spec is not None and getattr(spec, "name", None):
            name = spec.name
    package = frame.f_globals.get("__package__")
    if package:
        return str(package)
    return str(name)
