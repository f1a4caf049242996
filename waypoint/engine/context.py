"""What a running node can reach: its task's runtime, found through a context variable.

`interrupt()`, `get_stream_writer()`, `get_config()`, `get_store()`, `get_runtime()` and the
model hooks used by `waypoint.models` read the runtime of the task that is executing in this
context.
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..errors import GraphBubbleUp, GraphInterrupt, PermanentError
from ..store.current import register_store_lookup
from ..types import Attempt, Interrupt
from ..usage import Usage
from .budget import DEFAULT_WORST_OUTPUT, Exceeded, budget_question, exceeded_error
from .resume import NO_RESUME, ResumeMap, interrupt_id

if TYPE_CHECKING:
    from ..store.base import BaseStore
    from .protocols import RunView
    from .task import Task

_RUNTIME: contextvars.ContextVar[TaskRuntime | None] = contextvars.ContextVar(
    "waypoint_task_runtime", default=None
)

class AttemptAbandoned(GraphBubbleUp):
    """Raised inside a node attempt that overran its time limit and was given up on."""


_FIRST_ATTEMPT = Attempt()


class TaskRuntime:
    """Per-task execution state that survives only for one attempt of the task."""

    __slots__ = ("abandoned", "attempt", "effect_index", "interrupt_index", "last_progress",
                 "loop", "nested_calls", "pending_resume", "resume", "scope", "task")

    def __init__(self, loop: RunView, task: Task, attempt: Attempt = _FIRST_ATTEMPT) -> None:
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
        self.scope: Any = None  # the attempt's observers.Scope, when something observes

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


# -- the run's store and context ----------------------------------------------------------

ContextT = TypeVar("ContextT")


@dataclass(frozen=True, slots=True)
class Runtime(Generic[ContextT]):
    """What a run gives its nodes besides state (LangGraph's Runtime): the run's read-only
    `context`, the long-term `store`, and the custom `stream_writer`."""

    context: ContextT = None  # type: ignore[assignment]
    store: BaseStore | None = None
    stream_writer: Callable[[Any], None] = field(default=_ignore)
    previous: Any = None  # the functional API's previous return (always None here)

    def override(self, **changes: Any) -> Runtime[ContextT]:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)


def _current_store() -> BaseStore | None:
    runtime = _RUNTIME.get()
    if runtime is None:
        raise RuntimeError("get_store() can only be called inside a node of a running graph")
    return runtime.loop.store


def get_store() -> BaseStore | None:
    """The running graph's store (`compile(store=...)`), or None if it has none."""
    return _current_store()


register_store_lookup(_current_store)


def get_runtime(context_schema: type[ContextT] | None = None) -> Runtime[ContextT]:
    """The running node's Runtime (`context_schema` only helps type checkers)."""
    runtime = _RUNTIME.get()
    if runtime is None:
        raise RuntimeError("get_runtime() can only be called inside a node of a running graph")
    return make_runtime(runtime.loop)


def make_runtime(loop: RunView) -> Runtime[Any]:
    return Runtime(context=loop.context, store=loop.store, stream_writer=get_stream_writer())


class InvalidContextError(ValueError):
    """`invoke(..., context=...)` does not match the graph's context_schema."""


_ADAPTERS: dict[Any, Any] = {}


def _validated(hint: Any, value: Any, fallback: Callable[[], Any]) -> Any:
    """`value` checked against `hint` by pydantic; `fallback()` if pydantic cannot read it."""
    adapter = _ADAPTERS.get(hint)
    if adapter is None:
        from pydantic import TypeAdapter

        try:
            adapter = TypeAdapter(hint)
        except Exception:  # a type pydantic cannot check (e.g. typing.TypedDict on 3.11)
            adapter = False
        _ADAPTERS[hint] = adapter
    return fallback() if adapter is False else adapter.validate_python(value)


def _fields_of(schema: Any) -> tuple[dict[str, Any], frozenset[str]]:
    """(field -> type hint, required fields) of a TypedDict or dataclass."""
    try:
        hints = typing.get_type_hints(schema)
    except Exception:
        hints = dict(getattr(schema, "__annotations__", {}))
    if typing.is_typeddict(schema):
        return hints, frozenset(schema.__required_keys__)
    names = {f.name: f for f in dataclasses.fields(schema)}
    required = frozenset(n for n, f in names.items() if f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING and f.init)
    return {n: hints.get(n, Any) for n in names}, required


def _check_keys(schema: Any, value: Mapping[str, Any]) -> None:
    hints, required = _fields_of(schema)
    name = schema.__name__
    unknown = sorted(str(k) for k in value if k not in hints)
    if unknown:
        raise InvalidContextError(f"context has key(s) {unknown} that context_schema {name} "
                                  f"does not declare (fields: {', '.join(hints)})")
    missing = sorted(required - set(value))
    if missing:
        raise InvalidContextError(f"context is missing required field(s) {missing} of "
                                  f"context_schema {name}")


def _problems(exc: Any, field: str = "") -> str:
    """A pydantic ValidationError as "path: message; ..." (paths from `field` down)."""
    parts = []
    for error in exc.errors():
        path = ".".join(str(p) for p in (field, *error["loc"]) if p != "")
        parts.append(f"{path or '(context)'}: {error['msg']}")
    return "; ".join(parts)


def _typeddict_context(schema: Any, name: str, context: Mapping[str, Any]) -> dict[str, Any]:
    from pydantic import ValidationError

    hints = _fields_of(schema)[0]
    checked = {}
    for key, value in context.items():
        try:
            checked[key] = _validated(hints[key], value, lambda value=value: value)
        except ValidationError as exc:
            raise InvalidContextError(f"context does not match context_schema {name}: "
                                      f"{_problems(exc, key)}") from None
    return checked


def coerce_context(schema: Any, context: Any) -> Any:
    """Check a run's context against the graph's context_schema and build it.

    A dict becomes the schema's dataclass or pydantic model (or stays a dict for a
    TypedDict), with field types checked; an instance of the schema is used as it is.
    """
    if schema is None or context is None:
        return context
    from pydantic import ValidationError

    name = getattr(schema, "__name__", repr(schema))
    is_typeddict = isinstance(schema, type) and typing.is_typeddict(schema)
    if isinstance(schema, type) and not is_typeddict and isinstance(context, schema):
        return context
    try:
        if is_typeddict or dataclasses.is_dataclass(schema):
            if not isinstance(context, Mapping):
                raise InvalidContextError(f"context must be a {name} or a dict of its "
                                          f"fields, got {type(context).__name__}")
            _check_keys(schema, context)
            if is_typeddict:
                return _typeddict_context(schema, name, context)
            return _validated(schema, dict(context), lambda: schema(**context))
        if hasattr(schema, "model_validate"):
            return schema.model_validate(context)
        if isinstance(context, Mapping):
            return schema(**context)
    except ValidationError as exc:
        raise InvalidContextError(f"context does not match context_schema {name}: "
                                  f"{_problems(exc)}") from None
    except TypeError as exc:
        raise InvalidContextError(f"context does not match context_schema {name}: {exc}"
                                  ) from None
    raise InvalidContextError(f"context must be a {name} or a dict of its fields, got "
                              f"{type(context).__name__}")


# -- hooks for chat models ---------------------------------------------------------------


def streaming_tokens() -> bool:
    """True when someone listens for tokens (stream_mode="messages" or astream_events)."""
    runtime = _RUNTIME.get()
    sink = runtime.loop.sink if runtime is not None else None
    return sink is not None and (sink.wants("messages") or sink.wants("events"))


def call_scope() -> dict[str, Any]:
    """Who is calling a model or tool: thread, run, node, namespace, and the tenant, user
    and assistant named in the run's metadata ({} outside a run)."""
    runtime = _RUNTIME.get()
    if runtime is None:
        return {}
    loop = runtime.loop
    tags = loop.usage_tags
    if tags is None:
        metadata = loop.config.get("metadata") or {}
        tags = loop.usage_tags = {
            "thread_id": None if loop.thread_id is None else str(loop.thread_id),
            "run_id": loop.run_id, "checkpoint_ns": loop.ns,
            "tenant": _text(metadata.get("tenant") or metadata.get("tenant_id")),
            "user_id": _text(metadata.get("user_id") or metadata.get("user")),
            "assistant_id": _text(metadata.get("assistant_id"))}
    return {**tags, "node": runtime.task.name}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def record_usage(record: Any) -> None:
    """Keep a call's usage for the run's durable ledger; it is written with the run's next
    commit (nothing is kept outside a run or for a graph without a checkpointer)."""
    runtime = _RUNTIME.get()
    if runtime is None:
        return
    loop = runtime.loop
    if loop.saver is not None and hasattr(loop.saver, "put_usage"):
        loop.usage.append(record)


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
    return _reserve(runtime, guard, worst.total_tokens, cost, model_call=True)


def reserve_tool_call(name: str, cost: float | None) -> Any:
    """Before a tool with a `cost_estimate` runs: hold it against the run's cost budget."""
    runtime = _RUNTIME.get()
    guard = runtime.loop.guard if runtime is not None else None
    if guard is None or not cost:
        return None
    return _reserve(runtime, guard, 0, cost, model_call=False)


def _reserve(runtime: TaskRuntime, guard: Any, tokens: int, cost: float | None, *,
             model_call: bool) -> Any:
    """Hold a call against the budget; over it, pause for a person or fail, as set."""
    try:
        return guard.reserve(runtime.task.id, tokens, cost, model_call=model_call)
    except Exceeded as exceeded:
        if guard.budget.on_exceed == "fail" or runtime.loop.saver is None:
            raise exceeded_error(exceeded) from None
        raise GraphInterrupt((budget_question(exceeded, guard, runtime.task.id),)) from None


def settle_tool_call(ticket: Any, cost: float | None) -> None:
    runtime = _RUNTIME.get()
    guard = runtime.loop.guard if runtime is not None else None
    if guard is None or ticket is None:
        return
    guard.settle(ticket, 0, cost, model_call=False)


def settle_model_call(ticket: Any, usage: Any, cost: float | None) -> None:
    runtime = _RUNTIME.get()
    guard = runtime.loop.guard if runtime is not None else None
    if guard is None:
        return
    guard.settle(ticket, usage.total_tokens if usage is not None else 0, cost)

