"""Flow control values, without a database: Snooze and Cancel validate what
they are given and survive pickling (they come back from child processes
that way); the worker's view of its queues' controls."""

from __future__ import annotations

import math
import pickle

import pytest

from werk_trio import Cancel, ConfigError, Snooze
from werk_trio.flow import QueueControls


@pytest.mark.parametrize("bad", [-1, math.inf, math.nan, "5", None, True])
def test_snooze_refuses_what_is_not_seconds(bad: object) -> None:
    with pytest.raises(ConfigError, match="Snooze"):
        Snooze(bad)  # type: ignore[arg-type]


def test_cancel_needs_a_reason_string() -> None:
    with pytest.raises(ConfigError, match="Cancel"):
        Cancel(17)  # type: ignore[arg-type]


def test_snooze_and_cancel_pickle_with_their_values() -> None:
    snooze = pickle.loads(pickle.dumps(Snooze(2.5)))
    assert isinstance(snooze, Snooze) and snooze.seconds == 2.5 and str(snooze) == "snoozed for 2.5s"
    cancel = pickle.loads(pickle.dumps(Cancel("customer left")))
    assert isinstance(cancel, Cancel) and cancel.reason == "customer left"


def test_queue_controls_lock_only_limited_unpaused_queues_in_sorted_order() -> None:
    controls = QueueControls(["b", "a", "c", "d"])
    # name, paused, paused_at, max_running, limit_by, rate_n, rate_secs, rate_by
    controls.load([
        ("d", False, None, None, None, 5, 1.0, None),
        ("c", True, None, 3, None, None, None, None),
        ("b", False, None, 2, "_group", None, None, None),
        ("a", True, None, None, None, None, None, None),
    ])  # fmt: skip
    assert controls.controlled == {"a", "b", "c", "d"}
    assert controls.limited == ["b", "d"], "paused queues are skipped, not locked"
