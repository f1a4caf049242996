"""Crons: when a schedule falls due, create its run; then move it to its next time.

Schedules are cron expressions (croniter) in the cron's timezone (UTC by default). A
thread cron runs on its thread (in order with the thread's other runs); a stateless one
runs on a new thread each time, deleted after the run unless `on_run_completed` is
"keep". A time missed while the server was down fires once when it comes back, not once
per missed time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .auth import Identity
from .errors import Unprocessable
from .runs.submit import Withdrawn
from .schemas.runs import RunCreateStateful, RunCreateStateless
from .tables import crons as cron_table
from .tables.crons import Cron

if TYPE_CHECKING:
    from .context import Service

log = logging.getLogger("waypoint.service.crons")

PAYLOAD_KEYS = ("input", "config", "context", "webhook", "interrupt_before", "interrupt_after",
                "stream_mode", "stream_subgraphs", "stream_resumable", "durability",
                "multitask_strategy", "metadata")


def zone(name: str | None) -> ZoneInfo | Any:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Unprocessable(f"unknown timezone {name!r} (an IANA name such as "
                            f"'Europe/Paris')") from None


def check_schedule(schedule: str) -> None:
    if not croniter.is_valid(schedule):
        raise Unprocessable(f"schedule {schedule!r} is not a valid cron expression "
                            f"(e.g. '*/5 * * * *')")


def next_time(schedule: str, timezone: str | None, after: float,
              end_time: float | None = None) -> float | None:
    """The first time the schedule falls due strictly after `after` (None: past its end)."""
    start = datetime.fromtimestamp(after, zone(timezone))
    following = croniter(schedule, start).get_next(float)
    if end_time is not None and following > end_time:
        return None
    return following


async def fire_due_crons(service: Service) -> None:
    at = time.time()
    due = await service.db.arun(lambda tx: cron_table.due(tx, at))
    for cron in due:
        assert cron.next_run_date is not None
        following = next_time(cron.schedule, cron.timezone, max(at, cron.next_run_date),
                              cron.end_time)
        def advance(tx: Any, c: Cron = cron, f: float | None = following) -> bool:
            return cron_table.advance(tx, c.cron_id, c.next_run_date, f)

        try:  # the due time moves on in the transaction that queues its run: fired once
            await _start(service, cron, advance)
        except Withdrawn:
            continue  # another scheduler fired this time
        except Exception:
            log.exception("cron %s could not start its run; skipping to its next time",
                          cron.cron_id)
            await service.db.arun(advance)


async def _start(service: Service, cron: Cron, guard: Callable[[Any], bool]) -> None:
    from .runs.submit import create_run

    payload: dict[str, Any] = {k: v for k, v in cron.payload.items() if k in PAYLOAD_KEYS}
    metadata = {**(payload.pop("metadata", None) or {}), "cron_id": cron.cron_id}
    who = Identity(cron.tenant, "member", cron.user_id)
    if cron.thread_id:
        body: Any = RunCreateStateful(assistant_id=cron.assistant_id, metadata=metadata,
                                      **payload)
        await create_run(service, who, body, cron.thread_id, guard=guard)
    else:
        payload.pop("multitask_strategy", None)
        body = RunCreateStateless(assistant_id=cron.assistant_id, metadata=metadata,
                                  on_completion=cron.on_run_completed, **payload)
        await create_run(service, who, body, None, stateless=True, guard=guard)
