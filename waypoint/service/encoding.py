"""JSON for the wire: graph values as the Agent Server's clients expect to read them.

State holds waypoint messages, interrupts, pydantic models and dataclasses; clients built
for LangGraph (langgraph-sdk, agent-chat-ui) read messages in LangChain's dict shape
(`type`, `content`, `id`, `tool_calls`...). Encoding never fails on an unknown object: the
API only reads state here, so an object without a JSON form is shown as its `repr`, which
is better than a 500 for a whole thread.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any

import orjson

from ..messages import AIMessageChunk, Message
from ..observe.redact import redact
from ..types import Command, Interrupt, Send

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def message_json(message: Message) -> dict[str, Any]:
    """A waypoint message in LangChain's serialised shape."""
    kind = "AIMessageChunk" if isinstance(message, AIMessageChunk) else message.type
    data: dict[str, Any] = {
        "content": message.content,
        "additional_kwargs": message.additional_kwargs,
        "response_metadata": message.response_metadata,
        "type": kind,
        "name": message.name,
        "id": message.id,
    }
    if message.role == "assistant":
        data["tool_calls"] = [_tool_call(c) for c in message.tool_calls]
        data["invalid_tool_calls"] = []
        data["usage_metadata"] = message.usage_metadata
        if kind == "AIMessageChunk":
            data["tool_call_chunks"] = []
    elif message.role == "tool":
        data["tool_call_id"] = message.tool_call_id
    return data


def _tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": call.get("name"), "args": call.get("args") or {}, "id": call.get("id"),
            "type": "tool_call"}


def interrupt_json(item: Interrupt) -> dict[str, Any]:
    return {"value": item.value, "id": item.id}


def _default(value: Any) -> Any:
    """orjson's fallback: everything orjson does not know natively."""
    if isinstance(value, Message):
        return message_json(value)
    if isinstance(value, Interrupt):
        return interrupt_json(value)
    if isinstance(value, Send):
        return {"node": value.node, "arg": value.arg}
    if isinstance(value, Command):
        return {"update": value.update, "resume": value.resume, "goto": value.goto_list()}
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    dump = getattr(value, "model_dump", None)  # pydantic models, LangChain messages
    if callable(dump) and not isinstance(value, type):
        try:
            return dump(mode="json")
        except TypeError:
            return dump()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return dict(value)
    return repr(value)


def dumps(value: Any) -> bytes:
    """Compact JSON bytes of any graph value (see the module docstring)."""
    data = orjson.dumps(value, default=_default, option=_OPTIONS)
    # orjson writes into a 4 KB buffer that a shrink leaves allocated; stream events are
    # kept a while, so a small one is copied out to its own size.
    return memoryview(data).tobytes() if len(data) < 2048 else data


def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON data (dicts, lists, str, numbers, None)."""
    return orjson.loads(dumps(value))


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def error_json(error: BaseException) -> dict[str, Any]:
    """An error as the Agent Server reports it in `error` events and `__error__`, with what
    looks like a secret (a key or password in the exception's text) redacted: clients and
    the thread's stored error see what the logs see."""
    return {"error": type(error).__name__, "message": redact(str(error))}
