"""Resuming a waiting thread from inside the server: a fired timer, a decided approval.

Both answer one pending interrupt of the thread, so both queue an ordinary run (command
resume) on the thread, in order with its other runs, under the thread's tenant.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..checkpoint.durable_records import TimerRecord
from .auth import Identity
from .errors import Conflict
from .schemas.runs import CommandBody, RunCreateStateful
from .state import read_state
from .tables import threads as thread_table
from .tables.runs import Run

if TYPE_CHECKING:
    from .context import Service


async def pending_interrupts(service: Service, thread_id: str, graph_id: str | None
                             ) -> list[Any]:
    graph = service.graphs.get_static(graph_id) if graph_id else None
    snapshot = await asyncio.to_thread(read_state, service, graph, thread_id)
    return [i for t in snapshot.tasks for i in t.interrupts] or list(snapshot.interrupts)


async def resume_thread(service: Service, thread_id: str, answers: dict[str, Any], *,
                        metadata: dict[str, Any] | None = None,
                        stream_mode: list[str] | None = None) -> Run | None:
    """Queue a run answering interrupts by id; None if the thread is not the server's."""
    from .runs.submit import create_run

    thread = await service.db.aread(lambda tx: thread_table.get(tx, thread_id, None))
    if thread is None or not thread.metadata.get("assistant_id"):
        return None
    body = RunCreateStateful(assistant_id=thread.metadata["assistant_id"],
                             command=CommandBody(resume=answers), metadata=metadata or {},
                             multitask_strategy="enqueue",
                             stream_mode=stream_mode or ["values"])
    return await create_run(service, Identity(thread.tenant, "member"), body, thread_id)


async def enqueue_timer_run(service: Service, timer: TimerRecord, answer: dict[str, Any]
                            ) -> bool:
    """Queue the run a due timer owes its thread; False if the thread moved on."""
    thread = await service.db.aread(lambda tx: thread_table.get(tx, timer.thread_id, None))
    if thread is None:
        return False
    pending = await pending_interrupts(service, timer.thread_id,
                                       thread.metadata.get("graph_id"))
    if timer.id not in {i.id for i in pending}:
        return False
    try:
        run = await resume_thread(service, timer.thread_id, {timer.id: answer},
                                  metadata={"fired_timer": timer.id, "timer_kind": timer.kind})
    except Conflict:
        return False
    return run is not None
