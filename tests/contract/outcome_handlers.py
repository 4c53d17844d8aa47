"""Handlers whose outcome Postgres cannot store as it is (issue 10): errors and
results carrying NUL characters, lone surrogates (what ``os.listdir`` returns
for names that are not UTF-8) or more text than the limits allow. Each worker
type runs them beside :func:`bystander`, which must complete."""

from __future__ import annotations

import os

__all__ = [
    "bystander",
    "oversize_error",
    "oversize_result",
    "raise_nul",
    "raise_surrogate",
    "return_nul",
    "return_surrogate",
    "surrogate_from_listdir",
]


def bystander(i: int) -> int:
    return i * 2


def raise_nul(i: int) -> None:
    raise ValueError(f"byte \x00 in the error of {i}")


def raise_surrogate(i: int) -> None:
    raise ValueError(f"file x\udcff{i} is not UTF-8")


def return_nul(i: int) -> str:
    return f"a\x00b{i}"


def return_surrogate(i: int) -> str:
    return f"x\udcff{i}"


def surrogate_from_listdir(directory: str) -> list[str]:
    """What a real program meets: a file name that is not UTF-8, listed."""
    return sorted(os.listdir(directory))


def oversize_result(size: int) -> str:
    return "r" * size


def oversize_error(size: int) -> None:
    raise RuntimeError("e" * size)
