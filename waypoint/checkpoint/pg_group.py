"""Group commit for PostgresSaver: concurrent puts on the head share one transaction.

A put on the head either leads (if fewer than the saver's `_leaders_allowed` batches
are in flight) or queues. A leader commits its own put plus what is queued right now (no
waiting for company) in one transaction, gives each put its outcome, hands the lead to
the first put queued meanwhile, and returns. A put left without an outcome (its batch
failed) is then committed alone by its own caller, so a bad put fails only itself. The
async API runs the same protocol per event loop, with leader tasks. Because a stale head
makes the claim statement insert nothing rather than fail, a conflict reaches only its
own caller while its neighbours commit.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from dataclasses import dataclass, replace
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool

from ..errors import CheckpointConflict
from .base import Checkpoint, make_config
from .pg_driver import _adrive, _drive, _Last, _Plan, _Stmt

_GROUP_MAX = 64  # puts in one shared transaction: bounds its locks and its round trip


@dataclass(frozen=True, slots=True)
class GroupCommitStats:
    """What the group committer did, to check that commits are shared (tests, tuning)."""

    transactions: int = 0  # transactions it ran for puts on the head (a lone put: one)
    puts: int = 0  # puts those transactions carried
    largest: int = 0  # most puts in one transaction
    fallbacks: int = 0  # shared transactions that failed, then retried put by put


class _Pending:
    """One encoded put on the head, waiting for a shared transaction, and its outcome.

    `done`: committed; `error`: this put's own failure (a stale head); neither, once
    woken: its batch failed, so its caller commits it alone. `ambiguous`: that batch's
    fate is unknown (connection lost, leader interrupted), so a conflict naming this very
    record as the head means the batch did commit it.
    """

    __slots__ = ("ambiguous", "args", "done", "error", "future", "key", "lead", "wake")

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args
        self.key: tuple[str, str] = (args["t"], args["ns"])
        self.done = False
        self.error: BaseException | None = None
        self.ambiguous = False
        self.lead = False  # sync: woken to lead the next batch, not with an outcome
        self.wake: threading.Lock | None = None  # sync: held until woken
        self.future: asyncio.Future[None] | None = None  # async: resolved when woken


class _Group:
    """Puts queued for a shared transaction, and how many leaders are committing batches."""

    __slots__ = ("leaders", "mutex", "queue", "tasks")

    def __init__(self) -> None:
        self.mutex = threading.Lock()  # sync group only; an async group lives on one loop
        self.queue: list[_Pending] = []
        self.leaders = 0  # sync: leading callers
        self.tasks: set[asyncio.Task[None]] = set()  # async: the leader tasks

    def leader_gone(self, task: asyncio.Task[None]) -> None:
        """A leader task ended. One that ended early (cancelled as its loop closes) may
        leave puts queued; if no leader is left, their callers commit them alone."""
        self.tasks.discard(task)
        if not self.tasks:
            leftover, self.queue = self.queue, []
            for entry in leftover:
                _wake(entry)

    def take(self, first: _Pending | None = None) -> list[_Pending]:
        """The next batch, in queue order after `first`: at most _GROUP_MAX puts and one per
        (thread, ns), since two puts on one head cannot both be valid (the later waits)."""
        batch: list[_Pending] = [] if first is None else [first]
        keys: set[tuple[str, str]] = {first.key} if first is not None else set()
        rest: list[_Pending] = []
        for entry in self.queue:
            if len(batch) < _GROUP_MAX and entry.key not in keys:
                keys.add(entry.key)
                batch.append(entry)
            else:
                rest.append(entry)
        self.queue = rest
        return batch

    def hand_over(self) -> _Pending | None:
        """A sync leader is done: the first queued put leads next (the caller wakes it)."""
        if not self.queue:
            self.leaders -= 1
            return None
        following = self.queue.pop(0)
        following.lead = True
        return following


def _by_key(entry: _Pending) -> tuple[str, str]:
    return entry.key


def _wake(entry: _Pending) -> None:
    if entry.wake is not None:
        entry.wake.release()
    elif entry.future is not None and not entry.future.done():
        entry.future.set_result(None)


class _LoopPool:
    """The async pool of one event loop, the task that closes it when the loop ends, and
    the loop's group committer (its tasks share transactions; the futures are its own)."""

    __slots__ = ("group", "guard", "opened", "pool")

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool
        self.opened = False
        self.guard: asyncio.Task[None] | None = None
        self.group = _Group()

    async def close(self) -> None:
        if self.guard is not None and not self.guard.done():
            self.guard.cancel()
            await asyncio.wait([self.guard])
        await self.pool.close()


class PostgresGroupCommit:
    """Mixed into PostgresSaver: the group committer behind `put`/`aput` on the head."""

    @property
    def stats(self) -> GroupCommitStats:
        """Counters of the group committer (a snapshot)."""
        with self._stats_lock:
            return self._stats

    def _count(self, puts: int) -> None:
        with self._stats_lock:
            s = self._stats
            self._stats = replace(s, transactions=s.transactions + 1, puts=s.puts + puts,
                                  largest=max(s.largest, puts))

    def _count_fallback(self) -> None:
        with self._stats_lock:
            self._stats = replace(self._stats, fallbacks=self._stats.fallbacks + 1)

    def _prepare(self, config: dict[str, Any], checkpoint: Checkpoint,
                 metadata: dict[str, Any], parent_id: str | None,
                 expected_head: str | None) -> _Pending:
        """A put on the head, encoded (reading its parent's depth if not remembered)."""
        if not self._ready:
            self.setup()
        args = self._put_args(config, checkpoint, metadata, parent_id, expected_head)
        known, parent_depth = self._hinted_depth(args)
        if not known:
            parent_depth = self._run(self._depth_plan(args))
        self._encode_into(args, checkpoint, parent_depth)
        return _Pending(args)

    async def _aprepare(self, config: dict[str, Any], checkpoint: Checkpoint,
                        metadata: dict[str, Any], parent_id: str | None,
                        expected_head: str | None) -> _Pending:
        if not self._ready:
            await self.asetup()
        args = self._put_args(config, checkpoint, metadata, parent_id, expected_head)
        known, parent_depth = self._hinted_depth(args)
        if not known:
            parent_depth = await self._arun(self._depth_plan(args))
        self._encode_into(args, checkpoint, parent_depth)
        return _Pending(args)

    def _group_plan(self, batch: list[_Pending]) -> _Plan:
        results = yield _Last([_Stmt(self._claim_sql(e.args), e.args) for e in batch])
        return [bool(rows) for rows in results]

    def _heads_plan(self, entries: list[_Pending]) -> _Plan:
        """(head, whether the writer holds its lease) of each entry's thread."""
        rows, *holds = yield _Last([_Stmt(self._sql(
            "SELECT h.head FROM unnest(%(t)s::text[], %(ns)s::text[]) WITH ORDINALITY "
            "AS u(thread_id, ns, ord) LEFT JOIN {threads} h ON h.thread_id = u.thread_id "
            "AND h.ns = u.ns ORDER BY u.ord"),
            {"t": [e.args["t"] for e in entries], "ns": [e.args["ns"] for e in entries]}),
            *(_Stmt(f"SELECT {e.args['fence'].condition(lock=False)}", e.args)
              for e in entries if "fence" in e.args)])
        held = iter(holds)
        return [(row[0], bool(next(held)[0][0]) if "fence" in e.args else True)
                for row, e in zip(rows, entries, strict=True)]

    def _settle(self, batch: list[_Pending], moved: list[bool]) -> list[_Pending]:
        """Mark the committed puts done; return the ones whose head was stale."""
        lost = []
        for entry, ok in zip(batch, moved, strict=True):
            if ok:
                entry.done = True
                args = entry.args
                self._remember_depth(args["t"], args["ns"], args["id"], args["depth"])
            else:
                lost.append(entry)
        return lost

    def _conflicts(self, lost: list[_Pending], heads: list[tuple[str | None, bool]]) -> None:
        for entry, (head, holds) in zip(lost, heads, strict=True):
            entry.error = self._refusal(entry.args, head, holds)

    def _alone_outcome(self, entry: _Pending, exc: Exception | None) -> None:
        """Record how committing `entry` alone ended (`exc`: None if it committed)."""
        args = entry.args
        if (exc is None or (isinstance(exc, CheckpointConflict) and entry.ambiguous
                            and exc.actual == args["id"])):
            # A conflict naming this very record as the head: the batch whose fate was
            # unknown did commit it (record ids are unique).
            entry.done = True
            self._remember_depth(args["t"], args["ns"], args["id"], args["depth"])
        else:
            entry.error = exc

    def _commit_alone(self, entry: _Pending) -> None:
        self._count(1)
        try:
            self._run(self._claim_plan(entry.args))
        except Exception as exc:
            self._alone_outcome(entry, exc)
        else:
            self._alone_outcome(entry, None)

    def _commit_group(self, batch: list[_Pending]) -> None:
        """Commit `batch` in one transaction and one round trip; give each put its outcome.

        Statements go in (thread, ns) order, so concurrent batches lock thread rows in one
        order and cannot deadlock each other. If the transaction fails, its puts are left
        without an outcome and their callers commit them alone. (A connection lost around
        the COMMIT leaves them `ambiguous`: committed or not, nobody can tell.)
        """
        if len(batch) == 1:
            self._commit_alone(batch[0])
            return
        batch.sort(key=_by_key)
        self._count(len(batch))
        conn: Connection[Any] | None = None
        settled = False
        try:
            with self._sync_pool().connection() as conn:
                moved = _drive(conn, self._group_plan(batch), True)
                if not conn.autocommit:
                    conn.commit()  # a pool passed in: commit before anyone is told
                lost = self._settle(batch, moved)
                settled = True
                if lost:
                    self._conflicts(lost, _drive(conn, self._heads_plan(lost), False))
        except Exception:
            if not settled:
                self._count_fallback()
                for entry in batch:
                    entry.ambiguous = conn is not None and conn.closed

    def _group_put(self, entry: _Pending) -> dict[str, Any]:
        """Commit `entry` through the group committer; its caller's result."""
        group = self._group
        entry.wake = threading.Lock()
        entry.wake.acquire()
        with group.mutex:
            lead = group.leaders < self._leaders_allowed
            if lead:
                group.leaders += 1
            else:
                group.queue.append(entry)
        if not lead:
            try:
                entry.wake.acquire()  # released with an outcome, or to hand over the lead
            except BaseException:  # interrupted while waiting (KeyboardInterrupt)
                with group.mutex:
                    if entry in group.queue:  # not taken: withdrawn, nothing written
                        group.queue.remove(entry)
                    following = group.hand_over() if entry.lead else None
                if following is not None:
                    _wake(following)
                raise
            lead = entry.lead
        if lead:
            self._lead(entry)
        if not entry.done and entry.error is None:
            self._commit_alone(entry)  # its batch failed (or was interrupted)
        if entry.error is not None:
            error, entry.error = entry.error, None
            raise error
        return make_config(entry.args["t"], entry.args["ns"], entry.args["id"])

    def _lead(self, me: _Pending) -> None:
        group = self._group
        batch: list[_Pending] = [me]
        finished = False
        try:
            if self._before_batch is not None:
                self._before_batch()
            with group.mutex:
                batch = group.take(me)
            self._commit_group(batch)
            finished = True
        finally:
            with group.mutex:
                following = group.hand_over()
            for entry in batch:
                if not finished:  # interrupted in flight: the batch may have committed
                    entry.ambiguous = True
                if entry is not me:
                    _wake(entry)
            if following is not None:
                _wake(following)

    async def _acommit_alone(self, entry: _Pending) -> None:
        self._count(1)
        try:
            await self._arun(self._claim_plan(entry.args))
        except Exception as exc:
            self._alone_outcome(entry, exc)
        else:
            self._alone_outcome(entry, None)

    async def _acommit_group(self, batch: list[_Pending]) -> None:
        """The async twin of `_commit_group`."""
        if len(batch) == 1:
            await self._acommit_alone(batch[0])
            return
        batch.sort(key=_by_key)
        self._count(len(batch))
        conn: AsyncConnection[Any] | None = None
        settled = False
        try:
            async with (await self._async_pool()).connection() as conn:
                moved = await _adrive(conn, self._group_plan(batch), True)
                if not conn.autocommit:
                    await conn.commit()
                lost = self._settle(batch, moved)
                settled = True
                if lost:
                    self._conflicts(lost, await _adrive(conn, self._heads_plan(lost), False))
        except Exception:
            if not settled:
                self._count_fallback()
                for entry in batch:
                    entry.ambiguous = conn is not None and conn.closed

    async def _agroup_put(self, entry: _Pending) -> dict[str, Any]:
        """The async twin of `_group_put`: this loop's leader tasks commit the batches."""
        loop = asyncio.get_running_loop()
        group = (await self._async_entry()).group
        entry.future = loop.create_future()
        group.queue.append(entry)
        if len(group.tasks) < self._leaders_allowed:
            task = loop.create_task(self._alead(group), name="waypoint-group-commit")
            group.tasks.add(task)
            task.add_done_callback(group.leader_gone)
        try:
            await entry.future
        except asyncio.CancelledError:
            if entry in group.queue:  # not sent yet: withdrawn, nothing written
                group.queue.remove(entry)
            raise
        if not entry.done and entry.error is None:
            await self._acommit_alone(entry)
        if entry.error is not None:
            error, entry.error = entry.error, None
            raise error
        return make_config(entry.args["t"], entry.args["ns"], entry.args["id"])

    async def _alead(self, group: _Group) -> None:
        """A leader task of one event loop: commits batches until the queue is empty."""
        batch: list[_Pending] = []
        try:
            while group.queue:
                if self._before_batch is not None:
                    waited = self._before_batch()
                    if inspect.isawaitable(waited):
                        await waited
                batch = group.take()
                if batch:
                    await self._acommit_group(batch)
                for entry in batch:
                    _wake(entry)
                batch = []
            # Leave the set with no await since the queue was seen empty: whoever queues
            # a put next sees a free place and starts a leader.
            group.tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
        finally:
            for entry in batch:  # interrupted in flight: the batch may have committed
                entry.ambiguous = True
                _wake(entry)
