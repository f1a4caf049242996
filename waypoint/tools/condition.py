"""`tools_condition`: the agent loop's router, "tools" while the model asks for tools."""

from __future__ import annotations

from typing import Any, Literal

from ..constants import END
from ..messages import coerce_message


def tools_condition(state: Any, messages_key: str = "messages") -> Literal["tools", "__end__"]:
    """Go to the "tools" node if the last message is an AI message with tool calls, else end.

    Use as `builder.add_conditional_edges("agent", tools_condition)`; the return hint tells
    the drawing both destinations. `state` may be a state dict or object, or a message list.
    """
    if isinstance(state, (list, tuple)):
        messages = state
    elif isinstance(state, dict):
        if messages_key not in state:
            raise ValueError(f"tools_condition: the state has no {messages_key!r} key")
        messages = state[messages_key]
    elif hasattr(state, messages_key):
        messages = getattr(state, messages_key)
    else:
        raise ValueError(
            f"tools_condition: no messages found in {type(state).__name__} "
            f"(expected a state with {messages_key!r} or a list of messages)")
    if not messages:
        return END  # type: ignore[return-value]
    last = messages[-1]
    if isinstance(last, (dict, tuple)):
        last = coerce_message(last)
    if getattr(last, "type", None) in ("ai", "AIMessageChunk") and getattr(
        last, "tool_calls", None
    ):
        return "tools"
    return END  # type: ignore[return-value]
