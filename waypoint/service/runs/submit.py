"""Accepting a run: check it, apply the thread's double-texting rule, queue it durably.

Everything a run needs is checked here, before anything is written: its assistant and
graph, its thread (created on demand with `if_not_exists="create"`), a checkpoint it forks
from, interrupt node names, input keys, a resume with nothing to resume, the tenant's
limit. A run that is accepted is a committed row in the queue; nothing is lost after that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...types import Budget
from ..auth import Identity
from ..errors import Conflict, NotFound, TooManyRequests, Unprocessable
from ..schemas.runs import RunCreateBase
from ..schemas.state_values import check_state_values
from ..tables import runs as run_table
from ..tables import threads as thread_table
from ..tables.assistants import Assistant
from ..tables.common import graph_assistant_id, new_id
from ..tables.runs import Run

if TYPE_CHECKING:
    from ..context import Service

_KWARGS = ("input", "command", "config", "context", "stream_mode", "stream_subgraphs",
           "stream_resumable", "interrupt_before", "interrupt_after", "checkpoint",
           "checkpoint_id", "durability", "webhook", "on_disconnect", "on_completion",
           "feedback_keys")


async def resolve_assistant(service: Service, assistant_id: str, who: Identity) -> Assistant:
    """An assistant id, or a graph name standing for the graph's own assistant."""
    key = graph_assistant_id(assistant_id) if assistant_id in service.graphs else assistant_id
    found = await service.assistant(key, who)
    if found is None:
        graphs = ", ".join(service.graphs.ids()) or "none"
        raise NotFound(f"assistant {assistant_id!r} not found (an assistant id, or one of the "
                       f"graphs: {graphs})")
    if found.graph_id not in service.graphs:
        raise Unprocessable(f"assistant {assistant_id!r} runs graph {found.graph_id!r}, which "
                            f"this server does not load")
    return found


def _check_against_graph(service: Service, graph_id: str, body: RunCreateBase) -> None:
    """Node names and input keys, when the graph does not depend on the run."""
    graph = service.graphs.get_static(graph_id)
    if graph is None:
        return
    nodes = graph.spec.nodes
    for key in ("interrupt_before", "interrupt_after"):
        names = getattr(body, key)
        if isinstance(names, list):
            unknown = [n for n in names if n not in nodes]
            if unknown:
                raise Unprocessable(f"{key}: {unknown} are not nodes of graph {graph_id!r} "
                                    f"(nodes: {', '.join(nodes)})")
    if isinstance(body.input, dict) and body.command is None:
        keys = graph.spec.input_keys or graph.spec.keys
        unknown = [k for k in body.input if k not in keys]
        if unknown:
            raise Unprocessable(f"input has key(s) {unknown} that graph {graph_id!r} does not "
                                f"take (input keys: {', '.join(keys)})")
        check_state_values(graph, body.input, graph_id=graph_id, what="input", as_input=True)
    elif body.input is not None and not isinstance(body.input, dict) and body.command is None:
        raise Unprocessable(f"input must be an object of state keys, got "
                            f"{type(body.input).__name__}")
    if body.command is not None:
        check_state_values(graph, body.command.update, graph_id=graph_id,
                           what="command.update")


def _check_budget(config: dict[str, Any] | None) -> None:
    budget = (config or {}).get("budget")
    if budget is None:
        return
    if not isinstance(budget, dict):
        raise Unprocessable("config.budget must be an object of Budget fields")
    try:
        Budget(**budget)
    except (TypeError, ValueError) as exc:
        raise Unprocessable(f"config.budget: {exc}") from None


async def _check_thread_state(service: Service, thread_id: str, graph_id: str, body: Any,
                              idle: bool) -> None:
    """A fork needs its checkpoint; a resume needs something to resume (if nothing runs)."""
    checkpoint = getattr(body, "checkpoint", None)
    checkpoint_id = getattr(body, "checkpoint_id", None) or (
        checkpoint.checkpoint_id if checkpoint is not None else None)
    if checkpoint_id:
        found = await service.saver.aget_tuple({"configurable": {
            "thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}})
        if found is None:
            raise NotFound(f"checkpoint {checkpoint_id!r} not found in thread {thread_id!r}")
    command = body.command
    if idle and command is not None and command.resume is not None and not checkpoint_id:
        from ..state import read_state

        graph = service.graphs.get_static(graph_id)
        snapshot = await asyncio.to_thread(read_state, service, graph, thread_id)
        pending = [i for t in snapshot.tasks for i in t.interrupts]
        if not pending and not snapshot.next:
            raise Conflict(f"thread {thread_id!r} is not waiting for anything: there is no "
                           f"interrupt to resume")


class Withdrawn(Exception):
    """A run's `guard` said no inside the queueing transaction: nothing was written."""


async def create_run(service: Service, who: Identity, body: RunCreateBase,
                     thread_id: str | None, *, stateless: bool = False,
                     guard: Callable[[Any], bool] | None = None,
                     trace: dict[str, str] | None = None) -> Run:
    """Check and queue a run; returns the committed row (status "pending"). `guard`, if
    given, runs first in the transaction that queues the run (a cron claiming its due
    time): when it returns False nothing is written and `Withdrawn` is raised. `trace`:
    the client's W3C trace context, which the worker continues."""
    assistant = await resolve_assistant(service, body.assistant_id, who)
    _check_against_graph(service, assistant.graph_id, body)
    _check_budget(body.config)
    strategy = getattr(body, "multitask_strategy", None) or "enqueue"
    temporary = stateless and getattr(body, "on_completion", "keep") == "delete"
    creating = thread_id is None
    if creating:
        thread_id = new_id()
    else:
        tid = thread_id
        thread, active = await service.db.aread(lambda tx: (
            thread_table.get(tx, tid, who.scope), run_table.active_on_thread(tx, tid)))
        if thread is None:
            if getattr(body, "if_not_exists", "reject") != "create":
                raise NotFound(f"thread {thread_id!r} not found (pass if_not_exists=\"create\" "
                               f"to create it)")
            creating = True
        else:
            await _check_thread_state(service, thread_id, assistant.graph_id, body,
                                      idle=not active)
    kwargs = {k: v for k in _KWARGS if (v := _plain(getattr(body, k, None))) is not None}
    if trace:
        kwargs["trace"] = trace
    at = time.time()
    run = Run(run_id=new_id(), thread_id=thread_id, tenant=who.tenant,
              assistant_id=assistant.assistant_id, graph_id=assistant.graph_id,
              status="pending", created_at=at, updated_at=at,
              not_before=at + (body.after_seconds or 0), metadata=body.metadata or {},
              kwargs=kwargs, multitask_strategy=strategy, temporary=temporary,
              priority=body.priority)
    limit = service.settings.tenant_max_active_runs
    stamp = {"graph_id": assistant.graph_id, "assistant_id": assistant.assistant_id}

    def queue(tx: Any) -> list[Run]:
        """In one transaction, so two runs sent at once see each other."""
        if guard is not None and not guard(tx):
            raise Withdrawn()
        if limit is not None and run_table.running_count(tx, who.tenant) >= limit:
            raise TooManyRequests(f"tenant has {limit} runs pending or running (the limit); "
                                  f"try again later", headers={"Retry-After": "5"})
        active: list[Run] = []
        if creating:
            if thread_table.owner(tx, thread_id) is not None:
                raise Conflict(f"thread id {thread_id!r} is taken")
            thread_table.insert(tx, thread_id=thread_id, tenant=who.tenant, metadata=stamp,
                                status="busy")
        else:
            active = run_table.active_on_thread(tx, thread_id)
            if active and strategy == "reject":
                raise Conflict(f"thread {thread_id!r} is already running a task (run "
                               f"{active[0].run_id}); wait for it to finish or choose a "
                               f"different multitask_strategy")
            thread_table.merge_metadata(tx, thread_id, stamp, status="busy")
        stop = active if strategy in ("interrupt", "rollback") else []
        for other in stop:
            run_table.request_cancel(tx, other.run_id, strategy)
        if not creating:  # the thread's graph version, if its runs were pinned to one
            run.graph_version = run_table.thread_version(tx, thread_id, run.graph_id)
        run_table.insert(tx, run)
        return stop

    stop = await service.db.arun(queue)
    for other in stop:
        await service.stop_run(other, strategy)
    service.notify_queue()
    return run


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else value
