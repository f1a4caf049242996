"""The stream sink: where a run's events go, shaped per `stream_mode`.

A sink is created only when someone streams; `invoke` runs without one, so the hot path
pays nothing for streaming. Nested graphs get a child sink that prefixes their namespace.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..constants import INTERRUPT, START
from ..interop.langchain_messages import for_state, is_langchain_message
from ..messages import Message, new_message_id

if TYPE_CHECKING:
    from ..checkpoint.base import Checkpoint
    from .protocols import RunView
    from .task import Task

Part = tuple[tuple[str, ...], str, Any]
# Modes a nested graph forwards to its parent's stream when subgraphs=False.
_ALWAYS_FORWARDED = frozenset({"messages", "custom", "events"})
STREAM_MODES = frozenset({"values", "updates", "custom", "messages", "tasks", "checkpoints",
                          "debug", "events"})


class StreamSink:
    """Collects (namespace, mode, payload) parts for one run and its nested runs."""

    __slots__ = ("_emit", "modes", "namespace", "parent_run_ids", "run_ids", "seen_messages",
                 "subgraphs")

    def __init__(self, modes: frozenset[str], emit: Callable[[Part], None], *,
                 subgraphs: bool = False, namespace: tuple[str, ...] = ()) -> None:
        unknown = set(modes) - STREAM_MODES
        if unknown:
            known = ", ".join(sorted(STREAM_MODES - {"events"}))
            raise ValueError(f"unknown stream_mode {sorted(unknown)} (known: {known})")
        self.modes = modes
        self._emit = emit
        self.subgraphs = subgraphs
        self.namespace = namespace
        self.run_ids: dict[str, str] = {}
        self.parent_run_ids: list[str] = []
        self.seen_messages: set[str] = set()  # ids already in the "messages" stream

    def wants(self, mode: str) -> bool:
        return mode in self.modes

    def child(self, ns_part: str) -> StreamSink | None:
        modes = self.modes if self.subgraphs else self.modes & _ALWAYS_FORWARDED
        if not modes:
            return None
        child = StreamSink(modes, self._emit, subgraphs=self.subgraphs,
                           namespace=(*self.namespace, ns_part))
        child.parent_run_ids = self.parent_run_ids
        child.seen_messages = self.seen_messages  # a message streams once, at any depth
        return child

    def emit(self, mode: str, payload: Any) -> None:
        if mode in self.modes:
            self._emit((self.namespace if self.subgraphs else (), mode, payload))

    # -- tasks -------------------------------------------------------------------------

    def custom_writer(self, task: Task) -> Callable[[Any], None]:
        def write(data: Any) -> None:
            self.emit("custom", data)

        return write

    def task_start(self, task: Task, loop: RunView) -> None:
        modes = self.modes
        if "tasks" in modes or "debug" in modes:
            payload = {"id": task.id, "name": task.name, "input": _task_input(task, loop),
                       "triggers": (f"branch:to:{task.name}",)}
            self.emit("tasks", payload)
            self.emit("debug", {"type": "task", "step": loop.step + 1, "payload": payload})
        if "events" in modes:
            run_id = self.run_ids.setdefault(task.id, str(uuid.uuid4()))
            self.emit("events", {
                "event": "on_chain_start", "name": task.name, "run_id": run_id,
                "parent_ids": list(self.parent_run_ids), "tags": [f"graph:step:{loop.step + 1}"],
                "metadata": loop.task_metadata(task), "data": {"input": _task_input(task, loop)},
            })

    def task_end(self, task: Task, loop: RunView) -> None:
        modes = self.modes
        ok = task.error is None and not task.interrupts
        if ok and "updates" in modes and task.name != START:
            self.emit("updates", {task.name: task.update})
        if ok and "messages" in modes and task.name != START:
            self._returned_messages(task, loop)
        if "tasks" in modes or "debug" in modes:
            payload = {"id": task.id, "name": task.name,
                       "error": repr(task.error) if task.error is not None else None,
                       "result": dict(task.writes) if ok else {},
                       "interrupts": list(task.interrupts)}
            self.emit("tasks", payload)
            self.emit("debug", {"type": "task_result", "step": loop.step + 1, "payload": payload})
        if "events" in modes:
            run_id = self.run_ids.pop(task.id, None) or str(uuid.uuid4())
            event = "on_chain_end" if task.error is None else "on_chain_error"
            data: dict[str, Any] = {"output": task.update, "input": _task_input(task, loop)}
            if task.error is not None:
                data = {"error": task.error}
            self.emit("events", {
                "event": event, "name": task.name, "run_id": run_id,
                "parent_ids": list(self.parent_run_ids), "tags": [f"graph:step:{loop.step + 1}"],
                "metadata": loop.task_metadata(task), "data": data,
            })

    def task_retry(self, task: Task, loop: RunView, record: dict[str, Any]) -> None:
        """A failed attempt that will be retried: which, why, and after how long."""
        modes = self.modes
        if "tasks" in modes or "debug" in modes:
            payload = {"id": task.id, "name": task.name, "retry": record}
            self.emit("tasks", payload)
            self.emit("debug", {"type": "task_retry", "step": loop.step + 1, "payload": payload})

    def effect(self, task: Task, loop: RunView, entry: dict[str, Any]) -> None:
        """An effect ran, was reused from its record, or was found in doubt."""
        modes = self.modes
        if "tasks" in modes or "debug" in modes:
            payload = {"id": task.id, "name": task.name, "effect": entry}
            self.emit("tasks", payload)
            self.emit("debug", {"type": "effect", "step": loop.step + 1, "payload": payload})

    def updates_interrupt(self, interrupts: tuple[Any, ...]) -> None:
        self.emit("updates", {INTERRUPT: interrupts})

    def step_done(self, loop: RunView, tasks: list[Task]) -> None:
        if "values" in self.modes:
            self.emit("values", loop.output_values())

    def checkpoint(self, loop: RunView, checkpoint: Checkpoint, metadata: dict[str, Any]) -> None:
        if "checkpoints" not in self.modes and "debug" not in self.modes:
            return
        config = loop.config_at(checkpoint.id)
        parent = loop.config_at(loop.parent_id) if loop.parent_id else None
        payload = {
            "config": config, "parent_config": parent, "values": loop.output_values(),
            "metadata": metadata, "next": [ref[0] for ref in checkpoint.next_tasks],
            "tasks": [{"id": loop.task_id(i, ref[0]), "name": ref[0]}
                      for i, ref in enumerate(checkpoint.next_tasks)],
        }
        self.emit("checkpoints", payload)
        self.emit("debug", {"type": "checkpoint", "step": checkpoint.step, "payload": payload})

    def _returned_messages(self, task: Task, loop: RunView) -> None:
        """Messages a node returns go to the "messages" stream too (as LangGraph sends
        them), unless they were streamed already or were in the state before."""
        fresh = [m for m in _messages_in(task.update)
                 if getattr(m, "id", None) not in self.seen_messages]
        if not fresh:
            return
        known = {getattr(m, "id", None) for m in _messages_in(loop.values)}
        metadata = loop.task_metadata(task)
        for message in fresh:
            if message.id is None:  # add_messages would give it one: give it now
                message.id = new_message_id()
            elif message.id in known:
                continue
            self.seen_messages.add(message.id)
            self.emit("messages", (for_state(message), {**metadata, "run_id": None}))

    # -- chat models -------------------------------------------------------------------

    def model_start(self, task: Task, name: str, messages: Any,
                    run_id: str | None = None) -> str:
        run_id = run_id or str(uuid.uuid4())
        if "events" in self.modes:
            self.emit("events", {
                "event": "on_chat_model_start", "name": name, "run_id": run_id,
                "parent_ids": [*self.parent_run_ids, self.run_ids.get(task.id, "")],
                "tags": [], "metadata": {"langgraph_node": task.name},
                "data": {"input": {"messages": [messages]}},
            })
        return run_id

    def model_token(self, task: Task, run_id: str | None, chunk: Any,
                    metadata: dict[str, Any]) -> None:
        if "messages" in self.modes:
            message_id = getattr(chunk, "id", None)
            if message_id is not None:
                self.seen_messages.add(message_id)
            self.emit("messages", (for_state(chunk), {**metadata, "run_id": run_id}))
        if "events" in self.modes:
            self.emit("events", {
                "event": "on_chat_model_stream", "name": "chat_model", "run_id": run_id,
                "parent_ids": [*self.parent_run_ids, self.run_ids.get(task.id, "")],
                "tags": [], "metadata": {"langgraph_node": task.name},
                "data": {"chunk": chunk},
            })

    def model_end(self, task: Task, run_id: str | None, message: Any) -> None:
        message_id = getattr(message, "id", None)
        if message_id is not None:
            self.seen_messages.add(message_id)
        if "events" in self.modes:
            self.emit("events", {
                "event": "on_chat_model_end", "name": "chat_model", "run_id": run_id,
                "parent_ids": [*self.parent_run_ids, self.run_ids.get(task.id, "")],
                "tags": [], "metadata": {"langgraph_node": task.name},
                "data": {"output": message},
            })


def _is_message(value: Any) -> bool:
    return isinstance(value, Message) or is_langchain_message(value)


def _messages_in(update: Any) -> list[Any]:
    """The message objects among a node's returned values (one level deep, as LangGraph)."""
    if not isinstance(update, dict):
        return []
    found: list[Any] = []
    for value in update.values():
        if _is_message(value):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if _is_message(v))
    return found


def _task_input(task: Task, loop: RunView) -> Any:
    if task.is_push:
        return task.arg
    return loop.output_values() if task.node is None else task.node.codec.build(loop.values)


def shape(part: Part, *, single: bool, subgraphs: bool) -> Any:
    """A part as the caller asked for it: bare, (mode, chunk), (ns, chunk), (ns, mode, chunk)."""
    namespace, mode, payload = part
    if single:
        return (namespace, payload) if subgraphs else payload
    return (namespace, mode, payload) if subgraphs else (mode, payload)


def normalize_modes(stream_mode: Any) -> tuple[frozenset[str], bool]:
    """The set of modes and whether the caller asked for a single (unwrapped) mode."""
    if stream_mode is None:
        return frozenset({"updates"}), True
    if isinstance(stream_mode, str):
        return frozenset({stream_mode}), True
    modes = list(stream_mode)
    if not modes:
        raise ValueError("stream_mode list is empty")
    return frozenset(modes), False
