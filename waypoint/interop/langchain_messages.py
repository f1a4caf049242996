"""Messages that LangChain chat models accept, without LangChain as a dependency.

Ported LangGraph code hands `state["messages"]` straight to a LangChain chat model, which
refuses anything but its own classes. So which classes a graph's state holds follows the
code that runs it: once `langchain_core` has been imported in this process (the code uses
LangChain), `add_messages` builds LangChain's `HumanMessage`, `AIMessage`, ...; otherwise
waypoint's own, even when LangChain happens to be installed. `set_message_classes()` or the
environment variable `WAYPOINT_MESSAGE_CLASSES` (`auto`, `waypoint`, `langchain`) pins the
choice.

Both kinds convert into each other losslessly for every field waypoint models, and are
stored in one format, so a thread written by one process reads in another with or
without LangChain.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    Message,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)

MESSAGE_CLASSES = ("auto", "waypoint", "langchain")
_choice: str | None = None


def set_message_classes(kind: str | None) -> None:
    """Pin the classes `add_messages` builds: "langchain", "waypoint", or "auto" (LangChain's
    once `langchain_core` is imported). None goes back to the environment's setting."""
    global _choice
    if kind is not None and kind not in MESSAGE_CLASSES:
        raise ValueError(f"message classes must be one of {', '.join(MESSAGE_CLASSES)}, "
                         f"got {kind!r}")
    if kind == "langchain":
        import langchain_core.messages  # noqa: F401 - fails here, clearly, when missing
    _choice = kind


def message_classes() -> str:
    """The classes in use now: "langchain" or "waypoint"."""
    kind = _choice or os.environ.get("WAYPOINT_MESSAGE_CLASSES") or "auto"
    if kind == "waypoint":
        return "waypoint"
    if kind == "langchain" or "langchain_core" in sys.modules:
        return "langchain"
    if kind not in MESSAGE_CLASSES:
        raise ValueError(f"WAYPOINT_MESSAGE_CLASSES must be one of "
                         f"{', '.join(MESSAGE_CLASSES)}, got {kind!r}")
    return "waypoint"


def is_langchain_message(value: Any) -> bool:
    module = type(value).__module__
    return module.startswith("langchain_core.") and hasattr(value, "content") and hasattr(
        value, "type")


# -- waypoint -> LangChain -------------------------------------------------------------------


def _common(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = {"content": message.content, "id": message.id}
    if message.name is not None:
        data["name"] = message.name
    if message.additional_kwargs:
        data["additional_kwargs"] = dict(message.additional_kwargs)
    if message.response_metadata:
        data["response_metadata"] = dict(message.response_metadata)
    return data


def _lc_tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for call in calls:
        args = call.get("args")
        out.append({"name": call.get("name", ""), "args": args if isinstance(args, dict) else {},
                    "id": call.get("id"), "type": "tool_call"})
    return out


def to_langchain(message: Any) -> Any:
    """The LangChain message equal to `message` (LangChain messages are returned as they are)."""
    if not isinstance(message, Message):
        return message
    from langchain_core import messages as lc

    data = _common(message)
    role = message.role
    if role == "user":
        return lc.HumanMessage(**data)
    if role == "system":
        return lc.SystemMessage(**data)
    if role == "remove":
        return lc.RemoveMessage(id=message.id or "")
    if role == "tool":
        kwargs = data.pop("additional_kwargs", {})
        status = kwargs.pop("status", None)
        if kwargs:
            data["additional_kwargs"] = kwargs
        if status in ("success", "error"):
            data["status"] = status
        return lc.ToolMessage(tool_call_id=message.tool_call_id or "", **data)
    if message.usage_metadata is not None:
        data["usage_metadata"] = _usage(message.usage_metadata)
    if isinstance(message, AIMessageChunk):
        data["tool_call_chunks"] = [
            {"name": c.get("name"), "args": _args_text(c.get("args")), "id": c.get("id"),
             "index": i, "type": "tool_call_chunk"}
            for i, c in enumerate(message.tool_calls)]
        return lc.AIMessageChunk(**data)
    return lc.AIMessage(tool_calls=_lc_tool_calls(message.tool_calls), **data)


def _args_text(args: Any) -> str:
    import json

    return args if isinstance(args, str) else json.dumps(args or {})


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    """LangChain's usage dict needs all three counts."""
    data = dict(usage)
    data.setdefault("input_tokens", 0)
    data.setdefault("output_tokens", 0)
    data.setdefault("total_tokens", data["input_tokens"] + data["output_tokens"])
    return data


# -- LangChain -> waypoint -------------------------------------------------------------------

_WAYPOINT_CLASS = {"human": HumanMessage, "system": SystemMessage, "ai": AIMessage,
                   "AIMessageChunk": AIMessageChunk, "tool": ToolMessage}


def from_langchain(message: Any) -> Any:
    """The waypoint message equal to a LangChain one (anything else is returned as it is)."""
    if not is_langchain_message(message):
        return message
    kind = message.type
    if kind == "remove":
        return RemoveMessage(id=message.id)
    cls = _WAYPOINT_CLASS.get(kind)
    if cls is None:  # chat/function messages and chunks of other roles
        cls = {"HumanMessageChunk": HumanMessage, "SystemMessageChunk": SystemMessage,
               "ToolMessageChunk": ToolMessage}.get(kind, HumanMessage)
    kwargs: dict[str, Any] = {"id": message.id, "name": getattr(message, "name", None),
                              "additional_kwargs": dict(message.additional_kwargs or {}),
                              "response_metadata": dict(message.response_metadata or {})}
    if cls in (AIMessage, AIMessageChunk):
        kwargs["tool_calls"] = [
            {"name": c["name"], "args": c.get("args") or {}, "id": c.get("id"),
             "type": "tool_call"} for c in getattr(message, "tool_calls", None) or ()]
        usage = getattr(message, "usage_metadata", None)
        kwargs["usage_metadata"] = dict(usage) if usage else None
    if cls is ToolMessage:
        kwargs["tool_call_id"] = getattr(message, "tool_call_id", None)
        if getattr(message, "status", "success") == "error":
            kwargs["additional_kwargs"]["status"] = "error"
    return cls(message.content, **kwargs)


def for_state(message: Any) -> Any:
    """A message in the classes the state uses now (see the module docstring)."""
    if message_classes() == "langchain":
        return to_langchain(message)
    return message


__all__ = ["MESSAGE_CLASSES", "for_state", "from_langchain", "is_langchain_message",
           "message_classes", "set_message_classes", "to_langchain"]
