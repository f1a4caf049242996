"""`/assistants`: the graphs this server runs, as configured assistants, versioned."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query

from ...graph.json_schema import graph_schemas, subgraph_schemas
from ..auth import Identity, current_identity
from ..context import Service
from ..errors import Conflict, Forbidden, NotFound, Unprocessable
from ..schemas.assistants import (
    AssistantCount,
    AssistantCreate,
    AssistantLatest,
    AssistantPatch,
    AssistantSearch,
    AssistantVersions,
)
from ..tables import assistants as table
from ..tables.assistants import Assistant
from ..tables.common import graph_assistant_id, new_id
from .deps import GUARDS, get_service, select_fields

router = APIRouter(prefix="/assistants", tags=["assistants"],
                   dependencies=GUARDS)


async def find(service: Service, assistant_id: str, who: Identity) -> Assistant:
    """An assistant by id, or by the name of the graph it was made from."""
    key = graph_assistant_id(assistant_id) if assistant_id in service.graphs else assistant_id
    found = await service.db.aread(lambda tx: table.get(tx, key, who.scope))
    if found is None:
        raise NotFound(f"assistant {assistant_id!r} not found")
    return found


def _changeable(assistant: Assistant, who: Identity) -> None:
    if assistant.tenant is None and not who.is_admin:
        raise Forbidden(f"assistant {assistant.assistant_id!r} belongs to the server (made "
                        f"from graph {assistant.graph_id!r}); only an admin can change it")


async def _graph(service: Service, assistant: Assistant) -> Any:
    if assistant.graph_id not in service.graphs:
        raise NotFound(f"graph {assistant.graph_id!r} is not loaded by this server")
    return await service.graphs.get(assistant.graph_id, {"configurable": {}, **(
        assistant.config or {})})


@router.post("", summary="Create Assistant")
async def create(body: AssistantCreate, service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> dict[str, Any]:
    if body.graph_id not in service.graphs:
        raise Unprocessable(f"graph {body.graph_id!r} is not loaded by this server (graphs: "
                            f"{', '.join(service.graphs.ids()) or 'none'})")
    assistant_id = body.assistant_id or new_id()

    def insert(tx: Any) -> Assistant:
        existing = table.get(tx, assistant_id, None)
        if existing is not None:
            if body.if_exists == "do_nothing" and (existing.tenant in (None, who.tenant)
                                                   or who.is_admin):
                return existing
            raise Conflict(f"assistant {assistant_id!r} already exists")
        return table.insert(tx, assistant_id=assistant_id, tenant=who.tenant,
                            graph_id=body.graph_id, name=body.name or body.graph_id,
                            description=body.description, config=body.config or {},
                            context=body.context or {}, metadata=body.metadata or {})

    return (await service.db.arun(insert)).to_api()


@router.post("/search", summary="Search Assistants")
async def search(body: AssistantSearch, service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> list[dict[str, Any]]:
    found = await service.db.aread(lambda tx: table.search(
        tx, who.scope, graph_id=body.graph_id, name=body.name, metadata=body.metadata,
        limit=body.limit, offset=body.offset, sort_by=body.sort_by, sort_order=body.sort_order))
    return select_fields([a.to_api() for a in found], body.select)


@router.post("/count", summary="Count Assistants")
async def count(body: AssistantCount, service: Service = Depends(get_service),
                who: Identity = Depends(current_identity)) -> int:
    return await service.db.aread(lambda tx: table.count(
        tx, who.scope, graph_id=body.graph_id, name=body.name, metadata=body.metadata))


@router.get("/{assistant_id}", summary="Get Assistant")
async def get(assistant_id: str, service: Service = Depends(get_service),
              who: Identity = Depends(current_identity)) -> dict[str, Any]:
    return (await find(service, assistant_id, who)).to_api()


@router.patch("/{assistant_id}", summary="Patch Assistant")
async def patch(assistant_id: str, body: AssistantPatch,
                service: Service = Depends(get_service),
                who: Identity = Depends(current_identity)) -> dict[str, Any]:
    current = await find(service, assistant_id, who)
    _changeable(current, who)
    if body.graph_id is not None and body.graph_id not in service.graphs:
        raise Unprocessable(f"graph {body.graph_id!r} is not loaded by this server")
    changes = body.model_dump(exclude_unset=True)
    service.forget_assistant(current.assistant_id)
    return (await service.db.arun(lambda tx: table.patch(tx, current, changes))).to_api()


@router.delete("/{assistant_id}", summary="Delete Assistant")
async def delete(assistant_id: str, service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> None:
    current = await find(service, assistant_id, who)
    _changeable(current, who)
    service.forget_assistant(current.assistant_id)
    await service.db.arun(lambda tx: table.delete(tx, current.assistant_id))


@router.get("/{assistant_id}/graph", summary="Get Assistant Graph")
async def graph(assistant_id: str, xray: bool | int = Query(default=False),
                service: Service = Depends(get_service),
                who: Identity = Depends(current_identity)) -> dict[str, Any]:
    compiled = await _graph(service, await find(service, assistant_id, who))
    return compiled.get_graph(xray=xray).to_json()


@router.get("/{assistant_id}/schemas", summary="Get Assistant Schemas")
async def schemas(assistant_id: str, service: Service = Depends(get_service),
                  who: Identity = Depends(current_identity)) -> dict[str, Any]:
    assistant = await find(service, assistant_id, who)
    compiled = await _graph(service, assistant)
    return await asyncio.to_thread(graph_schemas, compiled, assistant.graph_id)


@router.get("/{assistant_id}/subgraphs", summary="Get Assistant Subgraphs")
async def subgraphs(assistant_id: str, recurse: bool = False,
                    service: Service = Depends(get_service),
                    who: Identity = Depends(current_identity)) -> dict[str, Any]:
    compiled = await _graph(service, await find(service, assistant_id, who))
    return await asyncio.to_thread(subgraph_schemas, compiled, None, recurse=recurse)


@router.get("/{assistant_id}/subgraphs/{namespace}",
            summary="Get Assistant Subgraphs by Namespace")
async def subgraphs_at(assistant_id: str, namespace: str, recurse: bool = False,
                       service: Service = Depends(get_service),
                       who: Identity = Depends(current_identity)) -> dict[str, Any]:
    compiled = await _graph(service, await find(service, assistant_id, who))
    found = await asyncio.to_thread(subgraph_schemas, compiled, namespace, recurse=recurse)
    if not found:
        raise NotFound(f"graph has no subgraph {namespace!r}")
    return found


@router.post("/{assistant_id}/versions", summary="Get Assistant Versions")
async def versions(assistant_id: str, body: AssistantVersions,
                   service: Service = Depends(get_service),
                   who: Identity = Depends(current_identity)) -> list[dict[str, Any]]:
    current = await find(service, assistant_id, who)
    return await service.db.aread(lambda tx: table.versions(
        tx, current.assistant_id, metadata=body.metadata, limit=body.limit,
        offset=body.offset))


@router.post("/{assistant_id}/latest", summary="Set Latest Assistant Version")
async def latest(assistant_id: str, body: AssistantLatest,
                 service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> dict[str, Any]:
    current = await find(service, assistant_id, who)
    _changeable(current, who)
    service.forget_assistant(current.assistant_id)
    changed = await service.db.arun(lambda tx: table.set_latest(tx, current, body.version))
    if changed is None:
        raise NotFound(f"assistant {assistant_id!r} has no version {body.version}")
    return changed.to_api()
