"""What the web UI needs that the Agent Server API lacks (waypoint additions).

- `GET /identity`: who the presented key is (tenant, role), so a page can show an admin
  the tenant filter and know that no key is needed on an open server.
- `POST /runs/search`: runs across threads (the Agent Server lists runs of one thread
  only), with their graph, duration and cost.
- `GET /threads/{id}/timeline`: a thread's checkpoints as a timeline: the node(s) that
  made each one, its duration, retries, errors and cost (from the usage ledger), and the
  branch it is on, so forks show as branches.

Handlers stay thin: tenant scoping is the same as every router's (another tenant's thread
is a 404), the SQL is one read, and the timeline is computed from the history and ledger
reads the other endpoints already make.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query

from ..auth import Identity, current_identity
from ..context import Service
from ..schemas.ui_data import RunSearch
from ..state import get_history
from ..tables import runs as run_table
from ..tables.common import epoch, iso, now
from ..tables.db import Tx, json_contains
from .deps import get_service
from .threads import find as find_thread
from .threads import graph_of

router = APIRouter(tags=["ui"], dependencies=[Depends(current_identity)])

_FINISHED = ("error", "success", "timeout", "interrupted")


@router.get("/identity", summary="Who Am I (waypoint)")
async def identity(service: Service = Depends(get_service),
                   who: Identity = Depends(current_identity)) -> dict[str, Any]:
    """The caller as the server sees it; `keys_required` is false on an open server."""
    return {"tenant": who.tenant, "role": who.role, "user_id": who.user_id,
            "is_admin": who.is_admin, "keys_required": not service.auth.open}


def _like(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _search(tx: Tx, scope: str | None, body: RunSearch) -> list[run_table.Run]:
    clauses, params = ["1 = 1"], []
    if scope is not None:
        clauses.append("tenant = ?")
        params.append(scope)
    for column, value in (("graph_id", body.graph_id), ("status", body.status),
                          ("tenant", body.tenant), ("thread_id", body.thread_id)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if body.query:
        clauses.append("(run_id LIKE ? ESCAPE '\\' OR thread_id LIKE ? ESCAPE '\\')")
        params += [_like(body.query), _like(body.query)]
    if body.metadata:
        sql, extra = json_contains(tx.dialect, "metadata", body.metadata)
        clauses.append(sql)
        params += extra
    # the row layout is the runs table's own, so rows read back as its Run objects
    rows = tx.all(f"SELECT {run_table._COLUMNS} FROM waypoint_runs WHERE "
                  f"{' AND '.join(clauses)} ORDER BY created_at DESC, run_id DESC "
                  "LIMIT ? OFFSET ?", [*params, body.limit, body.offset])
    return [run_table._row(r) for r in rows]


def _run_json(run: run_table.Run, live_cost: dict[str, Any] | None) -> dict[str, Any]:
    finished = run.status in _FINISHED
    end = run.updated_at if finished else now()
    usage = (run.metadata or {}).get("usage") if finished else live_cost
    return {**run.to_api(), "graph_id": run.graph_id, "tenant": run.tenant,
            "attempt": run.attempt, "error": run.error,
            "ended_at": iso(run.updated_at) if finished else None,
            "duration_s": max(0.0, end - run.created_at),
            "cost_usd": usage.get("cost_usd") if usage else None,
            "tokens": (usage.get("input_tokens", 0) + usage.get("output_tokens", 0))
            if usage else None}


@router.post("/runs/search", summary="Search Runs Across Threads (waypoint)")
async def search_runs(body: RunSearch, service: Service = Depends(get_service),
                      who: Identity = Depends(current_identity)) -> list[dict[str, Any]]:
    """Newest first; `duration_s` runs from acceptance to the end (or to now), `cost_usd`
    is the usage ledger's total (None when unknown or nothing was priced)."""
    if not who.is_admin and body.tenant not in (None, who.tenant):
        return []
    found = await service.db.aread(lambda tx: _search(tx, who.scope, body))
    live: dict[str, dict[str, Any]] = {}
    for run in found:
        if run.status not in _FINISHED:  # a finished run carries its totals in metadata
            (total,) = await asyncio.to_thread(service.saver.usage_totals, [],
                                               run_id=run.run_id)
            live[run.run_id] = total.to_json()
    return [_run_json(r, live.get(r.run_id)) for r in found]


# -- the timeline of a thread ------------------------------------------------------------


def _made_by(item: dict[str, Any], parent: dict[str, Any] | None) -> list[str]:
    """The nodes whose writes made this checkpoint."""
    meta = item.get("metadata") or {}
    source = meta.get("source")
    if source == "input":
        return ["__input__"]
    if source == "update":
        writes = meta.get("writes")
        return list(writes) if isinstance(writes, dict) and writes else ["__update__"]
    if source == "fork":
        return ["__fork__"]
    if parent is None:
        return []
    return [t["name"] for t in parent.get("tasks") or []] or list(parent.get("next") or [])


def _branches(items: list[dict[str, Any]]) -> dict[str, int]:
    """Branch numbers, in the order branches were made: a checkpoint continues its parent's
    branch if it is the parent's first child, else it starts the next branch (a fork or a
    replay). `items` are oldest first, so a parent is numbered before its children."""
    first_child: dict[str | None, str] = {}
    branch: dict[str, int] = {}
    made = 0
    for item in items:
        parent = item.get("parent_checkpoint_id")
        first = first_child.setdefault(parent, item["checkpoint_id"])
        if parent in branch and first != item["checkpoint_id"]:
            made += 1
            branch[item["checkpoint_id"]] = made
        else:
            branch[item["checkpoint_id"]] = branch.get(parent, 0)
    return branch


def _cost(records: list[Any], run_id: str | None, nodes: list[str], start: float | None,
          end: float) -> dict[str, Any]:
    """Calls the nodes of this step made in the run between the two checkpoints."""
    calls = tokens = 0
    cost: float | None = 0.0
    for record in records:
        if record.run_id != run_id or record.node not in nodes:
            continue
        if record.at > end or (start is not None and record.at <= start):
            continue
        calls += 1
        tokens += record.usage.input_tokens + record.usage.output_tokens
        cost = None if cost is None or record.cost_usd is None else cost + record.cost_usd
    return {"calls": calls, "tokens": tokens, "cost_usd": cost if calls else None}


def _epoch(value: str | None) -> float | None:
    return epoch(value) if value else None


def timeline_rows(history: list[dict[str, Any]], records: list[Any]) -> dict[str, Any]:
    """The checkpoints oldest first, each with what made it; `head_path` the ids from the
    root to the newest checkpoint (the path the thread took)."""
    items = sorted(history, key=lambda i: (i.get("created_at") or "", i["checkpoint_id"]))
    by_id = {i["checkpoint_id"]: i for i in items}
    branch = _branches(items)
    rows = []
    for item in items:
        meta = item.get("metadata") or {}
        parent = by_id.get(item.get("parent_checkpoint_id"))
        nodes = _made_by(item, parent)
        at = _epoch(item.get("created_at")) or 0.0
        started = _epoch(parent.get("created_at")) if parent else None
        errors = [{"node": t["name"], "error": t["error"]}
                  for t in item.get("tasks") or [] if t.get("error")]
        errors += [{"node": h.get("node"), "error": h.get("error"), "handled": True}
                   for h in meta.get("handled_errors") or [] if isinstance(h, dict)]
        rows.append({
            "checkpoint_id": item["checkpoint_id"],
            "parent_checkpoint_id": item.get("parent_checkpoint_id"),
            "created_at": item.get("created_at"), "step": meta.get("step"),
            "source": meta.get("source"), "run_id": meta.get("run_id"), "nodes": nodes,
            "next": item.get("next") or [], "branch": branch.get(item["checkpoint_id"], 0),
            "duration_s": (at - started) if started is not None else None,
            "retries": meta.get("retries") or [], "errors": errors,
            "interrupts": len(item.get("interrupts") or []),
            "usage": _cost(records, meta.get("run_id"), nodes, started, at),
        })
    path: list[str] = []
    newest = max(items, key=lambda i: i.get("created_at") or "", default=None)
    cursor = newest
    while cursor is not None:
        path.append(cursor["checkpoint_id"])
        cursor = by_id.get(cursor.get("parent_checkpoint_id"))
    path.reverse()
    return {"checkpoints": rows, "head": newest["checkpoint_id"] if newest else None,
            "head_path": path, "next": newest.get("next", []) if newest else [],
            "branches": max(branch.values(), default=0) + 1}


@router.get("/threads/{thread_id}/timeline", summary="Thread Timeline (waypoint)")
async def timeline(thread_id: str, limit: int = Query(default=300, ge=1, le=2000),
                   service: Service = Depends(get_service),
                   who: Identity = Depends(current_identity)) -> dict[str, Any]:
    thread = await find_thread(service, thread_id, who)
    history = await get_history(service, graph_of(service, thread), thread_id, limit=limit,
                                before=None, metadata=None, checkpoint=None)
    records = await asyncio.to_thread(service.saver.usage_records, thread_id=thread_id,
                                      limit=5000)
    return {"thread_id": thread_id, "graph_id": thread.metadata.get("graph_id"),
            "status": thread.status, **timeline_rows(history, records)}
