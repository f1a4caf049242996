"""Durable timers: `sleep()` / `wait_until()` inside a node, and firing them when due.

A timer is an interrupt plus a stored timer record: the run stops (its process may exit),
and whoever calls `fire_due_timers(graph)` later — the `waypoint timers` command, or the
service's workers — resumes each thread whose timer is due by answering that interrupt.
Timers are claimed in the store before they fire, so two schedulers never fire one timer
twice; a thread that moved on meanwhile (answered by a person, cancelled) is skipped.
"""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..checkpoint.durable_records import TimerRecord
from ..errors import CheckpointConflict
from ..types import Command
from .context import TaskRuntime, current_runtime, interrupt, interrupt_id

FIRED = "__waypoint_timer__"  # key of the resume value a firing timer sends


def fired_marker(timer_id: str, now: float) -> dict[str, Any]:
    return {FIRED: timer_id, "fired_at": now}


def is_fired(answer: Any) -> bool:
    return isinstance(answer, dict) and FIRED in answer


def due_time(when: float | datetime | timedelta, *, relative: bool) -> float:
    """Epoch seconds for a delay (seconds, timedelta) or a moment (aware datetime, epoch)."""
    if isinstance(when, timedelta):
        return time.time() + when.total_seconds()
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("a datetime for a timer must be timezone-aware")
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise TypeError(f"a timer takes seconds, a timedelta or a datetime, got "
                        f"{type(when).__name__}")
    if relative and when < 0:
        raise ValueError(f"cannot sleep for a negative time ({when} s)")
    return time.time() + float(when) if relative else float(when)


def _runtime(what: str) -> TaskRuntime:
    runtime = current_runtime()
    if runtime is None:
        raise RuntimeError(f"{what}() can only be called inside a node of a running graph")
    if runtime.loop.saver is None:
        raise RuntimeError(f"{what}() needs a checkpointer: the run stops until the timer fires")
    runtime.check_alive()
    return runtime


def schedule(runtime: TaskRuntime, timer_id: str, due_at: float, kind: str,
             payload: Any = None) -> None:
    """Store the timer once (a re-executed node finds it and keeps the first due time)."""
    loop = runtime.loop
    saver = loop.saver
    thread = str(loop.thread_id)
    if saver.get_timer(thread, timer_id) is None:
        saver.put_timer(TimerRecord(thread_id=thread, id=timer_id, due_at=due_at, ns=loop.ns,
                                    graph=loop.root_name, kind=kind, payload=payload))


def wait_until(when: float | datetime) -> None:
    """Suspend the run until `when` (epoch seconds or an aware datetime)."""
    _suspend(due_time(when, relative=False), "wait_until")


def sleep(seconds: float | timedelta) -> None:
    """Suspend the run for `seconds`; it resumes when a scheduler fires the timer."""
    runtime = _runtime("sleep")
    timer_id = interrupt_id(runtime.task.id, runtime.interrupt_index)
    stored = runtime.loop.saver.get_timer(str(runtime.loop.thread_id), timer_id)
    _suspend(stored.due_at if stored is not None else due_time(seconds, relative=True), "sleep")


def _suspend(due_at: float, what: str) -> None:
    runtime = _runtime(what)
    timer_id = interrupt_id(runtime.task.id, runtime.interrupt_index)
    schedule(runtime, timer_id, due_at, "sleep")
    answer = interrupt({"kind": "timer", "id": timer_id, "due_at": due_at})
    if not is_fired(answer):  # woken early by a person answering the interrupt
        runtime.loop.saver.cancel_timer(str(runtime.loop.thread_id), timer_id)


@dataclass(frozen=True, slots=True)
class FiredTimer:
    """What a scheduler did with one due timer."""

    thread_id: str
    timer_id: str
    kind: str
    outcome: str  # "fired" | "stale" (the thread no longer waits on it) | "error: ..."


def _pending_interrupt_ids(graph: Any, config: dict[str, Any]) -> set[str]:
    state = graph.get_state(config)
    ids = {i.id for i in state.interrupts}
    for task in state.tasks:
        ids.update(i.id for i in task.interrupts)
    return ids


def fire_due_timers(graph: Any, *, now: float | None = None, owner: str | None = None,
                    limit: int = 100) -> list[FiredTimer]:
    """Resume every thread of `graph` whose timer is due; returns what happened to each."""
    saver = graph.saver
    if saver is None:
        raise ValueError("fire_due_timers needs a graph compiled with a checkpointer")
    owner = owner or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
    moment = time.time() if now is None else now
    fired: list[FiredTimer] = []
    for timer in saver.claim_due_timers(now=moment, owner=owner, graph=graph.name, limit=limit):
        config = {"configurable": {"thread_id": timer.thread_id}}
        if timer.id not in _pending_interrupt_ids(graph, config):
            saver.complete_timer(timer.thread_id, timer.id, status="cancelled", owner=owner)
            fired.append(FiredTimer(timer.thread_id, timer.id, timer.kind, "stale"))
            continue
        try:
            graph.invoke(Command(resume={timer.id: fired_marker(timer.id, moment)}), config)
        except CheckpointConflict:  # another process moved the thread: look again next time
            timer.status, timer.claimed_by, timer.claimed_at = "pending", None, None
            saver.put_timer(timer)
            fired.append(FiredTimer(timer.thread_id, timer.id, timer.kind, "retry later"))
            continue
        except Exception as exc:  # the run failed after waking: the timer did fire
            saver.complete_timer(timer.thread_id, timer.id, status="fired", owner=owner)
            fired.append(FiredTimer(timer.thread_id, timer.id, timer.kind,
                                    f"error: {type(exc).__name__}: {exc}"))
            continue
        saver.complete_timer(timer.thread_id, timer.id, status="fired", owner=owner)
        fired.append(FiredTimer(timer.thread_id, timer.id, timer.kind, "fired"))
    return fired
