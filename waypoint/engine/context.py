"""What a running node can reach: its task's runtime, found through a context variable.

`interrupt()`, `get_stream_writer()`, `get_config()` and the model hooks used by
`waypoint.models` read the runtime of the task that is executing in this context.
"""

from __future__ import annotations

import contextvars
import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import GraphBubbleUp, GraphInterrupt
from ..types import Attempt, Interrupt

if TYPE_CHECKING:
    from .loop import RunLoop
    from .task import Task

_RUNTIME: contextvars.ContextVar[TaskRuntime | None] = contextvars.ContextVar(
    "waypoint_task_runtime", default=None
)

NO_RESUME = object()


class ResumeMap(dict):
    """Resume values keyed by interrupt id, handed down to a nested graph."""


def interrupt_id(task_id: str, index: int) -> str:
    return hashlib.blake2b(f"{task_id}:{index}".encode(), digest_size=16).hexdigest()


class AttemptAbandoned(GraphBubbleUp):
    """Raised inside a node attempt that overran its time limit and was given up on."""


_FIRST_ATTEMPT = Attempt()


class TaskRuntime:
    """Per-task execution state that survives only for one attempt of the task."""

    __slots__ = ("abandoned", "attempt", "effect_index", "interrupt_index", "last_progress",
                 "loop", "nested_calls", "pending_resume", "resume", "task")

    def __init__(self, loop: RunLoop, task: Task, attempt: Attempt = _FIRST_ATTEMPT) -> None:
        self.loop = loop
        self.task = task
        self.resume: list[Any] = task.resume  # answers to this task's own interrupt() calls
        self.pending_resume: Any = task.pending_resume
        self.interrupt_index = 0
        self.effect_index = 0
        self.nested_calls = 0
        self.attempt = attempt
        self.last_progress = 0.0  # set when a time limit starts watching the attempt
        self.abandoned = False  # set when a time limit gave up on this attempt

    def check_alive(self) -> None:
        """Stop an abandoned attempt at its next call into waypoint."""
        if self.abandoned:
            raise AttemptAbandoned(f"attempt of node {self.task.name!r} was abandoned")

    def take_resume(self) -> Any:
        value, self.pending_resume = self.pending_resume, NO_RESUME
        return value


def current_runtime() -> TaskRuntime | None:
    return _RUNTIME.get()


def set_runtime(runtime: TaskRuntime | None) -> contextvars.Token[TaskRuntime | None]:
    return _RUNTIME.set(runtime)


def reset_runtime(token: contextvars.Token[TaskRuntime | None]) -> None:
    _RUNTIME.reset(token)


def interrupt(value: Any) -> Any:
    """Pause the run and ask for input; returns the answer once the run is resumed.

    The node runs again from its start on resume, and its `interrupt()` calls are matched
    to answers in order, so code before an `interrupt()` must be safe to repeat.
    """
    runtime = _RUNTIME.get()
    if runtime is None:
        raise RuntimeError("interrupt() can only be called inside a node of a running graph")
    runtime.check_alive()
    if runtime.loop.saver is None:
        raise RuntimeError(
            "interrupt() needs a checkpointer to resume from: compile(checkpointer=MemorySaver())"
        )
    index = runtime.interrupt_index
    runtime.interrupt_index += 1
    if index < len(runtime.resume):
        return runtime.resume[index]
    if runtime.pending_resume is not NO_RESUME and not isinstance(runtime.pending_resume,
                                                                   ResumeMap):
        answer = runtime.take_resume()
        runtime.resume.append(answer)
        return answer
    if isinstance(runtime.pending_resume, ResumeMap):
        own = interrupt_id(runtime.task.id, index)
        if own in runtime.pending_resume:
            answer = runtime.pending_resume.pop(own)
            runtime.resume.append(answer)
            return answer
    raise GraphInterrupt((Interrupt(value, interrupt_id(runtime.task.id, index)),))


def get_stream_writer() -> Callable[[Any], None]:
    """A function that sends custom data to `stream_mode="custom"`; a no-op otherwise."""
    runtime = _RUNTIME.get()
    if runtime is None or runtime.loop.sink is None:
        return _ignore
    sink = runtime.loop.sink
    if not sink.wants("custom"):
        return _ignore
    write = sink.custom_writer(runtime.task)

    def write_and_touch(data: Any) -> None:
        runtime.last_progress = time.monotonic()
        write(data)

    return write_and_touch


def heartbeat() -> None:
    """Tell the engine the running node is making progress (refreshes `idle_timeout`)."""
    runtime = _RUNTIME.get()
    if runtime is not None:
        runtime.check_alive()
        runtime.last_progress = time.monotonic()


def get_attempt() -> Attempt:
    """Which attempt of the running node this is, and why the previous one failed."""
    runtime = _RUNTIME.get()
    if runtime is None:
        raise RuntimeError("get_attempt() can only be called inside a node of a running graph")
    return runtime.attempt


def retry_feedback() -> str | None:
    """The previous attempt's validation error, for a model to correct (None outside runs)."""
    runtime = _RUNTIME.get()
    return None if runtime is None else runtime.attempt.feedback


def get_config() -> dict[str, Any]:
    """The run config of the executing task (thread id, namespace, metadata)."""
    runtime = _RUNTIME.get()
    if runtime is None:
        raise RuntimeError("get_config() can only be called inside a node of a running graph")
    return runtime.loop.task_config(runtime.task)


def _ignore(_: Any) -> None:
    return None


# -- hooks for chat models ---------------------------------------------------------------


def streaming_tokens() -> bool:
    """True when someone listens for tokens (stream_mode="messages" or astream_events)."""
    runtime = _RUNTIME.get()
    sink = runtime.loop.sink if runtime is not None else None
    return sink is not None and (sink.wants("messages") or sink.wants("events"))


def call_scope() -> dict[str, Any]:
    """Who is calling a model: thread, run and node of the running task ({} outside a run)."""
    runtime = _RUNTIME.get()
    if runtime is None:
        return {}
    loop = runtime.loop
    return {"thread_id": None if loop.thread_id is None else str(loop.thread_id),
            "run_id": loop.run_id, "node": runtime.task.name}


def on_model_start(name: str, messages: Any) -> str | None:
    runtime = _RUNTIME.get()
    if runtime is None or runtime.loop.sink is None:
        return None
    return runtime.loop.sink.model_start(runtime.task, name, messages)


def on_model_token(run_id: str | None, chunk: Any) -> None:
    runtime = _RUNTIME.get()
    if runtime is None:
        return
    runtime.last_progress = time.monotonic()
    if runtime.loop.sink is None:
        return
    runtime.loop.sink.model_token(runtime.task, run_id, chunk,
                                  runtime.loop.task_metadata(runtime.task))


def on_model_end(run_id: str | None, message: Any) -> None:
    runtime = _RUNTIME.get()
    if runtime is None or runtime.loop.sink is None:
        return
    runtime.loop.sink.model_end(runtime.task, run_id, message)


# -- budgets ------------------------------------------------------------------------------


def _estimate_prompt_tokens(messages: Any) -> int:
    """A generous token count for a prompt (about 3 characters per token, plus framing)."""
    total = 0
    for message in messages or ():
        content = getattr(message, "content", message)
        total += len(content if isinstance(content, str) else str(content)) // 3 + 8
    return total


def reserve_model_call(model: Any, request: Any) -> Any:
    """Before a model call: hold its worst case against the run's budget (or pause/fail)."""
    runtime = _RUNTIME.get()
    guard = runtime.loop.guard if runtime is not None else None
    if guard is None:
        return None
    from ..errors import PermanentError
    from ..usage import Usage
    from .budget import DEFAULT_WORST_OUTPUT, Exceeded, budget_question, exceeded_error

    runtime.check_alive()
    worst = Usage(_estimate_prompt_tokens(request.messages),
                  request.max_tokens or DEFAULT_WORST_OUTPUT)
    pricing = getattr(model, "worst_cost", None) or model.price
    cost = pricing(worst)
    if cost is None and guard.budget.max_cost_usd is not None:
        raise PermanentError(
            f"model {model.model!r} has no known price, so the budget max_cost_usd cannot be "
            f"enforced: give the model prices= (a PriceBook) or drop max_cost_usd"
        )
    try:
        return guard.reserve(runtime.task.id, worst.total_tokens, cost)
    except Exceeded as exceeded:
        if guard.budget.on_exceed == "fail" or runtime.loop.saver is None:
            raise exceeded_error(exceeded) from None
        raise GraphInterrupt((budget_question(exceeded, guard, runtime.task.id),)) from None


def settle_model_call(ticket: Any, usage: Any, cost: float | None) -> None:
    runtime = _RUNTIME.get()
    guard = runtime.loop.guard if runtime is not None else None
    if guard is None:
        return
    guard.settle(ticket, usage.total_tokens if usage is not None else 0, cost)
