"""Issue 12, names and values: what a pgwerk program imports and builds exists
under pgwerk's names, and is the same object as werk_trio's own."""

from __future__ import annotations

import importlib
import uuid
from datetime import UTC, datetime

import pytest

import werk_trio
from werk_trio import (
    BaseWorker,
    Callback,
    ConfigError,
    DequeueStrategy,
    ExecutionStatus,
    FailureMode,
    JobExecution,
    JobStatus,
    Repeat,
    Retry,
    Werk,
    WerkConfig,
    WerkError,
    Worker,
)


def test_enum_members_by_pgwerk_names_are_the_same_members() -> None:
    pairs = [(JobStatus.Complete, JobStatus.COMPLETE), (JobStatus.Scheduled, JobStatus.SCHEDULED),
             (JobStatus.Queued, JobStatus.QUEUED), (JobStatus.Waiting, JobStatus.WAITING),
             (JobStatus.Active, JobStatus.ACTIVE), (JobStatus.Aborting, JobStatus.ABORTING),
             (JobStatus.Failed, JobStatus.FAILED), (JobStatus.Aborted, JobStatus.ABORTED),
             (ExecutionStatus.Running, ExecutionStatus.RUNNING),
             (ExecutionStatus.Complete, ExecutionStatus.COMPLETE),
             (ExecutionStatus.Failed, ExecutionStatus.FAILED),
             (ExecutionStatus.Aborted, ExecutionStatus.ABORTED),
             (DequeueStrategy.RoundRobin, DequeueStrategy.ROUND_ROBIN),
             (DequeueStrategy.Priority, DequeueStrategy.PRIORITY),
             (DequeueStrategy.Random, DequeueStrategy.RANDOM),
             (FailureMode.Hold, FailureMode.HOLD), (FailureMode.Delete, FailureMode.DELETE)]  # fmt: skip
    for pgwerk_name, ours in pairs:
        assert pgwerk_name is ours
    # aliases do not add members: iteration, and so the CLI's choices, are unchanged
    assert [s.value for s in JobStatus] == [
        "scheduled",
        "queued",
        "waiting",
        "active",
        "aborting",
        "complete",
        "failed",
        "aborted",
    ]
    assert len(list(ExecutionStatus)) == 4 and len(list(DequeueStrategy)) == 3
    assert JobStatus("complete") is JobStatus.Complete and FailureMode("delete") == "delete"
    assert BaseWorker is Worker


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            "werk_trio.schemas",
            ["Job", "JobExecution", "Retry", "Repeat", "Dependency", "Callback", "Context", "EnqueueParams"],
        ),
        ("werk_trio.commons", ["JobStatus", "ExecutionStatus", "DequeueStrategy", "FailureMode"]),
        (
            "werk_trio.exceptions",
            [
                "WerkError",
                "JobNotFound",
                "JobTimeout",
                "JobError",
                "DependencyFailed",
                "WorkerShutdown",
                "UnknownTask",
            ],
        ),
        ("werk_trio.serializers", ["Serializer", "JSONSerializer", "PickleSerializer"]),
        ("werk_trio.worker", ["BaseWorker", "AsyncWorker", "ThreadWorker", "ProcessWorker", "ForkWorker"]),
    ],
)
def test_pgwerk_submodule_paths_resolve_to_the_top_level_objects(module: str, names: list[str]) -> None:
    mod = importlib.import_module(module)
    for name in names:
        assert getattr(mod, name) is getattr(werk_trio, name), (module, name)


def test_retry_and_repeat_helpers_as_pgwerk_documents_them() -> None:
    listed = Retry(max=4, intervals=[10, 60, 300])
    assert [listed.get_interval(a) for a in (1, 2, 3, 9)] == [10, 60, 300, 300]
    assert listed.to_intervals_list() == [10, 60, 300]
    uniform = Retry(max=3, intervals=30)
    assert uniform.get_interval(2) == 30 and uniform.to_intervals_list() is None
    # Repeat(times=N) without an interval repeats at once; intervals override interval
    assert Repeat(times=5).get_interval(0) == 0
    assert Repeat(times=5, interval=3600).get_interval(3) == 3600
    both = Repeat(times=3, interval=5, intervals=[60, 300])
    assert [both.get_interval(r) for r in (0, 1, 2)] == [60, 300, 300]
    with pytest.raises(ConfigError, match="Repeat interval"):
        Repeat(times=2, interval=-1)


def test_callback_timeout_none_means_no_limit() -> None:
    assert Callback(print).timeout is None
    assert Callback(print, timeout=None).timeout is None
    with pytest.raises(ConfigError, match="Callback timeout"):
        Callback(print, timeout=0)


def test_job_execution_has_id_result_and_completed_at() -> None:
    job_id = uuid.uuid4()
    now = datetime.now(UTC)
    one = JobExecution(job_id, 1, None, ExecutionStatus.Complete, now, now, None, {"r": 1})
    two = JobExecution(job_id, 2, None, ExecutionStatus.Failed, now, None, "boom")
    assert one.id == JobExecution(job_id, 1, None, ExecutionStatus.Complete, now, now, None).id, "stable"
    assert one.id != two.id and isinstance(one.id, uuid.UUID)
    assert one.result == {"r": 1} and two.result is None
    assert one.completed_at == now and two.completed_at is None


def test_app_attributes_before_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    app = Werk(
        "postgresql://u:secret@db.example:5432/jobs", schema="werk", prefix="_jobs", max_active_secs=120
    )
    assert app.dsn == "postgresql://u:secret@db.example:5432/jobs"
    assert (app.schema, app.prefix, app.max_active_secs) == ("werk", "_jobs", 120)
    monkeypatch.delenv("WERK_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(WerkError, match="embedded Postgres"):
        Werk().dsn  # noqa: B018
    monkeypatch.setenv("DATABASE_URL", "postgresql://env@h/db")
    assert Werk().dsn == "postgresql://env@h/db"


def test_ephemeral_tables_is_a_setting() -> None:
    assert WerkConfig().ephemeral_tables is False
    assert Werk("postgresql://h/db", ephemeral_tables=True).config.ephemeral_tables is True
    with pytest.raises(ConfigError, match="ephemeral_tables must be True or False"):
        WerkConfig(ephemeral_tables="yes")  # type: ignore[arg-type]
