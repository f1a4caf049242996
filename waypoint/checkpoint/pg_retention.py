"""PostgresSaver's retention: deleting, pruning, copying and sweeping threads.

Each is one plan in one transaction that locks the thread rows first (in a fixed order),
then changes them, so retention never races a put into a half-done state.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from psycopg.errors import UniqueViolation

from .base import WAITING
from .pg_driver import _Last, _Plan, _Stmt
from .pg_reading import _build_tuples
from .pg_sql import _CHAINS, _PRE_PRUNE, _SEL_REBASE
from .records import encode


class PostgresRetention:
    """Mixed into PostgresSaver."""


    def _lock_thread(self, args: dict[str, Any]) -> _Stmt:
        """Lock a thread's rows in a fixed order: the first step of every retention write."""
        return _Stmt(self._sql("SELECT ns FROM {threads} WHERE thread_id = %(t)s "
                               "ORDER BY ns FOR UPDATE"), args)

    def _delete_plan(self, thread_ids: Sequence[str]) -> _Plan:
        args = {"ts": sorted(str(t) for t in thread_ids)}
        yield _Last([
            _Stmt(self._sql("SELECT ns FROM {threads} WHERE thread_id = ANY(%(ts)s) "
                            "ORDER BY thread_id, ns FOR UPDATE"), args),
            _Stmt(self._sql("DELETE FROM {threads} WHERE thread_id = ANY(%(ts)s)"), args),
            _Stmt(self._sql("DELETE FROM {checkpoints} WHERE thread_id = ANY(%(ts)s)"), args),
            *self._record_deletes("thread_id = ANY(%(ts)s)", args),
        ])

    def delete_thread(self, thread_id: str) -> None:
        self._run(self._delete_plan([thread_id]), tx=True)

    def delete_threads(self, thread_ids: Sequence[str]) -> None:
        if thread_ids:
            self._run(self._delete_plan(thread_ids), tx=True)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._arun(self._delete_plan([thread_id]), tx=True)

    def _prune_plan(self, thread_id: str, keep_last: int) -> _Plan:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        args: dict[str, Any] = {"t": str(thread_id), "keep": keep_last}
        _, doomed, rows = yield [
            self._lock_thread(args),
            _Stmt(self._sql("SELECT count(*) FROM (SELECT row_number() OVER (PARTITION BY ns "
                            "ORDER BY seq DESC) AS rn FROM {checkpoints} WHERE thread_id = %(t)s"
                            ") r WHERE rn > %(keep)s"), args),
            _Stmt(self._sql(_CHAINS.format(pre=_PRE_PRUNE, sel=_SEL_REBASE,
                                           checkpoints="{checkpoints}")), args),
        ]
        removed = doomed[0][0]
        if not removed:
            return 0
        rebased = _build_tuples(rows, self.cipher)  # decoded through ancestors that are about to go
        args["ns_list"] = [t.config["configurable"]["checkpoint_ns"] for t in rebased]
        args["ids"] = [t.checkpoint.id for t in rebased]
        args["bodies"] = [encode(t.checkpoint, None, cipher=self.cipher)[2] for t in rebased]
        yield _Last([
            _Stmt(self._sql(
                "UPDATE {checkpoints} c SET kind = 0, depth = 0, parent_id = NULL, body = u.body "
                "FROM unnest(%(ns_list)s::text[], %(ids)s::text[], %(bodies)s::bytea[]) "
                "AS u(ns, id, body) WHERE c.thread_id = %(t)s AND c.ns = u.ns AND c.id = u.id"),
                args),
            _Stmt(self._sql(
                "DELETE FROM {checkpoints} c USING (SELECT ns, id, row_number() OVER "
                "(PARTITION BY ns ORDER BY seq DESC) AS rn FROM {checkpoints} "
                "WHERE thread_id = %(t)s) r WHERE c.thread_id = %(t)s AND c.ns = r.ns "
                "AND c.id = r.id AND r.rn > %(keep)s"), args),
        ])
        return removed

    def prune(self, thread_id: str, keep_last: int = 1) -> int:
        """Keep each namespace's newest `keep_last` checkpoints; returns how many went."""
        return self._run(self._prune_plan(thread_id, keep_last), tx=True)

    async def aprune(self, thread_id: str, keep_last: int = 1) -> int:
        return await self._arun(self._prune_plan(thread_id, keep_last), tx=True)

    def _copy_plan(self, source_thread_id: str, target_thread_id: str) -> _Plan:
        args = {"src": str(source_thread_id), "dst": str(target_thread_id), "now": time.time()}
        # FOR SHARE holds the source still (puts wait) so history and head copy consistently.
        source, target = yield [
            _Stmt(self._sql("SELECT ns FROM {threads} WHERE thread_id = %(src)s ORDER BY ns "
                            "FOR SHARE"), args),
            _Stmt(self._sql("SELECT 1 FROM {threads} WHERE thread_id = %(dst)s LIMIT 1"), args),
        ]
        if not source:
            raise KeyError(f"thread {source_thread_id!r} does not exist")
        if target:
            raise ValueError(f"thread {target_thread_id!r} already exists")
        yield _Last([
            _Stmt(self._sql("INSERT INTO {threads} (thread_id, ns, head, touched_at, state) "
                            "SELECT %(dst)s, ns, head, %(now)s, state FROM {threads} "
                            "WHERE thread_id = %(src)s ORDER BY seq"), args),
            _Stmt(self._sql("INSERT INTO {checkpoints} (thread_id, ns, id, parent_id, step, ts, "
                            "kind, depth, body, metadata, writes) SELECT %(dst)s, ns, id, "
                            "parent_id, step, ts, kind, depth, body, metadata, writes "
                            "FROM {checkpoints} WHERE thread_id = %(src)s ORDER BY seq"), args),
        ])

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Fork a whole thread (every namespace, history and head) to a new thread id.
        Its effects, approvals and timers are not copied: they belong to the original run."""
        try:
            self._run(self._copy_plan(source_thread_id, target_thread_id), tx=True)
        except UniqueViolation:  # the target was created while we copied
            raise ValueError(f"thread {target_thread_id!r} already exists") from None

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        try:
            await self._arun(self._copy_plan(source_thread_id, target_thread_id), tx=True)
        except UniqueViolation:
            raise ValueError(f"thread {target_thread_id!r} already exists") from None

    def _sweep_plan(self, ttl_seconds: float, now: float | None) -> _Plan:
        cutoff = (time.time() if now is None else now) - ttl_seconds
        args: dict[str, Any] = {"cutoff": cutoff, "waiting": WAITING}
        # Lock the candidates' rows, then re-check them: a put may have touched one meanwhile.
        (rows,) = yield [_Stmt(self._sql(
            "SELECT thread_id, touched_at, seq, ns = '' AND state = %(waiting)s FROM {threads} "
            "WHERE thread_id IN (SELECT o.thread_id FROM {threads} o "
            "WHERE o.touched_at < %(cutoff)s AND NOT EXISTS (SELECT 1 FROM {threads} f "
            "WHERE f.thread_id = o.thread_id AND (f.touched_at >= %(cutoff)s "
            "OR (f.ns = '' AND f.state = %(waiting)s))) "
            # Threads paused (root head WAITING) or waiting for an approval or a timer are
            # waiting, not idle: kept.
            "AND o.thread_id NOT IN (SELECT thread_id FROM {approvals} WHERE status = 'pending') "
            "AND o.thread_id NOT IN (SELECT thread_id FROM {timers} "
            "WHERE status IN ('pending', 'claimed'))) ORDER BY thread_id, ns FOR UPDATE"), args)]
        fresh = {thread_id for thread_id, touched, _, paused in rows
                 if touched >= cutoff or paused}
        first: dict[str, int] = {}
        for thread_id, _, seq, _ in rows:
            if thread_id not in fresh:
                first[thread_id] = min(seq, first.get(thread_id, seq))
        expired = sorted(first, key=first.__getitem__)  # creation order, as MemorySaver
        if expired:
            args["ids"] = expired
            yield _Last([
                _Stmt(self._sql("DELETE FROM {threads} WHERE thread_id = ANY(%(ids)s)"), args),
                _Stmt(self._sql("DELETE FROM {checkpoints} WHERE thread_id = ANY(%(ids)s)"),
                      args),
                *self._record_deletes("thread_id = ANY(%(ids)s)", args),
            ])
        return expired

    def sweep(self, ttl_seconds: float, *, now: float | None = None) -> list[str]:
        """Delete threads untouched for `ttl_seconds` (by this client's clock); their ids."""
        return self._run(self._sweep_plan(ttl_seconds, now), tx=True)

    async def asweep(self, ttl_seconds: float, *, now: float | None = None) -> list[str]:
        return await self._arun(self._sweep_plan(ttl_seconds, now), tx=True)
