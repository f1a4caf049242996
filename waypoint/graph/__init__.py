"""Describing workflows: state schemas, the builder, validation and drawing. No I/O."""

from ..constants import END, START
from .builder import StateGraph
from .messages_state import MessagesState, add_messages
from .routes import Condition, Route, Router, all_of, any_of, not_

__all__ = ["END", "START", "Condition", "MessagesState", "Route", "Router", "StateGraph",
           "add_messages", "all_of", "any_of", "not_"]
