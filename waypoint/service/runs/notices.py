"""PostgreSQL notifications between the processes sharing one database.

Workers LISTEN for runs to claim and cancels to honour; API processes LISTEN for the
events and ends of runs executed elsewhere, so a stream or a `/wait` answers as soon as
the worker has stored them. Every listener keeps its poll as the fallback: a notification
lost to a restart costs a poll interval, never an answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

QUEUE = "waypoint_runs"  # a run may be claimable (created, freed, requeued)
CANCELS = "waypoint_cancels"  # payload: a run someone asked to stop
RUN_EVENTS = "waypoint_run_events"  # payload: a run with new stored events, or that ended

log = logging.getLogger("waypoint.service.notices")


async def listen(url: str, channels: tuple[str, ...],
                 handle: Callable[[str, str], None],
                 on_connect: Callable[[], None] | None = None) -> None:
    """Call `handle(channel, payload)` for each notification, reconnecting forever (until
    cancelled) with a growing pause when the database is away."""
    import psycopg

    delay = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                for channel in channels:
                    await conn.execute(f"LISTEN {channel}")
                delay = 0.5
                if on_connect is not None:
                    on_connect()  # whatever happened while nobody listened
                async for note in conn.notifies():
                    handle(note.channel, note.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database restarted, say: listen again
            log.warning("listening on %s failed (%s); polling until it is back",
                        ", ".join(channels), type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
