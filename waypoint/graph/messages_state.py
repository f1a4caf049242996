"""The `add_messages` reducer and the ready-made `MessagesState` schema."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from ..interop.langchain_messages import message_classes, to_langchain
from ..messages import Message, RemoveMessage, coerce_messages, new_message_id

REMOVE_ALL_MESSAGES = "__remove_all__"


def _with_id(message: Any) -> Any:
    if getattr(message, "id", None) is None:
        try:
            message.id = new_message_id()
        except (AttributeError, TypeError, ValueError):  # frozen foreign message objects
            message = message.model_copy(update={"id": new_message_id()})
    return message


def _same(message: Any) -> Any:
    return message


def _is_remove(message: Any) -> bool:
    return isinstance(message, RemoveMessage) or getattr(message, "type", None) == "remove"


def add_messages(left: Any, right: Any) -> list[Any]:
    """Merge messages by id: a new id appends, a known id replaces, RemoveMessage deletes.

    The result holds LangChain's message classes when the code uses LangChain (see
    `waypoint.interop.langchain_messages`), waypoint's otherwise."""
    convert = to_langchain if message_classes() == "langchain" else _same
    current = [_with_id(convert(m)) for m in coerce_messages(left)] if left else []
    incoming = ([_with_id(convert(m)) for m in coerce_messages(right)]
                if right is not None else [])
    for i, message in enumerate(incoming):
        if _is_remove(message) and message.id == REMOVE_ALL_MESSAGES:
            current = []
            incoming = incoming[i + 1 :]
            break
    position = {m.id: i for i, m in enumerate(current)}
    merged: list[Any] = list(current)
    removed: set[str] = set()
    for message in incoming:
        index = position.get(message.id)
        if _is_remove(message):
            if index is None:
                raise ValueError(
                    f"RemoveMessage(id={message.id!r}): no message with that id to remove"
                )
            removed.add(message.id)
            continue
        if index is None:
            position[message.id] = len(merged)
            merged.append(message)
        else:
            merged[index] = message
            removed.discard(message.id)
    if removed:
        merged = [m for m in merged if m.id not in removed]
    return merged


class MessagesState(TypedDict):
    messages: Annotated[list[Message], add_messages]
