"""Small value types that nodes return and callers receive."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
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
    """Retry what `waypoint.failures.classify` calls transient."""
    from .failures import is_transient

    return is_transient(exc)


RetryOn = type[BaseException] | Sequence[type[BaseException]] | Callable[[BaseException], bool]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a node's failed attempts are retried.

    `retry_on` picks the errors worth another attempt (default: transient ones, see
    `waypoint.failures`); `non_retryable` types are never retried whatever `retry_on`
    says. A server's retry-after (429/503) is waited out when it is longer than the
    backoff (`respect_retry_after`). `jitter` adds up to one second, as LangGraph does.
    """

    initial_interval: float = 0.5
    backoff_factor: float = 2.0
    max_interval: float = 128.0
    max_attempts: int = 3
    jitter: bool = True
    retry_on: RetryOn = _default_retry_on
    non_retryable: tuple[type[BaseException], ...] = ()
    respect_retry_after: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be an int >= 1, got "
                             f"{self.max_attempts!r}")
        if self.initial_interval < 0 or self.max_interval < 0:
            raise ValueError("RetryPolicy intervals must be >= 0")
        if self.backoff_factor < 1:
            raise ValueError(f"RetryPolicy.backoff_factor must be >= 1, got {self.backoff_factor}")
        if isinstance(self.non_retryable, type):
            object.__setattr__(self, "non_retryable", (self.non_retryable,))
        for item in self.non_retryable:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise TypeError(f"RetryPolicy.non_retryable takes exception types, got {item!r}")

    def matches(self, exc: BaseException) -> bool:
        """Whether this policy speaks for `exc` (used to pick one of several policies)."""
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            return isinstance(exc, retry_on)
        if isinstance(retry_on, Sequence):
            return isinstance(exc, tuple(retry_on))
        return bool(retry_on(exc))

    def should_retry(self, exc: BaseException) -> bool:
        if self.non_retryable and isinstance(exc, self.non_retryable):
            return False
        return self.matches(exc)

    def delay(self, attempt: int, exc: BaseException | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        import random

        growth = self.backoff_factor ** (attempt - 1)
        interval = min(self.max_interval, self.initial_interval * growth)
        if self.jitter:
            interval += random.uniform(0, 1)
        if exc is not None and self.respect_retry_after:
            from .failures import retry_after

            asked = retry_after(exc)
            if asked is not None and asked > interval:
                interval = asked
        return interval


@dataclass(frozen=True, slots=True)
class TimeoutPolicy:
    """Time limits of one node attempt: a hard cap and/or a limit on silence.

    `idle_timeout` is refreshed by progress: `heartbeat()`, a custom stream write or a
    model token. Both apply to sync nodes too (run in a worker thread that is abandoned,
    not killed, when it overruns: its late result is discarded).
    """

    run_timeout: float | None = None
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("run_timeout", "idle_timeout"):
            value = getattr(self, name)
            if isinstance(value, timedelta):
                value = value.total_seconds()
                object.__setattr__(self, name, value)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"TimeoutPolicy.{name} must be a positive number of seconds, "
                                 f"got {value!r}")
        if self.run_timeout is None and self.idle_timeout is None:
            raise ValueError("TimeoutPolicy needs run_timeout or idle_timeout")

    @classmethod
    def coerce(cls, value: float | timedelta | TimeoutPolicy | None) -> TimeoutPolicy | None:
        if value is None or isinstance(value, TimeoutPolicy):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
            raise TypeError(f"timeout must be seconds, a timedelta or a TimeoutPolicy, got "
                            f"{type(value).__name__}")
        return cls(run_timeout=value)


@dataclass(frozen=True, slots=True)
class NodeError:
    """What an `error_handler` receives: which node failed, with what, after how many tries."""

    node: str
    error: BaseException
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class Attempt:
    """The running node's attempt: number (1-based), the previous failure and its feedback.

    `feedback` is the text of the previous attempt's output-validation error, meant to be
    shown to a model so that it can correct itself (waypoint's chat models do so).
    """

    number: int = 1
    max_attempts: int = 1
    previous_error: BaseException | None = None
    feedback: str | None = None
    first_attempt_at: float | None = None


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits on what a run (or a whole thread, `scope="thread"`) may spend.

    Model calls, tokens and cost are checked before every model call with the call's
    worst case reserved (its prompt plus `max_tokens`), so parallel branches cannot
    overshoot together; steps and seconds (time spent running, not paused) before every
    super-step. `on_exceed="interrupt"` pauses for a person, who can raise the budget or
    stop the run; `"fail"` fails the run with `BudgetExceeded`.
    """

    max_steps: int | None = None
    max_model_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_seconds: float | None = None
    on_exceed: Literal["interrupt", "fail"] = "interrupt"
    scope: Literal["run", "thread"] = "run"

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_model_calls", "max_tokens", "max_cost_usd", "max_seconds"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or value < 0):
                raise ValueError(f"Budget.{name} must be a number >= 0 or None, got {value!r}")
        if self.on_exceed not in ("interrupt", "fail"):
            raise ValueError(f"Budget.on_exceed must be 'interrupt' or 'fail', got "
                             f"{self.on_exceed!r}")
        if self.scope not in ("run", "thread"):
            raise ValueError(f"Budget.scope must be 'run' or 'thread', got {self.scope!r}")

    def limits(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in BUDGET_LIMITS
                if getattr(self, name) is not None}


BUDGET_LIMITS = ("max_steps", "max_model_calls", "max_tokens", "max_cost_usd", "max_seconds")


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
