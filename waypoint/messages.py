"""Chat messages without a LangChain dependency.

A message is a small object with `role`, `content`, `id`, tool calls and a LangChain-style
`type`, so code written against LangChain messages reads it unchanged. LangChain message
objects are accepted where messages are (duck-typed on `.type` and `.content`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

_ROLE_OF_TYPE = {
    "human": "user", "user": "user", "ai": "assistant", "assistant": "assistant",
    "system": "system", "developer": "system", "tool": "tool", "function": "tool",
    "remove": "remove", "AIMessageChunk": "assistant",
}
_TYPE_OF_ROLE = {"user": "human", "assistant": "ai", "system": "system", "tool": "tool",
                 "remove": "remove"}


class Message:
    """One chat message; equality is by role, content, id, name and tool data."""

    __slots__ = ("additional_kwargs", "content", "id", "name", "response_metadata", "role",
                 "tool_call_id", "tool_calls", "usage_metadata")

    def __init__(
        self,
        content: Any = "",
        *,
        role: str = "user",
        id: str | None = None,
        name: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        tool_call_id: str | None = None,
        additional_kwargs: dict[str, Any] | None = None,
        response_metadata: dict[str, Any] | None = None,
        usage_metadata: dict[str, Any] | None = None,
    ) -> None:
        if role not in _TYPE_OF_ROLE:
            known = ", ".join(sorted(_TYPE_OF_ROLE))
            raise ValueError(f"unknown message role {role!r} (expected one of {known})")
        self.role = role
        self.content = content
        self.id = id
        self.name = name
        self.tool_calls = list(tool_calls) if tool_calls else []
        self.tool_call_id = tool_call_id
        self.additional_kwargs = additional_kwargs or {}
        self.response_metadata = response_metadata or {}
        self.usage_metadata = usage_metadata

    @property
    def type(self) -> str:
        return _TYPE_OF_ROLE[self.role]

    @property
    def text(self) -> str:
        content = self.content
        if isinstance(content, str):
            return content
        parts = [p.get("text", "") if isinstance(p, dict) else str(p) for p in content or ()]
        return "".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content, "id": self.id}
        if self.name is not None:
            data["name"] = self.name
        if self.tool_calls:
            data["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        if self.additional_kwargs:
            data["additional_kwargs"] = self.additional_kwargs
        if self.response_metadata:
            data["response_metadata"] = self.response_metadata
        if self.usage_metadata is not None:
            data["usage_metadata"] = self.usage_metadata
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return coerce_message(data)

    def _key(self) -> tuple[Any, ...]:
        return (self.role, self.content, self.id, self.name, self.tool_calls, self.tool_call_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment] - mutable

    def __repr__(self) -> str:
        extra = f", tool_calls={self.tool_calls!r}" if self.tool_calls else ""
        return f"{type(self).__name__}(content={self.content!r}, id={self.id!r}{extra})"

    def __getitem__(self, key: str) -> Any:
        """Dict-style reads (`msg["content"]`) for code written against dict messages."""
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


class HumanMessage(Message):
    __slots__ = ()

    def __init__(self, content: Any = "", **kwargs: Any) -> None:
        super().__init__(content, role="user", **kwargs)


class AIMessage(Message):
    __slots__ = ()

    def __init__(self, content: Any = "", **kwargs: Any) -> None:
        super().__init__(content, role="assistant", **kwargs)


class SystemMessage(Message):
    __slots__ = ()

    def __init__(self, content: Any = "", **kwargs: Any) -> None:
        super().__init__(content, role="system", **kwargs)


class ToolMessage(Message):
    __slots__ = ()

    def __init__(self, content: Any = "", *, tool_call_id: str | None = None, **kwargs: Any):
        super().__init__(content, role="tool", tool_call_id=tool_call_id, **kwargs)


class RemoveMessage(Message):
    """Deletes the message with this id when passed through `add_messages`."""

    __slots__ = ()

    def __init__(self, id: str, **kwargs: Any) -> None:
        super().__init__("", role="remove", id=id, **kwargs)


class AIMessageChunk(AIMessage):
    """A streamed piece of an assistant message; chunks add up with `+`."""

    __slots__ = ()

    def __add__(self, other: AIMessageChunk) -> AIMessageChunk:
        if not isinstance(other, AIMessageChunk):
            return NotImplemented
        return AIMessageChunk(
            _join_content(self.content, other.content),
            id=self.id or other.id,
            tool_calls=self.tool_calls + other.tool_calls,
            response_metadata={**self.response_metadata, **other.response_metadata},
            usage_metadata=other.usage_metadata or self.usage_metadata,
        )


def _join_content(a: Any, b: Any) -> Any:
    if isinstance(a, str) and isinstance(b, str):
        return a + b
    return _as_parts(a) + _as_parts(b)


def _as_parts(content: Any) -> list[Any]:
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


_CLASS_OF_ROLE = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage,
                  "tool": ToolMessage, "remove": RemoveMessage}


def _is_langchain_message(value: Any) -> bool:  # (interop imports this module)
    return hasattr(value, "type") and hasattr(value, "content") and hasattr(value, "id") and (
        type(value).__module__.startswith("langchain")
    )


# Fields of LangChain's message dicts (as the Agent Server sends them) that carry nothing
# waypoint keeps: accepted on input and dropped, so a client can send back what it received.
_LANGCHAIN_ONLY_FIELDS = ("example", "invalid_tool_calls", "tool_call_chunks", "chunk_position",
                          "status", "artifact", "lc", "role", "type")


def coerce_message(value: Any) -> Any:
    """Turn a dict, (role, content) pair or string into a Message; keep message objects."""
    if isinstance(value, Message) or _is_langchain_message(value):
        return value
    if isinstance(value, str):
        return HumanMessage(value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        role = _ROLE_OF_TYPE.get(value[0])
        if role is None:
            raise ValueError(f"unknown message role {value[0]!r} in {value!r}")
        return _CLASS_OF_ROLE[role](value[1])
    if isinstance(value, dict):
        data = dict(value)
        kind = data.pop("role", None) or data.pop("type", None)
        if kind is None:
            raise ValueError(f"a message dict needs a 'role' (or 'type'), got keys {sorted(value)}")
        role = _ROLE_OF_TYPE.get(kind)
        if role is None:
            raise ValueError(f"unknown message role {kind!r} in {value!r}")
        content = data.pop("content", "")
        for field in _LANGCHAIN_ONLY_FIELDS:  # what a UI echoes back from a LangChain-shaped
            data.pop(field, None)              # message but waypoint does not model
        allowed = {"id", "name", "tool_calls", "tool_call_id", "additional_kwargs",
                   "response_metadata", "usage_metadata"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown message field(s) {sorted(unknown)} in {value!r}")
        if role == "remove":
            return RemoveMessage(id=data["id"])
        return _CLASS_OF_ROLE[role](content, **data)
    raise ValueError(
        f"cannot read {type(value).__name__} as a chat message: expected a Message, a dict "
        f"with 'role' and 'content', a (role, content) tuple or a string"
    )


def coerce_messages(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)) and not (
        isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)
        and value[0] in _ROLE_OF_TYPE
    ):
        return [coerce_message(v) for v in value]
    return [coerce_message(value)]


_OPTIONAL_FIELDS = ("name", "tool_calls", "tool_call_id", "additional_kwargs",
                    "response_metadata", "usage_metadata")


# Fields whose unset value is an empty list or dict (the constructor makes any falsy value
# that): leaving them out when empty loses nothing. The others are unset only when None, so
# an empty name or usage dict is kept (it reads back as set, and messages compare by name).
_EMPTY_WHEN_UNSET = frozenset(("tool_calls", "additional_kwargs", "response_metadata"))


def message_to_data(message: Message) -> list[Any]:
    """A compact, storable form: [role, content, id] plus only the fields that are set."""
    extra = {f: v for f in _OPTIONAL_FIELDS if (v := getattr(message, f)) is not None
             and (v or f not in _EMPTY_WHEN_UNSET)}
    data: list[Any] = [message.role, message.content, message.id]
    if extra:
        data.append(extra)
    return data


def message_from_data(data: list[Any]) -> Message:
    """The inverse of `message_to_data`, without re-validating what was stored."""
    role, content, message_id, *rest = data
    extra = rest[0] if rest else {}
    message = object.__new__(_CLASS_OF_ROLE[role])
    message.role = role
    message.content = content
    message.id = message_id
    message.name = extra.get("name")
    message.tool_calls = list(extra.get("tool_calls") or ())
    message.tool_call_id = extra.get("tool_call_id")
    message.additional_kwargs = extra.get("additional_kwargs") or {}
    message.response_metadata = extra.get("response_metadata") or {}
    message.usage_metadata = extra.get("usage_metadata")
    return message


def new_message_id() -> str:
    return str(uuid.uuid4())


def message_ids(messages: Iterable[Any]) -> list[str | None]:
    return [getattr(m, "id", None) for m in messages]


__all__ = ["AIMessage", "AIMessageChunk", "HumanMessage", "Message", "RemoveMessage",
           "SystemMessage", "ToolMessage", "coerce_message", "coerce_messages"]
