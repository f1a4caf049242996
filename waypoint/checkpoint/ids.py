"""Checkpoint ids that sort in the order they were made (UUID-shaped, version 6 style)."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last = 0
_node = int.from_bytes(os.urandom(6), "big")


def new_checkpoint_id() -> str:
    """A UUID string whose lexical order follows creation order, also within a microsecond."""
    global _last
    with _lock:
        stamp = time.time_ns() // 100  # 100 ns ticks
        if stamp <= _last:
            stamp = _last + 1
        _last = stamp
    high = stamp & 0xFFFFFFFFFFFFFFF  # 60 bits
    hexed = f"{high:015x}"
    return f"{hexed[:8]}-{hexed[8:12]}-6{hexed[12:15]}-{0x8000 | (_node & 0x3FFF):04x}-{_node:012x}"
