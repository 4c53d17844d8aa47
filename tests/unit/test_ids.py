"""Time-ordered job ids (UUIDv7)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

from werk_trio._ids import uuid7


def test_version_variant_and_timestamp() -> None:
    before = time.time_ns() // 1_000_000
    u = uuid7()
    after = time.time_ns() // 1_000_000
    assert isinstance(u, uuid.UUID)
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert before <= u.int >> 80 <= after + 1


def test_strictly_increasing_in_one_thread() -> None:
    ids = [uuid7() for _ in range(20_000)]  # several thousand per millisecond
    assert all(a < b for a, b in itertools.pairwise(ids))
    # the text form (what Postgres and logs show) sorts the same way
    texts = [str(i) for i in ids]
    assert texts == sorted(texts)
    assert ids == sorted(ids, key=lambda u: u.bytes)  # Postgres compares uuids bytewise


def test_unique_and_monotonic_across_threads() -> None:
    per_thread: list[list[uuid.UUID]] = [[] for _ in range(8)]

    def make(out: list[uuid.UUID]) -> None:
        for _ in range(5_000):
            out.append(uuid7())

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [u for out in per_thread for u in out]
    assert len(set(everything)) == len(everything)
    for out in per_thread:
        assert all(a < b for a, b in itertools.pairwise(out))


def test_random_bits_differ() -> None:
    a, b = uuid7(), uuid7()
    assert a.int & ((1 << 62) - 1) != b.int & ((1 << 62) - 1)
