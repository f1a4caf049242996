"""`CompiledStateGraph`: running a compiled graph (invoke, stream, state, drawing)."""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from ..checkpoint.base import BaseCheckpointSaver, make_config
from ..errors import GraphInterrupt, GraphValidationError, ParentCommand
from ..graph.builder import register_compiler
from ..graph.mermaid import DrawableGraph, drawable_graph
from ..graph.spec import GraphSpec
from ..store.base import BaseStore
from ..types import Interrupt, StateSnapshot
from . import state_api
from .context import NO_RESUME, ResumeMap, coerce_context, current_runtime, interrupt_id
from .loop import RunLoop
from .runner import arun, iter_sync
from .saga import compensate_run, has_compensations
from .stream import StreamSink, normalize_modes, shape
from .task import ChildCommand, Task

_DONE = object()


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class CompiledStateGraph:
    """A validated graph, ready to run with `invoke`/`stream` and their async twins."""

    def __init__(self, spec: GraphSpec, *, checkpointer: Any = None, builder: Any = None,
                 store: BaseStore | None = None, **options: Any) -> None:
        if checkpointer not in (None, True, False) and not isinstance(
            checkpointer, BaseCheckpointSaver
        ):
            raise GraphValidationError(
                f"checkpointer must be a waypoint checkpointer (MemorySaver, SqliteSaver, "
                f"PostgresSaver), got {type(checkpointer).__name__}"
            )
        _check_store(store)
        self.spec = spec
        self.checkpointer = checkpointer
        self.store = store  # long-term memory for get_store() / a node's `store` parameter
        self.builder = builder
        self.options = options
        self.name = spec.name

    @property
    def nodes(self) -> dict[str, Any]:
        return self.spec.nodes

    @property
    def saver(self) -> BaseCheckpointSaver | None:
        return self.checkpointer if isinstance(self.checkpointer, BaseCheckpointSaver) else None

    # -- building a loop -----------------------------------------------------------------

    def _loop(self, input: Any, config: dict[str, Any] | None, sink: StreamSink | None,
              interrupt_before: Sequence[str] | None = None,
              interrupt_after: Sequence[str] | None = None,
              durability: str | None = None, context: Any = None,
              store: BaseStore | None = None) -> RunLoop:
        spec = self.spec
        if interrupt_before is not None or interrupt_after is not None:
            spec = _with_interrupts(spec, interrupt_before, interrupt_after)
        loop = RunLoop(self, input, config, saver=self.saver, sink=sink,
                       durability=durability or self.options.get("durability") or "sync")
        loop.spec = spec
        if store is not None:
            _check_store(store)
            loop.store = store
        else:
            loop.store = self.store
        if context is not None:
            loop.context = coerce_context(spec.context_schema, context)
        return loop

    # -- invoke --------------------------------------------------------------------------

    def invoke(self, input: Any, config: dict[str, Any] | None = None, *,
               context: Any = None, stream_mode: str = "values",
               interrupt_before: Sequence[str] | None = None,
               interrupt_after: Sequence[str] | None = None, durability: str | None = None,
               budget: Any = None, store: BaseStore | None = None, **_: Any) -> Any:
        """Run until the graph ends or pauses; return the output state.

        `context`: the run's read-only context (checked against the graph's
        context_schema), read by nodes through get_runtime() or a `runtime` parameter.
        `store` replaces the compiled store for this run (e.g. a tenant's scoped view).
        """
        config = _with_budget(config, budget)
        runtime = current_runtime()
        if runtime is not None and not _own_thread(config, runtime):
            return self._invoke_nested(input, runtime, context)
        if stream_mode != "values":
            return [c for c in self.stream(input, config, stream_mode=stream_mode,
                                           durability=durability, context=context,
                                           store=store)]
        loop = self._loop(input, config, None, interrupt_before, interrupt_after, durability,
                          context, store)
        for _ in iter_sync(loop):
            pass
        return loop.output()

    async def ainvoke(self, input: Any, config: dict[str, Any] | None = None, *,
                      context: Any = None, stream_mode: str = "values",
                      interrupt_before: Sequence[str] | None = None,
                      interrupt_after: Sequence[str] | None = None,
                      durability: str | None = None, budget: Any = None,
                      store: BaseStore | None = None, **_: Any) -> Any:
        config = _with_budget(config, budget)
        runtime = current_runtime()
        if runtime is not None and not _own_thread(config, runtime):
            return await self._ainvoke_nested(input, runtime, context)
        if stream_mode != "values":
            return [c async for c in self.astream(input, config, stream_mode=stream_mode,
                                                  durability=durability, context=context,
                                                  store=store)]
        loop = self._loop(input, config, None, interrupt_before, interrupt_after, durability,
                          context, store)
        await arun(loop)
        return loop.output()

    # -- stream --------------------------------------------------------------------------

    def stream(self, input: Any, config: dict[str, Any] | None = None, *,
               context: Any = None, stream_mode: Any = None, subgraphs: bool = False,
               interrupt_before: Sequence[str] | None = None,
               interrupt_after: Sequence[str] | None = None, durability: str | None = None,
               budget: Any = None, store: BaseStore | None = None,
               **_: Any) -> Iterator[Any]:
        """Yield the run's progress as it happens, shaped by `stream_mode`."""
        config = _with_budget(config, budget)
        modes, single = normalize_modes(stream_mode)
        live = bool(modes & {"messages", "custom", "events"})
        if not live:
            buffer: deque[Any] = deque()
            loop = self._loop(input, config, StreamSink(modes, buffer.append, subgraphs=subgraphs),
                              interrupt_before, interrupt_after, durability, context, store)
            steps = iter_sync(loop)
            failure: BaseException | None = None
            try:
                for _ in steps:
                    while buffer:
                        yield shape(buffer.popleft(), single=single, subgraphs=subgraphs)
            except GeneratorExit:
                raise
            except BaseException as exc:  # deliver what the run produced, then its error
                failure = exc
            finally:
                steps.close()
            while buffer:
                yield shape(buffer.popleft(), single=single, subgraphs=subgraphs)
            if failure is not None:
                raise failure
            return
        parts: queue.SimpleQueue[Any] = queue.SimpleQueue()
        loop = self._loop(input, config, StreamSink(modes, parts.put, subgraphs=subgraphs),
                          interrupt_before, interrupt_after, durability, context, store)

        def work() -> None:
            try:
                for _ in iter_sync(loop):
                    pass
                parts.put(_DONE)
            except BaseException as exc:
                parts.put(_Failure(exc))

        ctx = contextvars.copy_context()
        worker = threading.Thread(target=ctx.run, args=(work,), daemon=True,
                                  name="waypoint-stream")
        worker.start()
        try:
            while True:
                part = parts.get()
                if part is _DONE:
                    break
                if isinstance(part, _Failure):
                    raise part.error
                yield shape(part, single=single, subgraphs=subgraphs)
        finally:
            loop.cancelled = True

    async def astream(self, input: Any, config: dict[str, Any] | None = None, *,
                      context: Any = None, stream_mode: Any = None, subgraphs: bool = False,
                      interrupt_before: Sequence[str] | None = None,
                      interrupt_after: Sequence[str] | None = None,
                      durability: str | None = None, budget: Any = None,
                      store: BaseStore | None = None, **_: Any) -> AsyncIterator[Any]:
        config = _with_budget(config, budget)
        modes, single = normalize_modes(stream_mode)
        async for part in self._aparts(input, config, modes, subgraphs, interrupt_before,
                                       interrupt_after, durability, context, store):
            yield shape(part, single=single, subgraphs=subgraphs)

    async def _aparts(self, input: Any, config: dict[str, Any] | None,
                      modes: frozenset[str], subgraphs: bool,
                      interrupt_before: Sequence[str] | None = None,
                      interrupt_after: Sequence[str] | None = None,
                      durability: str | None = None, context: Any = None,
                      store: BaseStore | None = None) -> AsyncIterator[Any]:
        event_loop = asyncio.get_running_loop()
        parts: asyncio.Queue[Any] = asyncio.Queue()
        home = threading.get_ident()

        def emit(part: Any) -> None:
            if threading.get_ident() == home:
                parts.put_nowait(part)
            else:
                event_loop.call_soon_threadsafe(parts.put_nowait, part)

        loop = self._loop(input, config, StreamSink(modes, emit, subgraphs=subgraphs),
                          interrupt_before, interrupt_after, durability, context, store)

        async def work() -> None:
            try:
                await arun(loop)
                parts.put_nowait(_DONE)
            except BaseException as exc:
                parts.put_nowait(_Failure(exc))

        runner = asyncio.ensure_future(work())
        try:
            while True:
                part = await parts.get()
                if part is _DONE:
                    break
                if isinstance(part, _Failure):
                    raise part.error
                yield part
        finally:
            loop.cancelled = True
            if not runner.done():
                await asyncio.wait([runner], timeout=None)

    async def astream_events(self, input: Any, config: dict[str, Any] | None = None, *,
                             version: str = "v2", context: Any = None,
                             store: BaseStore | None = None,
                             **_: Any) -> AsyncIterator[dict[str, Any]]:
        """LangChain-style events: on_chain_start/end per node, on_chat_model_stream tokens."""
        if version not in ("v1", "v2"):
            raise ValueError(f"astream_events supports version='v2', got {version!r}")
        import uuid

        root = str(uuid.uuid4())
        name = self.name
        yield {"event": "on_chain_start", "name": name, "run_id": root, "parent_ids": [],
               "tags": [], "metadata": {}, "data": {"input": input}}
        output: Any = None
        final: dict[str, Any] = {}
        async for part in self._aparts(input, config, frozenset({"events", "values"}), False,
                                       context=context, store=store):
            _, mode, payload = part
            if mode == "values":
                final = payload
                continue
            payload["parent_ids"] = [root, *payload.get("parent_ids", [])]
            yield payload
        output = final
        yield {"event": "on_chain_end", "name": name, "run_id": root, "parent_ids": [],
               "tags": [], "metadata": {}, "data": {"output": output}}

    # -- nested runs (subgraphs) ---------------------------------------------------------

    def _nested_loop(self, input: Any, runtime: Any, context: Any = None
                     ) -> tuple[RunLoop, Any]:
        parent: RunLoop = runtime.loop
        task: Task = runtime.task
        call_index = runtime.nested_calls
        runtime.nested_calls += 1
        ns = parent.child_namespace(task, call_index)
        if self.checkpointer is False:
            saver = None
        else:
            saver = self.saver or parent.saver
        sink = parent.sink.child(ns) if parent.sink is not None else None
        config = parent.task_config(task)
        config["configurable"] = {**config["configurable"], "checkpoint_ns": ns}
        config["configurable"].pop("checkpoint_id", None)
        loop = RunLoop(self, input, config, saver=saver, sink=sink, ns=ns)
        loop.guard = parent.guard  # one budget for the whole run, nested graphs included
        # The parent's store and context reach nested graphs (as in LangGraph, the
        # parent's store wins over the subgraph's own).
        loop.store = parent.store if parent.store is not None else self.store
        loop.context = parent.context if context is None else coerce_context(
            self.spec.context_schema, context)
        return loop, parent

    def _nested_resume(self, loop: RunLoop, runtime: Any, saved: Any) -> Any:
        if saved is None or not saved.checkpoint.next_tasks:
            return NO_RESUME
        loop.input = None
        if runtime.pending_resume is NO_RESUME:
            return NO_RESUME
        value = runtime.take_resume()
        return dict(value) if isinstance(value, ResumeMap) else value

    def _nested_result(self, loop: RunLoop) -> Any:
        if loop.status == "interrupted":
            interrupts = tuple(loop.interrupts) or (
                Interrupt(None, interrupt_id(loop.ns, -1)),
            )
            raise GraphInterrupt(interrupts)
        return loop.output_values()

    def _invoke_nested(self, input: Any, runtime: Any, context: Any = None) -> Any:
        loop, _ = self._nested_loop(input, runtime, context)
        loaded = None
        if loop.saver is not None:
            saved = loop.saver.get_tuple(loop.load_config())
            loaded = (saved, loop.saver.head_id(str(loop.thread_id), loop.ns))
            resume = self._nested_resume(loop, runtime, saved)
        else:
            resume = NO_RESUME
        try:
            for _ in iter_sync(loop, loaded, resume):
                pass
        except ParentCommand as command:
            raise ChildCommand(command.command) from None
        return self._nested_result(loop)

    async def _ainvoke_nested(self, input: Any, runtime: Any, context: Any = None) -> Any:
        loop, _ = self._nested_loop(input, runtime, context)
        loaded = None
        if loop.saver is not None:
            saved = await loop.saver.aget_tuple(loop.load_config())
            loaded = (saved, await loop.saver.ahead_id(str(loop.thread_id), loop.ns))
            resume = self._nested_resume(loop, runtime, saved)
        else:
            resume = NO_RESUME
        try:
            await arun(loop, loaded, resume)
        except ParentCommand as command:
            raise ChildCommand(command.command) from None
        return self._nested_result(loop)

    def _node_input(self, parent: RunLoop) -> dict[str, Any]:
        keys = self.spec.keys
        return {k: v for k, v in parent.values.items() if k in keys}

    def run_as_node(self, parent: RunLoop, task: Task) -> Any:
        runtime = current_runtime()
        return self._invoke_nested(task.arg if task.is_push else self._node_input(parent),
                                   runtime)

    async def arun_as_node(self, parent: RunLoop, task: Task) -> Any:
        runtime = current_runtime()
        return await self._ainvoke_nested(task.arg if task.is_push else self._node_input(parent),
                                          runtime)

    # -- ending a thread ---------------------------------------------------------------

    def cancel(self, config: dict[str, Any], *, reason: str = "cancelled") -> dict[str, Any]:
        """Stop a paused or failed thread for good, compensating its completed steps.

        Returns the summary also stored in the final checkpoint's metadata
        ("compensation": what was compensated, what could not be, in which order).
        """
        saver = self._require_saver()
        loop = self._loop(None, config, None)
        saved = saver.get_tuple(loop.load_config())
        if saved is None:
            raise ValueError(f"thread {loop.thread_id!r} has no checkpoint: nothing to cancel")
        if not saved.checkpoint.next_tasks:
            raise ValueError(f"thread {loop.thread_id!r} has finished: nothing to cancel")
        loop.begin(saved, saver.head_id(str(loop.thread_id), loop.ns))
        thread = str(loop.thread_id)
        for approval in saver.list_pending_approvals(thread):
            saver.decide_approval(thread, approval.id, {"action": "cancelled", "by": "cancel",
                                                        "comment": reason}, status="cancelled")
        for timer in saver.list_timers(thread_id=thread, status="pending"):
            saver.cancel_timer(thread, timer.id)
        try:
            if has_compensations(loop):
                return compensate_run(loop, reason, source="cancel")
            summary = {"reason": reason, "compensated": [], "failed": [], "order": []}
            loop.close_run(summary, source="cancel")
            return summary
        finally:
            loop.close()

    async def acancel(self, config: dict[str, Any], *, reason: str = "cancelled"
                      ) -> dict[str, Any]:
        return await asyncio.to_thread(self.cancel, config, reason=reason)

    # -- state ---------------------------------------------------------------------------

    def _require_saver(self) -> BaseCheckpointSaver:
        saver = self.saver
        if saver is None:
            raise ValueError("this graph has no checkpointer: compile(checkpointer=MemorySaver())")
        return saver

    def get_state(self, config: dict[str, Any], *, subgraphs: bool = False) -> StateSnapshot:
        """The thread's state at its head (or at `checkpoint_id` if the config names one)."""
        return state_api.get_state(self, self._require_saver(), config, subgraphs)

    async def aget_state(self, config: dict[str, Any], *, subgraphs: bool = False
                         ) -> StateSnapshot:
        return self.get_state(config, subgraphs=subgraphs)

    def get_state_history(self, config: dict[str, Any], *, filter: dict[str, Any] | None = None,
                          before: dict[str, Any] | None = None, limit: int | None = None
                          ) -> Iterator[StateSnapshot]:
        """The thread's checkpoints, newest first."""
        return state_api.get_state_history(self, self._require_saver(), config, filter, before,
                                           limit)

    async def aget_state_history(self, config: dict[str, Any], *,
                                 filter: dict[str, Any] | None = None,
                                 before: dict[str, Any] | None = None,
                                 limit: int | None = None) -> AsyncIterator[StateSnapshot]:
        for snapshot in self.get_state_history(config, filter=filter, before=before, limit=limit):
            yield snapshot

    def update_state(self, config: dict[str, Any], values: Any, as_node: str | None = None
                     ) -> dict[str, Any]:
        """Write `values` as if `as_node` had returned them; returns the new checkpoint's config."""
        return state_api.update_state(self, self._require_saver(), config, values, as_node)

    async def aupdate_state(self, config: dict[str, Any], values: Any,
                            as_node: str | None = None) -> dict[str, Any]:
        return self.update_state(config, values, as_node)

    # -- drawing -------------------------------------------------------------------------

    def get_graph(self, config: dict[str, Any] | None = None, *, xray: bool | int = False
                  ) -> DrawableGraph:
        return drawable_graph(self.spec, xray=xray)

    def __repr__(self) -> str:
        return f"CompiledStateGraph(name={self.name!r}, nodes={list(self.spec.nodes)})"


def _check_store(store: Any) -> None:
    if store is not None and not isinstance(store, BaseStore):
        raise GraphValidationError(
            f"store must be a waypoint store (InMemoryStore, SqliteStore, PostgresStore), got "
            f"{type(store).__name__}"
        )


def _with_budget(config: dict[str, Any] | None, budget: Any) -> dict[str, Any] | None:
    """`invoke(..., budget=...)`: the run's budget rides in its config (nested runs share it)."""
    if budget is None:
        return config
    return {**(config or {}), "budget": budget}


def _own_thread(config: dict[str, Any] | None, runtime: Any) -> bool:
    """A nested invoke with its own thread_id runs independently of the parent run."""
    if not config:
        return False
    thread_id = (config.get("configurable") or {}).get("thread_id")
    return thread_id is not None and thread_id != runtime.loop.thread_id


def _with_interrupts(spec: GraphSpec, before: Sequence[str] | None,
                     after: Sequence[str] | None) -> GraphSpec:
    import copy

    changed = copy.copy(spec)
    for names in (before, after):
        for name in names or ():
            if name != "*" and name not in spec.nodes:
                raise GraphValidationError(f"interrupt node {name!r} is not a node of this graph")
    if before is not None:
        changed.interrupt_before = frozenset(spec.nodes if before == "*" else before)
    if after is not None:
        changed.interrupt_after = frozenset(spec.nodes if after == "*" else after)
    return changed


register_compiler(CompiledStateGraph)
__all__ = ["CompiledStateGraph", "make_config"]
