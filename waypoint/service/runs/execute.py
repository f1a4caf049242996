"""Running one claimed run with the engine: its input, its config, its stream, its end.

A run may be executed more than once (its worker died, or the server drained). The first
checkpoint a run commits carries its run id, so a later attempt knows whether the run's
input was already applied: if so it continues the thread from its last checkpoint with no
input; if not (it died before its first commit) it starts over with its input. Effects
and finished tasks are never repeated either way: the engine keeps them beside the
checkpoints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import RunTimeoutError
from ...observe.tracing import continue_trace
from ...types import Budget, Command, Send
from ..encoding import dumps, error_json, to_jsonable
from ..state import thread_summary
from ..tables.runs import Run
from .broker import LiveRun, Outcome
from .shaping import EventShaper, engine_modes

if TYPE_CHECKING:
    from ..context import Service

log = logging.getLogger("waypoint.service.runs")


class StoreOutage(Exception):
    """The run stopped because its database went away (a restart, a failover, a cut
    connection), not because its graph failed: it is to be retried from its last
    checkpoint once the database answers again. `error` is what the run would report."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "database unavailable"))
        self.error = error


def store_outage(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a lost or refused database connection."""
    try:
        from psycopg import InterfaceError, OperationalError
        from psycopg_pool import PoolTimeout
    except ImportError:  # no PostgreSQL here
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (OperationalError, InterfaceError, PoolTimeout)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@dataclass(slots=True)
class Prepared:
    graph: Any
    input: Any
    config: dict[str, Any]
    options: dict[str, Any]
    requested: list[str]


def _command(body: dict[str, Any]) -> Command:
    goto = body.get("goto")
    if goto is not None:
        items = goto if isinstance(goto, list) else [goto]
        goto = [Send(g["node"], g.get("input")) if isinstance(g, dict) else g for g in items]
    return Command(update=body.get("update"), resume=body.get("resume"), goto=goto or ())


def run_config(run: Run, assistant_config: dict[str, Any], assistant_context: dict[str, Any],
               *, continuing: bool) -> dict[str, Any]:
    """The engine config of a run: the assistant's config under the run's, its ids, and
    (as the Agent Server does) its context readable from `configurable` too."""
    kwargs = run.kwargs
    given = kwargs.get("config") or {}
    config: dict[str, Any] = {**assistant_config, **given}
    context = {**assistant_context, **(kwargs.get("context") or {})}
    configurable = {**(assistant_config.get("configurable") or {}),
                    **(given.get("configurable") or {}), **context}
    configurable.update(thread_id=run.thread_id, run_id=run.run_id, graph_id=run.graph_id,
                        assistant_id=run.assistant_id)
    checkpoint = kwargs.get("checkpoint") or {}
    checkpoint_id = kwargs.get("checkpoint_id") or checkpoint.get("checkpoint_id")
    configurable.pop("checkpoint_id", None)
    configurable.pop("checkpoint_ns", None)
    if checkpoint_id and not continuing:
        configurable["checkpoint_id"] = checkpoint_id
    config["configurable"] = configurable
    config["metadata"] = {**(config.get("metadata") or {}), **run.metadata,
                          "run_id": run.run_id, "thread_id": run.thread_id,
                          "graph_id": run.graph_id, "assistant_id": run.assistant_id,
                          "run_attempt": run.attempt,
                          "tenant": run.tenant}  # last: usage is billed to the run's owner
    config["run_id"] = run.run_id
    config["root_graph"] = run.graph_id  # approvals and timers filed under the served name
    if isinstance(config.get("budget"), dict):  # a budget sent as JSON
        config["budget"] = Budget(**config["budget"])
    return config


async def prepare(service: Service, run: Run) -> Prepared:
    assistant = await service.assistant(run.assistant_id, None)
    a_config = assistant.config if assistant is not None else {}
    a_context = assistant.context if assistant is not None else {}
    continuing = False
    if run.attempt > 1:  # did an earlier attempt commit the run's input already?
        head = await service.saver.aget_tuple({"configurable": {"thread_id": run.thread_id}})
        continuing = head is not None and (head.metadata or {}).get("run_id") == run.run_id
    config = run_config(run, a_config, a_context, continuing=continuing)
    graph = await service.graphs.get(run.graph_id, config)
    kwargs = run.kwargs
    if continuing:
        inp: Any = None
    elif kwargs.get("command"):
        inp = _command(kwargs["command"])
    else:
        inp = kwargs.get("input")
    options: dict[str, Any] = {"durability": kwargs.get("durability") or "sync"}
    for key in ("interrupt_before", "interrupt_after"):
        if kwargs.get(key) is not None and not continuing:
            options[key] = kwargs[key]
    context = {**a_context, **(kwargs.get("context") or {})}
    if context:
        options["context"] = context
    if service.store is not None:  # the run sees its tenant's memories only
        options["store"] = service.store.scoped(run.tenant)
    return Prepared(graph, inp, config, options, list(kwargs.get("stream_mode") or ["values"]))


async def execute(service: Service, run: Run, live: LiveRun) -> Outcome:
    """Run it to its end, streaming into `live`; return the outcome. Cancelling the task
    stops the run at its next step boundary (the engine commits the step it is in)."""
    broker = service.broker
    broker.publish(live, "metadata", dumps({"run_id": run.run_id, "attempt": run.attempt}))
    try:
        prepared = await prepare(service, run)
    except Exception as exc:  # an unknown graph, a factory that failed: the run fails
        if store_outage(exc):
            raise StoreOutage(error_json(exc)) from exc
        broker.publish(live, "error", dumps(error_json(exc)))
        return Outcome("error", None, error_json(exc))
    shaper = EventShaper(prepared.requested, root_id=run.run_id)
    root_name = getattr(prepared.graph, "name", None) or run.graph_id
    root_meta = {"run_id": run.run_id, "thread_id": run.thread_id, "graph_id": run.graph_id,
                 "assistant_id": run.assistant_id, "run_attempt": run.attempt}
    if shaper.wants_events:
        for name, data in shaper.graph_event("on_chain_start", root_name,
                                             {"input": to_jsonable(prepared.input)}, root_meta):
            broker.publish(live, name, data)
    last_values: Any = None
    subgraphs = bool(run.kwargs.get("stream_subgraphs"))
    try:
        with continue_trace(run.kwargs.get("trace")):  # the client's traceparent parents it
            async for part in prepared.graph.astream(
                    prepared.input, prepared.config,
                    stream_mode=engine_modes(prepared.requested), subgraphs=subgraphs,
                    **prepared.options):
                ns, mode, chunk = part if subgraphs else ((), *part)
                if mode == "values" and not ns:
                    last_values = chunk
                for name, data in shaper.shape(tuple(ns), mode, chunk):
                    broker.publish(live, name, data)
    except Exception as exc:
        if store_outage(exc):  # not the graph's failure: retried from its last checkpoint
            raise StoreOutage(error_json(exc)) from exc
        status = "timeout" if isinstance(exc, RunTimeoutError) else "error"
        if status == "error":
            log.info("run %s failed: %s: %s", run.run_id, type(exc).__name__, exc)
        for name, data in shaper.graph_event("on_chain_error", root_name,
                                             {"error": error_json(exc)}, root_meta):
            broker.publish(live, name, data)
        broker.publish(live, "error", dumps(error_json(exc)))
        return Outcome(status, to_jsonable(last_values), error_json(exc))
    output = to_jsonable(last_values)
    for name, data in shaper.graph_event("on_chain_end", root_name, {"output": output},
                                         root_meta):
        broker.publish(live, name, data)
    return Outcome("success", output)


async def final_state(service: Service, run: Run, outcome: Outcome) -> dict[str, Any]:
    """The thread's index card after the run: status, values, interrupts."""
    graph = service.graphs.get_static(run.graph_id)
    summary = await thread_summary(service, run.thread_id, graph)
    if outcome.status in ("error", "timeout"):
        summary["status"] = "error"
        summary["error"] = outcome.error
    return summary
