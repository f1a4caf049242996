"""Crons: a schedule that creates a run (on a thread, or on a new thread each time).

Firing is a compare-and-set on `next_run_date`: only the scheduler that moves it from the
due time to the next one creates the run, so a cron fires once per due time even with
several schedulers or a restart in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .common import iso, now, order_by, page, visible
from .db import Tx, from_json, json_contains, to_json

_COLUMNS = ("cron_id, tenant, assistant_id, thread_id, schedule, timezone, end_time, payload, "
            "metadata, user_id, enabled, on_run_completed, next_run_date, created_at, "
            "updated_at")
SORTABLE = ("cron_id", "assistant_id", "thread_id", "next_run_date", "end_time", "created_at",
            "updated_at")


@dataclass(slots=True)
class Cron:
    cron_id: str
    tenant: str
    assistant_id: str
    thread_id: str | None
    schedule: str
    timezone: str | None
    end_time: float | None
    payload: dict[str, Any]
    metadata: dict[str, Any]
    user_id: str | None
    enabled: bool
    on_run_completed: str
    next_run_date: float | None
    created_at: float
    updated_at: float

    def to_api(self) -> dict[str, Any]:
        return {"cron_id": self.cron_id, "assistant_id": self.assistant_id,
                "thread_id": self.thread_id, "schedule": self.schedule,
                "timezone": self.timezone, "end_time": iso(self.end_time),
                "payload": self.payload, "metadata": self.metadata, "user_id": self.user_id,
                "enabled": self.enabled, "on_run_completed": self.on_run_completed,
                "next_run_date": iso(self.next_run_date), "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at)}


def _row(row: tuple[Any, ...]) -> Cron:
    (cron_id, tenant, assistant_id, thread_id, schedule, timezone, end_time, payload,
     metadata, user_id, enabled, on_run_completed, next_run_date, created_at,
     updated_at) = row
    return Cron(cron_id, tenant, assistant_id, thread_id, schedule, timezone, end_time,
                from_json(payload), from_json(metadata), user_id, bool(enabled),
                on_run_completed, next_run_date, created_at, updated_at)


def insert(tx: Tx, cron: Cron) -> None:
    tx.execute(f"INSERT INTO waypoint_crons ({_COLUMNS}) VALUES "
               "(?, ?, ?, ?, ?, ?, ?, ?j, ?j, ?, ?, ?, ?, ?, ?)",
               (cron.cron_id, cron.tenant, cron.assistant_id, cron.thread_id, cron.schedule,
                cron.timezone, cron.end_time, to_json(cron.payload), to_json(cron.metadata),
                cron.user_id, cron.enabled, cron.on_run_completed, cron.next_run_date,
                cron.created_at, cron.updated_at))


def get(tx: Tx, cron_id: str, tenant: str | None) -> Cron | None:
    where, params = visible("tenant", tenant)
    row = tx.one(f"SELECT {_COLUMNS} FROM waypoint_crons WHERE cron_id = ? AND {where}",
                 [cron_id, *params])
    return _row(row) if row else None


def update(tx: Tx, cron: Cron) -> None:
    cron.updated_at = now()
    tx.execute("UPDATE waypoint_crons SET schedule = ?, timezone = ?, end_time = ?, "
               "payload = ?j, metadata = ?j, enabled = ?, on_run_completed = ?, "
               "next_run_date = ?, updated_at = ? WHERE cron_id = ?",
               (cron.schedule, cron.timezone, cron.end_time, to_json(cron.payload),
                to_json(cron.metadata), cron.enabled, cron.on_run_completed,
                cron.next_run_date, cron.updated_at, cron.cron_id))


def delete(tx: Tx, cron_id: str) -> None:
    tx.execute("DELETE FROM waypoint_crons WHERE cron_id = ?", [cron_id])


def _filters(tx: Tx, tenant: str | None, assistant_id: str | None, thread_id: str | None,
             enabled: bool | None, metadata: dict[str, Any] | None) -> tuple[str, list[Any]]:
    where, params = visible("tenant", tenant)
    clauses = [where]
    for column, value in (("assistant_id", assistant_id), ("thread_id", thread_id)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if enabled is not None:
        clauses.append("enabled = ?")
        params.append(enabled)
    if metadata:
        sql, extra = json_contains(tx.dialect, "metadata", metadata)
        clauses.append(sql)
        params += extra
    return " AND ".join(clauses), params


def search(tx: Tx, tenant: str | None, *, assistant_id: str | None = None,
           thread_id: str | None = None, enabled: bool | None = None,
           metadata: dict[str, Any] | None = None, limit: int = 10, offset: int = 0,
           sort_by: str | None = None, sort_order: str | None = None) -> list[Cron]:
    where, params = _filters(tx, tenant, assistant_id, thread_id, enabled, metadata)
    order = order_by(sort_by, sort_order, SORTABLE, "created_at", "cron_id")
    limits, more = page(limit, offset)
    rows = tx.all(f"SELECT {_COLUMNS} FROM waypoint_crons WHERE {where}{order}{limits}",
                  [*params, *more])
    return [_row(r) for r in rows]


def count(tx: Tx, tenant: str | None, *, assistant_id: str | None = None,
          thread_id: str | None = None, metadata: dict[str, Any] | None = None) -> int:
    where, params = _filters(tx, tenant, assistant_id, thread_id, None, metadata)
    row = tx.one(f"SELECT count(*) FROM waypoint_crons WHERE {where}", params)
    return int(row[0]) if row else 0


def due(tx: Tx, at: float, limit: int = 50) -> list[Cron]:
    rows = tx.all(f"SELECT {_COLUMNS} FROM waypoint_crons WHERE enabled = ? AND "
                  "next_run_date IS NOT NULL AND next_run_date <= ? ORDER BY next_run_date "
                  "LIMIT ?", [True, at, limit])
    return [_row(r) for r in rows]


def advance(tx: Tx, cron_id: str, expected: float, following: float | None) -> bool:
    """Move a due cron to its next time; True only for the one caller that moved it."""
    return bool(tx.execute("UPDATE waypoint_crons SET next_run_date = ?, updated_at = ? "
                           "WHERE cron_id = ? AND next_run_date = ?",
                           (following, now(), cron_id, expected)))
