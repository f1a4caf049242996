"""The super-step loop: one core that the sync and async runners drive.

A run is a sequence of super-steps. `prepare()` turns the current checkpoint's pending
task list into tasks; the runner executes them; `finish()` applies their writes in task
order (never completion order), computes the next task list and queues exactly one store
operation for the step. Store I/O is queued as operations that the runner performs, so
the same code serves `invoke` and `ainvoke`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..checkpoint.base import Checkpoint, CheckpointTuple, TaskRef, make_config
from ..constants import (
    DEFAULT_RECURSION_LIMIT,
    END,
    INTERRUPT,
    NS_SEP,
    RESULT,
    RESUME,
    START,
)
from ..errors import (
    EmptyInputError,
    GraphRecursionError,
    InvalidResumeError,
    InvalidUpdateError,
    ParentCommand,
    RunTimeoutError,
)
from ..graph.schema import input_to_dict
from ..types import Command, Interrupt, Send
from .budget import (
    BUDGET_TASK,
    SPENT,
    BudgetGuard,
    Exceeded,
    budget_question,
    exceeded_error,
    open_guard,
)
from .commits import Commits
from .notes import SAGA, step_notes
from .resume import NO_RESUME, OwnAnswer, assign_resume, group_pending, take_budget_answers
from .settings import DURABILITY_MODES, config_int, run_deadline, shared_executor
from .task import Task
from .task_errors import error_from_record
from .writes import resolve_branch, route

if TYPE_CHECKING:
    from ..graph.spec import BranchSpec, GraphSpec
    from .protocols import Sink

_MISSING = object()


class RunLoop(Commits):
    """State of one run of a graph on one thread namespace: the engine's core.

    It turns checkpoints into tasks (`prepare`) and finished tasks into the next
    checkpoint (`finish`); running tasks (execute.py), streaming (stream.py, through the
    `Sink` protocol) and compensation (saga.py) plug in around it and see it only as a
    `protocols.RunView`.
    """

    def __init__(
        self,
        graph: Any,
        input: Any,
        config: dict[str, Any] | None,
        *,
        saver: Any = None,
        sink: Sink | None = None,
        ns: str = "",
        durability: str = "sync",
    ) -> None:
        if durability not in DURABILITY_MODES:
            raise ValueError(
                f"durability must be one of {', '.join(DURABILITY_MODES)}, got {durability!r}"
            )
        self.durability = durability
        self.graph = graph
        self.spec: GraphSpec = graph.spec
        self.input = input
        self.config = config or {}
        configurable = self.config.get("configurable") or {}
        self.saver = saver
        self.sink = sink
        self.ns = ns
        self.thread_id = configurable.get("thread_id")
        # Tags model usage with the invocation; nested graphs inherit it via task_config.
        self.run_id = str(self.config.get("run_id") or uuid.uuid4())
        # The graph that resumes this thread: timers and approvals are filed under its name.
        self.root_name = str(self.config.get("root_graph") or getattr(graph, "name", ""))
        if saver is not None and self.thread_id is None:
            raise ValueError(
                "this graph has a checkpointer, so each run needs a thread: pass "
                "config={'configurable': {'thread_id': ...}}"
            )
        self.requested_id: str | None = configurable.get("checkpoint_id") if not ns else None
        self.limit = config_int(self.config, "recursion_limit", DEFAULT_RECURSION_LIMIT)
        self.deadline_epoch = run_deadline(self.config, getattr(graph, "options", None) or {})
        self.deadline = (None if self.deadline_epoch is None
                         else time.monotonic() + (self.deadline_epoch - time.time()))
        self._notes: dict[str, Any] = {}  # what this step adds to its checkpoint's metadata
        self.effect_memo: dict[str, Any] = {}  # effect results of a run without a store
        self.saga_log: list[dict[str, Any]] = []  # compensable steps of a run without a store
        self.guard: BudgetGuard | None = None  # the run's budget, if it has one
        self.store: Any = None  # the run's long-term store (get_store(), `store` parameter)
        self.context: Any = None  # the run's read-only context (get_runtime().context)
        self.stopped: BaseException | None = None  # a person stopped the run at its budget
        self.values: dict[str, Any] = {}
        self.barriers: dict[str, list[str]] = {}
        self.next_tasks: list[TaskRef] = []
        self.step = -1
        self.checkpoint_id: str | None = None
        self.parent_id: str | None = None
        self.head: str | None = None
        self.pending: dict[str, dict[str, Any]] = {}
        self.goto_only: set[str] = set()  # START tasks of a Command: routed by its goto only
        self.resume_by_task: dict[str, Any] = {}
        self.steps_run = 0
        self.skip_before = False
        self.status = "running"
        self.cancelled = False
        self.interrupts: list[Interrupt] = []
        self.error: BaseException | None = None
        self.ops: list[tuple[Any, ...]] = []
        self._updated: tuple[str, ...] = ()
        self._before: dict[str, Any] = {}
        self.last_checkpoint: Checkpoint | None = None
        self.last_metadata: dict[str, Any] | None = None
        self.last_tasks: list[Task] = []
        self._executor: ThreadPoolExecutor | None = None
        self._writer_pool: ThreadPoolExecutor | None = None
        self._background: Any = None
        self._abackground: Any = None
        self._base_config = make_config(str(self.thread_id), ns, None) if saver else None
        self.scope: Any = None  # the run's observers.Scope, when something observes
        self.usage: list[Any] = []  # model and tool calls not yet written to the ledger
        self.usage_tags: dict[str, Any] | None = None  # who the calls are billed to

    # -- setup -------------------------------------------------------------------------

    def load_config(self) -> dict[str, Any]:
        assert self._base_config is not None
        cfg = {"configurable": dict(self._base_config["configurable"])}
        cfg["configurable"]["checkpoint_id"] = self.requested_id
        return cfg

    def begin(self, saved: CheckpointTuple | None, head: str | None,
              resume: Any = NO_RESUME) -> None:
        """Start from what the store holds: new input, a resume, or a replay."""
        self.head = head
        if self.requested_id is not None and saved is None:
            raise ValueError(
                f"checkpoint {self.requested_id!r} does not exist in thread {self.thread_id!r}"
            )
        replay = self.requested_id is not None and self.requested_id != head
        if saved is not None:
            cp = saved.checkpoint
            self.values = dict(cp.values)
            self.barriers = {k: list(v) for k, v in cp.barriers.items()}
            self.next_tasks = list(cp.next_tasks)
            self.step = cp.step
            self.checkpoint_id = cp.id
            self.parent_id = (saved.parent_config or {}).get("configurable", {}).get(
                "checkpoint_id"
            )
            if not replay:
                self.pending = group_pending(saved.pending_writes)
        else:
            self.values = {k: spec.initial() for k, spec in self.spec.keys.items()
                           if spec.reducer is not None and spec.initial is not None}
        inp = self.input
        self._open_budget(saved, new_run=inp is not None and not (
            isinstance(inp, Command) and inp.resume is not None))
        if isinstance(inp, Command):
            if inp.graph == Command.PARENT:
                raise InvalidUpdateError("Command(graph=Command.PARENT) cannot be graph input")
            if inp.resume is not None and (inp.update is not None or inp.goto_list()):
                raise InvalidUpdateError(
                    "graph input Command takes either resume=... or update=/goto=, not both"
                )
            if inp.resume is not None:
                if saved is None:
                    raise InvalidResumeError(
                        f"thread {self.thread_id!r} has no checkpoint: there is nothing to resume"
                    )
                self._assign_resume(inp.resume)
                self._continue(saved, replay)
                return
            self._start_with(self._checked_input(inp.update or {}), inp.goto_list(), saved)
            return
        if inp is None:
            if saved is None:
                raise EmptyInputError(
                    "invoke(None) resumes a thread, but this thread has no checkpoint yet: "
                    "pass an input (or a thread_id that has run)"
                )
            if resume is not NO_RESUME:
                self._assign_resume(resume)
            self._continue(saved, replay)
            return
        self._start_with(self._checked_input(inp), None, saved)

    def _continue(self, saved: CheckpointTuple, replay: bool) -> None:
        """Resume (or replay) from a stored checkpoint: show where we start from."""
        self.skip_before = True
        if replay and self.saver is not None:
            # Replaying an older checkpoint forks the thread: a copy of it becomes the head.
            self._commit(source="fork", updated=(), ran=saved.checkpoint.ran)
        if self.sink is not None:
            self.sink.emit("values", self.output_values())

    def _checked_input(self, inp: Any) -> dict[str, Any]:
        data = input_to_dict(inp, self.spec.input_schema)
        keys = self.spec.keys
        unknown = [k for k in data if k not in keys]
        if unknown:
            raise InvalidUpdateError(
                f"input has key(s) {unknown} that are not in the state (keys: {', '.join(keys)})"
            )
        input_keys = self.spec.input_keys
        if input_keys and not isinstance(self.input, Command):
            data = {k: v for k, v in data.items() if k in input_keys}
        return data

    def _start_with(self, data: dict[str, Any], goto: list[Any] | None,
                    saved: CheckpointTuple | None) -> None:
        """New input: an input checkpoint whose single task applies it."""
        self.pending = {}
        if goto is None:
            ref: TaskRef = (START, data)
        else:
            if not goto and saved is not None:
                goto = [(Send(r[0], r[1]) if len(r) == 2 else r[0]) for r in self.next_tasks]
            for target in goto:
                name = target.node if isinstance(target, Send) else target
                if name != END and name not in self.spec.nodes:
                    raise InvalidUpdateError(f"Command(goto={name!r}): not a node of this graph")
            ref = (START, data, goto)
        self.step = self.step + 1 if saved is not None else -1
        self.next_tasks = [ref]
        if self.saver is not None:
            self._commit(source="input", updated=(), ran=())

    def _open_budget(self, saved: CheckpointTuple | None, new_run: bool) -> None:
        """The run's budget guard, continuing from what the thread's checkpoints say."""
        if self.ns:  # nested graphs share their parent's guard
            return
        stored = (saved.metadata or {}).get("budget") if saved is not None else None
        kept = self.pending.get(BUDGET_TASK, {}).get(SPENT) if not new_run else None
        explicit = self.config.get("budget")
        default = getattr(self.graph, "options", {}).get("budget")
        if stored or kept or explicit is not None or default is not None:
            self.guard = open_guard(kept or stored or {}, explicit, default, new_run)

    def _assign_resume(self, resume: Any) -> None:
        """File a resume value under the tasks it answers (budget answers go to the guard)."""
        resume, stopped = take_budget_answers(self.pending, self.guard, resume)
        if stopped is not None:
            self.stopped = stopped
        if resume is NO_RESUME:
            return
        first = self.task_id(0, self.next_tasks[0][0]) if self.next_tasks else None
        assign_resume(self.pending, resume, self.resume_by_task, first, self.thread_id)

    # -- steps -------------------------------------------------------------------------

    def task_id(self, index: int, name: str) -> str:
        if self.checkpoint_id is None:
            return f"{self.ns}:{self.step}:{index}:{name}"
        raw = f"{self.ns}|{self.checkpoint_id}|{index}|{name}".encode()
        return hashlib.blake2b(raw, digest_size=16).hexdigest()

    def prepare(self) -> list[Task] | None:
        """Tasks of the next super-step, or None when the run stops here."""
        refs = self.next_tasks
        if self.status != "running":
            return None
        if self.steps_run >= self.limit:  # checked before the end, as LangGraph does
            raise GraphRecursionError(
                f"recursion limit of {self.limit} super-steps reached without reaching END; "
                f"raise config['recursion_limit'] if the graph is meant to run longer"
            )
        if not refs:
            self.status = "done"
            return None
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise RunTimeoutError(None, self.deadline_epoch or 0.0)
        if self.guard is not None and refs[0][0] != START and self._over_budget():
            return None
        nodes = self.spec.nodes
        tasks: list[Task] = []
        for index, ref in enumerate(refs):
            name = ref[0]
            if name == START:
                tasks.append(self._start_task(index, ref))
                continue
            node = nodes.get(name)
            if node is None:
                raise InvalidUpdateError(
                    f"checkpoint names node {name!r}, which is not in the graph"
                )
            task = Task(index, name, node, self.task_id(index, name), ref[1] if len(ref) > 1
                        else None, len(ref) > 1)
            stored = self.pending.get(task.id)
            if stored is not None:
                if RESULT in stored:
                    writes, gotos = stored[RESULT][:2]
                    if len(stored[RESULT]) > 2:
                        task.handled = stored[RESULT][2]
                    task.writes = [tuple(w) for w in writes]
                    task.gotos = list(gotos)
                    task.done = True
                task.resume = list(stored.get(RESUME, ()))
            answer = self.resume_by_task.get(task.id, NO_RESUME)
            if isinstance(answer, OwnAnswer):
                answer = answer.value
            task.pending_resume = answer
            tasks.append(task)
        before = self.spec.interrupt_before
        if before and not self.skip_before and any(
            t.name in before and not t.done for t in tasks
        ):
            self.status = "interrupted"
            if self.sink is not None:
                self.sink.updates_interrupt(())
            return None
        self.skip_before = False
        if refs[0][0] != START:
            self.steps_run += 1
        self.last_tasks = tasks
        return tasks

    def _over_budget(self) -> bool:
        """Steps and seconds, checked before a super-step: fail, or pause for a person."""
        guard = self.guard
        assert guard is not None
        try:
            guard.check_step()
        except Exceeded as exceeded:
            if guard.budget.on_exceed == "fail" or self.saver is None:
                raise exceeded_error(exceeded) from None
            question = budget_question(exceeded, guard, str(self.checkpoint_id))
            self.status = "interrupted"
            self.interrupts = [question]
            self.pending[BUDGET_TASK] = {INTERRUPT: [question], SPENT: guard.snapshot()}
            if self.checkpoint_id is not None:
                self.ops.append(("put_writes", [
                    (task_id, channel, value) for task_id, record in self.pending.items()
                    for channel, value in record.items()], self.checkpoint_id))
            if self.sink is not None:
                self.sink.updates_interrupt(tuple(self.interrupts))
            return True
        return False

    def _start_task(self, index: int, ref: TaskRef) -> Task:
        task = Task(index, START, None, self.task_id(index, START), ref[1], True)
        task.writes = list(ref[1].items())
        if len(ref) > 2:  # a Command goes where its goto says, not along START's edges
            task.gotos = list(ref[2])
            self.goto_only.add(task.id)
        else:
            task.gotos = route(self, task, task.writes)
        task.done = True
        return task

    def finish(self, tasks: list[Task]) -> bool:
        """Apply a finished step; queue its commit. Returns False when the run stops."""
        for task in tasks:
            if isinstance(task.error, ParentCommand):
                raise task.error
        failed = [t for t in tasks if t.error is not None]
        interrupted = [t for t in tasks if t.interrupts]
        if failed or interrupted:
            self._keep_pending(tasks)
            if failed:
                self.status = "error"
                self.error = failed[0].error
            else:
                self.status = "interrupted"
                self.interrupts = [i for t in interrupted for i in t.interrupts]
                if self.sink is not None:
                    self.sink.updates_interrupt(tuple(self.interrupts))
                    if self.sink.wants("values"):
                        self.sink.emit("values", self.output())
            return False
        self._apply(tasks)
        if self.guard is not None and tasks[0].name != START:
            self.guard.step_done()
        self._notes = step_notes(tasks)
        if self.saver is None and SAGA in self._notes:
            self.saga_log.extend(self._notes[SAGA])
        ran = tuple(t.name for t in tasks)
        self.step += 1
        if self.saver is not None:
            self._commit(source="loop", updated=self._updated, ran=ran)
        if self.sink is not None:
            self.sink.step_done(self, tasks)
        after = self.spec.interrupt_after
        if after and self.next_tasks and any(t.name in after for t in tasks):
            self.status = "interrupted"
            if self.sink is not None:
                self.sink.updates_interrupt(())
            return False
        return True

    def _apply(self, tasks: list[Task]) -> None:
        keys = self.spec.keys
        values = self.values
        ordered = tasks if len(tasks) == 1 else sorted(tasks, key=_write_order)
        if len(tasks) > 1:
            _check_last_value_conflicts(ordered, keys)
        before: dict[str, Any] = {}
        for task in ordered:
            for key, value in task.writes:
                if key not in before:
                    before[key] = values.get(key, _MISSING)
                spec = keys[key]
                reducer = spec.reducer
                if reducer is None:
                    values[key] = value
                else:
                    current = values.get(key, _MISSING)
                    if current is _MISSING:
                        current = spec.initial() if spec.initial is not None else _MISSING
                    values[key] = value if current is _MISSING else reducer(current, value)
        self._updated = tuple(before)
        self._before = before
        self._route(tasks)

    def _route(self, tasks: list[Task]) -> None:
        edges = self.spec.edges
        joins_by_source = self.spec.joins_by_source
        pulls: dict[str, None] = {}
        pushes: list[TaskRef] = []
        touched_joins: list[Any] = []
        for task in tasks:
            if task.handled is not None or task.id in self.goto_only:  # routed by gotos only
                pulls.update((t, None) for t in task.gotos if isinstance(t, str) and t != END)
                pushes.extend((t.node, t.arg) for t in task.gotos if isinstance(t, Send))
                continue
            for target in edges.get(task.name, ()):
                if target != END:
                    pulls[target] = None
            for join in joins_by_source.get(task.name, ()):
                seen = self.barriers.setdefault(join.id, [])
                if task.name not in seen:
                    seen.append(task.name)
                touched_joins.append(join)
            for target in task.gotos:
                if isinstance(target, Send):
                    pushes.append((target.node, target.arg))
                elif target != END:
                    pulls[target] = None
        for join in touched_joins:
            seen = self.barriers.get(join.id)
            if seen is not None and join.sources.issubset(seen):
                pulls[join.target] = None
                del self.barriers[join.id]
        order = self.spec.node_order
        next_tasks: list[TaskRef] = [(n,) for n in sorted(pulls, key=order.__getitem__)]
        next_tasks.extend(pushes)
        self.next_tasks = next_tasks

    # -- views for tasks -----------------------------------------------------------------

    def local_view(self, items: list[tuple[str, Any]]) -> dict[str, Any]:
        """State as one task sees it after its own writes (siblings' not yet applied)."""
        view = dict(self.values)
        keys = self.spec.keys
        for key, value in items:
            spec = keys.get(key)
            if spec is None or spec.reducer is None:
                view[key] = value
                continue
            current = view.get(key, _MISSING)
            if current is _MISSING:
                current = spec.initial() if spec.initial is not None else _MISSING
            view[key] = value if current is _MISSING else spec.reducer(current, value)
        return view

    def branch_args(self, branch: BranchSpec, view: dict[str, Any]) -> tuple[Any, ...]:
        state = self.spec.state_codec.build(view)
        if branch.wants_config:
            return (state, self.config)
        return (state,)

    def task_config(self, task: Task) -> dict[str, Any]:
        configurable = dict(self.config.get("configurable") or {})
        configurable["checkpoint_ns"] = self.ns
        if self.checkpoint_id is not None:
            configurable["checkpoint_id"] = self.checkpoint_id
        config = dict(self.config)
        config["configurable"] = configurable
        config["run_id"] = self.run_id
        config["root_graph"] = self.root_name
        if self.deadline_epoch is not None:
            config["deadline"] = self.deadline_epoch
        config["metadata"] = {**(self.config.get("metadata") or {}), **self.task_metadata(task)}
        return config

    def steps_left(self) -> int:
        """Steps that may still follow the running one before the recursion limit (the
        managed value `RemainingSteps`)."""
        return self.limit - self.steps_run

    def task_metadata(self, task: Task) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "langgraph_step": self.step + 1,
            "langgraph_node": task.name,
            "langgraph_triggers": ("branch:to:" + task.name,),
            "langgraph_path": ("__pregel_push", task.index) if task.is_push
            else ("__pregel_pull", task.name),
            "langgraph_checkpoint_ns": (self.ns + NS_SEP if self.ns else "")
            + f"{task.name}:{task.id}",
        }

    def child_namespace(self, task: Task, call_index: int) -> str:
        own = f"{task.name}:{task.id}" + (f"#{call_index}" if call_index else "")
        return f"{self.ns}{NS_SEP}{own}" if self.ns else own

    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            workers = config_int(self.config, "max_concurrency", 16)
            self._executor = ThreadPoolExecutor(max_workers=workers,
                                                thread_name_prefix="waypoint-task")
        return self._executor

    def async_executor(self) -> ThreadPoolExecutor:
        """Where an async run's sync nodes run: a pool shared by every run (no thread to
        start per run), unless the run sets its own `max_concurrency`."""
        if self.config.get("max_concurrency"):
            return self.executor()
        return shared_executor()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        if self._writer_pool is not None:
            self._writer_pool.shutdown(wait=True)
            self._writer_pool = None

    # -- results -----------------------------------------------------------------------

    def output(self) -> dict[str, Any]:
        keys = self.spec.output_keys
        values = self.values
        out = {k: values[k] for k in keys if k in values} if keys else dict(values)
        if self.status == "interrupted" and self.interrupts:
            out["__interrupt__"] = list(self.interrupts)
        return out

    def output_values(self) -> dict[str, Any]:
        keys = self.spec.output_keys
        values = self.values
        return {k: values[k] for k in keys if k in values} if keys else dict(values)


def _write_order(task: Task) -> tuple[int, str, int]:
    return (1, "", task.index) if task.is_push and task.name != START else (0, task.name, 0)


def _check_last_value_conflicts(tasks: list[Task], keys: dict[str, Any]) -> None:
    writer: dict[str, str] = {}
    for task in tasks:
        for key, _ in task.writes:
            if keys[key].reducer is not None:
                continue
            other = writer.get(key)
            if other is not None:
                raise InvalidUpdateError(
                    f"at key {key!r}: nodes {other!r} and {task.name!r} both wrote it in the same "
                    f"step, but it keeps only one value; give it a reducer "
                    f"(Annotated[type, reducer]) to combine parallel writes"
                )
            writer[key] = task.name


__all__ = ["DURABILITY_MODES", "RunLoop", "error_from_record", "resolve_branch", "run_deadline",
           "shared_executor", "step_notes"]
