"""Describing workflows: state schemas, the builder, validation and drawing. No I/O."""

from ..constants import END, START
from .builder import StateGraph
from .messages_state import MessagesState, add_messages

__all__ = ["END", "START", "MessagesState", "StateGraph", "add_messages"]
