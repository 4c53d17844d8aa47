"""Cron without a database: tick arithmetic (croniter agreement, DST in a real
zone, catch-up planning) and registration validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from werk_trio import ConfigError, CronJob, CronScheduler, SerializationError, Werk
from werk_trio.cron import Timing, latest_cron_tick, next_cron_tick, plan_tick

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


async def task() -> None:
    pass


def ticks(expr: str, tz: ZoneInfo, start: datetime, n: int) -> list[str]:
    """``n`` ticks after ``start``, each as 'UTC time / wall time'."""
    out = []
    for _ in range(n):
        start = next_cron_tick(expr, tz, start)
        out.append(f"{start:%m-%d %H:%M:%S}Z/{start.astimezone(tz):%H:%M%Z}")
    return out


# --- agreement with croniter where no DST change interferes ----------------------

EXPRESSIONS = ["*/15 * * * *", "0 9 * * 1-5", "30 8 1 * *", "0 0 * * 0", "@hourly", "@daily",
               "5,35 */3 * * *", "0 12 29 2 *", "* * * * * */10", "0 0 1 1 *"]  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(
    expr=st.sampled_from(EXPRESSIONS),
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)),
    zone=st.sampled_from(["UTC", "Asia/Tokyo", "Asia/Kolkata"]),  # no DST
)
def test_next_ticks_are_croniters_in_zones_without_dst(expr: str, start: datetime, zone: str) -> None:
    tz = ZoneInfo(zone)
    after = start.replace(tzinfo=tz)
    expected = croniter(expr, after.replace(microsecond=0)).get_next(datetime)
    got = next_cron_tick(expr, tz, after)
    assert got == expected and got.tzinfo is UTC
    assert latest_cron_tick(expr, tz, got) == got
    assert latest_cron_tick(expr, tz, got - timedelta(microseconds=1)) < got


def test_next_ticks_of_common_expressions() -> None:
    start = datetime(2024, 1, 5, 10, 7, tzinfo=UTC)  # a Friday
    assert ticks("*/15 * * * *", ZoneInfo("UTC"), start, 3) == [
        "01-05 10:15:00Z/10:15UTC", "01-05 10:30:00Z/10:30UTC", "01-05 10:45:00Z/10:45UTC"]
    assert ticks("0 9 * * 1-5", ZoneInfo("UTC"), start, 2) == [
        "01-08 09:00:00Z/09:00UTC", "01-09 09:00:00Z/09:00UTC"]  # Monday, Tuesday
    assert ticks("0 9 * * *", NEW_YORK, start, 1) == ["01-05 14:00:00Z/09:00EST"]
    assert ticks("* * * * * */20", ZoneInfo("UTC"), start, 3) == [
        "01-05 10:07:20Z/10:07UTC", "01-05 10:07:40Z/10:07UTC", "01-05 10:08:00Z/10:08UTC"]


# --- DST: Europe/Berlin, 2024-03-31 02:00 -> 03:00 and 2024-10-27 03:00 -> 02:00 ------


def test_spring_forward_a_skipped_daily_time_runs_at_the_change() -> None:
    start = datetime(2024, 3, 29, 12, tzinfo=UTC)
    assert ticks("30 2 * * *", BERLIN, start, 3) == [
        "03-30 01:30:00Z/02:30CET",
        "03-31 01:00:00Z/03:00CEST",  # 02:30 does not exist: at the change, once
        "04-01 00:30:00Z/02:30CEST",
    ]


def test_spring_forward_ticks_in_the_gap_collapse_into_one() -> None:
    start = datetime(2024, 3, 31, 0, 20, tzinfo=UTC)
    assert ticks("*/15 * * * *", BERLIN, start, 4) == [
        "03-31 00:30:00Z/01:30CET",
        "03-31 00:45:00Z/01:45CET",
        "03-31 01:00:00Z/03:00CEST",  # 02:00-02:45 and 03:00: one run
        "03-31 01:15:00Z/03:15CEST",
    ]
    # in real time the rhythm is kept: 15 minutes apart throughout
    assert ticks("0 * * * *", BERLIN, datetime(2024, 3, 30, 23, 30, tzinfo=UTC), 3) == [
        "03-31 00:00:00Z/01:00CET", "03-31 01:00:00Z/03:00CEST", "03-31 02:00:00Z/04:00CEST"]


def test_fall_back_a_repeated_fixed_time_runs_once_at_its_first_pass() -> None:
    start = datetime(2024, 10, 26, 12, tzinfo=UTC)
    assert ticks("30 2 * * *", BERLIN, start, 2) == [
        "10-27 00:30:00Z/02:30CEST",  # not again at 02:30 CET
        "10-28 01:30:00Z/02:30CET",
    ]
    assert ticks("*/20 2 * * *", BERLIN, datetime(2024, 10, 26, 23, 50, tzinfo=UTC), 4) == [
        "10-27 00:00:00Z/02:00CEST", "10-27 00:20:00Z/02:20CEST", "10-27 00:40:00Z/02:40CEST",
        "10-28 01:00:00Z/02:00CET"]


def test_fall_back_a_wildcard_hour_runs_in_both_passes() -> None:
    start = datetime(2024, 10, 26, 22, 30, tzinfo=UTC)
    assert ticks("0 * * * *", BERLIN, start, 4) == [
        "10-26 23:00:00Z/01:00CEST",
        "10-27 00:00:00Z/02:00CEST",
        "10-27 01:00:00Z/02:00CET",  # the repeated hour: hourly stays hourly
        "10-27 02:00:00Z/03:00CET",
    ]
    # and from inside the second pass, the next tick is the next real one
    inside = datetime(2024, 10, 27, 1, 10, tzinfo=UTC)  # 02:10 CET
    assert ticks("*/30 * * * *", BERLIN, inside, 2) == [
        "10-27 01:30:00Z/02:30CET", "10-27 02:00:00Z/03:00CET"]
    assert latest_cron_tick("0 * * * *", BERLIN, inside) == datetime(2024, 10, 27, 1, tzinfo=UTC)


def test_new_york_transitions() -> None:
    # 2024-03-10 02:00 EST -> 03:00 EDT; 2024-11-03 02:00 EDT -> 01:00 EST
    assert ticks("30 2 * * *", NEW_YORK, datetime(2024, 3, 9, 12, tzinfo=UTC), 2) == [
        "03-10 07:00:00Z/03:00EDT", "03-11 06:30:00Z/02:30EDT"]
    assert ticks("30 1 * * *", NEW_YORK, datetime(2024, 11, 2, 12, tzinfo=UTC), 2) == [
        "11-03 05:30:00Z/01:30EDT", "11-04 06:30:00Z/01:30EST"]


@settings(max_examples=60, deadline=None)
@given(
    expr=st.sampled_from(["*/15 * * * *", "0 * * * *", "30 2 * * *", "*/7 1-3 * * *", "0 0 * * *"]),
    minutes=st.integers(min_value=0, max_value=4 * 24 * 60),
    spring=st.booleans(),
)
def test_ticks_strictly_increase_across_transitions(expr: str, minutes: int, spring: bool) -> None:
    base = datetime(2024, 3, 29, tzinfo=UTC) if spring else datetime(2024, 10, 25, tzinfo=UTC)
    t = base + timedelta(minutes=minutes)
    previous = t
    for _ in range(5):
        nxt = next_cron_tick(expr, BERLIN, previous)
        assert nxt > previous
        assert latest_cron_tick(expr, BERLIN, nxt) == nxt
        previous = nxt


# --- planning a due schedule -------------------------------------------------------


def test_plan_on_time_and_after_downtime() -> None:
    every = Timing(None, 10.0, "UTC")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    # on time: this tick, then the next
    assert plan_tick(every, t0, t0 + timedelta(seconds=0.3), "one", 5) == (t0, t0 + timedelta(seconds=10))
    # 95 s down: one run, for the latest missed tick; the next run is in the future
    now = t0 + timedelta(seconds=95)
    assert plan_tick(every, t0, now, "one", 5) == (t0 + timedelta(seconds=90), t0 + timedelta(seconds=100))
    # catch_up="none": the latest tick is 5 s late, within the tolerance of 6 s: it runs
    assert plan_tick(every, t0, now, "none", 6)[0] == t0 + timedelta(seconds=90)
    # ... beyond a tolerance of 4 s it is skipped
    assert plan_tick(every, t0, now, "none", 4) == (None, t0 + timedelta(seconds=100))
    daily = Timing("0 9 * * *", None, "Europe/Berlin")
    due = datetime(2026, 1, 1, 8, tzinfo=UTC)  # 09:00 CET
    late = datetime(2026, 1, 4, 12, tzinfo=UTC)
    assert plan_tick(daily, due, late, "one", 60) == (datetime(2026, 1, 4, 8, tzinfo=UTC),
                                                      datetime(2026, 1, 5, 8, tzinfo=UTC))
    assert plan_tick(daily, due, late, "none", 60) == (None, datetime(2026, 1, 5, 8, tzinfo=UTC))


# --- registrations -----------------------------------------------------------------


@pytest.fixture
def scheduler() -> CronScheduler:
    return CronScheduler(Werk("postgresql://nobody@localhost/none", task_modules=["tests.unit"]))


BAD = [
    ("invalid expression", {"cron": "61 * * * *"}, "invalid cron expression"),
    ("garbage expression", {"cron": "every day"}, "fields"),
    ("too many fields", {"cron": "* * * * * * * *"}, "fields"),
    ("empty expression", {"cron": ""}, "cron expression"),
    ("both", {"cron": "* * * * *", "interval": 5}, "exactly one of cron"),
    ("neither", {}, "exactly one of cron"),
    ("zero interval", {"interval": 0}, "interval"),
    ("negative interval", {"interval": -1}, "interval"),
    ("nan interval", {"interval": float("nan")}, "interval"),
    ("text interval", {"interval": "5"}, "interval"),
    ("unknown timezone", {"cron": "0 9 * * *", "tz": "Mars/Olympus"}, "unknown timezone"),
    ("tz with an interval", {"interval": 5, "tz": "UTC"}, "tz= applies to cron"),
    ("bad queue", {"interval": 5, "queue": ""}, "queue"),
    ("bad args", {"interval": 5, "args": "abc"}, "args"),
    ("bad kwargs", {"interval": 5, "kwargs": [1]}, "kwargs"),
    ("bad meta", {"interval": 5, "meta": "x"}, "meta"),
    ("bad timeout", {"interval": 5, "timeout": 0}, "timeout"),
    ("bad ttl", {"interval": 5, "result_ttl": -1}, "result_ttl"),
    ("bad name", {"interval": 5, "name": ""}, "name"),
    ("bad paused", {"interval": 5, "paused": "yes"}, "paused"),
]


@pytest.mark.parametrize(("kwargs", "match"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_registrations_raise_config_error(scheduler: CronScheduler, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        scheduler.register(task, **kwargs)
    assert len(scheduler) == 0


def test_functions_outside_the_allowlist_are_refused(scheduler: CronScheduler) -> None:
    with pytest.raises(ConfigError, match="not a task the app's workers may run"):
        scheduler.register("os.system", interval=5)
    with pytest.raises(ConfigError, match="lambda"):
        scheduler.register(lambda: None, interval=5)
    with pytest.raises(ConfigError, match="CronJob"):
        scheduler.register(CronJob(task, interval=5), interval=6)
    with pytest.raises(SerializationError, match="cannot serialize"):
        scheduler.register(task, interval=5, kwargs={"x": object()})
    assert len(scheduler) == 0


def test_register_replace_unregister_pause(scheduler: CronScheduler) -> None:
    job = scheduler.register(task, cron="@hourly")
    assert job.name == "tests.unit.test_cron.task" and job.function == job.name
    assert "tests.unit.test_cron.task" in scheduler and len(scheduler) == 1
    again = scheduler.register(CronJob(task, interval=60, queue="q"))
    assert scheduler.get(job.name) is again and len(scheduler) == 1
    assert dict(scheduler.jobs) == {job.name: again}
    scheduler.pause(job.name)
    assert again.paused
    scheduler.resume(job.name)
    assert not again.paused
    scheduler.unregister(job.name)
    assert scheduler.get(job.name) is None and len(scheduler) == 0
    for call in (scheduler.unregister, scheduler.pause, scheduler.resume):
        with pytest.raises(ConfigError, match="no cron job named"):
            call("nope")
    with pytest.raises(TypeError):
        scheduler.jobs["x"] = again  # type: ignore[index]


def test_scheduler_settings_are_validated() -> None:
    app = Werk("postgresql://nobody@localhost/none", cron_lease=12, cron_standby_retry_interval=3)
    s = CronScheduler(app)
    assert (s.lease, s.standby_retry_interval, s.catch_up) == (12, 3, "one")
    assert CronScheduler(app, lease=2, standby_retry_interval=0.5).lease == 2
    for kwargs in ({"lease": 0}, {"standby_retry_interval": -1}, {"catch_up": "all"}, {"lease": "1"}):
        with pytest.raises(ConfigError):
            CronScheduler(app, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        CronScheduler("app")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cron_lease"):
        Werk("postgresql://nobody@localhost/none", cron_lease=0)
