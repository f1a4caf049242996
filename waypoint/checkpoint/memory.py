"""`MemorySaver`: the in-process store, serialized so history is immune to later mutation."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import CheckpointConflict
from . import serde
from .base import (
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointTuple,
    PendingWrite,
    make_config,
    thread_of,
)


@dataclass(slots=True)
class _Stored:
    id: str
    parent_id: str | None
    step: int
    ts: str
    versions: dict[str, str]  # channel -> id of the checkpoint that stored its value
    rest: bytes  # next_tasks, barriers, ran, updated
    metadata: bytes
    writes: bytes | None = None


@dataclass(slots=True)
class _Namespace:
    order: list[str] = field(default_factory=list)
    records: dict[str, _Stored] = field(default_factory=dict)
    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    head: str | None = None


class MemorySaver(BaseCheckpointSaver):
    """Checkpoints in memory: for tests, notebooks and single-process runs."""

    def __init__(self) -> None:
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
        parent_versions: dict[str, str] = {}
        blobs = {}
        changed = checkpoint.updated
        for channel in changed:
            if channel in checkpoint.values:
                blobs[channel] = serde.dumps(checkpoint.values[channel])
        rest = serde.dumps(
            [checkpoint.next_tasks, checkpoint.barriers, checkpoint.ran, checkpoint.updated]
        )
        meta = serde.dumps(metadata)
        with self._lock:
            space = self._threads.setdefault(thread_id, {}).setdefault(ns, _Namespace())
            if space.head != expected_head:
                raise CheckpointConflict(thread_id, expected_head, space.head)
            if parent_id is not None and parent_id in space.records:
                parent_versions = space.records[parent_id].versions
            versions = {k: v for k, v in parent_versions.items() if k in checkpoint.values}
            for channel in checkpoint.values:
                if channel in blobs:
                    space.blobs[(channel, checkpoint.id)] = blobs[channel]
                    versions[channel] = checkpoint.id
                elif channel not in versions:  # unchanged but unknown to the parent
                    space.blobs[(channel, checkpoint.id)] = serde.dumps(
                        checkpoint.values[channel]
                    )
                    versions[channel] = checkpoint.id
            space.records[checkpoint.id] = _Stored(
                checkpoint.id, parent_id, checkpoint.step, checkpoint.ts, versions, rest, meta
            )
            space.order.append(checkpoint.id)
            space.head = checkpoint.id
        return make_config(thread_id, ns, checkpoint.id)

    def put_writes(self, config: dict[str, Any], writes: Sequence[PendingWrite]) -> None:
        thread_id, ns, checkpoint_id = thread_of(config)
        blob = serde.dumps(list(writes))
        with self._lock:
            space = self._threads.get(thread_id, {}).get(ns)
            if space is None or checkpoint_id not in space.records:
                raise KeyError(f"no checkpoint {checkpoint_id!r} in thread {thread_id!r}")
            space.records[checkpoint_id].writes = blob

    def delete_thread(self, thread_id: str) -> None:
        with self._lock:
            self._threads.pop(str(thread_id), None)

    # -- reading -----------------------------------------------------------------------

    def head_id(self, thread_id: str, ns: str = "") -> str | None:
        space = self._threads.get(str(thread_id), {}).get(ns)
        return space.head if space else None

    def _tuple(
        self, thread_id: str, ns: str, space: _Namespace, record: _Stored
    ) -> CheckpointTuple:
        values = {ch: serde.loads(space.blobs[(ch, ver)]) for ch, ver in record.versions.items()}
        next_tasks, barriers, ran, updated = serde.loads(record.rest)
        checkpoint = Checkpoint(
            id=record.id, step=record.step, ts=record.ts, values=values,
            next_tasks=list(next_tasks), barriers=barriers, ran=tuple(ran), updated=tuple(updated),
        )
        parent = make_config(thread_id, ns, record.parent_id) if record.parent_id else None
        writes = [tuple(w) for w in serde.loads(record.writes)] if record.writes else []
        return CheckpointTuple(
            make_config(thread_id, ns, record.id), checkpoint, serde.loads(record.metadata),
            parent, writes,  # type: ignore[arg-type]
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
                    if config is not None and checkpoint_id and cid != checkpoint_id:
                        continue
                    item = self._tuple(thread_id, ns, space, space.records[cid])
                    if filter and any(item.metadata.get(k) != v for k, v in filter.items()):
                        continue
                    selected.append(item)
                    if limit is not None and len(selected) >= limit:
                        break
        yield from selected


InMemorySaver = MemorySaver
