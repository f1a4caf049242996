"""The small interfaces between the run loop and what plugs into it.

The loop (loop.py) is the core: it owns a run's state and steps. The task runner
(execute.py), the stream sink (stream.py), sagas (saga.py), the node-facing runtime
(context.py) and the result recording (writes.py) see a run only as a `RunView`, and the
loop sees the stream only as a `Sink`. Both are defined here, below everything else, so
no plug-in imports the loop and the loop imports no plug-in's implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..checkpoint.base import Checkpoint
    from ..graph.spec import BranchSpec, GraphSpec
    from .task import Task


class Sink(Protocol):
    """Where a run's stream events go (implemented by stream.StreamSink)."""

    def wants(self, mode: str) -> bool: ...

    def emit(self, mode: str, payload: Any) -> None: ...

    def child(self, ns_part: str) -> Sink | None: ...

    def updates_interrupt(self, interrupts: tuple[Any, ...]) -> None: ...

    def step_done(self, loop: RunView, tasks: list[Task]) -> None: ...

    def checkpoint(self, loop: RunView, checkpoint: Checkpoint,
                   metadata: dict[str, Any]) -> None: ...

    def task_start(self, task: Task, loop: RunView) -> None: ...

    def task_end(self, task: Task, loop: RunView) -> None: ...

    def task_retry(self, task: Task, loop: RunView, record: dict[str, Any]) -> None: ...

    def effect(self, task: Task, loop: RunView, entry: dict[str, Any]) -> None: ...

    def custom_writer(self, task: Task) -> Callable[[Any], None]: ...

    def model_start(self, task: Task, name: str, messages: Any,
                    run_id: str | None = None) -> str: ...

    def model_token(self, task: Task, run_id: str | None, chunk: Any,
                    metadata: dict[str, Any]) -> None: ...

    def model_end(self, task: Task, run_id: str | None, message: Any) -> None: ...


class RunView(Protocol):
    """What the parts around the loop may read of one run (implemented by loop.RunLoop)."""

    graph: Any
    spec: GraphSpec
    config: dict[str, Any]
    values: dict[str, Any]
    saver: Any
    sink: Sink | None
    store: Any
    context: Any
    guard: Any  # budget.BudgetGuard | None
    scope: Any  # observers.Scope | None
    ns: str
    thread_id: Any
    run_id: str
    root_name: str
    step: int
    status: str
    checkpoint_id: str | None
    parent_id: str | None
    deadline: float | None
    deadline_epoch: float | None
    usage: list[Any]
    usage_tags: dict[str, Any] | None
    effect_memo: dict[str, Any]
    saga_log: list[dict[str, Any]]
    last_tasks: list[Task]

    def task_id(self, index: int, name: str) -> str: ...

    def task_config(self, task: Task) -> dict[str, Any]: ...

    def task_metadata(self, task: Task) -> dict[str, Any]: ...

    def steps_left(self) -> int: ...

    def local_view(self, items: list[tuple[str, Any]]) -> dict[str, Any]: ...

    def branch_args(self, branch: BranchSpec, view: dict[str, Any]) -> tuple[Any, ...]: ...

    def output_values(self) -> dict[str, Any]: ...

    def config_at(self, checkpoint_id: str | None) -> dict[str, Any]: ...

    def load_config_at_head(self) -> dict[str, Any]: ...

    def close_run(self, summary: dict[str, Any], source: str = "compensation") -> None: ...

    def async_executor(self) -> ThreadPoolExecutor: ...
