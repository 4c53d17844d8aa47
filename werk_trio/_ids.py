"""Time-ordered job ids (UUID version 7: 48-bit milliseconds, then random bits).

Ids made in one process are strictly increasing (a counter fills the 12
sub-millisecond bits), so b-tree inserts stay at the right edge of the index.
The 62 random bits come from :mod:`random` (reseeded after fork): ids must be
unique, not secret.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

_lock = threading.Lock()
_last = 0
_getrandbits = random.getrandbits
_time_ns = time.time_ns
_UUID = uuid.UUID
_new = object.__new__
_set = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown
_VERSION_VARIANT = (0x7 << 76) | (0b10 << 62)


def uuid7() -> uuid.UUID:
    global _last
    with _lock:
        candidate = (_time_ns() // 1_000_000) << 12
        if candidate <= _last:
            candidate = _last + 1
        _last = candidate
    value = ((candidate >> 12) << 80) | ((candidate & 0xFFF) << 64) | _VERSION_VARIANT | _getrandbits(62)
    # What UUID(int=value) ends with, without its argument checks (the value
    # is in range by construction): a third of the cost on the enqueue path.
    u = _new(_UUID)
    _set(u, "int", value)
    _set(u, "is_safe", _UNKNOWN)
    return u


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
