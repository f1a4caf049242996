"""`/threads`: conversations and their state over time (get, edit, fork, history)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query

from ...constants import END, START
from ..auth import Identity, current_identity
from ..context import Service
from ..errors import Conflict, NotFound, Unprocessable
from ..schemas.state_values import check_state_values
from ..schemas.threads import (
    ThreadCount,
    ThreadCreate,
    ThreadHistory,
    ThreadPatch,
    ThreadPrune,
    ThreadSearch,
    ThreadStateCheckpoint,
    ThreadStateUpdate,
)
from ..state import checkpoint_ref, get_history, get_state
from ..tables import runs as run_table
from ..tables import threads as table
from ..tables.common import new_id
from ..tables.threads import Thread
from .deps import GUARDS, get_service, select_fields

router = APIRouter(prefix="/threads", tags=["threads"], dependencies=GUARDS)


async def find(service: Service, thread_id: str, who: Identity) -> Thread:
    found = await service.db.aread(lambda tx: table.get(tx, thread_id, who.scope))
    if found is None:
        raise NotFound(f"thread {thread_id!r} not found")
    return found


def graph_of(service: Service, thread: Thread) -> Any:
    graph_id = thread.metadata.get("graph_id")
    return service.graphs.get_static(graph_id) if graph_id in service.graphs else None


@router.post("", summary="Create Thread")
async def create(body: ThreadCreate, service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> dict[str, Any]:
    thread_id = body.thread_id or new_id()
    ttl = body.ttl.ttl if body.ttl else service.settings.thread_ttl_minutes
    if body.supersteps:  # checked before the thread is made: a refused request writes nothing
        _check_supersteps(service, body.metadata or {}, body.supersteps)

    def insert(tx: Any) -> Thread:
        existing = table.get(tx, thread_id, None)
        if existing is not None:
            if body.if_exists == "do_nothing" and (existing.tenant == who.tenant
                                                   or who.is_admin):
                return existing
            raise Conflict(f"thread {thread_id!r} already exists")
        return table.insert(tx, thread_id=thread_id, tenant=who.tenant,
                            metadata=body.metadata or {}, ttl_minutes=ttl,
                            ttl_strategy="delete" if ttl else None)

    thread = await service.db.arun(insert)
    if body.supersteps:
        await _apply_supersteps(service, thread, body.supersteps)
        thread = await find(service, thread_id, who)
    return thread.to_api()


def _check_supersteps(service: Service, metadata: dict[str, Any],
                      supersteps: list[dict[str, Any]]) -> None:
    graph_id = metadata.get("graph_id")
    graph = service.graphs.get_static(graph_id) if graph_id in service.graphs else None
    if graph is None:
        raise Unprocessable("supersteps need a graph: put its graph_id in the thread metadata")
    for step in supersteps:
        for update in step.get("updates") or []:
            as_node = update.get("as_node")
            if as_node is not None and as_node not in graph.spec.nodes:
                raise Unprocessable(f"supersteps: as_node {as_node!r} is not a node of graph "
                                    f"{graph_id!r} (nodes: {', '.join(graph.spec.nodes)})")
            check_state_values(graph, update.get("values"), graph_id=graph_id,
                               what="supersteps values")


async def _apply_supersteps(service: Service, thread: Thread, supersteps: list[dict[str, Any]]
                            ) -> None:
    """Prefill a new thread's history: each superstep is a list of updates (as_node, values)."""
    graph = graph_of(service, thread)
    if graph is None:
        raise Unprocessable("supersteps need a graph: put its graph_id in the thread metadata")
    config = {"configurable": {"thread_id": thread.thread_id}}
    for step in supersteps:
        for update in step.get("updates") or []:
            await asyncio.to_thread(graph.update_state, config, update.get("values"),
                                    update.get("as_node"))
    await service.refresh_thread(thread.thread_id, thread.metadata.get("graph_id"))


@router.post("/search", summary="Search Threads")
async def search(body: ThreadSearch, service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> list[dict[str, Any]]:
    if body.extract:
        raise Unprocessable("extract is not supported yet (select whole fields with select)")
    found = await service.db.aread(lambda tx: table.search(
        tx, who.scope, ids=body.ids, metadata=body.metadata, values=body.values,
        status=body.status, limit=body.limit, offset=body.offset, sort_by=body.sort_by,
        sort_order=body.sort_order))
    return select_fields([t.to_api() for t in found], body.select)


@router.post("/count", summary="Count Threads")
async def count(body: ThreadCount, service: Service = Depends(get_service),
                who: Identity = Depends(current_identity)) -> int:
    return await service.db.aread(lambda tx: table.count(
        tx, who.scope, metadata=body.metadata, values=body.values, status=body.status))


@router.post("/prune", summary="Prune Threads")
async def prune(body: ThreadPrune, service: Service = Depends(get_service),
                who: Identity = Depends(current_identity)) -> dict[str, Any]:
    pruned = 0
    for thread_id in body.thread_ids:
        thread = await service.db.arun(lambda tx, t=thread_id: table.get(tx, t, who.scope))
        if thread is None:
            continue
        if body.strategy == "delete":
            await _delete(service, thread)
        else:
            await asyncio.to_thread(service.saver.prune, thread_id, 1)
        pruned += 1
    return {"pruned_count": pruned}


@router.get("/{thread_id}", summary="Get Thread")
async def get(thread_id: str, service: Service = Depends(get_service),
              who: Identity = Depends(current_identity)) -> dict[str, Any]:
    return (await find(service, thread_id, who)).to_api()


@router.patch("/{thread_id}", summary="Patch Thread")
async def patch(thread_id: str, body: ThreadPatch, service: Service = Depends(get_service),
                who: Identity = Depends(current_identity)) -> dict[str, Any]:
    thread = await find(service, thread_id, who)
    ttl = body.ttl.ttl if body.ttl else None
    changed = await service.db.arun(lambda tx: table.patch(
        tx, thread, metadata=body.metadata, ttl_minutes=ttl,
        ttl_strategy="delete" if ttl else None))
    return changed.to_api()


async def _delete(service: Service, thread: Thread) -> None:
    active = await service.db.aread(lambda tx: run_table.active_on_thread(tx, thread.thread_id))
    for run in active:
        await service.stop_run(run, "interrupt")
    await service.delete_thread_data(thread.thread_id)


@router.delete("/{thread_id}", summary="Delete Thread")
async def delete(thread_id: str, service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> None:
    await _delete(service, await find(service, thread_id, who))


@router.post("/{thread_id}/copy", summary="Copy Thread")
async def copy(thread_id: str, service: Service = Depends(get_service),
               who: Identity = Depends(current_identity)) -> dict[str, Any]:
    source = await find(service, thread_id, who)
    target = new_id()
    if await asyncio.to_thread(service.saver.head_id, thread_id) is not None:
        await asyncio.to_thread(service.saver.copy_thread, thread_id, target)

    def insert(tx: Any) -> Thread:
        made = table.insert(tx, thread_id=target, tenant=source.tenant,
                            metadata=dict(source.metadata), config=dict(source.config),
                            ttl_minutes=source.ttl_minutes, ttl_strategy=source.ttl_strategy)
        status = source.status if source.status != "busy" else "idle"
        table.record_state(tx, target, status=status, values=source.values,
                           interrupts=source.interrupts, error=source.error)
        return table.get(tx, target, None) or made

    return (await service.db.arun(insert)).to_api()


# -- state ---------------------------------------------------------------------------------


@router.get("/{thread_id}/state", summary="Get Thread State")
async def state(thread_id: str, subgraphs: bool = False,
                service: Service = Depends(get_service),
                who: Identity = Depends(current_identity)) -> dict[str, Any]:
    thread = await find(service, thread_id, who)
    return await get_state(service, graph_of(service, thread), thread_id, None, subgraphs)


@router.get("/{thread_id}/state/{checkpoint_id}", summary="Get Thread State At Checkpoint")
async def state_at(thread_id: str, checkpoint_id: str, subgraphs: bool = False,
                   service: Service = Depends(get_service),
                   who: Identity = Depends(current_identity)) -> dict[str, Any]:
    thread = await find(service, thread_id, who)
    return await _state_at(service, thread, {"checkpoint_id": checkpoint_id}, subgraphs)


@router.post("/{thread_id}/state/checkpoint", summary="Get Thread State At Checkpoint")
async def state_at_post(thread_id: str, body: ThreadStateCheckpoint,
                        service: Service = Depends(get_service),
                        who: Identity = Depends(current_identity)) -> dict[str, Any]:
    thread = await find(service, thread_id, who)
    return await _state_at(service, thread, body.checkpoint.model_dump(), body.subgraphs)


async def _state_at(service: Service, thread: Thread, checkpoint: dict[str, Any],
                    subgraphs: bool) -> dict[str, Any]:
    found = await get_state(service, graph_of(service, thread), thread.thread_id, checkpoint,
                            subgraphs)
    if found["created_at"] is None:
        raise NotFound(f"checkpoint {checkpoint.get('checkpoint_id')!r} not found in thread "
                       f"{thread.thread_id!r}")
    return found


@router.post("/{thread_id}/state", summary="Update Thread State")
async def update_state(thread_id: str, body: ThreadStateUpdate,
                       service: Service = Depends(get_service),
                       who: Identity = Depends(current_identity)) -> dict[str, Any]:
    thread = await find(service, thread_id, who)
    graph = graph_of(service, thread)
    if graph is None:
        raise Unprocessable(f"thread {thread_id!r} has not run a graph of this server yet, so "
                            f"its state has no schema to update; run it first")
    if thread.status == "busy":
        raise Conflict(f"thread {thread_id!r} is busy: a run is active; update its state when "
                       f"the run has ended")
    checkpoint = body.checkpoint.model_dump() if body.checkpoint else {}
    checkpoint_id = body.checkpoint_id or checkpoint.get("checkpoint_id")
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": "",
                               **({"checkpoint_id": checkpoint_id} if checkpoint_id else {})}}
    values = body.values
    if isinstance(values, list):  # several updates, as (values, as_node) pairs, not yet
        raise Unprocessable("values must be an object of state keys")
    graph_id = thread.metadata.get("graph_id")
    if body.as_node is not None and body.as_node not in graph.spec.nodes \
            and body.as_node not in (START, END):
        raise Unprocessable(f"as_node {body.as_node!r} is not a node of graph {graph_id!r} "
                            f"(nodes: {', '.join(graph.spec.nodes)})")
    check_state_values(graph, values, graph_id=graph_id)
    try:
        new_config = await asyncio.to_thread(graph.update_state, config, values, body.as_node)
    except (ValueError, TypeError) as exc:  # a reducer refusing the value: nothing written
        raise Unprocessable(str(exc)) from exc
    await service.refresh_thread(thread_id, thread.metadata.get("graph_id"))
    return {"checkpoint": checkpoint_ref(new_config)}


@router.get("/{thread_id}/history", summary="Get Thread History")
async def history(thread_id: str, limit: int = Query(default=10, ge=1, le=10000),
                  before: str | None = None, service: Service = Depends(get_service),
                  who: Identity = Depends(current_identity)) -> list[dict[str, Any]]:
    thread = await find(service, thread_id, who)
    return await get_history(service, graph_of(service, thread), thread_id, limit=limit,
                             before={"checkpoint_id": before} if before else None,
                             metadata=None, checkpoint=None)


@router.post("/{thread_id}/history", summary="Get Thread History Post")
async def history_post(thread_id: str, body: ThreadHistory,
                       service: Service = Depends(get_service),
                       who: Identity = Depends(current_identity)) -> list[dict[str, Any]]:
    thread = await find(service, thread_id, who)
    before = body.before
    if isinstance(before, str):
        before = {"checkpoint_id": before}
    elif isinstance(before, dict) and "configurable" in before:
        before = before["configurable"]
    return await get_history(service, graph_of(service, thread), thread_id, limit=body.limit,
                             before=before, metadata=body.metadata,
                             checkpoint=body.checkpoint.model_dump() if body.checkpoint
                             else None)


@router.post("/{thread_id}/cancel", summary="Cancel Thread (compensating)")
async def cancel_thread(thread_id: str, reason: str = Query(default="cancelled", max_length=500),
                        service: Service = Depends(get_service),
                        who: Identity = Depends(current_identity)) -> dict[str, Any]:
    """Stop a thread for good: its active runs stop at a step boundary, then the
    compensations of its completed steps run in reverse order, pending approvals and timers
    are closed, and a final checkpoint records the summary (a waypoint addition)."""
    from ..runs import follow

    thread = await find(service, thread_id, who)
    graph = graph_of(service, thread)
    if graph is None:
        raise Unprocessable(f"thread {thread_id!r} has not run a graph of this server")
    active = await service.db.aread(lambda tx: run_table.active_on_thread(tx, thread_id))
    for run in active:
        await service.db.arun(lambda tx, r=run: run_table.request_cancel(tx, r.run_id,
                                                                          "interrupt"))
        await service.stop_run(run, "interrupt")
        await follow.outcome(service, run.run_id)
    try:
        summary = await graph.acancel({"configurable": {"thread_id": thread_id}},
                                      reason=reason)
    except ValueError as exc:
        raise Conflict(str(exc)) from None
    await service.refresh_thread(thread_id, thread.metadata.get("graph_id"))
    return {"thread_id": thread_id, "compensation": summary}
