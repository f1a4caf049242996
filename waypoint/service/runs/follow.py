"""Following a run: its events as SSE (resumable from any event id), or its outcome.

Stored events are read first, then the live run in this process takes over from the last
id seen; a run that is queued, or runs in another process, is polled for until it ends.
Event ids increase across attempts, so `Last-Event-ID` resumes exactly where a client
stopped, whatever happened to the server meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..tables import events as event_table
from ..tables import runs as run_table
from ..tables.events import format_id, parse_id
from .broker import Outcome

if TYPE_CHECKING:
    from ..context import Service

FINAL = ("success", "error", "timeout", "interrupted")
Item = tuple[str, str, bytes]  # (event id, event name, JSON data)


def _wanted(name: str, modes: set[str] | None) -> bool:
    if modes is None or name in ("metadata", "error"):
        return True
    mode = name.split("|", 1)[0]
    if mode.startswith("messages/"):
        return "messages" in modes
    if mode == "messages":
        return "messages-tuple" in modes or "messages" in modes
    return mode in modes


async def events(service: Service, run_id: str, last_event_id: str | None = None,
                 modes: list[str] | None = None) -> AsyncIterator[Item]:
    """Every event of the run after `last_event_id`, until the run ends."""
    after = parse_id(last_event_id)
    wanted = {m for m in modes or () if m} or None  # `stream_mode=` (empty) means all
    broker = service.broker
    followed: set[int] = set()  # attempts followed live to their end
    while True:
        opened = broker.expect_open(run_id)  # before looking: an attempt may open meanwhile
        try:
            stored = await service.db.aread(lambda tx, a=after: event_table.read(tx, run_id, a))
            for attempt, seq, name, data in stored:
                after = (attempt, seq)
                if _wanted(name, wanted):
                    yield format_id(attempt, seq), name, data
            live = broker.runs.get(run_id)
            if live is not None and live.attempt not in followed and (
                    after is None or live.attempt >= after[0]):
                async for attempt, seq, name, data in live.follow(after):
                    after = (attempt, seq)
                    if _wanted(name, wanted):
                        yield format_id(attempt, seq), name, data
                followed.add(live.attempt)
                if live.outcome is not None and live.outcome.status in FINAL:
                    rest = await service.db.aread(
                        lambda tx, a=after: event_table.read(tx, run_id, a))
                    for attempt, seq, name, data in rest:  # stored when the run ended
                        if _wanted(name, wanted):
                            yield format_id(attempt, seq), name, data
                    return
                continue
            if service.closing.is_set():  # draining: the run continues after a restart
                return
            run = await service.db.aread(lambda tx: run_table.get(tx, run_id, None))
            if run is None or run.status in FINAL:
                final = await service.db.aread(
                    lambda tx, a=after: event_table.read(tx, run_id, a))
                for attempt, seq, name, data in final:
                    if _wanted(name, wanted):
                        yield format_id(attempt, seq), name, data
                return
            await broker.wait_open(opened, service.settings.poll_interval)
        finally:
            broker.unexpect(run_id, opened)


async def outcome(service: Service, run_id: str) -> Outcome | None:
    """Wait for the run to end; None if it was deleted (rolled back) meanwhile."""
    broker = service.broker
    while True:
        opened = broker.expect_open(run_id)  # before looking: an attempt may open meanwhile
        try:
            live = broker.runs.get(run_id)
            if live is not None:
                await live.done.wait()
                if live.outcome is not None and live.outcome.status in FINAL:
                    return live.outcome
            if service.closing.is_set():
                return Outcome("pending")
            run = await service.db.aread(lambda tx: run_table.get(tx, run_id, None))
            if run is None:
                return None
            if run.status in FINAL:
                return await stored_outcome(service, run)
            await broker.wait_open(opened, service.settings.poll_interval)
        finally:
            broker.unexpect(run_id, opened)


async def stored_outcome(service: Service, run: run_table.Run) -> Outcome:
    """The outcome of a run that ended before this process was watching it."""
    from ..tables import threads as thread_table

    thread = await service.db.aread(lambda tx: thread_table.get(tx, run.thread_id, None))
    values: Any = thread.values if thread is not None else None
    interrupts = [i for items in (thread.interrupts or {}).values() for i in items] \
        if thread is not None else []
    if interrupts and isinstance(values, dict):
        values = {**values, "__interrupt__": interrupts}
    return Outcome(run.status, values, run.error)


def wait_body(result: Outcome | None) -> Any:
    """What `/wait` and `join` answer: the final values, or `{"__error__": ...}`."""
    if result is None:
        return None
    if result.status in ("error", "timeout") and result.error is not None:
        return {"__error__": result.error}
    return result.values
