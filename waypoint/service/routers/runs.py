"""`/threads/{id}/runs` and `/runs`: start runs, stream them, wait for them, stop them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..auth import Identity, current_identity
from ..context import Service
from ..errors import Conflict, NotFound
from ..input_limits import MAX_BATCH, MAX_OFFSET
from ..runs import follow
from ..runs.submit import create_run
from ..schemas.runs import RunBatchItem, RunCreateStateful, RunCreateStateless, RunsCancel
from ..tables import runs as run_table
from ..tables.runs import Run
from .deps import GUARDS, TraceCarrier, get_service, select_fields, trace_carrier
from .threads import find as find_thread

router = APIRouter(tags=["runs"], dependencies=GUARDS)

PING_SECONDS = 10


def _paths(run: Run) -> tuple[str, str]:
    base = f"/threads/{run.thread_id}/runs/{run.run_id}"
    return base, base + "/stream"


def _sse(service: Service, run: Run, *, last_event_id: str | None = None,
         modes: list[str] | None = None, cancel_on_disconnect: bool = False) -> EventSourceResponse:
    """The run's events as Server-Sent Events (ids on every event; keep-alive pings)."""
    async def stream() -> AsyncIterator[ServerSentEvent]:
        finished = False
        try:
            async for event_id, name, data in follow.events(service, run.run_id, last_event_id,
                                                            modes):
                yield ServerSentEvent(data=data.decode(), event=name, id=event_id)
            finished = True
        finally:
            if not finished and cancel_on_disconnect:
                # The stream's own scope is cancelled (the client left): stop the run from
                # a task of its own, which that cancellation does not reach.
                service.spawn(_cancel(service, run.run_id, "interrupt"))

    base, stream_path = _paths(run)
    return EventSourceResponse(stream(), ping=PING_SECONDS, headers={
        "Location": stream_path, "Content-Location": base, "Cache-Control": "no-store",
        "X-Accel-Buffering": "no"})


async def _cancel(service: Service, run_id: str, action: str) -> Run | None:
    run = await service.db.aread(lambda tx: run_table.get(tx, run_id, None))
    if run is None or run.status not in run_table.ACTIVE:
        return None
    await service.db.arun(lambda tx: run_table.request_cancel(tx, run_id, action))
    await service.stop_run(run, action)
    return run


async def _wait(service: Service, run: Run) -> JSONResponse:
    result = await follow.outcome(service, run.run_id)
    base, _ = _paths(run)
    if result is not None and result.status == "pending":
        return JSONResponse({"detail": f"the server is shutting down; run {run.run_id} "
                             f"continues when it is back (join it at {base}/join)"},
                            status_code=503, headers={"Retry-After": "5",
                                                      "Location": base + "/join"})
    return JSONResponse(follow.wait_body(result), headers={
        "Location": base + "/join", "Content-Location": base})


# -- runs on a thread -------------------------------------------------------------------


@router.post("/threads/{thread_id}/runs", summary="Create Background Run")
async def create(thread_id: str, body: RunCreateStateful, response: Response,
                 service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity),
                 trace: TraceCarrier = Depends(trace_carrier)) -> dict[str, Any]:
    run = await create_run(service, who, body, thread_id, trace=trace)
    response.headers["Content-Location"] = _paths(run)[0]
    return run.to_api()


@router.post("/threads/{thread_id}/runs/stream", summary="Create Run, Stream Output")
async def create_and_stream(thread_id: str, body: RunCreateStateful,
                            service: Service = Depends(get_service),
                            who: Identity = Depends(current_identity),
                            trace: TraceCarrier = Depends(trace_carrier)
                            ) -> EventSourceResponse:
    run = await create_run(service, who, body, thread_id, trace=trace)
    return _sse(service, run, cancel_on_disconnect=body.on_disconnect == "cancel")


@router.post("/threads/{thread_id}/runs/wait", summary="Create Run, Wait for Output")
async def create_and_wait(thread_id: str, body: RunCreateStateful,
                          service: Service = Depends(get_service),
                          who: Identity = Depends(current_identity),
                          trace: TraceCarrier = Depends(trace_carrier)) -> JSONResponse:
    run = await create_run(service, who, body, thread_id, trace=trace)
    return await _wait(service, run)


@router.get("/threads/{thread_id}/runs", summary="List Runs")
async def list_runs(thread_id: str, limit: int = Query(default=10, ge=0, le=1000),
                    offset: int = Query(default=0, ge=0, le=MAX_OFFSET), status: str | None = None,
                    select: list[str] | None = Query(default=None),
                    service: Service = Depends(get_service),
                    who: Identity = Depends(current_identity)) -> list[dict[str, Any]]:
    await find_thread(service, thread_id, who)
    found = await service.db.aread(lambda tx: run_table.list_for_thread(
        tx, thread_id, status=status, limit=limit, offset=offset))
    return select_fields([r.to_api() for r in found], select)


async def _find(service: Service, thread_id: str, run_id: str, who: Identity) -> Run:
    run = await service.db.aread(lambda tx: run_table.get(tx, run_id, who.scope, thread_id))
    if run is None:
        raise NotFound(f"run {run_id!r} not found in thread {thread_id!r}")
    return run


@router.get("/threads/{thread_id}/runs/{run_id}", summary="Get Run")
async def get(thread_id: str, run_id: str, service: Service = Depends(get_service),
              who: Identity = Depends(current_identity)) -> dict[str, Any]:
    return (await _find(service, thread_id, run_id, who)).to_api()


@router.delete("/threads/{thread_id}/runs/{run_id}", summary="Delete Run")
async def delete(thread_id: str, run_id: str, service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> None:
    run = await _find(service, thread_id, run_id, who)
    if run.status in run_table.ACTIVE:
        raise Conflict(f"run {run_id!r} is {run.status}; cancel it before deleting it")
    await service.db.arun(lambda tx: run_table.delete(tx, run_id))


@router.get("/threads/{thread_id}/runs/{run_id}/join", summary="Join Run")
async def join(thread_id: str, run_id: str, service: Service = Depends(get_service),
               who: Identity = Depends(current_identity)) -> JSONResponse:
    return await _wait(service, await _find(service, thread_id, run_id, who))


@router.get("/threads/{thread_id}/runs/{run_id}/stream", summary="Join Run Stream")
async def join_stream(thread_id: str, run_id: str, request: Request,
                      cancel_on_disconnect: bool = False,
                      stream_mode: list[str] | None = Query(default=None),
                      last_event_id: str | None = Header(default=None),
                      service: Service = Depends(get_service),
                      who: Identity = Depends(current_identity)) -> EventSourceResponse:
    run = await _find(service, thread_id, run_id, who)
    return _sse(service, run, last_event_id=last_event_id, modes=stream_mode,
                cancel_on_disconnect=cancel_on_disconnect)


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", summary="Cancel Run")
async def cancel(thread_id: str, run_id: str, wait: bool = False,
                 action: str = Query(default="interrupt", pattern="^(interrupt|rollback)$"),
                 service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> Any:
    run = await _find(service, thread_id, run_id, who)
    if run.status not in run_table.ACTIVE:
        raise Conflict(f"run {run_id!r} is {run.status}: only a pending or running run can be "
                       f"cancelled")
    await _cancel(service, run_id, action)
    if wait:
        await follow.outcome(service, run_id)
    return None


# -- stateless runs ---------------------------------------------------------------------


@router.post("/runs", summary="Create Background Run")
async def create_stateless(body: RunCreateStateless, response: Response,
                           service: Service = Depends(get_service),
                           who: Identity = Depends(current_identity),
                           trace: TraceCarrier = Depends(trace_carrier)) -> dict[str, Any]:
    run = await create_run(service, who, body, None, stateless=True, trace=trace)
    response.headers["Content-Location"] = _paths(run)[0]
    return run.to_api()


@router.post("/runs/stream", summary="Create Run, Stream Output")
async def stream_stateless(body: RunCreateStateless, service: Service = Depends(get_service),
                           who: Identity = Depends(current_identity),
                           trace: TraceCarrier = Depends(trace_carrier)
                           ) -> EventSourceResponse:
    run = await create_run(service, who, body, None, stateless=True, trace=trace)
    return _sse(service, run, cancel_on_disconnect=body.on_disconnect == "cancel")


@router.post("/runs/wait", summary="Create Run, Wait for Output")
async def wait_stateless(body: RunCreateStateless, service: Service = Depends(get_service),
                         who: Identity = Depends(current_identity),
                         trace: TraceCarrier = Depends(trace_carrier)) -> JSONResponse:
    run = await create_run(service, who, body, None, stateless=True, trace=trace)
    return await _wait(service, run)


@router.post("/runs/batch", summary="Create Run Batch")
async def batch(body: Annotated[list[RunBatchItem], Body(max_length=MAX_BATCH)],
                service: Service = Depends(get_service),
                who: Identity = Depends(current_identity),
                trace: TraceCarrier = Depends(trace_carrier)) -> list[dict[str, Any]]:
    made = []
    for item in body:
        if item.thread_id:
            stateful = RunCreateStateful(**item.model_dump(
                exclude={"thread_id", "on_completion"}, exclude_none=True))
            made.append(await create_run(service, who, stateful, item.thread_id, trace=trace))
        else:
            made.append(await create_run(service, who, item, None, stateless=True,
                                         trace=trace))
    return [r.to_api() for r in made]


@router.post("/runs/cancel", summary="Cancel Runs", status_code=204)
async def cancel_many(body: RunsCancel,
                      action: str = Query(default="interrupt", pattern="^(interrupt|rollback)$"),
                      service: Service = Depends(get_service),
                      who: Identity = Depends(current_identity)) -> Response:
    if body.run_ids:
        ids = []
        for run_id in body.run_ids:
            run = await service.db.arun(lambda tx, r=run_id: run_table.get(tx, r, who.scope))
            if run is None or (body.thread_id and run.thread_id != body.thread_id):
                raise NotFound(f"run {run_id!r} not found")
            ids.append(run_id)
    else:
        statuses = {"pending": ("pending",), "running": ("running",)}.get(
            body.status or "all", run_table.ACTIVE)
        ids = await service.db.aread(lambda tx: run_table.ids_by_status(
            tx, who.scope, statuses, body.thread_id))
    for run_id in ids:
        await _cancel(service, run_id, action)
    return Response(status_code=204)
