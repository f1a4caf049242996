"""Graph values as plain JSON data, and the equality the scorers use on them.

Expected values come from JSON lines, final states hold messages, tuples, pydantic models
and dataclasses: both sides are reduced to plain JSON data before they are compared, so
`("a", "b")` equals `["a", "b"]` and a message compares as its LangChain-style dict. This
module stays free of optional dependencies (the server's encoder needs orjson).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any


def message_dict(message: Any) -> dict[str, Any]:
    """A waypoint or LangChain message in the shape the Agent Server's clients read."""
    data: dict[str, Any] = {"type": getattr(message, "type", None),
                            "content": plain(getattr(message, "content", "")),
                            "id": getattr(message, "id", None),
                            "name": getattr(message, "name", None)}
    calls = getattr(message, "tool_calls", None)
    if calls:
        data["tool_calls"] = [{"name": c.get("name"), "args": plain(c.get("args") or {}),
                               "id": c.get("id")} for c in calls]
    call_id = getattr(message, "tool_call_id", None)
    if call_id is not None:
        data["tool_call_id"] = call_id
    return data


def is_message(value: Any) -> bool:
    """Duck-typed as the engine does: an object with `.type` and `.content`."""
    return (not isinstance(value, (Mapping, type)) and hasattr(value, "type")
            and hasattr(value, "content"))


def plain(value: Any) -> Any:
    """`value` as JSON data (dicts with string keys, lists, str, numbers, bool, None).

    Never fails: an object with no JSON form becomes its repr, because a report must
    still be written when a state holds something odd."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if isinstance(value, (set, frozenset)):
            items = sorted(items, key=repr)
        return [plain(v) for v in items]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if is_message(value):
        return message_dict(value)
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump) and not isinstance(value, type):
        try:
            return plain(dump(mode="json"))
        except Exception:
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    return repr(value)


def same(expected: Any, got: Any) -> bool:
    """JSON equality of two plain values: numbers by value (1 == 1.0) but never a bool
    for a number, dicts by keys and values, lists in order."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return isinstance(expected, bool) and isinstance(got, bool) and expected == got
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return expected == got
    if isinstance(expected, dict) and isinstance(got, dict):
        return expected.keys() == got.keys() and all(same(v, got[k])
                                                      for k, v in expected.items())
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(same(a, b) for a, b in zip(expected, got,
                                                                             strict=True))
    return type(expected) is type(got) and expected == got


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def short(value: Any, limit: int = 120) -> str:
    """Compact JSON text of `value`, cut to `limit` characters for tables and details."""
    text = json.dumps(plain(value), ensure_ascii=False, sort_keys=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"
