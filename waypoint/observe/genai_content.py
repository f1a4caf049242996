"""Prompts, completions and tool arguments as span attributes, in the shape of the
OpenTelemetry GenAI conventions — recorded only when tracing is told to capture content.

What leaves the process is bounded and scrubbed: every text is cut to a length, the whole
attribute to another, and values that look like secrets (API keys, tokens, bearer headers,
private keys) or sit under secret-sounding keys are replaced by "[redacted]".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .redact import REDACTED as _REDACTED
from .redact import redact

MAX_CONTENT = 16_000  # characters of one captured attribute (messages, arguments, result)
MAX_TEXT = 4_000  # characters of one text part, before the whole is fitted to MAX_CONTENT


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 14] + "...[truncated]"


_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "secret", "token", "apikey",
                           "authorization", "auth", "credential", "credentials", "cookie",
                           "bearer", "signature"})
_SECRET_JOINED = ("apikey", "privatekey", "accesskey", "secretkey", "clientsecret",
                  "accesstoken", "refreshtoken", "sessionid")


def _secret_key(key: Any) -> bool:
    text = str(key).lower()
    words = re.split(r"[-_. ]+", text)
    joined = "".join(words)
    return any(w in _SECRET_WORDS for w in words) or any(s in joined for s in _SECRET_JOINED)


def _redact_text(text: str, limit: int = MAX_TEXT) -> str:
    return cut(redact(text), limit)


def plain(value: Any, limit: int, depth: int = 0) -> Any:
    """A JSON-able copy of `value` with secret-looking keys and values redacted."""
    if depth > 8:
        return "..."
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return _redact_text(value, limit)
    if isinstance(value, Mapping):
        return {str(k): _REDACTED if _secret_key(k) else plain(v, limit, depth + 1)
                for k, v in list(value.items())[:200]}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, limit, depth + 1) for v in list(value)[:200]]
    if type(value).__name__ == "Command":  # a tool's command: where it goes, never the state
        return {"command": {"goto": plain(getattr(value, "goto", None), limit, depth + 1)}}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return plain(dump(mode="json"), limit, depth + 1)
        except Exception:
            pass
    if hasattr(value, "content") and hasattr(value, "type"):  # a message: its content
        return plain(value.content, limit, depth + 1)
    return _redact_text(repr(value), limit)


def json_content(value: Any) -> str:
    text = json.dumps(plain(value, MAX_TEXT), ensure_ascii=False, default=str)
    if len(text) > MAX_CONTENT:
        text = json.dumps(plain(value, 256), ensure_ascii=False, default=str)
    return cut(text, MAX_CONTENT)


_ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant",
          "AIMessageChunk": "assistant", "system": "system", "developer": "system",
          "tool": "tool", "function": "tool"}


def _parts(message: Any, limit: int) -> list[dict[str, Any]]:
    """A message's parts in the GenAI input/output messages schema."""
    parts: list[dict[str, Any]] = []
    content = getattr(message, "content", None)
    role = _role(message)
    if role == "tool":
        parts.append({"type": "tool_call_response",
                      "id": getattr(message, "tool_call_id", None),
                      "response": plain(content, limit)})
        return parts
    if isinstance(content, str):
        if content:
            parts.append({"type": "text", "content": _redact_text(content, limit)})
    elif isinstance(content, (list, tuple)):
        for part in content:
            if isinstance(part, str):
                parts.append({"type": "text", "content": _redact_text(part, limit)})
            elif isinstance(part, Mapping) and part.get("type") == "text":
                parts.append({"type": "text",
                              "content": _redact_text(str(part.get("text", "")), limit)})
            elif isinstance(part, Mapping):  # images, files...: their kind, not their data
                parts.append({"type": str(part.get("type") or "unknown")})
    for call in getattr(message, "tool_calls", None) or ():
        if isinstance(call, Mapping):
            parts.append({"type": "tool_call", "id": call.get("id"), "name": call.get("name"),
                          "arguments": plain(call.get("args"), limit)})
    return parts


def _role(message: Any) -> str:
    role = getattr(message, "role", None)
    if role in ("user", "assistant", "system", "tool"):
        return str(role)
    return _ROLES.get(str(getattr(message, "type", "")), "user")


def fit_messages(messages: list[Any], *, output: bool = False, reason: Any = None) -> str:
    """The messages as the convention's JSON, fitted to MAX_CONTENT: long texts are
    shortened first, then the oldest messages dropped; the JSON stays valid."""
    limit = MAX_TEXT
    while True:
        data: list[dict[str, Any]] = []
        for message in messages:
            item: dict[str, Any] = {"role": _role(message), "parts": _parts(message, limit)}
            if output:  # the schema of output messages requires their finish reason
                calls = getattr(message, "tool_calls", None)
                item["finish_reason"] = str(reason or ("tool_call" if calls else "stop"))
            data.append(item)
        text = json.dumps(data, ensure_ascii=False, default=str)
        if len(text) <= MAX_CONTENT or limit <= 64:
            break
        limit //= 4
    while len(text) > MAX_CONTENT and len(data) > 1:
        data = data[1:]
        text = json.dumps(data, ensure_ascii=False, default=str)
    return cut(text, MAX_CONTENT)
