"""The server's background loops: the event log writer, crons, timers, TTL sweep.

Each loop survives its own failures (logged, retried on its next tick), so a database
hiccup never silently stops crons firing or events being stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..engine.timers import fired_marker
from .tables import duties
from .tables import events as event_table
from .tables import runs as run_table
from .tables import threads as thread_table

if TYPE_CHECKING:
    from .context import Service

log = logging.getLogger("waypoint.service")


def start_background(service: Service) -> None:
    settings = service.settings
    loops: list[tuple[str, Callable[[], Awaitable[Any]], float]] = [
        ("events", lambda: write_events(service), 0.05),
        ("sweep", lambda: sweep(service), settings.sweep_interval_minutes * 60),
        ("reap", lambda: reap_temporary(service), 0.5),
    ]
    if service.pool is not None:
        from .crons import fire_due_crons

        loops.append(("crons", lambda: fire_due_crons(service), 1.0))
        loops.append(("timers", lambda: fire_due_timers(service), 1.0))
    for name, step, interval in loops:
        task = asyncio.create_task(_forever(name, step, interval, service),
                                   name=f"waypoint-{name}")
        service.background.append(task)


async def _forever(name: str, step: Callable[[], Awaitable[Any]], interval: float,
                   service: Service) -> None:
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background %s failed; retrying", name)
        if name == "events":
            await service.broker.wait_for_batch(interval)
        else:
            await asyncio.sleep(interval)


async def write_events(service: Service) -> None:
    """Commit buffered stream events in one transaction (many runs share one fsync)."""
    events = service.broker.take_unsaved()
    if not events:
        return
    try:
        await service.db.arun(lambda tx: event_table.append(tx, events, time.time()))
    except Exception:
        service.broker.put_back(events)
        raise


async def reap_temporary(service: Service) -> None:
    """Delete the threads of finished stateless runs (`on_completion="delete"`), many at
    a time. In one process the answer was already given from memory; on PostgreSQL an API
    process elsewhere may still have to read it from the thread, so the thread is kept a
    few poll intervals."""
    settings = service.settings
    grace = 3 * settings.poll_interval + 2 if settings.postgres else None
    while True:
        before = None if grace is None else time.time() - grace
        doomed = await service.db.aread(
            lambda tx, before=before: run_table.finished_temporary(tx, before))
        if not doomed:
            return
        await service.delete_thread_data(*doomed)
        if len(doomed) < 200:
            return


async def sweep(service: Service) -> None:
    """Delete threads past their TTL that wait for nobody; forget old stream events. One
    process of the fleet does it per interval (whichever claims the duty first)."""
    settings = service.settings
    at = time.time()
    period = settings.sweep_interval_minutes * 60 * 0.9
    holder = f"{socket.gethostname()}:{os.getpid()}"
    if not await service.db.arun(lambda tx: duties.claim(tx, "sweep", holder, period, at)):
        return
    expired = await service.db.arun(
        lambda tx: thread_table.expired(tx, settings.thread_ttl_minutes, at))
    for thread in expired:
        log.info("thread %s expired (TTL); deleting it", thread.thread_id)
        await service.delete_thread_data(thread.thread_id)
    retention = at - settings.event_retention_hours * 3600
    await service.db.arun(lambda tx: event_table.prune(tx, retention))
    store = service.store
    if store is not None and hasattr(store, "sweep_expired"):
        await asyncio.to_thread(store.sweep_expired)


async def fire_due_timers(service: Service) -> None:
    """Due durable timers (sleeps, approval deadlines) become runs that resume their
    threads: claimed in the store first, so each fires once."""
    from .timers import enqueue_timer_run

    saver = service.saver
    assert service.pool is not None
    owner = service.pool.worker_id
    due = await asyncio.to_thread(saver.claim_due_timers, owner=owner, limit=50,
                                  lease_seconds=service.settings.lease_seconds * 4)
    for timer in due:
        try:
            queued = await enqueue_timer_run(service, timer, fired_marker(timer.id,
                                                                         time.time()))
        except Exception:
            log.exception("firing timer %s of thread %s failed", timer.id, timer.thread_id)
            continue
        status = "fired" if queued else "cancelled"
        await asyncio.to_thread(saver.complete_timer, timer.thread_id, timer.id, status=status,
                                owner=owner)
