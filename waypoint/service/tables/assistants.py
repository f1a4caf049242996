"""Assistants: a graph with its configuration, versioned on every change.

One assistant per configured graph is made at start ("system" assistants, owned by no
tenant, visible to all, changed only by an admin); tenants create their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .common import graph_assistant_id, iso, now, order_by, page
from .db import Tx, from_json, json_contains, to_json

_COLUMNS = ("assistant_id, tenant, graph_id, name, description, config, context, metadata, "
            "version, created_at, updated_at")
SORTABLE = ("assistant_id", "graph_id", "name", "created_at", "updated_at")


@dataclass(slots=True)
class Assistant:
    assistant_id: str
    tenant: str | None
    graph_id: str
    name: str
    description: str | None
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    created_at: float
    updated_at: float

    def to_api(self) -> dict[str, Any]:
        return {"assistant_id": self.assistant_id, "graph_id": self.graph_id,
                "config": self.config, "context": self.context, "metadata": self.metadata,
                "name": self.name, "description": self.description,
                "created_at": iso(self.created_at), "updated_at": iso(self.updated_at),
                "version": self.version}


def _row(row: tuple[Any, ...]) -> Assistant:
    (assistant_id, tenant, graph_id, name, description, config, context, metadata, version,
     created_at, updated_at) = row
    return Assistant(assistant_id, tenant, graph_id, name, description, from_json(config),
                     from_json(context), from_json(metadata), version, created_at, updated_at)


def _scope(tenant: str | None) -> tuple[str, list[Any]]:
    """Tenants see their own assistants and the system ones; an admin (None) sees all."""
    if tenant is None:
        return "1 = 1", []
    return "(tenant = ? OR tenant IS NULL)", [tenant]


def ensure_system(tx: Tx, graph_id: str) -> Assistant:
    """The graph's own assistant, created on first start with LangGraph's id for it."""
    assistant_id = graph_assistant_id(graph_id)
    found = get(tx, assistant_id, None)
    if found is not None:
        return found
    return insert(tx, assistant_id=assistant_id, tenant=None, graph_id=graph_id, name=graph_id,
                  description=None, config={}, context={},
                  metadata={"created_by": "system"})


def insert(tx: Tx, *, assistant_id: str, tenant: str | None, graph_id: str, name: str,
           description: str | None, config: dict[str, Any], context: dict[str, Any],
           metadata: dict[str, Any]) -> Assistant:
    at = now()
    tx.execute(f"INSERT INTO waypoint_assistants ({_COLUMNS}) VALUES "
               "(?, ?, ?, ?, ?, ?j, ?j, ?j, 1, ?, ?)",
               (assistant_id, tenant, graph_id, name, description, to_json(config),
                to_json(context), to_json(metadata), at, at))
    _add_version(tx, assistant_id, 1, graph_id, name, description, config, context, metadata,
                 at)
    return Assistant(assistant_id, tenant, graph_id, name, description, config, context,
                     metadata, 1, at, at)


def _add_version(tx: Tx, assistant_id: str, version: int, graph_id: str, name: str,
                 description: str | None, config: dict[str, Any], context: dict[str, Any],
                 metadata: dict[str, Any], at: float) -> None:
    tx.execute("INSERT INTO waypoint_assistant_versions (assistant_id, version, graph_id, name, "
               "description, config, context, metadata, created_at) "
               "VALUES (?, ?, ?, ?, ?, ?j, ?j, ?j, ?)",
               (assistant_id, version, graph_id, name, description, to_json(config),
                to_json(context), to_json(metadata), at))


def get(tx: Tx, assistant_id: str, tenant: str | None) -> Assistant | None:
    where, params = _scope(tenant)
    row = tx.one(f"SELECT {_COLUMNS} FROM waypoint_assistants WHERE assistant_id = ? AND "
                 f"{where}", [assistant_id, *params])
    return _row(row) if row else None


def patch(tx: Tx, current: Assistant, changes: dict[str, Any]) -> Assistant:
    """A new version with `changes` applied (metadata merges, as the Agent Server does)."""
    top = tx.one("SELECT max(version) FROM waypoint_assistant_versions WHERE assistant_id = ?",
                 [current.assistant_id])
    version = (top[0] if top and top[0] else current.version) + 1
    graph_id = changes.get("graph_id") or current.graph_id
    name = changes.get("name") or current.name
    description = changes.get("description", current.description)
    config = changes["config"] if changes.get("config") is not None else current.config
    context = changes["context"] if changes.get("context") is not None else current.context
    metadata = {**current.metadata, **(changes.get("metadata") or {})}
    at = now()
    _add_version(tx, current.assistant_id, version, graph_id, name, description, config,
                 context, metadata, at)
    tx.execute("UPDATE waypoint_assistants SET graph_id = ?, name = ?, description = ?, "
               "config = ?j, context = ?j, metadata = ?j, version = ?, updated_at = ? "
               "WHERE assistant_id = ?",
               (graph_id, name, description, to_json(config), to_json(context),
                to_json(metadata), version, at, current.assistant_id))
    return Assistant(current.assistant_id, current.tenant, graph_id, name, description, config,
                     context, metadata, version, current.created_at, at)


def delete(tx: Tx, assistant_id: str) -> None:
    tx.execute("DELETE FROM waypoint_assistant_versions WHERE assistant_id = ?", [assistant_id])
    tx.execute("DELETE FROM waypoint_assistants WHERE assistant_id = ?", [assistant_id])


def _filters(tx: Tx, tenant: str | None, graph_id: str | None, name: str | None,
             metadata: dict[str, Any] | None) -> tuple[str, list[Any]]:
    where, params = _scope(tenant)
    clauses = [where]
    if graph_id:
        clauses.append("graph_id = ?")
        params.append(graph_id)
    if name:
        clauses.append("lower(name) LIKE ?")
        params.append("%" + name.lower().replace("%", "").replace("_", "") + "%")
    if metadata:
        sql, extra = json_contains(tx.dialect, "metadata", metadata)
        clauses.append(sql)
        params += extra
    return " AND ".join(clauses), params


def search(tx: Tx, tenant: str | None, *, graph_id: str | None = None, name: str | None = None,
           metadata: dict[str, Any] | None = None, limit: int = 10, offset: int = 0,
           sort_by: str | None = None, sort_order: str | None = None) -> list[Assistant]:
    where, params = _filters(tx, tenant, graph_id, name, metadata)
    order = order_by(sort_by, sort_order, SORTABLE, "created_at", "assistant_id")
    limits, more = page(limit, offset)
    rows = tx.all(f"SELECT {_COLUMNS} FROM waypoint_assistants WHERE {where}{order}{limits}",
                  [*params, *more])
    return [_row(r) for r in rows]


def count(tx: Tx, tenant: str | None, *, graph_id: str | None = None, name: str | None = None,
          metadata: dict[str, Any] | None = None) -> int:
    where, params = _filters(tx, tenant, graph_id, name, metadata)
    row = tx.one(f"SELECT count(*) FROM waypoint_assistants WHERE {where}", params)
    return int(row[0]) if row else 0


def versions(tx: Tx, assistant_id: str, *, metadata: dict[str, Any] | None = None,
             limit: int = 10, offset: int = 0) -> list[dict[str, Any]]:
    clauses, params = ["assistant_id = ?"], [assistant_id]
    if metadata:
        sql, extra = json_contains(tx.dialect, "metadata", metadata)
        clauses.append(sql)
        params += extra
    limits, more = page(limit, offset)
    rows = tx.all("SELECT assistant_id, version, graph_id, name, description, config, context, "
                  "metadata, created_at FROM waypoint_assistant_versions WHERE "
                  + " AND ".join(clauses) + " ORDER BY version DESC" + limits, [*params, *more])
    return [{"assistant_id": r[0], "version": r[1], "graph_id": r[2], "name": r[3],
             "description": r[4], "config": from_json(r[5]), "context": from_json(r[6]),
             "metadata": from_json(r[7]), "created_at": iso(r[8])} for r in rows]


def set_latest(tx: Tx, current: Assistant, version: int) -> Assistant | None:
    """Make an earlier version current again; None if there is no such version."""
    row = tx.one("SELECT graph_id, name, description, config, context, metadata "
                 "FROM waypoint_assistant_versions WHERE assistant_id = ? AND version = ?",
                 [current.assistant_id, version])
    if row is None:
        return None
    graph_id, name, description, config, context, metadata = row
    at = now()
    tx.execute("UPDATE waypoint_assistants SET graph_id = ?, name = ?, description = ?, "
               "config = ?j, context = ?j, metadata = ?j, version = ?, updated_at = ? "
               "WHERE assistant_id = ?",
               (graph_id, name, description, to_json(from_json(config)),
                to_json(from_json(context)), to_json(from_json(metadata)), version, at,
                current.assistant_id))
    return Assistant(current.assistant_id, current.tenant, graph_id, name, description,
                     from_json(config), from_json(context), from_json(metadata), version,
                     current.created_at, at)
