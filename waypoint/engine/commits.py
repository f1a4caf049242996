"""Committing a run's steps: checkpoints and pending writes as queued store operations,
written as the run's durability mode says.

A mixin of RunLoop, kept apart from the step logic: the loop decides *what* a step
commits (`_commit`, `_keep_pending`, `close_run`); this module also holds *how* the queued
operations reach the store (sync or async, now or in the background, or at exit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from ..checkpoint.base import Checkpoint, make_config
from ..checkpoint.ids import new_checkpoint_id
from ..checkpoint.records import channel_changes
from ..constants import ERROR, INTERRUPT, RESULT, RESUME
from . import observers
from .budget import BUDGET_TASK, SPENT
from .task import Task
from .task_errors import error_record


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Commits:
    """Mixed into RunLoop: a step's store operations, queued and then written."""

    # Set by RunLoop.__init__ (declared here for readers of this module).
    ops: list[tuple[Any, ...]]
    usage: list[Any]
    durability: str
    saver: Any

    def _commit(self, *, source: str, updated: Iterable[str], ran: tuple[str, ...]) -> None:
        checkpoint_id = new_checkpoint_id()
        deferred = self.durability != "sync"  # written later: freeze what can still change
        checkpoint = Checkpoint(
            id=checkpoint_id, step=self.step, ts=_now(),
            values=dict(self.values) if deferred else self.values,
            next_tasks=self.next_tasks,
            barriers={k: list(v) for k, v in self.barriers.items()} if deferred
            else self.barriers, ran=ran,
            updated=tuple(updated),
            changes=channel_changes(self._before, self.values, updated) if updated else {},
        )
        # As LangGraph does, the run's config metadata (run id, assistant...) is kept on
        # the checkpoints it writes, so history says which run made each step.
        extra = self.config.get("metadata") if not self.ns else None
        metadata = {**extra, "source": source, "step": self.step, "parents": {}} if extra \
            else {"source": source, "step": self.step, "parents": {}}
        if self.guard is not None:
            self.guard.tick()
            metadata["budget"] = self.guard.snapshot()
        if self._notes:
            metadata.update(self._notes)
            self._notes = {}
        if self.scope is not None:
            metadata.update(observers.checkpoint_notes(self.scope))
            observers.event(self.scope, "checkpoint", checkpoint_id=checkpoint_id,
                            step=self.step, source=source)
        self.ops.append(("put", checkpoint, metadata, self.checkpoint_id, self.head))
        self.parent_id = self.checkpoint_id
        self.checkpoint_id = checkpoint_id
        self.head = checkpoint_id
        self.pending = {}
        self.resume_by_task = {}
        self.last_checkpoint = checkpoint
        self.last_metadata = metadata
        if self.sink is not None:
            self.sink.checkpoint(self, checkpoint, metadata)

    def _keep_pending(self, tasks: list[Task]) -> None:
        """Record what a stopped step achieved, so a resume does not redo it."""
        writes: list[tuple[str, str, Any]] = []
        pending: dict[str, dict[str, Any]] = {}
        for task in tasks:
            record: dict[str, Any] = {}
            if task.done:
                record[RESULT] = [[list(w) for w in task.writes], list(task.gotos)]
                if task.handled is not None:
                    record[RESULT].append(task.handled)
            if task.resume:
                record[RESUME] = list(task.resume)
            if task.interrupts:
                record[INTERRUPT] = list(task.interrupts)
            if task.error is not None:
                record[ERROR] = error_record(task.error)
                if task.retries:
                    record[ERROR]["retries"] = list(task.retries)
            if record:
                pending[task.id] = record
                writes.extend((task.id, channel, value) for channel, value in record.items())
        if self.guard is not None:  # what this unfinished step spent, for the resume
            self.guard.tick()
            pending[BUDGET_TASK] = {SPENT: self.guard.snapshot()}
            writes.append((BUDGET_TASK, SPENT, pending[BUDGET_TASK][SPENT]))
        self.pending = pending
        self.resume_by_task = {}
        if self.saver is not None and self.checkpoint_id is not None:
            self.ops.append(("put_writes", writes, self.checkpoint_id))

    def close_run(self, summary: dict[str, Any], source: str = "compensation") -> None:
        """End the run for good: a final checkpoint with nothing left to run."""
        self.next_tasks = []
        self.barriers = {}
        self.status = "done"
        if self.saver is None:
            return
        self.step += 1
        self._notes = {"compensation": summary}
        self._updated = ()
        self._commit(source=source, updated=(), ran=())
        if self.durability == "sync":
            self.flush()
        else:
            self.persist(final=True)

    def load_config_at_head(self) -> dict[str, Any]:
        return self.config_at(self.head)

    # -- store operations ----------------------------------------------------------------

    def _queue_usage(self) -> None:
        """First in line: spend is recorded even when the checkpoint after it is refused
        (a fenced-out worker, a conflict)."""
        records, self.usage = self.usage, []
        self.ops.insert(0, ("usage", records))

    def persist(self, final: bool = False) -> None:
        """Write queued operations as the durability mode says (sync runner)."""
        if self.usage:
            self._queue_usage()
        if not self.ops and not final:
            return
        if self.durability == "sync":
            self.flush()
        elif self.durability == "async":
            self._wait_background()
            if self.ops:
                ops, self.ops = list(self.ops), []
                self._background = self._writer().submit(self._write_ops, ops)
            if final:
                self._wait_background()
        elif final:
            self.flush()

    async def apersist(self, final: bool = False) -> None:
        """Write queued operations as the durability mode says (async runner)."""
        if self.usage:
            self._queue_usage()
        if not self.ops and not final:
            return
        if self.durability == "sync":
            await self.aflush()
        elif self.durability == "async":
            if self._abackground is not None:
                await self._abackground
                self._abackground = None
            if self.ops:
                ops, self.ops = list(self.ops), []
                self._abackground = asyncio.ensure_future(self._awrite_ops(ops))
            if final and self._abackground is not None:
                await self._abackground
                self._abackground = None
        elif final:
            await self.aflush()

    def _writer(self) -> ThreadPoolExecutor:
        if self._writer_pool is None:
            self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="waypoint-commit")
        return self._writer_pool

    def _wait_background(self) -> None:
        if self._background is not None:
            future, self._background = self._background, None
            future.result()

    def flush(self) -> None:
        if self.usage:
            self._queue_usage()
        ops, self.ops = list(self.ops), []
        self._write_ops(ops)

    async def aflush(self) -> None:
        if self.usage:
            self._queue_usage()
        ops, self.ops = list(self.ops), []
        await self._awrite_ops(ops)

    def _write_ops(self, ops: list[tuple[Any, ...]]) -> None:
        saver = self.saver
        for op in ops:
            if op[0] == "put":
                _, checkpoint, metadata, parent_id, expected = op
                saver.put(self._base_config, checkpoint, metadata, parent_id=parent_id,
                          expected_head=expected)
            elif op[0] == "usage":
                saver.put_usage(op[1])
            else:
                saver.put_writes(self.config_at(op[2]), op[1])

    async def _awrite_ops(self, ops: list[tuple[Any, ...]]) -> None:
        saver = self.saver
        for op in ops:
            if op[0] == "put":
                _, checkpoint, metadata, parent_id, expected = op
                await saver.aput(self._base_config, checkpoint, metadata, parent_id=parent_id,
                                 expected_head=expected)
            elif op[0] == "usage":
                await saver.aput_usage(op[1])
            else:
                await saver.aput_writes(self.config_at(op[2]), op[1])

    def config_at(self, checkpoint_id: str | None) -> dict[str, Any]:
        return make_config(str(self.thread_id), self.ns, checkpoint_id)
