"""Answers kept for identical requests, so a repeated deterministic call costs nothing.

The key is a hash of everything that shapes an answer: the models asked, the messages
(without their ids), response format, tools, tool choice, temperature, max tokens, stop
sequences, seed and provider extras. Only deterministic calls (temperature 0 or unset)
are cached unless `cache_nondeterministic=True`: replaying a sampled answer would hide
the variety the caller asked for. Entries are evicted least-recently-used beyond
`max_entries`, and expire after `ttl` seconds when one is given.

`ResponseCache` lives in memory; `SqliteResponseCache` keeps entries in a SQLite file
across processes and restarts. Both are safe to share between threads.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..usage import Usage
from .openai_format import to_openai_messages

if TYPE_CHECKING:
    from .base import ModelRequest


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A stored answer: which model gave it, its text and tool calls, and what it used."""

    model: str
    text: str
    tool_calls: tuple[dict[str, Any], ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None

    def to_json(self) -> str:
        usage = None if self.usage is None else [self.usage.input_tokens,
                                                 self.usage.output_tokens]
        return json.dumps({"model": self.model, "text": self.text,
                           "tool_calls": list(self.tool_calls),
                           "finish_reason": self.finish_reason, "usage": usage})

    @classmethod
    def from_json(cls, data: str) -> CachedResponse:
        raw = json.loads(data)
        usage = None if raw["usage"] is None else Usage(*raw["usage"])
        return cls(raw["model"], raw["text"], tuple(raw["tool_calls"]),
                   raw["finish_reason"], usage)


def request_key(models: Sequence[str], request: ModelRequest) -> str:
    """A stable hash of what determines the answer to `request` from the chain `models`."""
    payload = {
        "models": list(models),
        "messages": to_openai_messages(request.messages),
        "response_format": request.response_format,
        "tools": request.tools,
        "tool_choice": request.tool_choice,
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "stop": request.stop,
        "seed": request.seed,
        "extra": request.extra,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class ResponseCache:
    """In-memory LRU cache of answers. `clock` is injectable for TTL tests."""

    def __init__(self, max_entries: int = 1024, ttl: float | None = None, *,
                 cache_nondeterministic: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be positive seconds or None, got {ttl!r}")
        self.max_entries = max_entries
        self.ttl = ttl
        self.cache_nondeterministic = cache_nondeterministic
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, CachedResponse]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def cacheable(self, request: ModelRequest) -> bool:
        """Whether answers to `request` may be stored and replayed."""
        return self.cache_nondeterministic or request.temperature in (None, 0, 0.0)

    def key(self, models: Sequence[str], request: ModelRequest) -> str:
        return request_key(models, request)

    def get(self, key: str) -> CachedResponse | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._expired(entry[0]):
                del self._entries[key]
                entry = None
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: str, response: CachedResponse) -> None:
        with self._lock:
            self._entries[key] = (self._clock(), response)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _expired(self, stored_at: float) -> bool:
        return self.ttl is not None and self._clock() - stored_at >= self.ttl


class SqliteResponseCache(ResponseCache):
    """The same cache kept in a SQLite file, shared by processes and kept across restarts.
    TTL is measured in wall-clock seconds (`time.time`), as entries outlive the process."""

    def __init__(self, path: str | Path, max_entries: int = 100_000, ttl: float | None = None,
                 *, cache_nondeterministic: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(max_entries, ttl, cache_nondeterministic=cache_nondeterministic,
                         clock=clock)
        self.path = str(path)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        with self._lock, self._conn:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS waypoint_response_cache ("
                " key TEXT PRIMARY KEY, stored_at REAL NOT NULL, used_at REAL NOT NULL,"
                " response TEXT NOT NULL)")
            self._conn.execute("CREATE INDEX IF NOT EXISTS waypoint_response_cache_used"
                               " ON waypoint_response_cache (used_at)")

    def get(self, key: str) -> CachedResponse | None:
        with self._lock, self._conn:
            row = self._conn.execute(
                "SELECT stored_at, response FROM waypoint_response_cache WHERE key = ?",
                (key,)).fetchone()
            if row is not None and self._expired(row[0]):
                self._conn.execute("DELETE FROM waypoint_response_cache WHERE key = ?", (key,))
                row = None
            if row is None:
                self.misses += 1
                return None
            self._conn.execute("UPDATE waypoint_response_cache SET used_at = ? WHERE key = ?",
                               (self._clock(), key))
            self.hits += 1
        return CachedResponse.from_json(row[1])

    def put(self, key: str, response: CachedResponse) -> None:
        now = self._clock()
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO waypoint_response_cache VALUES (?, ?, ?, ?)",
                (key, now, now, response.to_json()))
            self._conn.execute(
                "DELETE FROM waypoint_response_cache WHERE key IN (SELECT key FROM"
                " waypoint_response_cache ORDER BY used_at DESC LIMIT -1 OFFSET ?)",
                (self.max_entries,))

    def clear(self) -> None:
        with self._lock, self._conn:
            self._conn.execute("DELETE FROM waypoint_response_cache")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute(
                "SELECT count(*) FROM waypoint_response_cache").fetchone()[0]
