"""`MemorySaver`: the in-process store, serialized so history is immune to later mutation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import CheckpointConflict
from . import serde
from .base import (
    IDLE,
    WAITING,
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointTuple,
    PendingWrite,
    make_config,
    state_of_head,
    state_of_writes,
    thread_of,
)
from .memory_records import MemoryRecords
from .memory_usage import MemoryUsage
from .records import DEFAULT_SNAPSHOT_EVERY, SNAPSHOT, decode, encode


@dataclass(slots=True)
class _Stored:
    id: str
    parent_id: str | None
    step: int
    ts: str
    kind: int
    depth: int
    body: bytes
    metadata: bytes
    writes: bytes | None = None


@dataclass(slots=True)
class _Namespace:
    order: list[str] = field(default_factory=list)
    records: dict[str, _Stored] = field(default_factory=dict)
    head: str | None = None
    touched: float = 0.0
    state: int = IDLE  # what the head means for sweep (base.py: IDLE, WAITING, FAILED)


class MemorySaver(MemoryUsage, MemoryRecords, BaseCheckpointSaver):
    """Checkpoints in memory: for tests, notebooks and single-process runs."""

    def __init__(self, *, snapshot_every: int = DEFAULT_SNAPSHOT_EVERY) -> None:
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1, got {snapshot_every}")
        self.snapshot_every = snapshot_every
        self._threads: dict[str, dict[str, _Namespace]] = {}
        self._lock = threading.RLock()

    # -- writing -----------------------------------------------------------------------

    def put(
        self,
        config: dict[str, Any],
        checkpoint: Checkpoint,
        metadata: dict[str, Any],
        *,
        parent_id: str | None,
        expected_head: str | None,
    ) -> dict[str, Any]:
        thread_id, ns, _ = thread_of(config)
        meta = serde.dumps(metadata)
        with self._lock:
            space = self._threads.get(thread_id, {}).get(ns)
            head = space.head if space is not None else None
            if head != expected_head:
                raise CheckpointConflict(thread_id, expected_head, head)
            if space is None:
                space = self._threads.setdefault(thread_id, {}).setdefault(ns, _Namespace())
            parent = space.records.get(parent_id) if parent_id is not None else None
            kind, depth, body = encode(checkpoint, parent.depth if parent else None,
                                       self.snapshot_every)
            space.records[checkpoint.id] = _Stored(
                checkpoint.id, parent_id if parent else None, checkpoint.step, checkpoint.ts,
                kind, depth, body, meta,
            )
            space.order.append(checkpoint.id)
            space.head = checkpoint.id
            space.state = state_of_head(checkpoint.next_tasks)
            space.touched = time.time()
        return make_config(thread_id, ns, checkpoint.id)

    def put_writes(self, config: dict[str, Any], writes: Sequence[PendingWrite]) -> None:
        thread_id, ns, checkpoint_id = thread_of(config)
        writes = list(writes)
        blob = serde.dumps(writes)
        with self._lock:
            space = self._threads.get(thread_id, {}).get(ns)
            if space is None or checkpoint_id not in space.records:
                raise KeyError(f"no checkpoint {checkpoint_id!r} in thread {thread_id!r}")
            space.records[checkpoint_id].writes = blob
            if checkpoint_id == space.head and space.state != IDLE:
                space.state = state_of_writes(writes)
            space.touched = time.time()

    # -- retention ---------------------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        with self._lock:
            self._threads.pop(str(thread_id), None)
            self._drop_records([str(thread_id)])

    def prune(self, thread_id: str, keep_last: int = 1) -> int:
        """Keep each namespace's newest `keep_last` checkpoints; returns how many went."""
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        removed = 0
        with self._lock:
            for ns, space in self._threads.get(str(thread_id), {}).items():
                doomed = space.order[:-keep_last]
                if not doomed:
                    continue
                kept = space.order[-keep_last:]
                for cid in kept:  # re-base the oldest kept ones whose ancestors go
                    record = space.records[cid]
                    if record.parent_id in doomed or (record.parent_id not in space.records):
                        self._rebase(str(thread_id), ns, space, record)
                for cid in doomed:
                    del space.records[cid]
                space.order = kept
                removed += len(doomed)
        return removed

    def _rebase(self, thread_id: str, ns: str, space: _Namespace, record: _Stored) -> None:
        full = self._checkpoint(space, record)
        _, _, body = encode(full, None)
        record.kind, record.depth, record.body, record.parent_id = SNAPSHOT, 0, body, None

    def rewind(self, thread_id: str, checkpoint_id: str) -> int:
        removed = 0
        with self._lock:
            spaces = self._threads.get(str(thread_id), {})
            root = spaces.get("")
            if root is None or checkpoint_id not in root.records:
                raise KeyError(f"no checkpoint {checkpoint_id!r} in thread {thread_id!r}")
            for ns in list(spaces):
                space = spaces[ns]
                doomed = [cid for cid in space.order if cid > checkpoint_id]
                for cid in doomed:
                    del space.records[cid]
                removed += len(doomed)
                space.order = [cid for cid in space.order if cid <= checkpoint_id]
                if not space.order:
                    del spaces[ns]
                    continue
                space.head = max(space.order)
                head = space.records[space.head]
                space.state = state_of_head(self._checkpoint(space, head).next_tasks)
                if space.state != IDLE and head.writes is not None:
                    space.state = state_of_writes(serde.loads(head.writes))
                space.touched = time.time()
        return removed

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Fork a whole thread (every namespace, history and head) to a new thread id.
        Its effects, approvals and timers are not copied: they belong to the original run."""
        with self._lock:
            source = self._threads.get(str(source_thread_id))
            if source is None:
                raise KeyError(f"thread {source_thread_id!r} does not exist")
            if str(target_thread_id) in self._threads:
                raise ValueError(f"thread {target_thread_id!r} already exists")
            copied: dict[str, _Namespace] = {}
            for ns, space in source.items():
                copied[ns] = _Namespace(
                    list(space.order),
                    {k: _Stored(**{f: getattr(r, f) for f in _Stored.__slots__})
                     for k, r in space.records.items()},
                    space.head, time.time(), space.state,
                )
            self._threads[str(target_thread_id)] = copied

    def sweep(self, ttl_seconds: float, *, now: float | None = None) -> list[str]:
        """Delete threads untouched for `ttl_seconds`; returns their ids. Threads paused
        (root head WAITING) or waiting on an approval or a timer are kept: not idle."""
        cutoff = (time.time() if now is None else now) - ttl_seconds
        waiting = self._waiting_threads()  # paused for an approval or a timer
        with self._lock:
            expired = [t for t, spaces in self._threads.items()
                       if max((s.touched for s in spaces.values()), default=0) < cutoff
                       and t not in waiting and not _paused(spaces)]
            for thread_id in expired:
                del self._threads[thread_id]
            self._drop_records(expired)
        return expired

    # -- reading -----------------------------------------------------------------------

    def head_id(self, thread_id: str, ns: str = "") -> str | None:
        space = self._threads.get(str(thread_id), {}).get(ns)
        return space.head if space else None

    def _checkpoint(self, space: _Namespace, record: _Stored) -> Checkpoint:
        chain = [(record.kind, record.body)]
        current = record
        while current.kind != SNAPSHOT:
            current = space.records[current.parent_id]  # type: ignore[index]
            chain.append((current.kind, current.body))
        chain.reverse()
        return decode(record.id, record.step, record.ts, chain)

    def _tuple(
        self, thread_id: str, ns: str, space: _Namespace, record: _Stored
    ) -> CheckpointTuple:
        parent = make_config(thread_id, ns, record.parent_id) if record.parent_id else None
        writes = [tuple(w) for w in serde.loads(record.writes)] if record.writes else []
        return CheckpointTuple(
            make_config(thread_id, ns, record.id), self._checkpoint(space, record),
            serde.loads(record.metadata), parent, writes,  # type: ignore[arg-type]
        )

    def get_tuple(self, config: dict[str, Any]) -> CheckpointTuple | None:
        thread_id, ns, checkpoint_id = thread_of(config)
        with self._lock:
            space = self._threads.get(thread_id, {}).get(ns)
            if space is None:
                return None
            record = space.records.get(checkpoint_id or space.head or "")
            if record is None:
                return None
            return self._tuple(thread_id, ns, space, record)

    def list(
        self,
        config: dict[str, Any] | None,
        *,
        filter: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        with self._lock:
            if config is None:
                spaces = [(t, n, s) for t, by_ns in self._threads.items() for n, s in by_ns.items()]
                checkpoint_id = None
            else:
                thread_id, ns, checkpoint_id = thread_of(config)
                space = self._threads.get(thread_id, {}).get(ns)
                spaces = [(thread_id, ns, space)] if space else []
            selected: list[CheckpointTuple] = []
            before_id = ((before or {}).get("configurable") or {}).get("checkpoint_id")
            for thread_id, ns, space in spaces:
                for cid in reversed(space.order):
                    if before_id is not None and cid >= before_id:
                        continue
                    if checkpoint_id and cid != checkpoint_id:
                        continue
                    record = space.records[cid]
                    metadata = serde.loads(record.metadata)
                    if filter and any(metadata.get(k) != v for k, v in filter.items()):
                        continue
                    selected.append(self._tuple(thread_id, ns, space, record))
                    if limit is not None and len(selected) >= limit:
                        break
                if limit is not None and len(selected) >= limit:
                    break
        yield from selected


def _paused(spaces: dict[str, _Namespace]) -> bool:
    """Whether a thread waits to be resumed: only its root namespace decides."""
    root = spaces.get("")
    return root is not None and root.state == WAITING


InMemorySaver = MemorySaver
