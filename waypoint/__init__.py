"""waypoint: durable agent workflows with LangGraph's API.

    from waypoint import StateGraph, START, END, Send, Command, interrupt
    from waypoint.checkpoint import MemorySaver
"""

from .constants import END, START
from .engine import CompiledStateGraph, get_config, get_stream_writer, interrupt
from .errors import (
    CheckpointConflict,
    EmptyInputError,
    GraphInterrupt,
    GraphRecursionError,
    GraphValidationError,
    InvalidResumeError,
    InvalidUpdateError,
)
from .graph import MessagesState, StateGraph, add_messages
from .types import Command, Interrupt, PregelTask, RetryPolicy, Send, StateSnapshot

__version__ = "0.1.0"

__all__ = [
    "END",
    "START",
    "CheckpointConflict",
    "Command",
    "CompiledStateGraph",
    "EmptyInputError",
    "GraphInterrupt",
    "GraphRecursionError",
    "GraphValidationError",
    "Interrupt",
    "InvalidResumeError",
    "InvalidUpdateError",
    "MessagesState",
    "PregelTask",
    "RetryPolicy",
    "Send",
    "StateGraph",
    "StateSnapshot",
    "add_messages",
    "get_config",
    "get_stream_writer",
    "interrupt",
]
