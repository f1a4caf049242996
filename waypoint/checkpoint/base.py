"""The store protocol every checkpointer implements (memory, SQLite, PostgreSQL).

One super-step is one call: `put` commits a new checkpoint that names its parent and the
head it expects (a stale writer gets `CheckpointConflict` and nothing is written), and
`put_writes` records, in one transaction, the pending writes of a step that did not
finish (finished tasks' writes, interrupts, resume values, errors) on its checkpoint.

Retention: `sweep(ttl)` deletes threads not written for `ttl` seconds, but never one that
waits for a person or a timer. Each store keeps, beside a namespace's head, what that head
means (`IDLE`, `WAITING`, `FAILED`), set by the `put` and `put_writes` that already write
the head row, so a sweep decodes nothing. Only the root namespace ("") decides:

- `IDLE`: the head has no next tasks (the run finished): sweepable;
- `WAITING`: the head has next tasks: paused at `interrupt()` or at an `interrupt_before` /
  `interrupt_after` breakpoint, paused by a budget, or stopped mid-step by a crash (it can
  be resumed): never swept;
- `FAILED`: the head's pending writes hold an error and no interrupt (the last run failed):
  sweepable, like an idle thread.

A thread with a pending approval or a pending or claimed timer is kept whatever its state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..constants import ERROR, INTERRUPT
from ..errors import SerializationError
from .durable_records import RecordStore

# A task to run from a checkpoint: (node,) triggered by edges, or (node, arg) from a Send.
TaskRef = tuple[Any, ...]
PendingWrite = tuple[str, str, Any]  # (task_id, channel, value)

# What a namespace's head means for retention (see the module docstring); stored as a small
# integer beside the head, so these values are part of the SQLite and PostgreSQL schemas.
IDLE, WAITING, FAILED = 0, 1, 2


def state_of_head(next_tasks: Sequence[Any]) -> int:
    """The state of a head just put (it has no pending writes yet)."""
    return WAITING if next_tasks else IDLE


def state_of_writes(writes: Sequence[PendingWrite]) -> int:
    """The state of a head that has next tasks, given its pending writes: an error with no
    interrupt is a failed run; anything else (an interrupt, even beside an error; resume
    values; nothing) still waits to be resumed."""
    channels = {write[1] for write in writes}
    return FAILED if ERROR in channels and INTERRUPT not in channels else WAITING


def state_of_stored(body: bytes | None, writes: bytes | None, cipher: Any = None) -> int:
    """The state of a stored head record (its own body and writes, as the SQL stores keep
    them), for a migration that adds the state to existing threads. The record's own body
    names its next tasks (deltas too), so no chain is replayed. A record this process
    cannot read (encrypted, and no key here) counts as WAITING: never guess a thread idle."""
    from .records import unseal  # records imports this module

    if body is None:  # no head record: nothing to resume
        return IDLE
    try:
        if not unseal(body, cipher)[1]:
            return IDLE
        return state_of_writes(unseal(writes, cipher)) if writes else WAITING
    except SerializationError:
        return WAITING


@dataclass(slots=True)
class Checkpoint:
    """A thread's state after a super-step, and what runs next."""

    id: str
    step: int
    ts: str
    values: dict[str, Any]
    next_tasks: list[TaskRef] = field(default_factory=list)
    barriers: dict[str, list[str]] = field(default_factory=dict)
    ran: tuple[str, ...] = ()  # nodes whose writes produced this checkpoint
    updated: tuple[str, ...] = ()  # channels whose value changed in this step
    # How each updated channel changed ("=", value) or ("+", appended items); None: unknown.
    changes: dict[str, tuple[str, Any]] | None = None


class CheckpointTuple(NamedTuple):
    config: dict[str, Any]
    checkpoint: Checkpoint
    metadata: dict[str, Any]
    parent_config: dict[str, Any] | None
    pending_writes: list[PendingWrite]


def thread_of(config: dict[str, Any]) -> tuple[str, str, str | None]:
    """(thread_id, checkpoint_ns, checkpoint_id) from a run config; names what is missing."""
    configurable = (config or {}).get("configurable") or {}
    thread_id = configurable.get("thread_id")
    if thread_id is None:
        raise ValueError(
            "a checkpointer needs a thread: pass config={'configurable': {'thread_id': ...}}"
        )
    return str(thread_id), configurable.get("checkpoint_ns", ""), configurable.get(
        "checkpoint_id"
    )


def make_config(thread_id: str, ns: str, checkpoint_id: str | None) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                             "checkpoint_id": checkpoint_id}}


class BaseCheckpointSaver(RecordStore):
    """Sync methods to implement; async ones default to them (override for real I/O).

    Effects, approvals and timers (RecordStore) live beside the checkpoints."""

    def get_tuple(self, config: dict[str, Any]) -> CheckpointTuple | None:
        raise NotImplementedError

    def list(
        self,
        config: dict[str, Any] | None,
        *,
        filter: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        raise NotImplementedError

    def put(
        self,
        config: dict[str, Any],
        checkpoint: Checkpoint,
        metadata: dict[str, Any],
        *,
        parent_id: str | None,
        expected_head: str | None,
    ) -> dict[str, Any]:
        raise NotImplementedError

    def put_writes(self, config: dict[str, Any], writes: Sequence[PendingWrite]) -> None:
        """Replace the pending writes of the checkpoint named in `config`."""
        raise NotImplementedError

    def head_id(self, thread_id: str, ns: str = "") -> str | None:
        raise NotImplementedError

    def delete_thread(self, thread_id: str) -> None:
        """Remove a thread: every namespace, checkpoint and pending write."""
        raise NotImplementedError

    def delete_threads(self, thread_ids: Sequence[str]) -> None:
        """Remove several threads at once (one transaction where the store has them)."""
        for thread_id in thread_ids:
            self.delete_thread(thread_id)

    def prune(self, thread_id: str, keep_last: int = 1) -> int:
        """Keep each namespace's newest `keep_last` checkpoints; return how many were removed.

        Kept checkpoints whose ancestors are removed are rewritten as snapshots, so every
        kept checkpoint still reads back exactly.
        """
        raise NotImplementedError

    def rewind(self, thread_id: str, checkpoint_id: str) -> int:
        """Undo what the thread recorded after root checkpoint `checkpoint_id`: every later
        checkpoint (of any namespace) goes and `checkpoint_id` is the head again; returns
        how many checkpoints went. For cancelling a run with rollback: checkpoint ids sort
        by time, and a thread has one writer, so the later ones are that run's. Effects,
        approvals and timers stay (an effect that ran is not undone by forgetting it).
        KeyError if the thread has no such root checkpoint."""
        raise NotImplementedError

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Fork a whole thread (history, pending writes, head) under a new thread id."""
        raise NotImplementedError

    def sweep(self, ttl_seconds: float, *, now: float | None = None) -> list[str]:
        """Delete threads not written for `ttl_seconds`; return their ids.

        A thread that waits (its root head has next tasks and its last run did not fail, or
        it has a pending approval or timer) is kept however old: paused is not idle."""
        raise NotImplementedError

    def setup(self) -> None:
        """Create or migrate the store's schema; safe to call again (no-op in memory)."""

    async def aget_tuple(self, config: dict[str, Any]) -> CheckpointTuple | None:
        return self.get_tuple(config)

    async def alist(
        self,
        config: dict[str, Any] | None,
        *,
        filter: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: dict[str, Any],
        checkpoint: Checkpoint,
        metadata: dict[str, Any],
        *,
        parent_id: str | None,
        expected_head: str | None,
    ) -> dict[str, Any]:
        return self.put(config, checkpoint, metadata, parent_id=parent_id,
                        expected_head=expected_head)

    async def aput_writes(self, config: dict[str, Any], writes: Sequence[PendingWrite]) -> None:
        self.put_writes(config, writes)

    async def ahead_id(self, thread_id: str, ns: str = "") -> str | None:
        return self.head_id(thread_id, ns)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)
