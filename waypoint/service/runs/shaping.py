"""From the engine's stream to the Agent Server's SSE events, one mode at a time.

The engine streams (namespace, mode, chunk). The API names events after the mode the
client asked for (`messages-tuple` arrives as `messages`), appends the subgraph namespace
(`values|parent:task`), and has a second, older messages format (`messages/partial`,
`messages/complete`, `messages/metadata`) that this module builds from token chunks.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ...interop.langchain_messages import from_langchain
from ...messages import AIMessageChunk, Message
from ..encoding import dumps

# What the engine must stream for each API mode.
ENGINE_MODE = {"values": "values", "updates": "updates", "custom": "custom",
               "messages-tuple": "messages", "messages": "messages", "events": "events",
               "debug": "debug", "tasks": "tasks", "checkpoints": "checkpoints"}


def engine_modes(requested: list[str]) -> list[str]:
    """Modes to ask the engine for: the requested ones, plus values (the run's result) and,
    for the older messages format, updates (complete messages from node outputs)."""
    modes = {ENGINE_MODE[m] for m in requested} | {"values"}
    if "messages" in requested:
        modes.add("updates")
    return sorted(modes)


class EventShaper:
    """Turns engine parts into (event name, JSON bytes) for one run. `root_id` parents the
    node events of `events` mode under the graph's own start/end events (`graph_event`)."""

    def __init__(self, requested: list[str], root_id: str | None = None) -> None:
        self.requested = set(requested)
        self.tuple_messages = "messages-tuple" in self.requested
        self.old_messages = "messages" in self.requested
        self.root_id = root_id
        self.wants_events = "events" in self.requested
        self._partial: dict[str, Message] = {}

    def graph_event(self, event: str, name: str, data: dict[str, Any],
                    metadata: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
        """The run's own `on_chain_start` / `on_chain_end` / `on_chain_error` in `events`
        mode, as `astream_events` opens and closes a run: the engine's stream reports its
        nodes only, so the service adds the graph around them."""
        if not self.wants_events:
            return
        yield "events", dumps({"event": event, "name": name, "run_id": self.root_id,
                               "parent_ids": [], "tags": [], "metadata": metadata,
                               "data": data})

    def shape(self, ns: tuple[str, ...], mode: str, chunk: Any) -> Iterator[tuple[str, bytes]]:
        suffix = "".join("|" + part for part in ns)
        if mode == "messages":
            yield from self._messages(suffix, chunk)
            return
        if mode == "updates" and self.old_messages:
            yield from self._complete(suffix, chunk)
        if mode not in self.requested:
            return
        if mode == "debug" and isinstance(chunk, dict) and "timestamp" not in chunk:
            chunk = {**chunk, "timestamp": datetime.now(UTC).isoformat()}
        elif mode == "events" and self.root_id and isinstance(chunk, dict):
            chunk = {**chunk, "parent_ids": [self.root_id, *(chunk.get("parent_ids") or [])]}
        yield mode + suffix, dumps(chunk)

    def _messages(self, suffix: str, chunk: Any) -> Iterator[tuple[str, bytes]]:
        message, metadata = chunk
        message = from_langchain(message)  # one kind to accumulate, whatever the graph uses
        if self.tuple_messages:
            yield "messages" + suffix, dumps([message, metadata])
        if not self.old_messages:
            return
        key = getattr(message, "id", None) or ""
        previous = self._partial.get(key)
        if previous is None:
            yield "messages/metadata" + suffix, dumps({key: {"metadata": metadata}})
            total = message
        elif isinstance(previous, AIMessageChunk) and isinstance(message, AIMessageChunk):
            total = previous + message
        else:
            total = message
        self._partial[key] = total
        yield "messages/partial" + suffix, dumps([_as_complete(total)])

    def _complete(self, suffix: str, update: Any) -> Iterator[tuple[str, bytes]]:
        if not isinstance(update, dict):
            return
        for node_update in update.values():
            if not isinstance(node_update, dict):
                continue
            for value in node_update.values():
                items = value if isinstance(value, list) else [value]
                for item in map(from_langchain, items):
                    if isinstance(item, Message) and item.role != "user":
                        self._partial.pop(item.id or "", None)
                        yield "messages/complete" + suffix, dumps([item])


def _as_complete(message: Message) -> Message:
    """A streamed chunk shown as the message it is becoming (type "ai", not a chunk)."""
    if not isinstance(message, AIMessageChunk):
        return message
    from ...messages import AIMessage

    return AIMessage(message.content, id=message.id, tool_calls=message.tool_calls,
                     response_metadata=message.response_metadata,
                     usage_metadata=message.usage_metadata)
