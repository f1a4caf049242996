"""SqliteSaver's effects, approvals and timers: three tables beside the checkpoints.

Every check-then-write runs inside one `BEGIN IMMEDIATE` transaction (the saver's `_write`),
which takes SQLite's single write lock before reading: two savers (or processes) on one file
therefore cannot both claim an effect or a timer. Commits are fsync'd as the saver's
`synchronous` setting says, like checkpoint commits.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

from .crypto import Cipher
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
from .fencing import check_sqlite, current_fence

# Schema migration 3 (sqlite.py's _MIGRATIONS): statements split on ";".
RECORD_TABLES = """
    CREATE TABLE waypoint_effects (
        thread_id TEXT NOT NULL,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        result BLOB,
        error BLOB,
        attempts INTEGER NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        UNIQUE (thread_id, key)
    );
    CREATE TABLE waypoint_approvals (
        thread_id TEXT NOT NULL,
        id TEXT NOT NULL,
        ns TEXT NOT NULL,
        node TEXT NOT NULL,
        graph TEXT NOT NULL,
        request BLOB,
        response_schema BLOB,
        actions TEXT NOT NULL,
        assignee TEXT,
        deadline REAL,
        on_timeout TEXT NOT NULL,
        status TEXT NOT NULL,
        decision BLOB,
        created_at REAL NOT NULL,
        decided_at REAL,
        escalations INTEGER NOT NULL,
        PRIMARY KEY (thread_id, id)
    ) WITHOUT ROWID;
    CREATE INDEX waypoint_approvals_status ON waypoint_approvals (status, created_at);
    CREATE TABLE waypoint_timers (
        thread_id TEXT NOT NULL,
        id TEXT NOT NULL,
        due_at REAL NOT NULL,
        ns TEXT NOT NULL,
        graph TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload BLOB,
        status TEXT NOT NULL,
        claimed_by TEXT,
        claimed_at REAL,
        created_at REAL NOT NULL,
        PRIMARY KEY (thread_id, id)
    ) WITHOUT ROWID;
    CREATE INDEX waypoint_timers_due ON waypoint_timers (status, due_at)
"""

_EFFECT = ", ".join(EFFECT_COLUMNS)
_APPROVAL = ", ".join(APPROVAL_COLUMNS)
_TIMER = ", ".join(TIMER_COLUMNS)
_TABLES = ("waypoint_effects", "waypoint_approvals", "waypoint_timers")


def _upsert(table: str, columns: tuple[str, ...]) -> str:
    keys = columns[:2]  # (thread_id, key or id)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            f"({', '.join('?' for _ in columns)}) ON CONFLICT ({', '.join(keys)}) "
            f"DO UPDATE SET {updates}")


_PUT_APPROVAL = _upsert("waypoint_approvals", APPROVAL_COLUMNS)
_PUT_TIMER = _upsert("waypoint_timers", TIMER_COLUMNS)


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """` WHERE a = ? AND ...` for the filters that are set (column names are ours)."""
    used = {k: v for k, v in filters.items() if v is not None}
    if not used:
        return "", []
    return " WHERE " + " AND ".join(f"{k} = ?" for k in used), list(used.values())


class SqliteRecords(RecordStore):
    """RecordStore for SqliteSaver (which provides conn, cipher, _lock, _ensure, _write)."""

    conn: sqlite3.Connection
    cipher: Cipher | None
    _lock: threading.RLock

    def _ensure(self) -> None:  # provided by SqliteSaver
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:  # provided by SqliteSaver
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[sqlite3.Connection]:  # from SqliteSaver
        raise NotImplementedError

    def _query(self, query: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._reading() as conn:
            return conn.execute(query, tuple(params)).fetchall()

    def _delete_records(self, conn: sqlite3.Connection, thread_ids: Iterable[str]) -> None:
        """Inside a delete_thread/sweep transaction: drop these threads' records too."""
        ids = [(t,) for t in thread_ids]
        for table in _TABLES:
            conn.executemany(f"DELETE FROM {table} WHERE thread_id = ?", ids)

    # -- effects -----------------------------------------------------------------------

    def begin_effect(self, thread_id: str, key: str, name: str, *,
                     retry_started: bool = False) -> EffectRecord | None:
        check_id(thread_id, "thread_id")
        check_id(key, "key")
        check_text(name, "name")
        now = time.time()
        fence = current_fence()
        with self._write() as conn:
            check_sqlite(conn, fence, thread_id)
            row = conn.execute(f"SELECT {_EFFECT} FROM waypoint_effects WHERE thread_id = ? "
                               "AND key = ?", (thread_id, key)).fetchone()
            if row is None:
                conn.execute("INSERT INTO waypoint_effects (thread_id, key, name, status, "
                             "attempts, started_at) VALUES (?, ?, ?, 'started', 1, ?)",
                             (thread_id, key, name, now))
                return None
            if row[3] == "failed" or (row[3] == "started" and retry_started):
                conn.execute("UPDATE waypoint_effects SET status = 'started', "
                             "attempts = attempts + 1, started_at = ?, result = NULL, "
                             "error = NULL, finished_at = NULL WHERE thread_id = ? AND key = ?",
                             (now, thread_id, key))
                return None
        return effect_from_row(row, self.cipher)

    def finish_effect(self, thread_id: str, key: str, *, result: Any = None,
                      error: dict[str, Any] | None = None) -> None:
        check_id(thread_id, "thread_id")
        check_id(key, "key")
        status, error = check_outcome(result, error)
        params = (status, pack(result, self.cipher, "result"), pack(error, self.cipher, "error"),
                  time.time(), thread_id, key)
        with self._write() as conn:
            changed = conn.execute("UPDATE waypoint_effects SET status = ?, result = ?, "
                                   "error = ?, finished_at = ? WHERE thread_id = ? AND key = ?",
                                   params).rowcount
            if not changed:
                raise KeyError(f"no effect {key!r} in thread {thread_id!r}: begin_effect first")

    def get_effect(self, thread_id: str, key: str) -> EffectRecord | None:
        check_id(thread_id, "thread_id")
        check_id(key, "key")
        rows = self._query(f"SELECT {_EFFECT} FROM waypoint_effects WHERE thread_id = ? "
                           "AND key = ?", (thread_id, key))
        return effect_from_row(rows[0], self.cipher) if rows else None

    def list_effects(self, thread_id: str) -> list[EffectRecord]:
        check_id(thread_id, "thread_id")
        rows = self._query(f"SELECT {_EFFECT} FROM waypoint_effects WHERE thread_id = ? "
                           "ORDER BY rowid", (thread_id,))
        return [effect_from_row(r, self.cipher) for r in rows]

    # -- approvals ---------------------------------------------------------------------

    def put_approval(self, record: ApprovalRecord) -> None:
        row = approval_to_row(check_approval(record), self.cipher)
        with self._write() as conn:
            conn.execute(_PUT_APPROVAL, row)

    def get_approval(self, thread_id: str, approval_id: str) -> ApprovalRecord | None:
        check_id(thread_id, "thread_id")
        check_id(approval_id, "approval_id")
        rows = self._query(f"SELECT {_APPROVAL} FROM waypoint_approvals WHERE thread_id = ? "
                           "AND id = ?", (thread_id, approval_id))
        return approval_from_row(rows[0], self.cipher) if rows else None

    def decide_approval(self, thread_id: str, approval_id: str, decision: dict[str, Any], *,
                        status: str = "decided") -> bool:
        check_id(thread_id, "thread_id")
        check_id(approval_id, "approval_id")
        check_dict(decision, "decision", optional=False)
        check_status(status, DECIDED_STATUSES)
        sealed = pack(decision, self.cipher, "decision")
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE waypoint_approvals SET status = ?, decision = ?, decided_at = ? "
                "WHERE thread_id = ? AND id = ? AND status = 'pending'",
                (status, sealed, time.time(), thread_id, approval_id)).rowcount
            if not changed and conn.execute(
                    "SELECT 1 FROM waypoint_approvals WHERE thread_id = ? AND id = ?",
                    (thread_id, approval_id)).fetchone() is None:
                raise KeyError(f"no approval {approval_id!r} in thread {thread_id!r}")
        return bool(changed)

    def list_approvals(self, *, thread_id: str | None = None, status: str | None = None,
                       assignee: str | None = None, graph: str | None = None,
                       limit: int | None = None) -> list[ApprovalRecord]:
        check_filters(thread_id, status, APPROVAL_STATUSES, assignee=assignee, graph=graph)
        limit = check_limit(limit)
        where, params = _where({"thread_id": thread_id, "status": status,
                                "assignee": assignee, "graph": graph})
        rows = self._query(f"SELECT {_APPROVAL} FROM waypoint_approvals{where} "
                           "ORDER BY created_at, thread_id, id LIMIT ?",
                           [*params, -1 if limit is None else limit])
        return [approval_from_row(r, self.cipher) for r in rows]

    # -- timers ------------------------------------------------------------------------

    def put_timer(self, record: TimerRecord) -> None:
        row = timer_to_row(check_timer(record), self.cipher)
        with self._write() as conn:
            conn.execute(_PUT_TIMER, row)

    def claim_due_timers(self, *, now: float | None = None, owner: str,
                         graph: str | None = None, limit: int | None = 100,
                         lease_seconds: float = 300.0) -> list[TimerRecord]:
        at, owner, graph, limit, stale = check_claim(now, owner, graph, limit, lease_seconds)
        query = (f"SELECT {_TIMER} FROM waypoint_timers WHERE ((status = 'pending' AND "
                 "due_at <= ?) OR (status = 'claimed' AND claimed_at < ?))")
        params: list[Any] = [at, stale]
        if graph is not None:
            query += " AND graph = ?"
            params.append(graph)
        query += " ORDER BY due_at, thread_id, id LIMIT ?"
        params.append(-1 if limit is None else limit)
        with self._write() as conn:
            rows = conn.execute(query, params).fetchall()
            conn.executemany("UPDATE waypoint_timers SET status = 'claimed', claimed_by = ?, "
                             "claimed_at = ? WHERE thread_id = ? AND id = ?",
                             [(owner, at, r[0], r[1]) for r in rows])
        claimed = [timer_from_row(r, self.cipher) for r in rows]
        for timer in claimed:
            timer.status, timer.claimed_by, timer.claimed_at = "claimed", owner, at
        return claimed

    def complete_timer(self, thread_id: str, timer_id: str, *, status: str = "fired",
                       owner: str | None = None) -> bool:
        check_id(thread_id, "thread_id")
        check_id(timer_id, "timer_id")
        check_status(status, TIMER_FINAL)
        check_text(owner, "owner", optional=True)
        query = ("UPDATE waypoint_timers SET status = ? WHERE thread_id = ? AND id = ? "
                 "AND status IN ('pending', 'claimed')")
        params: list[Any] = [status, thread_id, timer_id]
        if owner is not None:
            query += " AND claimed_by = ?"
            params.append(owner)
        with self._write() as conn:
            return bool(conn.execute(query, params).rowcount)

    def get_timer(self, thread_id: str, timer_id: str) -> TimerRecord | None:
        check_id(thread_id, "thread_id")
        check_id(timer_id, "timer_id")
        rows = self._query(f"SELECT {_TIMER} FROM waypoint_timers WHERE thread_id = ? "
                           "AND id = ?", (thread_id, timer_id))
        return timer_from_row(rows[0], self.cipher) if rows else None

    def list_timers(self, *, thread_id: str | None = None, status: str | None = None,
                    graph: str | None = None) -> list[TimerRecord]:
        check_filters(thread_id, status, TIMER_STATUSES, graph=graph)
        where, params = _where({"thread_id": thread_id, "status": status, "graph": graph})
        rows = self._query(f"SELECT {_TIMER} FROM waypoint_timers{where} "
                           "ORDER BY due_at, thread_id, id", params)
        return [timer_from_row(r, self.cipher) for r in rows]

    def next_timer_due(self, *, graph: str | None = None) -> float | None:
        check_text(graph, "graph", optional=True)
        where, params = _where({"status": "pending", "graph": graph})
        return self._query(f"SELECT min(due_at) FROM waypoint_timers{where}", params)[0][0]
