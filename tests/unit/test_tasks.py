"""Which functions may run (SPEC §4) and how a callable becomes a stored path."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from werk_trio import ConfigError, UnknownTask
from werk_trio.tasks import TaskRegistry, caller_package, function_path


def module_level(x: int = 0) -> int:
    return x + 1


async def async_module_level() -> None:
    pass


class Holder:
    @staticmethod
    def static() -> str:
        return "static"


def decorated_wrapper(func: Any) -> Any:
    @functools.wraps(func)
    def inner(*a: Any, **k: Any) -> Any:
        return func(*a, **k)

    return inner


@decorated_wrapper
def wrapped() -> str:
    return "wrapped"


NOT_CALLABLE = 42


def test_function_path_of_callables() -> None:
    assert function_path(module_level) == "tests.unit.test_tasks.module_level"
    assert function_path(async_module_level) == "tests.unit.test_tasks.async_module_level"
    assert function_path(Holder.static) == "tests.unit.test_tasks.Holder.static"
    assert function_path(wrapped) == "tests.unit.test_tasks.wrapped"
    assert function_path("pkg.mod.fn") == "pkg.mod.fn"


def test_lambda_is_refused() -> None:
    with pytest.raises(ConfigError, match="lambda"):
        function_path(lambda: None)


def test_nested_function_is_refused() -> None:
    def nested() -> None:
        pass

    with pytest.raises(ConfigError, match="inside another function") as info:
        function_path(nested)
    assert "module level" in str(info.value)


@pytest.mark.parametrize("bad", ["", "nodots", "a..b", "1a.b", "a.b;rm", "a.b ", ".a.b", 5, None])
def test_bad_paths_and_values_are_refused(bad: Any) -> None:
    with pytest.raises(ConfigError):
        function_path(bad)


def test_partial_has_no_name() -> None:
    with pytest.raises(ConfigError, match="importable name"):
        function_path(functools.partial(module_level, 1))


def test_registered_function_resolves_to_itself() -> None:
    reg = TaskRegistry()
    path = reg.register(module_level)
    assert path == "tests.unit.test_tasks.module_level"
    assert reg.is_allowed(path)
    assert reg.resolve(path) is module_level
    assert reg.registered() == {path: module_level}


def test_register_under_another_name() -> None:
    reg = TaskRegistry()
    assert reg.register(module_level, "jobs.increment") == "jobs.increment"
    assert reg.resolve("jobs.increment") is module_level
    with pytest.raises(UnknownTask):
        reg.resolve("tests.unit.test_tasks.module_level")


def test_task_modules_allow_a_module_and_its_package_prefix() -> None:
    reg = TaskRegistry(task_modules=["json"])
    assert reg.resolve("json.dumps") is json.dumps
    assert reg.resolve("json.decoder.JSONDecoder") is json.decoder.JSONDecoder
    # a prefix is a package boundary, not a string prefix
    assert not TaskRegistry(task_modules=["js"]).is_allowed("json.dumps")


def test_home_package_is_allowed() -> None:
    reg = TaskRegistry(home_package="tests")
    assert reg.resolve("tests.unit.test_tasks.module_level") is module_level
    assert reg.resolve("tests.unit.test_tasks.Holder.static") is Holder.static


def test_os_system_is_refused() -> None:
    reg = TaskRegistry(task_modules=["json"], home_package="tests")
    with pytest.raises(UnknownTask) as info:
        reg.resolve("os.system")
    message = str(info.value)
    assert "os.system" in message
    assert "app.task" in message and "task_modules" in message


def test_refused_function_is_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = tmp_path / "werk_canary_mod.py"
    marker = tmp_path / "imported"
    canary.write_text(f"open({str(marker)!r}, 'w').close()\ndef fn():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = TaskRegistry(task_modules=["json"], home_package="tests")
    with pytest.raises(UnknownTask):
        reg.resolve("werk_canary_mod.fn")
    assert not marker.exists()
    assert "werk_canary_mod" not in sys.modules
    # once allowed, the same path imports and resolves
    allowed = TaskRegistry(task_modules=["werk_canary_mod"])
    try:
        assert callable(allowed.resolve("werk_canary_mod.fn"))
        assert marker.exists()
    finally:
        sys.modules.pop("werk_canary_mod", None)


def test_missing_and_non_callable_targets() -> None:
    reg = TaskRegistry(home_package="tests")
    with pytest.raises(UnknownTask, match="not found"):
        reg.resolve("tests.unit.test_tasks.no_such_function")
    with pytest.raises(UnknownTask, match="not found"):
        reg.resolve("tests.no_such_module.fn")
    with pytest.raises(UnknownTask, match="not callable"):
        reg.resolve("tests.unit.test_tasks.NOT_CALLABLE")
    with pytest.raises(UnknownTask, match="not a dotted path"):
        reg.resolve("tests")


def test_caller_package_skips_werk_trio_frames() -> None:
    assert caller_package(1) == "tests.unit"
