"""`/runs/crons`: runs on a schedule, for a thread or on a new thread each time."""

from __future__ import annotations

import time
from typing import Any

from croniter import CroniterError
from fastapi import APIRouter, Depends

from ..auth import Identity, current_identity
from ..context import Service
from ..crons import check_schedule, next_time, zone
from ..errors import NotFound, Unprocessable
from ..runs.submit import resolve_assistant
from ..schemas.runs import CronCount, CronCreate, CronPatch, CronSearch
from ..tables import crons as table
from ..tables.common import epoch, new_id
from ..tables.crons import Cron
from .deps import GUARDS, get_service, select_fields
from .threads import find as find_thread

router = APIRouter(tags=["crons"], dependencies=GUARDS)

_PAYLOAD = ("input", "config", "context", "webhook", "interrupt_before", "interrupt_after",
            "stream_mode", "stream_subgraphs", "stream_resumable", "durability",
            "multitask_strategy", "metadata")


def _zone(name: str | None) -> None:
    """A timezone that exists: a directory of the zone database ("America") or a name the
    file system refuses (too long) is a 422 like any unknown name, not a server error."""
    try:
        zone(name)
    except OSError:
        raise Unprocessable(f"unknown timezone {(name or '')[:64]!r} (an IANA name such as "
                            f"'Europe/Paris')") from None


def _next(schedule: str, timezone: str | None, at: float, end_time: float | None
          ) -> float | None:
    """The next due time; a schedule that never falls due ("0 0 31 2 *") is refused."""
    try:
        return next_time(schedule, timezone, at, end_time)
    except CroniterError:
        raise Unprocessable(f"schedule {schedule!r} never falls due") from None


def _end_time(value: str | None) -> float | None:
    try:
        return epoch(value)
    except ValueError as exc:
        raise Unprocessable(f"end_time: {exc}") from None


async def _create(service: Service, who: Identity, body: CronCreate, thread_id: str | None
                  ) -> dict[str, Any]:
    check_schedule(body.schedule)
    _zone(body.timezone)
    assistant = await resolve_assistant(service, body.assistant_id, who)
    if thread_id is not None:
        await find_thread(service, thread_id, who)
    end_time = _end_time(body.end_time)
    at = time.time()
    payload = {k: v for k, v in body.model_dump(include=set(_PAYLOAD)).items()
               if v is not None}
    cron = Cron(cron_id=new_id(), tenant=who.tenant, assistant_id=assistant.assistant_id,
                thread_id=thread_id, schedule=body.schedule, timezone=body.timezone,
                end_time=end_time, payload=payload, metadata=body.metadata or {},
                user_id=body.user_id or who.user_id, enabled=body.enabled,
                on_run_completed=body.on_run_completed,
                next_run_date=_next(body.schedule, body.timezone, at, end_time),
                created_at=at, updated_at=at)
    await service.db.arun(lambda tx: table.insert(tx, cron))
    return cron.to_api()


@router.post("/threads/{thread_id}/runs/crons", summary="Create Thread Cron")
async def create_for_thread(thread_id: str, body: CronCreate,
                            service: Service = Depends(get_service),
                            who: Identity = Depends(current_identity)) -> dict[str, Any]:
    return await _create(service, who, body, thread_id)


@router.post("/runs/crons", summary="Create Cron")
async def create(body: CronCreate, service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> dict[str, Any]:
    return await _create(service, who, body, None)


@router.post("/runs/crons/search", summary="Search Crons")
async def search(body: CronSearch, service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> list[dict[str, Any]]:
    found = await service.db.aread(lambda tx: table.search(
        tx, who.scope, assistant_id=body.assistant_id, thread_id=body.thread_id,
        enabled=body.enabled, metadata=body.metadata, limit=body.limit, offset=body.offset,
        sort_by=body.sort_by, sort_order=body.sort_order))
    return select_fields([c.to_api() for c in found], body.select)


@router.post("/runs/crons/count", summary="Count Crons")
async def count(body: CronCount, service: Service = Depends(get_service),
                who: Identity = Depends(current_identity)) -> int:
    return await service.db.aread(lambda tx: table.count(
        tx, who.scope, assistant_id=body.assistant_id, thread_id=body.thread_id,
        metadata=body.metadata))


async def _find(service: Service, cron_id: str, who: Identity) -> Cron:
    cron = await service.db.aread(lambda tx: table.get(tx, cron_id, who.scope))
    if cron is None:
        raise NotFound(f"cron {cron_id!r} not found")
    return cron


@router.get("/runs/crons/{cron_id}", summary="Get Cron")
async def get(cron_id: str, service: Service = Depends(get_service),
              who: Identity = Depends(current_identity)) -> dict[str, Any]:
    return (await _find(service, cron_id, who)).to_api()


@router.patch("/runs/crons/{cron_id}", summary="Update Cron")
async def patch(cron_id: str, body: CronPatch, service: Service = Depends(get_service),
                who: Identity = Depends(current_identity)) -> dict[str, Any]:
    cron = await _find(service, cron_id, who)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("schedule") is not None:  # null: unchanged (a cron needs a schedule)
        check_schedule(changes["schedule"])
        cron.schedule = changes["schedule"]
    if "timezone" in changes:  # null: back to UTC
        _zone(changes["timezone"])
        cron.timezone = changes["timezone"]
    if "end_time" in changes:
        cron.end_time = _end_time(changes["end_time"])
    for key in ("enabled", "on_run_completed"):
        if changes.get(key) is not None:
            setattr(cron, key, changes[key])
    if changes.get("metadata") is not None:
        cron.metadata = {**cron.metadata, **changes["metadata"]}
    cron.payload = {**cron.payload, **{k: v for k, v in changes.items() if k in _PAYLOAD
                                       and k != "metadata"}}
    cron.next_run_date = _next(cron.schedule, cron.timezone, time.time(), cron.end_time)
    await service.db.arun(lambda tx: table.update(tx, cron))
    return cron.to_api()


@router.delete("/runs/crons/{cron_id}", summary="Delete Cron")
async def delete(cron_id: str, service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> None:
    await _find(service, cron_id, who)
    await service.db.arun(lambda tx: table.delete(tx, cron_id))
