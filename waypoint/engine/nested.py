"""Nested runs: a compiled graph run inside a node of another (a subgraph).

The nested run gets its own loop on a child namespace of the parent's thread, shares the
parent's budget, store, context and stream, resumes from its own checkpoints, and reports
an interrupt or a `Command(graph=PARENT)` back to the task that ran it.
"""

from __future__ import annotations

from typing import Any

from ..errors import GraphInterrupt, ParentCommand
from ..types import Interrupt
from .call_options import with_interrupts
from .context import coerce_context
from .loop import RunLoop
from .resume import NO_RESUME, ResumeMap, interrupt_id
from .runner import arun, iter_sync
from .task import ChildCommand, Task


def node_input(graph: Any, parent: RunLoop, task: Task) -> Any:
    """What a subgraph node receives: its Send argument, or the parent's state keys it has."""
    if task.is_push:
        return task.arg
    keys = graph.spec.keys
    return {k: v for k, v in parent.values.items() if k in keys}


def _nested_loop(graph: Any, input: Any, runtime: Any, context: Any = None,
                 before: Any = None, after: Any = None) -> tuple[RunLoop, Any]:
    parent: RunLoop = runtime.loop
    task: Task = runtime.task
    call_index = runtime.nested_calls
    runtime.nested_calls += 1
    ns = parent.child_namespace(task, call_index)
    if graph.checkpointer is False:
        saver = None
    else:
        saver = graph.saver or parent.saver
    sink = parent.sink.child(ns) if parent.sink is not None else None
    config = parent.task_config(task)
    config["configurable"] = {**config["configurable"], "checkpoint_ns": ns}
    config["configurable"].pop("checkpoint_id", None)
    loop = RunLoop(graph, input, config, saver=saver, sink=sink, ns=ns)
    if before is not None or after is not None:
        loop.spec = with_interrupts(graph.spec, before, after)
    loop.guard = parent.guard  # one budget for the whole run, nested graphs included
    # The parent's store and context reach nested graphs (as in LangGraph, the
    # parent's store wins over the subgraph's own).
    loop.store = parent.store if parent.store is not None else graph.store
    loop.context = parent.context if context is None else coerce_context(
        graph.spec.context_schema, context)
    return loop, parent

def _nested_resume(loop: RunLoop, runtime: Any, saved: Any) -> Any:
    if saved is None or not saved.checkpoint.next_tasks:
        return NO_RESUME
    loop.input = None
    if runtime.pending_resume is NO_RESUME:
        return NO_RESUME
    value = runtime.take_resume()
    return dict(value) if isinstance(value, ResumeMap) else value

def _nested_result(loop: RunLoop) -> Any:
    if loop.status == "interrupted":
        interrupts = tuple(loop.interrupts) or (
            Interrupt(None, interrupt_id(loop.ns, -1)),
        )
        raise GraphInterrupt(interrupts)
    return loop.output_values()

def invoke_nested(graph: Any, input: Any, runtime: Any, context: Any = None,
                  before: Any = None, after: Any = None) -> Any:
    """Run `graph` inside the running task (`runtime`) as a subgraph; its output values."""
    loop, _ = _nested_loop(graph, input, runtime, context, before, after)
    loaded = None
    if loop.saver is not None:
        saved = loop.saver.get_tuple(loop.load_config())
        loaded = (saved, loop.saver.head_id(str(loop.thread_id), loop.ns))
        resume = _nested_resume(loop, runtime, saved)
    else:
        resume = NO_RESUME
    try:
        for _ in iter_sync(loop, loaded, resume):
            pass
    except ParentCommand as command:
        raise ChildCommand(command.command) from None
    return _nested_result(loop)

async def ainvoke_nested(graph: Any, input: Any, runtime: Any, context: Any = None,
                         before: Any = None, after: Any = None) -> Any:
    loop, _ = _nested_loop(graph, input, runtime, context, before, after)
    loaded = None
    if loop.saver is not None:
        saved = await loop.saver.aget_tuple(loop.load_config())
        loaded = (saved, await loop.saver.ahead_id(str(loop.thread_id), loop.ns))
        resume = _nested_resume(loop, runtime, saved)
    else:
        resume = NO_RESUME
    try:
        await arun(loop, loaded, resume)
    except ParentCommand as command:
        raise ChildCommand(command.command) from None
    return _nested_result(loop)
