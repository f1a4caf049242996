"""A process-wide memo of decoded checkpoint chains, keyed by what was stored.

Reading a checkpoint replays its chain: a snapshot, then up to `snapshot_every - 1` deltas.
The snapshot of a long chat holds every message, so decoding it grows with the thread
(2,000 messages at turn 1,000) although most of it was decoded by the previous read. This
memo remembers, for a chain prefix, the values it decodes to, and a later read whose chain
starts with the same stored bytes resumes from there: only the records after it are
decoded. A head read after a commit decodes one or two small deltas; reading history
newest-first decodes each snapshot once.

Why keyed by content rather than by (thread, checkpoint id): bytes in a store never change
meaning, so there is nothing to invalidate. Another process committing, a fork, `prune`
rewriting a record as a snapshot, `rewind`, `copy_thread`, a different store on the same
data: each is simply a chain whose bytes either match a remembered prefix (and then decode
to exactly what the memo holds) or do not (and are decoded). Every hit is checked by
comparing every body of the prefix byte for byte, not only by the lookup key. The key also
holds the cipher object (no entry is ever served to a reader without the key that decrypted
it) and which message classes the state uses (see `waypoint.interop.langchain_messages`).

What it costs the caller: values read back share objects (messages, nested values) with
the memo and with other reads in this process; each read gets its own dict and its own
top-level lists, dicts and sets, so appending to or assigning in a read state never
reaches the memo, but mutating a message object in place would. The engine never does (a
node returns updates). `configure(max_bytes=0)` turns the memo off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..interop.langchain_messages import message_classes

# Chains smaller than this (stored bytes) decode in a few microseconds: not remembered.
REMEMBER_ABOVE = 1024
# Decoded values take far more memory than their stored bytes: measured on a chat snapshot,
# 16 x a compressed body (zlib shrinks it ~3 x, Python objects grow it ~5 x). An entry's
# weight is this estimate, so the budget bounds memory rather than stored bytes.
_GROWTH = {b"z": 16, b"e": 16, b"m": 5}  # records.py's tags: zlib, sealed, raw msgpack
# Bodies up to this size are their own lookup key; larger ones are keyed by a digest.
SMALL_BODY = 4096
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # estimated memory of the decoded values
DEFAULT_MAX_ENTRIES = 1024
_TAIL = 32  # last bytes of a large body: zlib's adler32 or the AES-GCM tag, plus data


def body_key(body: bytes) -> Any:
    """A cheap lookup key for a stored body (a hit is confirmed by full comparison): small
    bodies are their own key; a large one (compressed or sealed) by length and its last
    bytes, which end in a checksum of the content (zlib) or an authentication tag (GCM)."""
    return body if len(body) <= SMALL_BODY else (len(body), body[-_TAIL:])


def fresh(values: dict[str, Any]) -> dict[str, Any]:
    """A copy whose dict and top-level lists, dicts and sets belong to the caller alone."""
    out = {}
    for key, value in values.items():
        kind = type(value)
        out[key] = value.copy() if kind is list or kind is dict or kind is set else value
    return out


def fresh_tail(tail: Sequence[Any]) -> list[Any]:
    """next_tasks, barriers, ran, updated: copied so a caller can change them."""
    next_tasks, barriers, ran, updated = tail
    return [list(next_tasks), {k: list(v) for k, v in barriers.items()}, list(ran),
            list(updated)]


@dataclass(slots=True)
class _Entry:
    bodies: tuple[bytes, ...]  # the prefix, compared byte for byte on every hit
    values: dict[str, Any]  # owned by the memo: never handed out, never mutated
    tail: list[Any]
    cost: int


def weight(bodies: Sequence[bytes]) -> int:
    """Estimated memory of what `bodies` decode to (an overestimate for entries that share
    objects, as a thread's snapshot and head entries do)."""
    return sum(len(b) * _GROWTH.get(b[:1], 16) for b in bodies)


class DecodeMemo:
    """Decoded values of chain prefixes, least recently used out first, bounded by the
    estimated memory of what the entries hold (`weight`) and by their number."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._entries: OrderedDict[Any, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.max_entries > 0

    @staticmethod
    def scope(cipher: Any) -> tuple[Any, str]:
        """What besides the bytes decides the decoded values: the cipher, message classes."""
        return cipher, message_classes()

    def find(self, scope: Any, bodies: Sequence[bytes]
             ) -> tuple[int, dict[str, Any], list[Any]] | None:
        """The longest remembered prefix of `bodies`: (its length, caller-owned copies of
        its values and tail), or None."""
        if not self.enabled:
            return None
        entries = self._entries
        for end in range(len(bodies), 0, -1):
            key = (scope, end, body_key(bodies[end - 1]))
            with self._lock:
                entry = entries.get(key)
                if entry is None:
                    continue
                entries.move_to_end(key)
            if entry.bodies == tuple(bodies[:end]):
                self.hits += 1
                return end, fresh(entry.values), fresh_tail(entry.tail)
        self.misses += 1
        return None

    def remember(self, scope: Any, bodies: Sequence[bytes], values: dict[str, Any],
                 tail: Sequence[Any], *, replaces: int = 0) -> None:
        """Keep a copy of what `bodies` decode to (if the chain is worth it). `replaces`:
        the length of a remembered prefix this one extends, dropped unless it is a bare
        snapshot, so a thread read again and again keeps its snapshot and its newest
        read rather than one entry per commit."""
        if not self.enabled:
            return
        size = sum(len(b) for b in bodies)
        cost = weight(bodies)
        if size < REMEMBER_ABOVE or cost > self.max_bytes:
            return
        key = (scope, len(bodies), body_key(bodies[-1]))
        entry = _Entry(tuple(bodies), fresh(values), fresh_tail(tail), cost)
        with self._lock:
            if replaces > 1:
                older = (scope, replaces, body_key(bodies[replaces - 1]))
                gone = self._entries.get(older)
                if gone is not None and gone.bodies == entry.bodies[:replaces]:
                    del self._entries[older]
                    self._bytes -= gone.cost
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.cost
            self._entries[key] = entry
            self._bytes += cost
            while self._entries and (self._bytes > self.max_bytes
                                     or len(self._entries) > self.max_entries):
                _, gone = self._entries.popitem(last=False)
                self._bytes -= gone.cost

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


memo = DecodeMemo()


def configure(*, max_bytes: int | None = None, max_entries: int | None = None) -> DecodeMemo:
    """Resize the process-wide memo (0 turns it off); what it held is dropped."""
    if max_bytes is not None:
        memo.max_bytes = max_bytes
    if max_entries is not None:
        memo.max_entries = max_entries
    memo.clear()
    return memo
