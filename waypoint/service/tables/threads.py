"""Threads as the API shows them: metadata, status, the latest values and interrupts.

The checkpoints themselves live in the checkpointer; this row is the thread's index card,
updated when a run starts (busy) and ends (idle, interrupted or error, with its values),
so listing and searching threads never decodes a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .common import iso, now, order_by, page, visible
from .db import Tx, from_json, json_contains, to_json

_COLUMNS = ("thread_id, tenant, created_at, updated_at, state_updated_at, metadata, config, "
            "status, state_values, interrupts, error, ttl_minutes, ttl_strategy")
SORTABLE = ("thread_id", "status", "created_at", "updated_at", "state_updated_at")
STATUSES = ("idle", "busy", "interrupted", "error")


@dataclass(slots=True)
class Thread:
    thread_id: str
    tenant: str
    created_at: float
    updated_at: float
    state_updated_at: float
    metadata: dict[str, Any]
    config: dict[str, Any]
    status: str
    values: Any
    interrupts: dict[str, Any]
    error: Any
    ttl_minutes: float | None
    ttl_strategy: str | None

    def to_api(self) -> dict[str, Any]:
        data = {"thread_id": self.thread_id, "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at),
                "state_updated_at": iso(self.state_updated_at), "metadata": self.metadata,
                "status": self.status, "config": self.config, "values": self.values,
                "interrupts": self.interrupts, "error": self.error}
        if self.ttl_minutes is not None:
            data["ttl"] = {"strategy": self.ttl_strategy or "delete", "ttl": self.ttl_minutes}
        return data


def _row(row: tuple[Any, ...]) -> Thread:
    (thread_id, tenant, created_at, updated_at, state_updated_at, metadata, config, status,
     values, interrupts, error, ttl_minutes, ttl_strategy) = row
    return Thread(thread_id, tenant, created_at, updated_at, state_updated_at,
                  from_json(metadata), from_json(config), status, from_json(values),
                  from_json(interrupts) or {}, from_json(error), ttl_minutes, ttl_strategy)


def get(tx: Tx, thread_id: str, tenant: str | None) -> Thread | None:
    where, params = visible("tenant", tenant)
    row = tx.one(f"SELECT {_COLUMNS} FROM waypoint_service_threads WHERE thread_id = ? AND "
                 f"{where}", [thread_id, *params])
    return _row(row) if row else None


def owner(tx: Tx, thread_id: str) -> str | None:
    """The tenant of a thread id, whoever asks (for refusing an id another tenant holds)."""
    row = tx.one("SELECT tenant FROM waypoint_service_threads WHERE thread_id = ?", [thread_id])
    return row[0] if row else None


def insert(tx: Tx, *, thread_id: str, tenant: str, metadata: dict[str, Any],
           config: dict[str, Any] | None = None, ttl_minutes: float | None = None,
           ttl_strategy: str | None = None, status: str = "idle") -> Thread:
    at = now()
    config = config or {}
    tx.execute(f"INSERT INTO waypoint_service_threads ({_COLUMNS}) VALUES "
               "(?, ?, ?, ?, ?, ?j, ?j, ?, NULL, ?j, NULL, ?, ?)",
               (thread_id, tenant, at, at, at, to_json(metadata), to_json(config), status,
                to_json({}), ttl_minutes, ttl_strategy))
    return Thread(thread_id, tenant, at, at, at, metadata, config, status, None, {}, None,
                  ttl_minutes, ttl_strategy)


def patch(tx: Tx, thread: Thread, *, metadata: dict[str, Any] | None = None,
          ttl_minutes: float | None = None, ttl_strategy: str | None = None) -> Thread:
    merged = {**thread.metadata, **(metadata or {})}
    at = now()
    ttl = ttl_minutes if ttl_minutes is not None else thread.ttl_minutes
    strategy = ttl_strategy if ttl_strategy is not None else thread.ttl_strategy
    tx.execute("UPDATE waypoint_service_threads SET metadata = ?j, updated_at = ?, "
               "ttl_minutes = ?, ttl_strategy = ? WHERE thread_id = ?",
               (to_json(merged), at, ttl, strategy, thread.thread_id))
    thread.metadata, thread.updated_at = merged, at
    thread.ttl_minutes, thread.ttl_strategy = ttl, strategy
    return thread


def merge_metadata(tx: Tx, thread_id: str, metadata: dict[str, Any],
                   status: str | None = None) -> None:
    row = tx.one("SELECT metadata, status FROM waypoint_service_threads WHERE thread_id = ?",
                 [thread_id])
    if row is None:
        return
    merged = {**(from_json(row[0]) or {}), **metadata}
    tx.execute("UPDATE waypoint_service_threads SET metadata = ?j, status = ?, updated_at = ? "
               "WHERE thread_id = ?", (to_json(merged), status or row[1], now(), thread_id))


def record_state(tx: Tx, thread_id: str, *, status: str, values: Any,
                 interrupts: dict[str, Any], error: Any = None) -> None:
    """What a run left behind: the thread's status, latest values and pending interrupts."""
    at = now()
    tx.execute("UPDATE waypoint_service_threads SET status = ?, state_values = ?j, "
               "interrupts = ?j, error = ?j, updated_at = ?, state_updated_at = ? "
               "WHERE thread_id = ?",
               (status, to_json(values), to_json(interrupts), to_json(error), at, at,
                thread_id))


def delete(tx: Tx, thread_id: str) -> None:
    tx.execute("DELETE FROM waypoint_service_threads WHERE thread_id = ?", [thread_id])


def _filters(tx: Tx, tenant: str | None, ids: list[str] | None,
             metadata: dict[str, Any] | None, values: dict[str, Any] | None,
             status: str | None) -> tuple[str, list[Any]]:
    where, params = visible("tenant", tenant)
    clauses = [where]
    if ids:
        clauses.append("thread_id IN (" + ", ".join("?" for _ in ids) + ")")
        params += list(ids)
    if status:
        clauses.append("status = ?")
        params.append(status)
    for column, wanted in (("metadata", metadata), ("state_values", values)):
        if wanted:
            sql, extra = json_contains(tx.dialect, column, wanted)
            clauses.append(sql)
            params += extra
    return " AND ".join(clauses), params


def search(tx: Tx, tenant: str | None, *, ids: list[str] | None = None,
           metadata: dict[str, Any] | None = None, values: dict[str, Any] | None = None,
           status: str | None = None, limit: int = 10, offset: int = 0,
           sort_by: str | None = None, sort_order: str | None = None) -> list[Thread]:
    where, params = _filters(tx, tenant, ids, metadata, values, status)
    order = order_by(sort_by, sort_order, SORTABLE, "created_at", "thread_id")
    limits, more = page(limit, offset)
    rows = tx.all(f"SELECT {_COLUMNS} FROM waypoint_service_threads WHERE {where}{order}"
                  f"{limits}", [*params, *more])
    return [_row(r) for r in rows]


def count(tx: Tx, tenant: str | None, *, metadata: dict[str, Any] | None = None,
          values: dict[str, Any] | None = None, status: str | None = None) -> int:
    where, params = _filters(tx, tenant, None, metadata, values, status)
    row = tx.one(f"SELECT count(*) FROM waypoint_service_threads WHERE {where}", params)
    return int(row[0]) if row else 0


def expired(tx: Tx, default_ttl_minutes: float | None, at: float, limit: int = 100
            ) -> list[Thread]:
    """Threads past their TTL that wait for nobody: idle or failed, with no run queued."""
    ttl = "coalesce(ttl_minutes, ?)"
    rows = tx.all(
        f"SELECT {_COLUMNS} FROM waypoint_service_threads t WHERE status IN ('idle', 'error') "
        f"AND {ttl} IS NOT NULL AND updated_at + {ttl} * 60 < ? AND NOT EXISTS ("
        "SELECT 1 FROM waypoint_runs r WHERE r.thread_id = t.thread_id AND "
        "r.status IN ('pending', 'running')) ORDER BY updated_at LIMIT ?",
        [default_ttl_minutes, default_ttl_minutes, at, limit])
    return [_row(r) for r in rows]
