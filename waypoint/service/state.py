"""A thread's state as the API shows it: snapshots, history, edits, and the index card.

Reads go through the graph that ran the thread (so tasks, interrupts and subgraph states
are shown as `get_state` shows them); a thread no configured graph has run yet is read
straight from the checkpointer.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..checkpoint.base import make_config
from ..engine import state_api
from ..observe.redact import redact
from ..types import StateSnapshot
from .encoding import to_jsonable

if TYPE_CHECKING:
    from .context import Service


def checkpoint_ref(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config:
        return None
    c = config.get("configurable") or {}
    if c.get("checkpoint_id") is None:
        return None
    return {"checkpoint_id": c.get("checkpoint_id"), "thread_id": c.get("thread_id"),
            "checkpoint_ns": c.get("checkpoint_ns", "")}


def _task_json(task: Any) -> dict[str, Any]:
    state = task.state
    data: dict[str, Any] = {
        "id": task.id, "name": task.name, "path": list(task.path),
        "error": redact(repr(task.error)) if task.error is not None else None,
        "interrupts": [{"value": i.value, "id": i.id} for i in task.interrupts],
        "checkpoint": None, "state": None, "result": task.result,
    }
    if isinstance(state, StateSnapshot):
        data["state"] = snapshot_json(state)
    elif isinstance(state, dict):
        data["checkpoint"] = {**(state.get("configurable") or {})}
    return data


def snapshot_json(snapshot: StateSnapshot) -> dict[str, Any]:
    """One checkpoint in the Agent Server's ThreadState shape (plain JSON)."""
    checkpoint = checkpoint_ref(snapshot.config)
    parent = checkpoint_ref(snapshot.parent_config)
    return to_jsonable({
        "values": snapshot.values,
        "next": list(snapshot.next),
        "tasks": [_task_json(t) for t in snapshot.tasks],
        "metadata": snapshot.metadata,
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint or {"checkpoint_id": None, "thread_id":
                                     (snapshot.config.get("configurable") or {}).get(
                                         "thread_id"), "checkpoint_ns": ""},
        "parent_checkpoint": parent,
        "interrupts": [{"value": i.value, "id": i.id} for i in snapshot.interrupts],
        "checkpoint_id": checkpoint["checkpoint_id"] if checkpoint else None,
        "parent_checkpoint_id": parent["checkpoint_id"] if parent else None,
    })


def _config(thread_id: str, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
    checkpoint = checkpoint or {}
    return make_config(thread_id, checkpoint.get("checkpoint_ns") or "",
                       checkpoint.get("checkpoint_id"))


def read_state(service: Service, graph: Any, thread_id: str,
               checkpoint: dict[str, Any] | None = None, subgraphs: bool = False
               ) -> StateSnapshot:
    config = _config(thread_id, checkpoint)
    if graph is not None:
        return graph.get_state(config, subgraphs=subgraphs)
    return state_api.get_state(None, service.saver, config, subgraphs)  # type: ignore[arg-type]


async def get_state(service: Service, graph: Any, thread_id: str,
                    checkpoint: dict[str, Any] | None = None, subgraphs: bool = False
                    ) -> dict[str, Any]:
    snapshot = await asyncio.to_thread(read_state, service, graph, thread_id, checkpoint,
                                       subgraphs)
    return snapshot_json(snapshot)


async def get_history(service: Service, graph: Any, thread_id: str, *, limit: int,
                      before: dict[str, Any] | None, metadata: dict[str, Any] | None,
                      checkpoint: dict[str, Any] | None) -> list[dict[str, Any]]:
    config = _config(thread_id, {"checkpoint_ns": (checkpoint or {}).get("checkpoint_ns")})
    before_config = _config(thread_id, before) if before else None

    def read() -> list[dict[str, Any]]:
        if graph is not None:
            items = graph.get_state_history(config, filter=metadata, before=before_config,
                                            limit=limit)
        else:
            items = state_api.get_state_history(None, service.saver, config,  # type: ignore
                                                metadata, before_config, limit)
        return [snapshot_json(s) for s in items]

    return await asyncio.to_thread(read)


def interrupts_by_task(snapshot: StateSnapshot) -> dict[str, Any]:
    return {t.id: [{"value": i.value, "id": i.id} for i in t.interrupts]
            for t in snapshot.tasks if t.interrupts}


async def thread_summary(service: Service, thread_id: str, graph: Any) -> dict[str, Any]:
    """Status ("idle" or "interrupted"), latest values and interrupts, from the head."""
    snapshot = read_state(service, graph, thread_id)  # the head only: a short read
    interrupts = interrupts_by_task(snapshot)
    finished = {t.id for t in snapshot.tasks if t.result is not None}
    waiting = bool(interrupts) or any(t.id not in finished and t.error is None
                                      for t in snapshot.tasks)
    errored = any(t.error is not None for t in snapshot.tasks)
    status = "error" if errored else ("interrupted" if waiting else "idle")
    values = to_jsonable(snapshot.values) if snapshot.created_at is not None else None
    return {"status": status, "values": values, "interrupts": to_jsonable(interrupts),
            "error": None, "budget": (snapshot.metadata or {}).get("budget")}
