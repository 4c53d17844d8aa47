"""A static check: SQL only from ``werk_trio/sql/``.

:func:`scan` parses Python sources and reports every place outside the SQL
package that builds or passes SQL other than a named statement:

* ``execute``-style calls (``execute``, ``executemany``, ``cursor().execute``)
  whose statement is not a named statement -- an attribute ``<...>.sql.NAME``
  (``self.sql.X``, ``app.sql.X``, ``worker.app.sql.X``, ``sql.X`` with ``sql``
  bound to one of those), ``<...>.sql.render(...)``, or a call of a function
  imported from ``werk_trio.sql``; a local name counts when every assignment
  to it is one of those, a parameter when every call of its function in the
  scanned sources passes one of those;
* string literals, f-strings, concatenations and ``%``/``.format``
  formatting that look like SQL (docstrings and logger format strings are
  prose, not SQL, and are skipped);
* any use of ``psycopg.sql`` composition (``SQL``, ``Identifier``,
  ``Literal``, ``Composed``, ``Placeholder``): identifiers are quoted by
  ``sql.Identifier`` inside ``werk_trio/sql/`` only.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Finding", "scan", "scan_package"]

EXECUTE_METHODS = frozenset({"execute", "executemany"})
COMPOSERS = frozenset({"SQL", "Identifier", "Literal", "Composed", "Placeholder"})
LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})

#: SQL-shaped text: a statement keyword followed by what makes it a statement.
SQL_RE = re.compile(
    r"""(?x)
      \bSELECT\b[\s\S]*\bFROM\b
    | \bSELECT\s+(pg_|now\(|count\(|1\b|\*|%|\{)
    | \bINSERT\s+INTO\b
    | \bUPDATE\s+[\w".{}]+\s+SET\b
    | \bDELETE\s+FROM\b
    | \b(CREATE|DROP|ALTER)\s+(TABLE|SCHEMA|INDEX|UNIQUE|EXTENSION|TYPE|FUNCTION)\b
    | \bTRUNCATE\s+[\w"{]
    | ^\s*(UN)?LISTEN\s+(\*|\{|"|[\w.]+\s*;?\s*$)
    | ^\s*NOTIFY\s+[\w"{]
    | \bVACUUM\b\s*(\(|[\w"{])
    | \bpg_(notify|advisory\w*|try_advisory\w*|terminate_backend|cancel_backend)\s*\(
    | ^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT)\s*;?\s*$
    | \bWHERE\s+[\w".]+\s*(=|<|>|IN\b|IS\b|LIKE\b)
    """,
    re.MULTILINE,
)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            first = body[0] if body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                ids.add(id(first.value))
    return ids


def _log_format_nodes(tree: ast.AST) -> set[int]:
    """The first argument of ``logger.info(...)``-style calls (a format string)."""
    ids = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LOG_METHODS
            and node.args
        ):
            base = node.func.value
            name = (
                base.id
                if isinstance(base, ast.Name)
                else base.attr
                if isinstance(base, ast.Attribute)
                else ""
            )
            if "log" in name.lower():
                for sub in ast.walk(node.args[0]):
                    ids.add(id(sub))
    return ids


def _strings(node: ast.AST) -> list[str]:
    """The literal text inside an expression (constants, f-string parts)."""
    out = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            out.append(sub.value)
    return out


def _attr_chain(node: ast.AST) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


class _Module:
    def __init__(self, path: str, tree: ast.Module) -> None:
        self.path = path
        self.tree = tree
        #: names imported from werk_trio.sql (statement builders)
        self.sql_imports: set[str] = set()
        #: names bound to psycopg.sql (the module) or its composers
        self.psycopg_sql: set[str] = set()
        self.composers: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                is_ours = (node.level > 0 and mod in ("sql", "")) or mod == "werk_trio.sql"
                for alias in node.names:
                    bound = alias.asname or alias.name
                    if mod == "psycopg" and alias.name == "sql":
                        self.psycopg_sql.add(bound)
                    elif mod == "psycopg.sql" and alias.name in COMPOSERS:
                        self.composers.add(bound)
                    elif is_ours and node.level > 0 and mod == "" and alias.name == "sql":
                        continue  # ``from . import sql``: the package itself, see _named
                    elif is_ours:
                        self.sql_imports.add(bound)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "psycopg.sql":
                        self.psycopg_sql.add(alias.asname or "psycopg")


def _functions(tree: ast.AST) -> Iterable[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


class Scanner:
    def __init__(self, modules: list[_Module]) -> None:
        self.modules = modules
        self.findings: list[Finding] = []
        self.defs: dict[str, list[tuple[_Module, ast.FunctionDef | ast.AsyncFunctionDef]]] = defaultdict(list)
        self.calls: dict[str, list[tuple[_Module, ast.Call, ast.AST | None]]] = defaultdict(list)
        for m in modules:
            for fn in _functions(m.tree):
                self.defs[fn.name].append((m, fn))
            for node in ast.walk(m.tree):
                if isinstance(node, ast.Call):
                    name = (
                        node.func.attr
                        if isinstance(node.func, ast.Attribute)
                        else (node.func.id if isinstance(node.func, ast.Name) else None)
                    )
                    if name:
                        self.calls[name].append((m, node, _enclosing(m.tree, node)))

    def report(self, m: _Module, node: ast.AST, what: str) -> None:
        self.findings.append(Finding(m.path, getattr(node, "lineno", 0), what))

    # --- is an expression a named statement? --------------------------------------

    def _sql_base(self, m: _Module, chain: list[str], fn: ast.AST | None) -> bool:
        """``chain`` (without its last part) names a Statements object."""
        base = chain[:-1]
        if not base:
            return False
        if base[-1] == "sql" and len(base) > 1:
            return True  # self.sql / app.sql / worker.app.sql
        if base == ["sql"]:
            return self._local_is_statements(m, "sql", fn)
        return False

    def _local_is_statements(self, m: _Module, name: str, fn: ast.AST | None) -> bool:
        if name in m.psycopg_sql:
            return False
        if fn is None:
            return False
        assigned = _assignments(fn, name)
        params = _params(fn)
        if assigned:
            return all(self._is_statements_obj(m, v, fn) for v in assigned)
        if name in params:
            return self._param_ok(m, fn, name, self._is_statements_obj)
        return False

    def _is_statements_obj(self, m: _Module, node: ast.AST, fn: ast.AST | None) -> bool:
        chain = _attr_chain(node)
        if chain and len(chain) > 1 and chain[-1] == "sql":
            return True
        return bool(chain == ["sql"] and self._local_is_statements(m, "sql", fn))

    def named(
        self, m: _Module, node: ast.AST, fn: ast.AST | None, seen: frozenset[tuple[int, str]] = frozenset()
    ) -> bool:
        if isinstance(node, ast.IfExp):
            return self.named(m, node.body, fn, seen) and self.named(m, node.orelse, fn, seen)
        chain = _attr_chain(node)
        if chain and len(chain) >= 2 and chain[-1].isupper() and chain[-1] not in COMPOSERS:
            return self._sql_base(m, chain, fn)
        if isinstance(node, ast.Call):
            fchain = _attr_chain(node.func)
            if fchain and fchain[-1] == "render" and self._sql_base(m, fchain, fn):
                return True
            return isinstance(node.func, ast.Name) and node.func.id in m.sql_imports
        if isinstance(node, ast.Name) and fn is not None and (id(fn), node.id) not in seen:
            here = seen | {(id(fn), node.id)}
            assigned = _assignments(fn, node.id)
            if assigned:
                return all(self.named(m, v, fn, here) for v in assigned)
            if node.id in _params(fn):
                return self._param_ok(m, fn, node.id, lambda mm, v, f: self.named(mm, v, f, here))
        return False

    def _param_ok(self, m: _Module, fn: ast.AST, name: str, ok: object) -> bool:
        """Every call of ``fn`` in the scanned sources passes an acceptable ``name``."""
        assert isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        args = [a.arg for a in fn.args.posonlyargs + fn.args.args]
        skip_self = 1 if args and args[0] in ("self", "cls") else 0
        calls = self.calls.get(fn.name, [])
        if not calls:
            return False
        for cm, call, caller in calls:
            value: ast.AST | None = None
            for kw in call.keywords:
                if kw.arg == name:
                    value = kw.value
            if value is None and name in args:
                pos = args.index(name) - skip_self
                if 0 <= pos < len(call.args):
                    value = call.args[pos]
            if value is None:
                kwonly = {a.arg: d for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True)}
                if name in kwonly or name not in args:
                    return False
                continue  # not passed: the default (checked with the def, below)
            if not ok(cm, value, caller):  # type: ignore[operator]
                return False
        return True

    # --- the checks ---------------------------------------------------------------

    def run(self) -> list[Finding]:
        for m in self.modules:
            prose = _docstring_nodes(m.tree) | _log_format_nodes(m.tree)
            for node in ast.walk(m.tree):
                fn = _enclosing(m.tree, node)
                if isinstance(node, ast.Call):
                    self._check_call(m, node, fn)
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
                    if SQL_RE.search(node.value):
                        self.report(m, node, f"SQL text outside werk_trio/sql/: {node.value[:60]!r}")
                elif isinstance(node, ast.JoinedStr) and id(node) not in prose:
                    text = "{}".join(_strings(node))
                    if SQL_RE.search(text) or SQL_RE.search(text.replace("{}", "x")):
                        self.report(m, node, f"f-string SQL: {text[:60]!r}")
                elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
                    text = " ".join(_strings(node))
                    if SQL_RE.search(text) and id(node) not in prose:
                        self.report(
                            m,
                            node,
                            f"SQL built by {'+' if isinstance(node.op, ast.Add) else '%'}: {text[:60]!r}",
                        )
        return self.findings

    def _check_call(self, m: _Module, node: ast.Call, fn: ast.AST | None) -> None:
        func = node.func
        chain = _attr_chain(func)
        # psycopg.sql composition: only in werk_trio/sql/
        if chain and (
            (
                len(chain) >= 2
                and chain[-1] in COMPOSERS
                and (chain[-2] in m.psycopg_sql or chain[-2] == "sql")
            )
            or (len(chain) == 1 and chain[0] in m.composers)
        ):
            self.report(m, node, f"psycopg.sql.{chain[-1]}(...) outside werk_trio/sql/")
        if isinstance(func, ast.Attribute) and func.attr == "format":
            text = " ".join(_strings(func.value))
            if SQL_RE.search(text):
                self.report(m, node, f"SQL built by .format(): {text[:60]!r}")
        if isinstance(func, ast.Attribute) and func.attr in EXECUTE_METHODS:
            if not node.args:
                stmt = next((k.value for k in node.keywords if k.arg == "query"), None)
            else:
                stmt = node.args[0]
            if stmt is None or not self.named(m, stmt, fn):
                src = ast.unparse(stmt) if stmt is not None else "?"
                self.report(m, node, f"{func.attr}() of something that is not a named statement: {src[:60]}")


def _enclosing(tree: ast.AST, target: ast.AST) -> ast.AST | None:
    """The innermost function containing ``target`` (cached per tree)."""
    cache = getattr(tree, "_werk_parents", None)
    if cache is None:
        cache = {}
        for fn in _functions(tree):
            for sub in ast.walk(fn):
                # inner functions come later in the walk and overwrite: innermost wins
                cache[id(sub)] = fn
        tree._werk_parents = cache  # type: ignore[attr-defined]
    return cache.get(id(target))


def _assignments(fn: ast.AST, name: str) -> list[ast.AST]:
    out: list[ast.AST] = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == name:
                    out.append(node.value)
                elif isinstance(target, ast.Tuple) and any(
                    isinstance(e, ast.Name) and e.id == name for e in target.elts
                ):
                    out.append(ast.Constant("<tuple unpacking>"))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
            target = node.target
            if isinstance(target, ast.Name) and target.id == name and node.value is not None:
                out.append(node.value if not isinstance(node, ast.AugAssign) else ast.Constant("<augmented>"))
        elif isinstance(node, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith | ast.comprehension):
            targets = (
                [node.target]
                if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension)
                else [i.optional_vars for i in node.items if i.optional_vars is not None]
            )
            for t in targets:
                if any(isinstance(e, ast.Name) and e.id == name for e in ast.walk(t)):
                    out.append(ast.Constant("<loop or with target>"))
    return out


def _params(fn: ast.AST) -> set[str]:
    assert isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
    a = fn.args
    return {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}


def scan(sources: dict[str, str]) -> list[Finding]:
    """Findings for ``{path: source}`` (all scanned together: call sites count)."""
    modules = [_Module(path, ast.parse(text, path)) for path, text in sources.items()]
    return Scanner(modules).run()


def scan_package(root: Path) -> tuple[list[Finding], list[str]]:
    """Scan every module of the package at ``root`` except ``root/sql``;
    the findings and the paths scanned."""
    sources = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        if path.relative_to(root).parts[0] == "sql":
            continue
        sources[rel] = path.read_text(encoding="utf-8")
    return scan(sources), sorted(sources)
