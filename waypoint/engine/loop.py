"""The super-step loop: one core that the sync and async runners drive.

A run is a sequence of super-steps. `prepare()` turns the current checkpoint's pending
task list into tasks; the runner executes them; `finish()` applies their writes in task
order (never completion order), computes the next task list and queues exactly one store
operation for the step. Store I/O is queued as operations that the runner performs, so
the same code serves `invoke` and `ainvoke`.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..checkpoint.base import Checkpoint, CheckpointTuple, TaskRef, make_config
from ..checkpoint.ids import new_checkpoint_id
from ..checkpoint.records import channel_changes
from ..constants import (
    DEFAULT_RECURSION_LIMIT,
    END,
    ERROR,
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
from ..types import Budget, Command, Interrupt, Send
from . import observers
from .budget import (
    BUDGET_TASK,
    SPENT,
    BudgetGuard,
    Exceeded,
    apply_answer,
    budget_question,
    exceeded_error,
    is_budget_question,
)
from .context import NO_RESUME, ResumeMap
from .saga import SAGA, saga_entries
from .task import Task, resolve_branch, route
from .task_errors import error_from_record, error_record

if TYPE_CHECKING:
    from ..graph.spec import BranchSpec, GraphSpec
    from .stream import StreamSink

_MISSING = object()
# sync: each step is committed before the next starts; async: committed in the background
# while the next step runs (order kept); exit: committed only when the run stops.
DURABILITY_MODES = ("sync", "async", "exit")


def _now() -> str:
    return datetime.now(UTC).isoformat()


class RunLoop:
    """State of one run of a graph on one thread namespace."""

    def __init__(
        self,
        graph: Any,
        input: Any,
        config: dict[str, Any] | None,
        *,
        saver: Any = None,
        sink: StreamSink | None = None,
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
        self.limit = int(self.config.get("recursion_limit") or DEFAULT_RECURSION_LIMIT)
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
                self.pending = _group_pending(saved.pending_writes)
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
        stored = kept or stored or {}
        explicit = self.config.get("budget")
        budget = explicit or getattr(self.graph, "options", {}).get("budget")
        raised = stored.get("limits") if not new_run and explicit is None else None
        if raised:
            budget = Budget(**raised)
        if budget is None:
            return
        if not isinstance(budget, Budget):
            raise TypeError(f"budget must be a waypoint Budget, got {type(budget).__name__}")
        self.guard = BudgetGuard(budget, None if new_run else stored.get("run"),
                                 stored.get("thread"))
        self.guard.raised = bool(raised)

    def _take_budget_answers(self, resume: Any) -> Any:
        """Answers to budget questions are for the run, not for a node: apply them here.

        Returns what is left of `resume` for the nodes' own interrupts (NO_RESUME if none).
        """
        questions: dict[str, Interrupt] = {}
        others = 0
        for record in self.pending.values():
            items = record.get(INTERRUPT)
            if not items:
                continue
            kept = [i for i in items if not is_budget_question(i)]
            questions.update((i.id, i) for i in items if is_budget_question(i))
            others += len(kept)
            record[INTERRUPT] = kept
        if not questions:
            return resume
        if isinstance(resume, dict) and any(k in questions for k in resume):
            answers = [(resume[k], questions[k]) for k in resume if k in questions]
            resume = {k: v for k, v in resume.items() if k not in questions} or NO_RESUME
        elif others == 0:
            answers = [(resume, q) for q in questions.values()]
            resume = NO_RESUME
        else:
            raise InvalidResumeError(
                f"a budget question and {others} other interrupt(s) are pending: answer them "
                f"with Command(resume={{interrupt_id: value, ...}}) (budget question ids: "
                f"{', '.join(questions)})"
            )
        if self.guard is None:
            raise InvalidResumeError("this run has no budget to raise: it was removed")
        for answer, question in answers:
            stop = apply_answer(self.guard, answer, question)
            if stop is not None:
                self.stopped = stop
        return resume

    def _assign_resume(self, resume: Any) -> None:
        resume = self._take_budget_answers(resume)
        if resume is NO_RESUME:
            return
        owners: dict[str, str] = {}
        by_task: dict[str, list[Interrupt]] = {}
        for task_id, record in self.pending.items():
            for item in record.get(INTERRUPT, ()):
                owners[item.id] = task_id
                by_task.setdefault(task_id, []).append(item)
        if isinstance(resume, dict) and resume and (
            any(k in owners for k in resume) or all(_looks_like_id(k) for k in resume)
        ):
            unknown = [k for k in resume if k not in owners]
            if unknown:
                raise InvalidResumeError(
                    f"resume map names interrupt id(s) {unknown} that are not pending "
                    f"(pending: {sorted(owners)})"
                )
            for interrupt_id, value in resume.items():
                task_id = owners[interrupt_id]
                if len(by_task[task_id]) == 1 and by_task[task_id][0].id == interrupt_id and (
                    task_id not in self.resume_by_task
                ):
                    self.resume_by_task[task_id] = _OwnAnswer(interrupt_id, value)
                else:
                    current = self.resume_by_task.get(task_id)
                    merged = ResumeMap() if not isinstance(current, ResumeMap) else current
                    if isinstance(current, _OwnAnswer):
                        merged[current.interrupt_id] = current.value
                    merged[interrupt_id] = value
                    self.resume_by_task[task_id] = merged
            return
        if len(by_task) > 1 or (len(by_task) == 1 and len(next(iter(by_task.values()))) > 1):
            raise InvalidResumeError(
                f"{len(owners)} interrupts are pending ({', '.join(sorted(owners))}); resume "
                f"them with Command(resume={{interrupt_id: value, ...}})"
            )
        if by_task:
            self.resume_by_task[next(iter(by_task))] = resume
            return
        if not self.next_tasks:
            raise InvalidResumeError(
                f"thread {self.thread_id!r} has no pending task: there is nothing to resume"
            )
        self.resume_by_task[self._task_id(0, self.next_tasks[0][0])] = resume

    # -- steps -------------------------------------------------------------------------

    def _task_id(self, index: int, name: str) -> str:
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
            task = Task(index, name, node, self._task_id(index, name), ref[1] if len(ref) > 1
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
            if isinstance(answer, _OwnAnswer):
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
        task = Task(index, START, None, self._task_id(index, START), ref[1], True)
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

    def _commit(self, *, source: str, updated: Iterable[str], ran: tuple[str, ...]) -> None:
        checkpoint_id = new_checkpoint_id()
        deferred = self.durability != "sync"  # written later: freeze what can still change
        checkpoint = Checkpoint(
            id=checkpoint_id, step=self.step, ts=_now(),
            values=dict(self.values) if deferred else self.values,
            next_tasks=self.next_tasks,
            barriers={k: list(v) for k, v in self.barriers.items()} if deferred
            else self.barriers, ran=ran,
            updated=tuple(updated),
            changes=channel_changes(self._before, self.values, updated) if updated else {},
        )
        # As LangGraph does, the run's config metadata (run id, assistant...) is kept on
        # the checkpoints it writes, so history says which run made each step.
        extra = self.config.get("metadata") if not self.ns else None
        metadata = {**extra, "source": source, "step": self.step, "parents": {}} if extra \
            else {"source": source, "step": self.step, "parents": {}}
        if self.guard is not None:
            self.guard.tick()
            metadata["budget"] = self.guard.snapshot()
        if self._notes:
            metadata.update(self._notes)
            self._notes = {}
        if self.scope is not None:
            metadata.update(observers.checkpoint_notes(self.scope))
            observers.event(self.scope, "checkpoint", checkpoint_id=checkpoint_id,
                            step=self.step, source=source)
        self.ops.append(("put", checkpoint, metadata, self.checkpoint_id, self.head))
        self.parent_id = self.checkpoint_id
        self.checkpoint_id = checkpoint_id
        self.head = checkpoint_id
        self.pending = {}
        self.resume_by_task = {}
        self.last_checkpoint = checkpoint
        self.last_metadata = metadata
        if self.sink is not None:
            self.sink.checkpoint(self, checkpoint, metadata)

    def _keep_pending(self, tasks: list[Task]) -> None:
        """Record what a stopped step achieved, so a resume does not redo it."""
        writes: list[tuple[str, str, Any]] = []
        pending: dict[str, dict[str, Any]] = {}
        for task in tasks:
            record: dict[str, Any] = {}
            if task.done:
                record[RESULT] = [[list(w) for w in task.writes], list(task.gotos)]
                if task.handled is not None:
                    record[RESULT].append(task.handled)
            if task.resume:
                record[RESUME] = list(task.resume)
            if task.interrupts:
                record[INTERRUPT] = list(task.interrupts)
            if task.error is not None:
                record[ERROR] = error_record(task.error)
                if task.retries:
                    record[ERROR]["retries"] = list(task.retries)
            if record:
                pending[task.id] = record
                writes.extend((task.id, channel, value) for channel, value in record.items())
        if self.guard is not None:  # what this unfinished step spent, for the resume
            self.guard.tick()
            pending[BUDGET_TASK] = {SPENT: self.guard.snapshot()}
            writes.append((BUDGET_TASK, SPENT, pending[BUDGET_TASK][SPENT]))
        self.pending = pending
        self.resume_by_task = {}
        if self.saver is not None and self.checkpoint_id is not None:
            self.ops.append(("put_writes", writes, self.checkpoint_id))

    def close_run(self, summary: dict[str, Any], source: str = "compensation") -> None:
        """End the run for good: a final checkpoint with nothing left to run."""
        self.next_tasks = []
        self.barriers = {}
        self.status = "done"
        if self.saver is None:
            return
        self.step += 1
        self._notes = {"compensation": summary}
        self._updated = ()
        self._commit(source=source, updated=(), ran=())
        if self.durability == "sync":
            self.flush()
        else:
            self.persist(final=True)

    def load_config_at_head(self) -> dict[str, Any]:
        return self._config_at(self.head)

    # -- store operations ----------------------------------------------------------------

    def _queue_usage(self) -> None:
        """First in line: spend is recorded even when the checkpoint after it is refused
        (a fenced-out worker, a conflict)."""
        records, self.usage = self.usage, []
        self.ops.insert(0, ("usage", records))

    def persist(self, final: bool = False) -> None:
        """Write queued operations as the durability mode says (sync runner)."""
        if self.usage:
            self._queue_usage()
        if not self.ops and not final:
            return
        if self.durability == "sync":
            self.flush()
        elif self.durability == "async":
            self._wait_background()
            if self.ops:
                ops, self.ops = list(self.ops), []
                self._background = self._writer().submit(self._write_ops, ops)
            if final:
                self._wait_background()
        elif final:
            self.flush()

    async def apersist(self, final: bool = False) -> None:
        """Write queued operations as the durability mode says (async runner)."""
        if self.usage:
            self._queue_usage()
        if not self.ops and not final:
            return
        if self.durability == "sync":
            await self.aflush()
        elif self.durability == "async":
            if self._abackground is not None:
                await self._abackground
                self._abackground = None
            if self.ops:
                ops, self.ops = list(self.ops), []
                self._abackground = asyncio.ensure_future(self._awrite_ops(ops))
            if final and self._abackground is not None:
                await self._abackground
                self._abackground = None
        elif final:
            await self.aflush()

    def _writer(self) -> ThreadPoolExecutor:
        if self._writer_pool is None:
            self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="waypoint-commit")
        return self._writer_pool

    def _wait_background(self) -> None:
        if self._background is not None:
            future, self._background = self._background, None
            future.result()

    def flush(self) -> None:
        if self.usage:
            self._queue_usage()
        ops, self.ops = list(self.ops), []
        self._write_ops(ops)

    async def aflush(self) -> None:
        if self.usage:
            self._queue_usage()
        ops, self.ops = list(self.ops), []
        await self._awrite_ops(ops)

    def _write_ops(self, ops: list[tuple[Any, ...]]) -> None:
        saver = self.saver
        for op in ops:
            if op[0] == "put":
                _, checkpoint, metadata, parent_id, expected = op
                saver.put(self._base_config, checkpoint, metadata, parent_id=parent_id,
                          expected_head=expected)
            elif op[0] == "usage":
                saver.put_usage(op[1])
            else:
                saver.put_writes(self._config_at(op[2]), op[1])

    async def _awrite_ops(self, ops: list[tuple[Any, ...]]) -> None:
        saver = self.saver
        for op in ops:
            if op[0] == "put":
                _, checkpoint, metadata, parent_id, expected = op
                await saver.aput(self._base_config, checkpoint, metadata, parent_id=parent_id,
                                 expected_head=expected)
            elif op[0] == "usage":
                await saver.aput_usage(op[1])
            else:
                await saver.aput_writes(self._config_at(op[2]), op[1])

    def _config_at(self, checkpoint_id: str | None) -> dict[str, Any]:
        return make_config(str(self.thread_id), self.ns, checkpoint_id)

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
            workers = int(self.config.get("max_concurrency") or 16)
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


_SHARED: ThreadPoolExecutor | None = None
_SHARED_LOCK = threading.Lock()


def shared_executor() -> ThreadPoolExecutor:
    global _SHARED
    if _SHARED is None:
        with _SHARED_LOCK:
            if _SHARED is None:
                _SHARED = ThreadPoolExecutor(max_workers=64, thread_name_prefix="waypoint-task")
    return _SHARED


class _OwnAnswer:
    __slots__ = ("interrupt_id", "value")

    def __init__(self, interrupt_id: str, value: Any) -> None:
        self.interrupt_id = interrupt_id
        self.value = value


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


def run_deadline(config: dict[str, Any], options: dict[str, Any]) -> float | None:
    """The run's deadline (epoch seconds): config "deadline", else now + "run_timeout"."""
    deadline = config.get("deadline")
    if deadline is not None:
        if isinstance(deadline, datetime):
            if deadline.tzinfo is None:
                raise ValueError("config['deadline'] must be an aware datetime (with a tzinfo)")
            return deadline.timestamp()
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
            raise TypeError(f"config['deadline'] must be epoch seconds or a datetime, got "
                            f"{type(deadline).__name__}")
        return float(deadline)
    timeout = config.get("run_timeout", options.get("run_timeout"))
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"run_timeout must be a positive number of seconds, got {timeout!r}")
    return time.time() + float(timeout)


def step_notes(tasks: list[Task]) -> dict[str, Any]:
    """Retries and handled errors of a step, for its checkpoint's metadata."""
    for t in tasks:
        if t.retries or t.handled or t.effects or (t.node is not None and t.node.compensate):
            break
    else:
        return {}
    notes: dict[str, Any] = {}
    retries = [r for t in tasks for r in t.retries]
    if retries:
        notes["retries"] = retries
    handled = [t.handled for t in tasks if t.handled is not None]
    if handled:
        notes["handled_errors"] = handled
    effects = [e for t in tasks for e in t.effects]
    if effects:
        notes["effects"] = effects
    saga = saga_entries(tasks)
    if saga:
        notes[SAGA] = saga
    return notes


def _looks_like_id(key: Any) -> bool:
    return isinstance(key, str) and len(key) == 32 and all(c in "0123456789abcdef" for c in key)


def _group_pending(writes: Iterable[tuple[str, str, Any]]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for task_id, channel, value in writes:
        grouped.setdefault(task_id, {})[channel] = value
    return grouped


__all__ = ["RunLoop", "error_from_record", "resolve_branch"]
