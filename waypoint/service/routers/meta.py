"""`/ok` (liveness) and `/ready` (readiness), without auth, and `/info` (what this server
is and supports)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from ... import __version__
from ..auth import Identity, current_identity
from ..context import Service
from ..errors import Forbidden
from .deps import GUARDS, get_service

health = APIRouter(tags=["meta"])
router = APIRouter(tags=["meta"], dependencies=GUARDS)
worker_metrics = APIRouter(tags=["meta"])  # a worker's health port: /metrics only


@health.get("/ok", summary="Health Check")
async def ok(check_db: int = 0, service: Service = Depends(get_service)) -> dict[str, Any]:
    """Liveness: the process answers. The database is checked only when asked
    (`?check_db=1`): a liveness probe must not restart every pod while it is down."""
    if check_db:
        await service.db.arun(lambda tx: tx.one("SELECT 1"))
    return {"ok": True}


@health.get("/ready", summary="Readiness", responses={503: {"description": "Draining, or "
                                                                 "the database is unreachable"}})
async def ready(service: Service = Depends(get_service)) -> Any:
    """Whether to send this process work: false (503) from the moment it starts draining
    (SIGTERM in a rolling deploy), so a load balancer stops routing to it while its runs
    reach a step boundary; false too while its database is unreachable."""
    if service.closing.is_set():
        return JSONResponse({"ready": False, "draining": True}, status_code=503)
    try:
        await service.db.arun(lambda tx: tx.one("SELECT 1"))
    except Exception as exc:
        return JSONResponse({"ready": False, "draining": False,
                             "detail": f"database unreachable: {type(exc).__name__}"},
                            status_code=503)
    return {"ready": True, "draining": False}


@worker_metrics.get("/metrics", summary="Prometheus Metrics", response_class=Response,
                    responses={200: {"content": {"text/plain": {}}}})
@router.get("/metrics", summary="Prometheus Metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(who: Identity = Depends(current_identity),
                  service: Service = Depends(get_service)) -> Response:
    """This process's metrics and the fleet's gauges, in Prometheus' text format. They
    cover every tenant, so only an admin key may read them (Prometheus sends it as a
    bearer token)."""
    if not who.is_admin:
        raise Forbidden("metrics cover every tenant: they need an admin API key")
    body, content_type = await asyncio.to_thread(service.metrics.render)
    return Response(body, media_type=content_type)


@router.get("/info", summary="Server Information")
async def info(service: Service = Depends(get_service)) -> dict[str, Any]:
    return {
        "version": __version__,
        "server": "waypoint",
        "flags": {"assistants": True, "crons": service.pool is not None, "langsmith": False,
                  "store": service.store is not None, "approvals": True},
        "host": {"kind": "self-hosted", "database": "postgres" if service.settings.postgres
                 else "sqlite"},
        "graphs": service.graphs.ids(),
        "graph_versions": service.graphs.versions(),
    }
