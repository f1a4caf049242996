"""Running one row as its own durable thread, and reading back what it did.

Every row is a thread (`eval:<name>:<id>`) under a checkpointer, so the stored thread is
the source of truth: a finished thread is scored from its final checkpoint without
running again, a thread stopped part-way (a crash, a node that raised) continues from
its last checkpoint, and a thread waiting at an `interrupt()` gets the row's next
`resume` value. How many resume values a thread has used is kept on its own checkpoints
(the run config's metadata, which the engine copies onto every checkpoint a run writes)
plus the resume values recorded on the head for a step still waiting, so a killed eval
never feeds a value twice nor skips one.

The path is read from the checkpoint history: each checkpoint names the nodes whose
writes produced it (`Checkpoint.ran`), so the path spans resumes and restarts.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..checkpoint.base import BaseCheckpointSaver
from ..constants import RESUME, START
from ..types import Command
from .dataset import EvalCase
from .normalize import is_message

RESUMES_KEY = "waypoint_eval_resumes"  # resume values used, on the checkpoints a call writes
MAX_CONTINUES = 100  # calls that only continue a thread (no resume value) per row, at most


@dataclass(slots=True)
class RowOutcome:
    """What a row's run left behind: its final state, the nodes it went through, the
    tool calls its AI messages asked for, and whether it failed or still waits."""

    values: dict[str, Any] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    interrupted: bool = False
    seconds: float = 0.0
    reused: bool = False  # scored from a thread that had already finished: nothing ran
    graph: Any = field(default=None, repr=False, compare=False)  # for schema scorers


def prepare_target(target: Any, checkpointer: BaseCheckpointSaver | None) -> Any:
    """A compiled graph that runs under a checkpointer.

    `target` is a compiled graph or a factory (no parameter, or one that receives the
    checkpointer). The checkpointer is, in order: the one given, the graph's own, a new
    MemorySaver. A graph compiled without it gets a shallow copy that carries it (the
    caller's graph object is left as it was)."""
    if checkpointer is not None and not isinstance(checkpointer, BaseCheckpointSaver):
        raise TypeError(f"checkpointer must be a waypoint checkpointer (MemorySaver, "
                        f"SqliteSaver, PostgresSaver), got {type(checkpointer).__name__}")
    graph = target
    if not _is_graph(target):
        if not callable(target):
            raise TypeError(f"the eval target must be a compiled graph or a function that "
                            f"returns one, got {type(target).__name__}")
        if _takes_argument(target):
            if checkpointer is None:
                from ..checkpoint import MemorySaver

                checkpointer = MemorySaver()
            graph = target(checkpointer)
        else:
            graph = target()
        if not _is_graph(graph):
            raise TypeError(f"the eval target's factory returned {type(graph).__name__}, "
                            f"not a compiled graph")
    own = getattr(graph, "saver", None)
    saver = checkpointer or own
    if saver is None:
        from ..checkpoint import MemorySaver

        saver = MemorySaver()
    if own is saver:
        return graph
    if not hasattr(graph, "checkpointer"):
        raise TypeError("cannot attach a checkpointer to this graph: pass a factory that "
                        "takes the checkpointer and compiles the graph with it")
    attached = copy.copy(graph)
    attached.checkpointer = saver
    if getattr(attached, "saver", None) is not saver:
        raise TypeError("cannot attach a checkpointer to this graph: pass a factory that "
                        "takes the checkpointer and compiles the graph with it")
    return attached


def _is_graph(value: Any) -> bool:
    return all(hasattr(value, name) for name in ("invoke", "get_state", "get_graph"))


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
               for p in params)


def thread_config(thread_id: str, config: dict[str, Any] | None,
                  resumes: int | None = None) -> dict[str, Any]:
    """The run config of a row: the caller's config, the row's thread, our bookkeeping."""
    base = dict(config or {})
    base["configurable"] = {**(base.get("configurable") or {}), "thread_id": thread_id,
                            "checkpoint_ns": ""}
    if resumes is not None:
        base["metadata"] = {**(base.get("metadata") or {}), RESUMES_KEY: resumes}
    return base


# -- deciding the next call --------------------------------------------------------------


def _resumes_used(head: Any) -> int:
    """Resume values used: as many as the call that wrote the head had used, plus those
    recorded on the head for a step that asked again (several interrupts in one node)."""
    used = (head.metadata or {}).get(RESUMES_KEY, 0)
    used = used if isinstance(used, int) else 0
    for _task, channel, value in head.pending_writes or ():
        if channel == RESUME and isinstance(value, list):
            used += len(value)
    return used


def next_call(graph: Any, case: EvalCase, thread_id: str, config: dict[str, Any] | None
              ) -> tuple[Any, dict[str, Any]] | None:
    """(input, config) of the call that takes the row's thread further, or None when
    there is nothing to do (finished, or waiting with no resume value left)."""
    saver: BaseCheckpointSaver = graph.saver
    probe = thread_config(thread_id, config)
    head = saver.get_tuple(probe)
    if head is None:
        return case.input, thread_config(thread_id, config, 0)
    if not head.checkpoint.next_tasks:
        return None
    used = _resumes_used(head)
    waiting = graph.get_state(probe).interrupts
    if waiting:
        if used >= len(case.resume):
            return None
        value = case.resume[used]
        if value is None:  # Command(resume=None) would mean "no resume": answer by id
            value = {waiting[0].id: None}
        return Command(resume=value), thread_config(thread_id, config, used + 1)
    return None, thread_config(thread_id, config, used)  # part-way: continue from the head


def _head_id(graph: Any, thread_id: str) -> str | None:
    head = graph.saver.get_tuple(thread_config(thread_id, None))
    return head.checkpoint.id if head is not None else None


def _calls(graph: Any, case: EvalCase, thread_id: str, config: dict[str, Any] | None
           ) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The calls to make, one after the other (each decided after the previous ran).

    Stops when the thread is done or waits with no value left, and when a call that only
    continues the thread leaves it where it was (no progress: do not spin)."""
    continues = 0
    while True:
        call = next_call(graph, case, thread_id, config)
        if call is None:
            return
        if call[0] is None:
            continues += 1
            if continues > MAX_CONTINUES:
                return
            before = _head_id(graph, thread_id)
            yield call
            if _head_id(graph, thread_id) == before:
                return
            continue
        yield call


def run_row(graph: Any, case: EvalCase, thread_id: str,
            config: dict[str, Any] | None = None) -> RowOutcome:
    """Take the row's thread as far as it goes with `invoke`; never raises for the row."""
    started = time.perf_counter()
    ran = False
    error: str | None = None
    try:
        for inp, cfg in _calls(graph, case, thread_id, config):
            ran = True
            graph.invoke(inp, cfg)
    except Exception as exc:
        error = _describe(exc)
    return read_outcome(graph, thread_id, error=error, ran=ran,
                        seconds=time.perf_counter() - started)


async def arun_row(graph: Any, case: EvalCase, thread_id: str,
                   config: dict[str, Any] | None = None) -> RowOutcome:
    """`run_row` with `ainvoke`, for graphs whose nodes are async."""
    started = time.perf_counter()
    ran = False
    error: str | None = None
    try:
        for inp, cfg in _calls(graph, case, thread_id, config):
            ran = True
            await graph.ainvoke(inp, cfg)
    except Exception as exc:
        error = _describe(exc)
    return read_outcome(graph, thread_id, error=error, ran=ran,
                        seconds=time.perf_counter() - started)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- reading a thread --------------------------------------------------------------------


def read_outcome(graph: Any, thread_id: str, *, error: str | None = None, ran: bool = True,
                 seconds: float = 0.0) -> RowOutcome:
    """The outcome of a row from its stored thread (what a restarted eval sees too)."""
    config = thread_config(thread_id, None)
    values: dict[str, Any] = {}
    interrupted = False
    path: list[str] = []
    try:
        snapshot = graph.get_state(config)
        values = dict(snapshot.values or {})
        interrupted = bool(snapshot.interrupts) and error is None
        path = read_path(graph.saver, config)
    except Exception as exc:  # a state we cannot read is the row's error, not the eval's
        error = error or f"cannot read the row's thread: {_describe(exc)}"
    return RowOutcome(values=values, path=path, tool_calls=tool_calls_in(values), error=error,
                      interrupted=interrupted, seconds=seconds, reused=not ran, graph=graph)


def read_path(saver: BaseCheckpointSaver, config: dict[str, Any]) -> list[str]:
    """Nodes executed, in order, from the thread's checkpoint history (oldest first);
    nodes that ran in one step (parallel branches) appear in the engine's task order."""
    stored = list(saver.list(config))
    path: list[str] = []
    for saved in reversed(stored):
        path.extend(name for name in saved.checkpoint.ran if name != START)
    return path


def tool_calls_in(values: dict[str, Any]) -> list[dict[str, Any]]:
    """`{"name", "args"}` of every tool call of the AI messages in the final state: the
    `messages` key when there is one, else every key holding a list of messages."""
    if isinstance(values.get("messages"), list):
        lists = [values["messages"]]
    else:
        lists = [v for v in values.values() if isinstance(v, list) and v
                 and all(is_message(m) or (isinstance(m, dict) and "content" in m) for m in v)]
    calls: list[dict[str, Any]] = []
    for messages in lists:
        for message in messages:
            kind = (message.get("type") or message.get("role")) if isinstance(
                message, dict) else getattr(message, "type", None)
            found = message.get("tool_calls") if isinstance(message, dict) else getattr(
                message, "tool_calls", None)
            if kind not in ("ai", "AIMessageChunk", "assistant") or not found:
                continue
            for call in found:
                calls.append({"name": call.get("name"), "args": dict(call.get("args") or {})})
    return calls
