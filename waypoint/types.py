"""Small value types that nodes return and callers receive."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, NamedTuple, TypeVar

from .errors import InvalidUpdateError


class Send:
    """Run `node` in the next super-step with `arg` as its input (map-reduce fan-out)."""

    __slots__ = ("arg", "node")

    def __init__(self, node: str, arg: Any) -> None:
        if not isinstance(node, str):
            raise TypeError(f"Send(node=...) must be a node name, got {type(node).__name__}")
        self.node = node
        self.arg = arg

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Send) and other.node == self.node and other.arg == self.arg

    def __hash__(self) -> int:
        return hash(self.node)

    def __repr__(self) -> str:
        return f"Send(node={self.node!r}, arg={self.arg!r})"


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A pending request for input; `id` is what `Command(resume={id: value})` answers."""

    value: Any
    id: str = ""


N = TypeVar("N")


@dataclass(slots=True)
class Command(Generic[N]):
    """Update state and choose where to go next, or resume an interrupted run."""

    PARENT: ClassVar[str] = "__parent__"

    graph: str | None = None
    update: Any = None
    resume: Any = None
    goto: str | Send | Sequence[str | Send] = ()

    def __post_init__(self) -> None:
        if self.graph not in (None, Command.PARENT):
            raise InvalidUpdateError(
                f"Command(graph=...) takes None or Command.PARENT, got {self.graph!r}"
            )

    def goto_list(self) -> list[str | Send]:
        goto = self.goto
        if goto is None or goto == ():
            return []
        if isinstance(goto, (str, Send)):
            return [goto]
        return list(goto)


def _default_retry_on(exc: BaseException) -> bool:
    """LangGraph's default: retry unexpected errors, never the ones a retry cannot fix."""
    if isinstance(exc, ConnectionError):
        return True
    permanent = (
        ValueError, TypeError, ArithmeticError, ImportError, LookupError, NameError,
        SyntaxError, RuntimeError, ReferenceError, StopIteration, StopAsyncIteration, OSError,
    )
    if isinstance(exc, permanent):
        return False
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is None:
        status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status == 429 or status >= 500
    return True


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a node's failed attempts are retried."""

    initial_interval: float = 0.5
    backoff_factor: float = 2.0
    max_interval: float = 128.0
    max_attempts: int = 3
    jitter: bool = True
    retry_on: type[BaseException] | Sequence[type[BaseException]] | Callable[
        [BaseException], bool
    ] = _default_retry_on

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_interval < 0 or self.max_interval < 0:
            raise ValueError("RetryPolicy intervals must be >= 0")

    def should_retry(self, exc: BaseException) -> bool:
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            return isinstance(exc, retry_on)
        if isinstance(retry_on, Sequence):
            return isinstance(exc, tuple(retry_on))
        return bool(retry_on(exc))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        import random

        growth = self.backoff_factor ** (attempt - 1)
        interval = min(self.max_interval, self.initial_interval * growth)
        if self.jitter:
            interval += random.uniform(0, 1)
        return interval


class PregelTask(NamedTuple):
    """A task of a checkpoint as `get_state` shows it."""

    id: str
    name: str
    path: tuple[Any, ...] = ()
    error: Exception | None = None
    interrupts: tuple[Interrupt, ...] = ()
    state: Any = None
    result: Any = None


class StateSnapshot(NamedTuple):
    """The state of a thread at one checkpoint."""

    values: dict[str, Any]
    next: tuple[str, ...]
    config: dict[str, Any]
    metadata: dict[str, Any] | None
    created_at: str | None
    parent_config: dict[str, Any] | None
    tasks: tuple[PregelTask, ...]
    interrupts: tuple[Interrupt, ...] = ()


StreamMode = Literal["values", "updates", "custom", "messages", "tasks", "checkpoints", "debug"]


@dataclass(slots=True)
class StreamPart:
    """One streamed item before it is shaped for the caller."""

    namespace: tuple[str, ...]
    mode: str
    payload: Any
    extra: dict[str, Any] = field(default_factory=dict)
