"""MemorySaver's effects, approvals and timers: rows in dicts, payloads sealed.

Rows keep the column layout of the SQL stores, payloads serialized, so a record read back is
a fresh object that later mutation of the caller's value cannot reach (as with checkpoints).
One lock (the saver's) makes each call atomic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .durable_records import (
    APPROVAL_COLUMNS,
    APPROVAL_STATUSES,
    DECIDED_STATUSES,
    EFFECT_COLUMNS,
    TIMER_COLUMNS,
    TIMER_FINAL,
    TIMER_STATUSES,
    ApprovalRecord,
    EffectRecord,
    RecordStore,
    TimerRecord,
    approval_from_row,
    approval_to_row,
    check_approval,
    check_claim,
    check_dict,
    check_filters,
    check_id,
    check_limit,
    check_outcome,
    check_status,
    check_text,
    check_timer,
    effect_from_row,
    pack,
    timer_from_row,
    timer_to_row,
)

Row = dict[str, Any]


@dataclass(slots=True)
class _Tables:
    effects: dict[str, dict[str, Row]] = field(default_factory=dict)  # thread -> key -> row
    approvals: dict[str, dict[str, Row]] = field(default_factory=dict)  # thread -> id -> row
    timers: dict[str, dict[str, Row]] = field(default_factory=dict)  # thread -> id -> row


def _values(row: Row) -> tuple[Any, ...]:
    return tuple(row.values())  # rows are built in column order


def _rows(tables: dict[str, dict[str, Row]], thread_id: str | None) -> Iterator[Row]:
    threads = [tables.get(thread_id, {})] if thread_id is not None else tables.values()
    for rows in threads:
        yield from rows.values()


class MemoryRecords(RecordStore):
    """RecordStore for MemorySaver (which provides `_lock`)."""

    _lock: threading.RLock

    def _tables(self) -> _Tables:
        tables = self.__dict__.get("_record_tables")
        if tables is None:
            with self._lock:
                tables = self.__dict__.setdefault("_record_tables", _Tables())
        return tables

    def _drop_records(self, thread_ids: Iterable[str]) -> None:
        """Forget the records of these threads (delete_thread, sweep)."""
        tables = self._tables()
        with self._lock:
            for thread_id in thread_ids:
                tables.effects.pop(thread_id, None)
                tables.approvals.pop(thread_id, None)
                tables.timers.pop(thread_id, None)

    def _waiting_threads(self) -> set[str]:
        """Threads waiting on a person or a timer: never idle, whatever their age."""
        tables = self._tables()
        with self._lock:
            waiting = {t for t, rows in tables.approvals.items()
                       if any(r["status"] == "pending" for r in rows.values())}
            waiting.update(t for t, rows in tables.timers.items()
                           if any(r["status"] in ("pending", "claimed") for r in rows.values()))
        return waiting

    # -- effects -----------------------------------------------------------------------

    def begin_effect(self, thread_id: str, key: str, name: str, *,
                     retry_started: bool = False) -> EffectRecord | None:
        check_id(thread_id, "thread_id")
        check_id(key, "key")
        check_text(name, "name")
        now = time.time()
        tables = self._tables()
        with self._lock:
            effects = tables.effects.setdefault(thread_id, {})
            row = effects.get(key)
            if row is None:
                effects[key] = dict(zip(EFFECT_COLUMNS, (
                    thread_id, key, name, "started", None, None, 1, now, None), strict=True))
                return None
            if row["status"] == "failed" or (row["status"] == "started" and retry_started):
                row.update(status="started", attempts=row["attempts"] + 1, started_at=now,
                           result=None, error=None, finished_at=None)
                return None
            return effect_from_row(_values(row), None)

    def finish_effect(self, thread_id: str, key: str, *, result: Any = None,
                      error: dict[str, Any] | None = None) -> None:
        check_id(thread_id, "thread_id")
        check_id(key, "key")
        status, error = check_outcome(result, error)
        sealed = pack(result, None, "result"), pack(error, None, "error")
        with self._lock:
            row = self._tables().effects.get(thread_id, {}).get(key)
            if row is None:
                raise KeyError(f"no effect {key!r} in thread {thread_id!r}: begin_effect first")
            row.update(status=status, result=sealed[0], error=sealed[1],
                       finished_at=time.time())

    def get_effect(self, thread_id: str, key: str) -> EffectRecord | None:
        check_id(thread_id, "thread_id")
        check_id(key, "key")
        with self._lock:
            row = self._tables().effects.get(thread_id, {}).get(key)
            return None if row is None else effect_from_row(_values(row), None)

    def list_effects(self, thread_id: str) -> list[EffectRecord]:
        check_id(thread_id, "thread_id")
        with self._lock:
            rows = [_values(r) for r in self._tables().effects.get(thread_id, {}).values()]
        return [effect_from_row(r, None) for r in rows]

    # -- approvals ---------------------------------------------------------------------

    def put_approval(self, record: ApprovalRecord) -> None:
        record = check_approval(record)
        row = dict(zip(APPROVAL_COLUMNS, approval_to_row(record, None), strict=True))
        with self._lock:
            self._tables().approvals.setdefault(record.thread_id, {})[record.id] = row

    def get_approval(self, thread_id: str, approval_id: str) -> ApprovalRecord | None:
        check_id(thread_id, "thread_id")
        check_id(approval_id, "approval_id")
        with self._lock:
            row = self._tables().approvals.get(thread_id, {}).get(approval_id)
            return None if row is None else approval_from_row(_values(row), None)

    def decide_approval(self, thread_id: str, approval_id: str, decision: dict[str, Any], *,
                        status: str = "decided") -> bool:
        check_id(thread_id, "thread_id")
        check_id(approval_id, "approval_id")
        check_dict(decision, "decision", optional=False)
        check_status(status, DECIDED_STATUSES)
        sealed = pack(decision, None, "decision")
        with self._lock:
            row = self._tables().approvals.get(thread_id, {}).get(approval_id)
            if row is None:
                raise KeyError(f"no approval {approval_id!r} in thread {thread_id!r}")
            if row["status"] != "pending":
                return False
            row.update(status=status, decision=sealed, decided_at=time.time())
            return True

    def list_approvals(self, *, thread_id: str | None = None, status: str | None = None,
                       assignee: str | None = None, graph: str | None = None,
                       limit: int | None = None) -> list[ApprovalRecord]:
        check_filters(thread_id, status, APPROVAL_STATUSES, assignee=assignee, graph=graph)
        limit = check_limit(limit)
        with self._lock:
            rows = [_values(r) for r in _rows(self._tables().approvals, thread_id)
                    if (status is None or r["status"] == status)
                    and (assignee is None or r["assignee"] == assignee)
                    and (graph is None or r["graph"] == graph)]
        rows.sort(key=lambda r: (r[13], r[0], r[1]))  # created_at, thread_id, id
        return [approval_from_row(r, None) for r in rows[:limit]]

    # -- timers ------------------------------------------------------------------------

    def put_timer(self, record: TimerRecord) -> None:
        record = check_timer(record)
        row = dict(zip(TIMER_COLUMNS, timer_to_row(record, None), strict=True))
        with self._lock:
            self._tables().timers.setdefault(record.thread_id, {})[record.id] = row

    def claim_due_timers(self, *, now: float | None = None, owner: str,
                         graph: str | None = None, limit: int | None = 100,
                         lease_seconds: float = 300.0) -> list[TimerRecord]:
        at, owner, graph, limit, stale = check_claim(now, owner, graph, limit, lease_seconds)
        with self._lock:
            due = sorted(
                (r for r in _rows(self._tables().timers, None)
                 if ((r["status"] == "pending" and r["due_at"] <= at)
                     or (r["status"] == "claimed" and r["claimed_at"] < stale))
                 and (graph is None or r["graph"] == graph)),
                key=lambda r: (r["due_at"], r["thread_id"], r["id"]))[:limit]
            for row in due:
                row.update(status="claimed", claimed_by=owner, claimed_at=at)
            rows = [_values(r) for r in due]
        return [timer_from_row(r, None) for r in rows]

    def complete_timer(self, thread_id: str, timer_id: str, *, status: str = "fired",
                       owner: str | None = None) -> bool:
        check_id(thread_id, "thread_id")
        check_id(timer_id, "timer_id")
        check_status(status, TIMER_FINAL)
        check_text(owner, "owner", optional=True)
        with self._lock:
            row = self._tables().timers.get(thread_id, {}).get(timer_id)
            if (row is None or row["status"] in TIMER_FINAL
                    or (owner is not None and row["claimed_by"] != owner)):
                return False
            row["status"] = status
            return True

    def get_timer(self, thread_id: str, timer_id: str) -> TimerRecord | None:
        check_id(thread_id, "thread_id")
        check_id(timer_id, "timer_id")
        with self._lock:
            row = self._tables().timers.get(thread_id, {}).get(timer_id)
            return None if row is None else timer_from_row(_values(row), None)

    def list_timers(self, *, thread_id: str | None = None, status: str | None = None,
                    graph: str | None = None) -> list[TimerRecord]:
        check_filters(thread_id, status, TIMER_STATUSES, graph=graph)
        with self._lock:
            rows = [_values(r) for r in _rows(self._tables().timers, thread_id)
                    if (status is None or r["status"] == status)
                    and (graph is None or r["graph"] == graph)]
        rows.sort(key=lambda r: (r[2], r[0], r[1]))  # due_at, thread_id, id
        return [timer_from_row(r, None) for r in rows]

    def next_timer_due(self, *, graph: str | None = None) -> float | None:
        check_text(graph, "graph", optional=True)
        with self._lock:
            return min((r["due_at"] for r in _rows(self._tables().timers, None)
                        if r["status"] == "pending" and (graph is None or r["graph"] == graph)),
                       default=None)
