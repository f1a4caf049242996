"""Exceptions raised by waypoint; each message names what was wrong."""

from __future__ import annotations

from typing import Any


class WaypointError(Exception):
    """Base class of waypoint's own errors."""


class GraphValidationError(WaypointError, ValueError):
    """A graph definition that cannot run: raised by `compile()` and the builder."""


class InvalidUpdateError(WaypointError, ValueError):
    """A node (or `update_state`) produced an update the state cannot take."""


class GraphRecursionError(WaypointError, RecursionError):
    """The run exceeded its `recursion_limit` of super-steps."""


class InvalidResumeError(WaypointError, ValueError):
    """A `Command(resume=...)` that does not match the pending interrupts."""


class EmptyInputError(WaypointError, ValueError):
    """`invoke(None)` on a thread with nothing to resume."""


class CheckpointConflict(WaypointError):
    """A commit whose parent is no longer the thread's head: another writer got there first."""

    def __init__(self, thread_id: str, expected: str | None, actual: str | None) -> None:
        super().__init__(
            f"thread {thread_id!r} moved on: this writer expected head checkpoint "
            f"{expected!r} but the head is now {actual!r}; nothing was written"
        )
        self.thread_id = thread_id
        self.expected = expected
        self.actual = actual


class SerializationError(WaypointError, TypeError):
    """A value the checkpoint serializer cannot store or read back safely."""


class GraphBubbleUp(Exception):
    """Control-flow signals that unwind a node without being its failure."""


class GraphInterrupt(GraphBubbleUp):
    """Raised by `interrupt()` to pause the current task; carries the interrupts."""

    def __init__(self, interrupts: tuple[Any, ...] = ()) -> None:
        super().__init__(interrupts)
        self.interrupts = tuple(interrupts)


class ParentCommand(GraphBubbleUp):
    """A subgraph node returned `Command(graph=Command.PARENT)`: the parent applies it."""

    def __init__(self, command: Any) -> None:
        super().__init__(command)
        self.command = command


class RouteTo(GraphBubbleUp):
    """Drop the running node's result and send the run to `node` (an approval timing out)."""

    def __init__(self, node: str, reason: str) -> None:
        super().__init__(node)
        self.node = node
        self.reason = reason


class TransientError(WaypointError):
    """A failure that may pass if the same call is tried again later (timeouts, 429, 5xx).

    `retry_after` is the wait a server asked for, in seconds, when it named one."""

    retry_after: float | None = None


class PermanentError(WaypointError):
    """A failure that the same call will hit again: retrying it only wastes time and money."""


class FencedOut(PermanentError):
    """A commit refused because this writer's lease was taken over by another: its run
    continues elsewhere, so this writer must stop without writing anything more."""

    def __init__(self, thread_id: str, fence: Any) -> None:
        super().__init__(
            f"thread {thread_id!r}: this writer's lease ({fence}) was taken over by another "
            f"worker; nothing was written and the run continues there")
        self.thread_id = thread_id
        self.fence = fence


class NodeTimeoutError(TransientError, TimeoutError):
    """A node attempt ran past its `timeout` (transient: the retry policy may try again)."""

    def __init__(self, node: str, seconds: float, kind: str = "run_timeout") -> None:
        what = "without progress" if kind == "idle_timeout" else "in all"
        super().__init__(f"node {node!r} timed out after {seconds:g} s {what} ({kind})")
        self.node = node
        self.seconds = seconds
        self.kind = kind


class RunTimeoutError(PermanentError, TimeoutError):
    """The run's deadline passed; the node that was running is abandoned, not retried."""

    def __init__(self, node: str | None, deadline: float) -> None:
        where = f" while node {node!r} was running" if node else ""
        super().__init__(f"the run's deadline passed{where}")
        self.node = node
        self.deadline = deadline


class OutputValidationError(TransientError, ValueError):
    """A node's update failed its `validate=` check; retried like a transient failure."""

    def __init__(self, node: str, errors: Any) -> None:
        super().__init__(f"node {node!r} returned an invalid update: {errors}")
        self.node = node
        self.errors = errors


class EffectInDoubt(PermanentError):
    """An effect started but its outcome was never recorded, and its node chose not to guess."""

    def __init__(self, name: str, key: str, started_at: float | None = None) -> None:
        super().__init__(
            f"effect {name!r} (idempotency key {key}) was started but its outcome was never "
            f"recorded: it may or may not have happened, so it is not run again"
        )
        self.name = name
        self.key = key
        self.started_at = started_at


class BudgetExceeded(PermanentError):
    """A run reached a limit of its `Budget` (or a person stopped it there)."""

    def __init__(self, limit: str, allowed: float, spent: float, needed: float = 0.0,
                 *, stopped: bool = False) -> None:
        what = "stopped at" if stopped else "would exceed"
        super().__init__(
            f"budget {limit}={allowed:g}: {what} it (spent {spent:g}"
            + (f", this call may need up to {needed:g}" if needed else "") + ")"
        )
        self.limit = limit
        self.allowed = allowed
        self.spent = spent
        self.needed = needed
