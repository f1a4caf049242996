"""`/store`: long-term memory shared across threads, one partition per tenant.

The same store is what nodes reach with `get_store()`, scoped to the run's tenant.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from ..auth import Identity, current_identity
from ..context import Service
from ..errors import NotFound, Unprocessable
from ..schemas.store import StoreDelete, StoreNamespaces, StorePut, StoreSearch
from .deps import GUARDS, get_service

router = APIRouter(prefix="/store", tags=["store"], dependencies=GUARDS)


def _store(service: Service, who: Identity) -> Any:
    if service.store is None:
        raise NotFound("this server has no long-term store")
    return service.store.scoped(who.tenant)


def item_json(item: Any) -> dict[str, Any]:
    data = {"namespace": list(item.namespace), "key": item.key, "value": item.value,
            "created_at": item.created_at.isoformat(), "updated_at": item.updated_at.isoformat()}
    score = getattr(item, "score", None)
    if score is not None:
        data["score"] = score
    return data


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise Unprocessable(str(exc)) from exc


@router.put("/items", summary="Store or update an item.", status_code=204)
async def put_item(body: StorePut, service: Service = Depends(get_service),
                   who: Identity = Depends(current_identity)) -> Response:
    store = _store(service, who)
    kwargs: dict[str, Any] = {}
    if body.ttl is not None:
        kwargs["ttl"] = body.ttl
    index = None if body.index is None or body.index is True else body.index
    await _call(store.put, tuple(body.namespace), body.key, body.value, index, **kwargs)
    return Response(status_code=204)


@router.get("/items", summary="Retrieve a single item.")
async def get_item(key: str, namespace: str | None = Query(default=None),
                   refresh_ttl: bool | None = None, service: Service = Depends(get_service),
                   who: Identity = Depends(current_identity)) -> dict[str, Any]:
    store = _store(service, who)
    path = tuple(namespace.split(".")) if namespace else ()
    if not path:
        raise Unprocessable("namespace is required (labels joined with '.')")
    item = await _call(store.get, path, key, refresh_ttl=refresh_ttl)
    if item is None:
        raise NotFound(f"item {key!r} not found in namespace {list(path)}")
    return item_json(item)


@router.delete("/items", summary="Delete an item.", status_code=204)
async def delete_item(body: StoreDelete, service: Service = Depends(get_service),
                      who: Identity = Depends(current_identity)) -> Response:
    await _call(_store(service, who).delete, tuple(body.namespace), body.key)
    return Response(status_code=204)


@router.post("/items/search", summary="Search or list items within a namespace prefix.")
async def search_items(body: StoreSearch, service: Service = Depends(get_service),
                       who: Identity = Depends(current_identity)) -> dict[str, Any]:
    items = await _call(_store(service, who).search, tuple(body.namespace_prefix or ()),
                        query=body.query, filter=body.filter, limit=body.limit,
                        offset=body.offset, refresh_ttl=body.refresh_ttl)
    return {"items": [item_json(i) for i in items]}


@router.post("/namespaces", summary="List namespaces with optional match conditions.")
async def list_namespaces(body: StoreNamespaces, service: Service = Depends(get_service),
                          who: Identity = Depends(current_identity)) -> dict[str, Any]:
    found = await _call(_store(service, who).list_namespaces,
                        prefix=tuple(body.prefix) if body.prefix else None,
                        suffix=tuple(body.suffix) if body.suffix else None,
                        max_depth=body.max_depth, limit=body.limit, offset=body.offset)
    return {"namespaces": [list(ns) for ns in found]}
