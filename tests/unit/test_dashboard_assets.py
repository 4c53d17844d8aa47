"""The dashboard's files: shipped in the wheel, all served, none fetched from
elsewhere, and no way for job text to become markup (static checks of the
files; the behaviour is tested in a real browser in tests/web)."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path

from werk_trio.web.dashboard import ASSETS, asset

STATIC = resources.files("werk_trio.web.dashboard").joinpath("static")
ROOT = Path(__file__).resolve().parents[2]


def test_every_static_file_is_served_and_packaged() -> None:
    names = sorted(p.name for p in STATIC.iterdir() if p.is_file())
    assert names == sorted([*ASSETS, "index.html"])
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "web/dashboard/static/*" in config["tool"]["setuptools"]["package-data"]["werk_trio"]


def test_the_page_loads_only_its_own_assets() -> None:
    html = asset("index.html").decode()
    refs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert refs, html
    for ref in refs:
        assert ref.startswith("/dashboard/"), ref  # nothing from a CDN or another host
        assert ref.removeprefix("/dashboard/") in ASSETS, ref
    assert "<script>" not in html  # no inline script (the CSP forbids it anyway)
    for name in ASSETS:
        text = asset(name).decode()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), name


def test_the_script_never_parses_data_as_html() -> None:
    js = asset("app.js").decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
