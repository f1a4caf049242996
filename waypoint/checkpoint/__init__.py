"""Durability: the store protocol, the serializer, the checkpointers and the records kept
beside checkpoints (effects, approvals, timers)."""

from collections.abc import Callable
from typing import Any

from ..interop.langchain_messages import for_state
from ..messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    Message,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
    message_from_data,
    message_to_data,
)
from ..types import Interrupt, Send
from .base import BaseCheckpointSaver, Checkpoint, CheckpointTuple
from .durable_records import ApprovalRecord, EffectRecord, RecordStore, TimerRecord
from .memory import InMemorySaver, MemorySaver
from .serde import register_type
from .sqlite import SqliteSaver


def _message_reader(cls: type) -> Callable[[Any], Any]:
    """Rebuilds a stored message as the class it was stored as (an AIMessageChunk stays a
    chunk, a bare Message stays one), in the classes the state uses now."""

    def read(data: Any) -> Any:
        message = message_from_data(data)
        if type(message) is not cls:  # same slots: only the class differs
            message.__class__ = cls
        return for_state(message)

    return read


for _cls in (Message, HumanMessage, AIMessage, SystemMessage, ToolMessage, RemoveMessage,
             AIMessageChunk):
    register_type(_cls, message_to_data, _message_reader(_cls))
register_type(Send, lambda s: [s.node, s.arg], lambda d: Send(d[0], d[1]))
register_type(Interrupt)

__all__ = ["ApprovalRecord", "BaseCheckpointSaver", "Checkpoint", "CheckpointTuple",
           "EffectRecord", "InMemorySaver", "MemorySaver", "PostgresSaver", "RecordStore",
           "SqliteSaver", "TimerRecord", "register_type"]


def __getattr__(name: str) -> object:
    """PostgresSaver on first use, so psycopg stays an optional extra."""
    if name == "PostgresSaver":
        from .postgres import PostgresSaver

        return PostgresSaver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
