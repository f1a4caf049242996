"""`GET /threads/{id}/stream`: what a thread's runs stream, one run after another.

A client joins the thread's current run (its oldest pending or running one) and then each
run that follows it on the thread, as it starts, until the client leaves (or the thread
is deleted, or the server drains). Nothing has to be known in advance: a UI reloading a
page finds the conversation's live run without asking for its id.

Each run's events are sent as its own stream has them (same names and data, `metadata`
first), followed by `run_done` with `{"run_id", "thread_id", "status"}`. Ids are the run's
event ids prefixed by the run (`<run_id>:<attempt>-<seq>`, and `<run_id>:done`), so
`Last-Event-ID` resumes exactly after an event: the rest of that run, then the runs that
followed it. Modes: `run_modes` (everything; the default) and `lifecycle` (only the
`metadata` and `run_done` events).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..auth import Identity, current_identity
from ..context import Service
from ..errors import Unprocessable
from ..runs import follow
from ..tables import runs as run_table
from ..tables import threads as thread_table
from ..tables.db import Tx
from ..tables.events import parse_id
from ..tables.runs import Run
from .deps import GUARDS, get_service
from .runs import PING_SECONDS
from .threads import find as find_thread

router = APIRouter(tags=["threads"], dependencies=GUARDS)

THREAD_MODES = ("run_modes", "lifecycle")
_NOT_YET = ("state_update",)
_PAGE = 50
RunKey = tuple[float, str]  # (created_at, run_id): the order runs start in on a thread


def _modes(requested: list[str] | None) -> set[str]:
    modes = {m for m in requested or () if m} or {"run_modes"}
    later = sorted(modes & set(_NOT_YET))
    if later:
        raise Unprocessable(f"stream_mode {later} is not supported yet on a thread stream; "
                            f"supported: {', '.join(THREAD_MODES)}")
    unknown = sorted(modes - set(THREAD_MODES))
    if unknown:
        raise Unprocessable(f"unknown stream_mode {unknown} for a thread stream; supported: "
                            f"{', '.join(THREAD_MODES)}")
    return modes


def _key(run: Run) -> RunKey:
    return run.created_at, run.run_id


async def _next_run(service: Service, thread_id: str, after: RunKey | None
                    ) -> tuple[bool, Run | None]:
    """(the thread still exists, the first of its runs after `after`)."""
    def read(tx: Tx) -> tuple[bool, Run | None]:
        if thread_table.get(tx, thread_id, None) is None:
            return False, None
        newer: list[Run] = []
        offset = 0
        while True:  # newest first: page back until the runs are older than `after`
            page = run_table.list_for_thread(tx, thread_id, limit=_PAGE, offset=offset)
            fresh = [r for r in page if after is None or _key(r) > after]
            newer.extend(fresh)
            if len(page) < _PAGE or len(fresh) < len(page):
                break
            offset += _PAGE
        return True, min(newer, key=_key) if newer else None

    return await service.db.aread(read)


async def _start(service: Service, thread_id: str, last_event_id: str | None
                 ) -> tuple[Run | None, str | None, RunKey | None]:
    """Where to begin: (a run to follow, the id of its event to resume after, else the
    key of the run after which to wait for the next)."""
    if last_event_id and ":" in last_event_id:
        run_id, _, rest = last_event_id.strip().rpartition(":")
        run = await service.db.aread(lambda tx: run_table.get(tx, run_id, None, thread_id))
        if run is not None:
            if rest == "done":
                return None, None, _key(run)
            return run, rest if parse_id(rest) else None, None
    active, newest = await service.db.aread(lambda tx: (
        run_table.active_on_thread(tx, thread_id),
        run_table.list_for_thread(tx, thread_id, limit=1)))
    if active:
        return active[0], None, None
    return None, None, _key(newest[0]) if newest else None


async def thread_events(service: Service, thread_id: str, modes: set[str],
                        last_event_id: str | None) -> AsyncIterator[ServerSentEvent]:
    """The thread's runs' events, run after run, until the thread is gone or the server
    drains; the client leaving ends it (the generator is cancelled)."""
    everything = "run_modes" in modes
    run, after, position = await _start(service, thread_id, last_event_id)
    while True:
        if run is not None:
            async for event_id, name, data in follow.events(service, run.run_id, after):
                if everything or name == "metadata":
                    yield ServerSentEvent(data=data.decode(), event=name,
                                          id=f"{run.run_id}:{event_id}")
            if service.closing.is_set():
                return  # draining: the run continues after a restart; so can the client
            ended = await service.db.aread(lambda tx, r=run.run_id: run_table.get(tx, r, None))
            status = ended.status if ended is not None else "deleted"
            yield ServerSentEvent(data=json.dumps({"run_id": run.run_id, "thread_id": thread_id,
                                                   "status": status}),
                                  event="run_done", id=f"{run.run_id}:done")
            position, run, after = _key(run), None, None
        exists, run = await _next_run(service, thread_id, position)
        if not exists or service.closing.is_set():
            return
        if run is None:
            await asyncio.sleep(service.settings.poll_interval)


@router.get("/threads/{thread_id}/stream", summary="Join Thread Stream")
async def join_thread_stream(thread_id: str,
                             stream_mode: list[str] | None = Query(default=None),
                             last_event_id: str | None = Header(default=None),
                             service: Service = Depends(get_service),
                             who: Identity = Depends(current_identity)) -> EventSourceResponse:
    """Follow the thread: its current run's events, then the next runs' as they start."""
    await find_thread(service, thread_id, who)
    modes = _modes(stream_mode)
    query = urlencode([("stream_mode", m) for m in sorted(modes)])
    return EventSourceResponse(
        thread_events(service, thread_id, modes, last_event_id), ping=PING_SECONDS,
        headers={"Location": f"/threads/{thread_id}/stream?{query}",
                 "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
