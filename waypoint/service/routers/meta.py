"""`/ok` (health, no auth) and `/info` (what this server is and supports)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ... import __version__
from ..auth import current_identity
from ..context import Service
from .deps import get_service

health = APIRouter(tags=["meta"])
router = APIRouter(tags=["meta"], dependencies=[Depends(current_identity)])


@health.get("/ok", summary="Health Check")
async def ok(service: Service = Depends(get_service)) -> dict[str, Any]:
    await service.db.arun(lambda tx: tx.one("SELECT 1"))
    return {"ok": True}


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
    }
