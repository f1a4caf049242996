"""`InMemoryStore`: the store in a dict, for tests and single-process runs.

Values are kept as JSON text (plus a parsed copy used only for filtering), so what a caller
gets back is always a fresh document: mutating it, or the dict that was put, changes nothing
stored, exactly as with the SQL backends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .base import BaseStore, Item, SearchItem, TTLConfig, expiry
from .checks import Condition
from .filters import matches
from .index import IndexConfig, Vector, Vectors, rank


class _Record:
    __slots__ = ("created_at", "doc", "expires_at", "parsed", "ttl", "updated_at", "vectors")

    def __init__(self, doc: str, created_at: datetime, updated_at: datetime, ttl: float | None,
                 vectors: list[Vector]) -> None:
        self.doc = doc
        self.vectors = vectors
        self.parsed: dict[str, Any] = json.loads(doc)
        self.created_at = created_at
        self.updated_at = updated_at
        self.ttl = ttl
        self.expires_at = expiry(updated_at, ttl)

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


# scope -> namespace -> key -> record
_Data = dict[str, dict[tuple[str, ...], dict[str, _Record]]]


class InMemoryStore(BaseStore):
    """Items in process memory (lost when the process ends); safe to share between threads."""

    def __init__(self, *, ttl: TTLConfig | None = None,
                 clock: Callable[[], datetime] | None = None,
                 index: IndexConfig | None = None) -> None:
        super().__init__(ttl=ttl, clock=clock, index=index)
        self._data: _Data = {}
        self._lock = threading.RLock()  # shared by scoped views, like the data

    def _space(self) -> dict[tuple[str, ...], dict[str, _Record]]:
        return self._data.setdefault(self.scope, {})

    def _put(self, ns: tuple[str, ...], key: str, doc: str, ttl: float | None,
             now: datetime, vectors: Vectors = ()) -> None:
        with self._lock:
            items = self._space().setdefault(ns, {})
            old = items.get(key)
            created = old.created_at if old is not None and old.live(now) else now
            items[key] = _Record(doc, created, now, ttl, [v for _, v in vectors])

    def _delete(self, ns: tuple[str, ...], key: str) -> None:
        with self._lock:
            space = self._data.get(self.scope, {})
            items = space.get(ns)
            if items is not None and items.pop(key, None) is not None and not items:
                del space[ns]

    def _get(self, ns: tuple[str, ...], key: str, now: datetime, refresh: bool
             ) -> Item | None:
        with self._lock:
            record = self._data.get(self.scope, {}).get(ns, {}).get(key)
            if record is None or not record.live(now):
                return None
            if refresh and record.ttl is not None:
                record.expires_at = expiry(now, record.ttl)
            return Item(value=json.loads(record.doc), key=key, namespace=ns,
                        created_at=record.created_at, updated_at=record.updated_at)

    def _search(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...], limit: int,
                offset: int, now: datetime, refresh: bool) -> list[SearchItem]:
        size = len(prefix)
        with self._lock:
            hits = [(ns, key, record)
                    for ns, items in self._data.get(self.scope, {}).items()
                    if ns[:size] == prefix
                    for key, record in items.items()
                    if record.live(now) and matches(record.parsed, conditions)]
            hits.sort(key=lambda hit: (hit[0], hit[1]))
            hits.sort(key=lambda hit: hit[2].updated_at, reverse=True)
            page = hits[offset:offset + limit]
            found = []
            for ns, key, record in page:
                if refresh and record.ttl is not None:
                    record.expires_at = expiry(now, record.ttl)
                found.append(SearchItem(ns, key, json.loads(record.doc), record.created_at,
                                        record.updated_at))
            return found

    def _vector_search(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...],
                       vector: Vector, limit: int, offset: int, now: datetime, refresh: bool
                       ) -> list[SearchItem]:
        size = len(prefix)
        with self._lock:
            space = self._data.get(self.scope, {})
            rows = ((ns, key, record.updated_at, found)
                    for ns, items in space.items() if ns[:size] == prefix
                    for key, record in items.items()
                    if record.live(now) and matches(record.parsed, conditions)
                    for found in (record.vectors or [None]))
            page = []
            for ns, key, score in rank(rows, vector, limit, offset):
                record = space[ns][key]
                if refresh and record.ttl is not None:
                    record.expires_at = expiry(now, record.ttl)
                page.append(SearchItem(ns, key, json.loads(record.doc), record.created_at,
                                       record.updated_at, score))
            return page

    def _namespaces(self, prefix: tuple[str, ...], now: datetime) -> list[tuple[str, ...]]:
        size = len(prefix)
        with self._lock:
            return [ns for ns, items in self._data.get(self.scope, {}).items()
                    if ns[:size] == prefix and any(r.live(now) for r in items.values())]

    def _sweep(self, now: datetime) -> int:
        removed = 0
        with self._lock:
            for space in self._data.values():
                for ns in list(space):
                    items = space[ns]
                    dead = [key for key, record in items.items() if not record.live(now)]
                    for key in dead:
                        del items[key]
                    removed += len(dead)
                    if not items:
                        del space[ns]
        return removed
