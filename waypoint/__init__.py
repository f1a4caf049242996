"""waypoint: durable agent workflows with LangGraph's API.

    from waypoint import StateGraph, START, END, Send, Command, interrupt
    from waypoint.checkpoint import MemorySaver
    from waypoint.store import InMemoryStore
"""

from .constants import END, START
from .engine import (
    CompiledStateGraph,
    Decision,
    FiredTimer,
    aeffect,
    approve,
    decide,
    effect,
    fire_due_timers,
    get_attempt,
    get_config,
    get_stream_writer,
    heartbeat,
    interrupt,
    sleep,
    wait_until,
)
from .engine.context import InvalidContextError, Runtime, get_runtime, get_store
from .errors import (
    BudgetExceeded,
    CheckpointConflict,
    EffectInDoubt,
    EmptyInputError,
    GraphInterrupt,
    GraphRecursionError,
    GraphValidationError,
    InvalidResumeError,
    InvalidUpdateError,
    NodeTimeoutError,
    OutputValidationError,
    PermanentError,
    RunTimeoutError,
    TransientError,
)
from .graph import MessagesState, StateGraph, add_messages
from .types import (
    Attempt,
    Budget,
    Command,
    Interrupt,
    NodeError,
    PregelTask,
    RetryPolicy,
    Send,
    StateSnapshot,
    TimeoutPolicy,
)

__version__ = "0.1.0"

__all__ = [
    "END",
    "START",
    "Attempt",
    "Budget",
    "BudgetExceeded",
    "CheckpointConflict",
    "Command",
    "CompiledStateGraph",
    "Decision",
    "EffectInDoubt",
    "EmptyInputError",
    "FiredTimer",
    "GraphInterrupt",
    "GraphRecursionError",
    "GraphValidationError",
    "Interrupt",
    "InvalidContextError",
    "InvalidResumeError",
    "InvalidUpdateError",
    "MessagesState",
    "NodeError",
    "NodeTimeoutError",
    "OutputValidationError",
    "PermanentError",
    "PregelTask",
    "RetryPolicy",
    "RunTimeoutError",
    "Runtime",
    "Send",
    "StateGraph",
    "StateSnapshot",
    "TimeoutPolicy",
    "TransientError",
    "add_messages",
    "aeffect",
    "approve",
    "decide",
    "effect",
    "fire_due_timers",
    "get_attempt",
    "get_config",
    "get_runtime",
    "get_store",
    "get_stream_writer",
    "heartbeat",
    "interrupt",
    "sleep",
    "wait_until",
]


def _trace_from_env() -> None:
    """Tracing with no code change: when an OTEL_* trace variable is set (and only then),
    set it up from the environment (waypoint/observe/otel_setup.py)."""
    import os

    env = os.environ
    if not (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or env.get("OTEL_TRACES_EXPORTER")):
        return
    try:
        from .observe.otel_setup import configure_from_env

        configure_from_env()
    except Exception:  # tracing never breaks the import
        import logging

        logging.getLogger("waypoint").warning("could not set up tracing from OTEL_* variables",
                                              exc_info=True)


_trace_from_env()
del _trace_from_env
