"""Messages and tool calls in the OpenAI chat-completions wire format, both directions.

Shared by every provider that speaks that format (remote endpoints and the local model).
"""

from __future__ import annotations

import json
from typing import Any

from ..messages import Message


def to_openai_message(message: Message | Any) -> dict[str, Any]:
    role = getattr(message, "role", None) or {"human": "user", "ai": "assistant"}.get(
        message.type, message.type)
    out: dict[str, Any] = {"role": role, "content": message.content}
    if role == "assistant" and message.tool_calls:
        out["tool_calls"] = [
            {"id": call.get("id") or f"call_{i}", "type": "function",
             "function": {"name": call["name"],
                          "arguments": json.dumps(call.get("args") or {})}}
            for i, call in enumerate(message.tool_calls)
        ]
        if not message.content:
            out["content"] = None
    if role == "tool":
        out["tool_call_id"] = message.tool_call_id
    name = getattr(message, "name", None)
    if name and role in ("user", "assistant"):
        out["name"] = name
    return out


def to_openai_messages(messages: list[Any]) -> list[dict[str, Any]]:
    return [to_openai_message(m) for m in messages]


def tool_call_from_openai(call: dict[str, Any]) -> dict[str, Any]:
    """LangChain's tool-call shape from OpenAI's; unparsable arguments are kept as text
    under `args["__raw__"]` so the tool layer can report them instead of crashing."""
    function = call.get("function") or {}
    raw = function.get("arguments") or "{}"
    try:
        args = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (ValueError, TypeError):
        args = {"__raw__": raw}
    if not isinstance(args, dict):
        args = {"__raw__": raw}
    return {"name": function.get("name", ""), "args": args, "id": call.get("id"),
            "type": "tool_call"}


def json_schema_format(schema: dict[str, Any], name: str = "answer",
                       strict: bool = True) -> dict[str, Any]:
    """`response_format` asking for JSON that matches `schema`."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema,
                                                   "strict": strict}}
