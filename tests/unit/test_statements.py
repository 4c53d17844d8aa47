"""Statements: every name of queries.py is a declared (mypy-checked) attribute,
rendered once with its tables and NOTIFY channels filled in. No Postgres."""

from __future__ import annotations

import re

from werk_trio.sql import Statements, queries, statement_names


def test_every_statement_is_a_declared_attribute_and_nothing_else() -> None:
    declared = {name for name, kind in Statements.__annotations__.items() if kind == "str" and name.isupper()}
    assert declared == set(statement_names())
    assert "INSERT_JOBS" in declared and "COMPLETE_BATCH" in declared
    statements = Statements(None, "werk")
    assert all(isinstance(getattr(statements, name), str) for name in declared)
    assert "__getattr__" not in vars(Statements)


def test_channels_are_rendered_into_the_statements_not_passed() -> None:
    statements = Statements("app", "werk")
    channelled = 0
    for name in statement_names():
        text = getattr(statements, name)
        assert not re.search(r"\{\w+\}", text), f"{name}: a placeholder was left unfilled"
        assert not re.search(r"%\((\w*channel|control)\)s", text), f"{name} still takes a channel parameter"
        channelled += "pg_notify('app.werk_" in text
    assert channelled >= 10
    assert "pg_notify('app.werk_done', %(payload)s)" in statements.NOTIFY_DONE
    assert "pg_notify('app.werk_ctl', 'queue:' || %(name)s)" in statements.DROP_UNUSED_CONTROLS


def test_derived_statements_differ_only_where_they_should() -> None:
    statements = Statements(None, "werk")
    keyed, plain = statements.INSERT_JOBS, statements.INSERT_JOBS_NO_KEYS
    assert "ON CONFLICT (key)" in keyed and "ON CONFLICT" not in plain
    assert keyed.replace(" ON CONFLICT (key) WHERE key IS NOT NULL DO NOTHING", "").split() == plain.split()
    # one job: the same INSERT, answered by its own RETURNING instead of the CTE's aggregate
    for one, many in ((statements.INSERT_JOB, keyed), (statements.INSERT_JOB_NO_KEY, plain)):
        assert many.split()[:4] == ["WITH", "ins", "AS", "("] and not one.lstrip().startswith("WITH")
        assert one.split("RETURNING")[0].split() == many.split("RETURNING")[0].split()[4:]
    by_id, by_parent = statements.RESOLVE_WAITING, statements.RESOLVE_DEPENDENTS_OF
    assert "WHERE d.job_id = ANY(%(ids)s::uuid[])" in by_id
    assert "depends_on = ANY(%(ids)s::uuid[])" in by_parent and "d.job_id = ANY" not in by_parent
    assert "'throughput', last" in statements.ROLLUP_THROUGHPUT
    assert "'throughput_hour', last" in statements.ROLLUP_THROUGHPUT_HOURS
    assert queries.OLDEST_CLAIMABLE.count("ORDER BY queue, priority DESC, scheduled_at, id LIMIT 1") == 3
