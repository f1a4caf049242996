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
from ..errors import GraphValidationError
from ..graph.builder import register_compiler
from ..graph.keywords import reject_unknown
from ..graph.mermaid import DrawableGraph, drawable_graph
from ..graph.spec import GraphSpec
from ..store.base import BaseStore
from ..types import StateSnapshot
from . import nested, state_api
from .call_options import (
    EVENTS_KEYWORDS,
    INVOKE_KEYWORDS,
    SKIP,
    STREAM_KEYWORDS,
    EventFilter,
    OutputKeys,
    StreamCall,
    check_unsupported,
    print_modes,
    printer,
    take_checkpoint_during,
    with_interrupts,
)
from .context import coerce_context, current_runtime
from .loop import RunLoop
from .runner import arun, iter_sync
from .saga import compensate_run, has_compensations
from .settings import DURABILITY_MODES
from .stream import StreamSink
from .task import Task

_DONE = object()


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class CompiledStateGraph:
    """A validated graph, ready to run with `invoke`/`stream` and their async twins."""

    def __init__(self, spec: GraphSpec, *, checkpointer: Any = None, builder: Any = None,
                 store: BaseStore | None = None, debug: bool = False,
                 durability: str | None = None, budget: Any = None,
                 run_timeout: float | None = None) -> None:
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
        self.debug = bool(debug)  # print the "debug" stream of every run (LangGraph's debug)
        self.options = _run_options(durability, budget, run_timeout)
        self.name = spec.name

    @property
    def nodes(self) -> dict[str, Any]:
        return self.spec.nodes

    @property
    def saver(self) -> BaseCheckpointSaver | None:
        return self.checkpointer if isinstance(self.checkpointer, BaseCheckpointSaver) else None

    # -- building a loop -----------------------------------------------------------------

    def _loop(self, input: Any, config: dict[str, Any] | None, sink: StreamSink | None,
              interrupt_before: Any = None, interrupt_after: Any = None,
              durability: str | None = None, context: Any = None,
              store: BaseStore | None = None) -> RunLoop:
        spec = self.spec
        if interrupt_before is not None or interrupt_after is not None:
            spec = with_interrupts(spec, interrupt_before, interrupt_after)
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

    def _printed(self, print_mode: Any, debug: bool | None) -> frozenset[str]:
        return print_modes(print_mode, self.debug if debug is None else debug)

    def _output_keys(self, output_keys: Any) -> OutputKeys | None:
        return None if output_keys is None else OutputKeys(output_keys, self.spec.keys)

    # -- invoke --------------------------------------------------------------------------

    def invoke(self, input: Any, config: dict[str, Any] | None = None, *,
               context: Any = None, stream_mode: str = "values", print_mode: Any = (),
               output_keys: str | Sequence[str] | None = None,
               interrupt_before: str | Sequence[str] | None = None,
               interrupt_after: str | Sequence[str] | None = None,
               durability: str | None = None, debug: bool | None = None, control: Any = None,
               version: str = "v1", budget: Any = None, store: BaseStore | None = None,
               **kwargs: Any) -> Any:
        """Run until the graph ends or pauses; return the output state.

        `context`: the run's read-only context (checked against the graph's
        context_schema), read by nodes through get_runtime() or a `runtime` parameter.
        `store` replaces the compiled store for this run (e.g. a tenant's scoped view).
        Unknown keywords raise TypeError (a misspelt `interrupt_before` must not run
        the graph without its breakpoint).
        """
        if kwargs:
            durability = take_checkpoint_during("invoke", kwargs, durability)
            reject_unknown("invoke", kwargs, INVOKE_KEYWORDS)
        if control is not None or version != "v1":
            check_unsupported("invoke", control, version)
        config = _with_budget(config, budget)
        runtime = current_runtime()
        if runtime is not None and not _own_thread(config, runtime):
            _nested_mode(stream_mode)
            out = self._output_keys(output_keys)
            result = nested.invoke_nested(self, input, runtime, context, interrupt_before,
                                          interrupt_after)
            return result if out is None else out.values(result)
        if stream_mode != "values":
            return list(self.stream(
                input, config, context=context, stream_mode=stream_mode, print_mode=print_mode,
                output_keys=output_keys, interrupt_before=interrupt_before,
                interrupt_after=interrupt_after, durability=durability, debug=debug,
                store=store))
        out = None if output_keys is None else self._output_keys(output_keys)
        sink = None
        if print_mode or debug or self.debug:  # printing needs a sink; a plain run has none
            printed = self._printed(print_mode, debug)
            sink = StreamSink(printed, printer(None, frozenset(), printed)) if printed else None
        loop = self._loop(input, config, sink, interrupt_before, interrupt_after, durability,
                          context, store)
        for _ in iter_sync(loop):
            pass
        return loop.output() if out is None else out.values(loop.output())

    async def ainvoke(self, input: Any, config: dict[str, Any] | None = None, *,
                      context: Any = None, stream_mode: str = "values", print_mode: Any = (),
                      output_keys: str | Sequence[str] | None = None,
                      interrupt_before: str | Sequence[str] | None = None,
                      interrupt_after: str | Sequence[str] | None = None,
                      durability: str | None = None, debug: bool | None = None,
                      control: Any = None, version: str = "v1", budget: Any = None,
                      store: BaseStore | None = None, **kwargs: Any) -> Any:
        """`invoke` on the event loop (async nodes awaited, sync ones in worker threads)."""
        if kwargs:
            durability = take_checkpoint_during("ainvoke", kwargs, durability)
            reject_unknown("ainvoke", kwargs, INVOKE_KEYWORDS)
        if control is not None or version != "v1":
            check_unsupported("ainvoke", control, version)
        config = _with_budget(config, budget)
        runtime = current_runtime()
        if runtime is not None and not _own_thread(config, runtime):
            _nested_mode(stream_mode)
            out = self._output_keys(output_keys)
            result = await nested.ainvoke_nested(self, input, runtime, context,
                                                 interrupt_before, interrupt_after)
            return result if out is None else out.values(result)
        if stream_mode != "values":
            return [c async for c in self.astream(
                input, config, context=context, stream_mode=stream_mode, print_mode=print_mode,
                output_keys=output_keys, interrupt_before=interrupt_before,
                interrupt_after=interrupt_after, durability=durability, debug=debug,
                store=store)]
        out = None if output_keys is None else self._output_keys(output_keys)
        sink = None
        if print_mode or debug or self.debug:  # printing needs a sink; a plain run has none
            printed = self._printed(print_mode, debug)
            sink = StreamSink(printed, printer(None, frozenset(), printed)) if printed else None
        loop = self._loop(input, config, sink, interrupt_before, interrupt_after, durability,
                          context, store)
        await arun(loop)
        return loop.output() if out is None else out.values(loop.output())

    # -- stream --------------------------------------------------------------------------

    def stream(self, input: Any, config: dict[str, Any] | None = None, *,
               context: Any = None, stream_mode: Any = None, print_mode: Any = (),
               output_keys: str | Sequence[str] | None = None,
               interrupt_before: str | Sequence[str] | None = None,
               interrupt_after: str | Sequence[str] | None = None,
               durability: str | None = None, subgraphs: bool = False,
               debug: bool | None = None, control: Any = None, version: str = "v1",
               budget: Any = None, store: BaseStore | None = None,
               **kwargs: Any) -> Iterator[Any]:
        """Yield the run's progress as it happens, shaped by `stream_mode`.

        Keywords are checked when called (not at the first `next()`), so a typo fails
        where it is made.
        """
        if kwargs:
            durability = take_checkpoint_during("stream", kwargs, durability)
            reject_unknown("stream", kwargs, STREAM_KEYWORDS)
        if control is not None or version != "v1":
            check_unsupported("stream", control, version)
        call = StreamCall(self, stream_mode, print_mode, debug, output_keys, subgraphs)
        return self._stream(call, input, _with_budget(config, budget), interrupt_before,
                            interrupt_after, durability, context, store)

    def _stream(self, call: StreamCall, input: Any, config: dict[str, Any] | None,
                interrupt_before: Any, interrupt_after: Any, durability: str | None,
                context: Any, store: BaseStore | None) -> Iterator[Any]:
        deliver = call.deliver
        if not call.live:
            buffer: deque[Any] = deque()
            loop = self._loop(input, config, call.sink(buffer.append), interrupt_before,
                              interrupt_after, durability, context, store)
            steps = iter_sync(loop)
            failure: BaseException | None = None
            try:
                for _ in steps:
                    while buffer:
                        chunk = deliver(buffer.popleft())
                        if chunk is not SKIP:
                            yield chunk
            except GeneratorExit:
                raise
            except BaseException as exc:  # deliver what the run produced, then its error
                failure = exc
            finally:
                steps.close()
            while buffer:
                chunk = deliver(buffer.popleft())
                if chunk is not SKIP:
                    yield chunk
            if failure is not None:
                raise failure
            return
        parts: queue.SimpleQueue[Any] = queue.SimpleQueue()
        loop = self._loop(input, config, call.sink(parts.put), interrupt_before,
                          interrupt_after, durability, context, store)

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
                chunk = deliver(part)
                if chunk is not SKIP:
                    yield chunk
        finally:
            loop.cancelled = True

    def astream(self, input: Any, config: dict[str, Any] | None = None, *,
                context: Any = None, stream_mode: Any = None, print_mode: Any = (),
                output_keys: str | Sequence[str] | None = None,
                interrupt_before: str | Sequence[str] | None = None,
                interrupt_after: str | Sequence[str] | None = None,
                durability: str | None = None, subgraphs: bool = False,
                debug: bool | None = None, control: Any = None, version: str = "v1",
                budget: Any = None, store: BaseStore | None = None,
                **kwargs: Any) -> AsyncIterator[Any]:
        """`stream` on the event loop; keywords are checked when called."""
        if kwargs:
            durability = take_checkpoint_during("astream", kwargs, durability)
            reject_unknown("astream", kwargs, STREAM_KEYWORDS)
        if control is not None or version != "v1":
            check_unsupported("astream", control, version)
        call = StreamCall(self, stream_mode, print_mode, debug, output_keys, subgraphs)
        return self._astream(call, input, _with_budget(config, budget), interrupt_before,
                             interrupt_after, durability, context, store)

    async def _astream(self, call: StreamCall, input: Any, config: dict[str, Any] | None,
                       interrupt_before: Any, interrupt_after: Any, durability: str | None,
                       context: Any, store: BaseStore | None) -> AsyncIterator[Any]:
        deliver = call.deliver
        async for part in self._aparts(input, config, call, interrupt_before, interrupt_after,
                                       durability, context, store):
            chunk = deliver(part)
            if chunk is not SKIP:
                yield chunk

    async def _aparts(self, input: Any, config: dict[str, Any] | None, call: StreamCall,
                      interrupt_before: Any = None, interrupt_after: Any = None,
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

        loop = self._loop(input, config, call.sink(emit), interrupt_before, interrupt_after,
                          durability, context, store)

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

    def astream_events(self, input: Any, config: dict[str, Any] | None = None, *,
                       version: str = "v2", context: Any = None,
                       interrupt_before: str | Sequence[str] | None = None,
                       interrupt_after: str | Sequence[str] | None = None,
                       durability: str | None = None, budget: Any = None,
                       store: BaseStore | None = None,
                       include_names: Sequence[str] | None = None,
                       include_types: Sequence[str] | None = None,
                       include_tags: Sequence[str] | None = None,
                       exclude_names: Sequence[str] | None = None,
                       exclude_types: Sequence[str] | None = None,
                       exclude_tags: Sequence[str] | None = None,
                       **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """LangChain-style events: on_chain_start/end per node, on_chat_model_stream tokens.

        `include_*`/`exclude_*` filter by event name, type ("chain", "chat_model") and tag,
        as LangChain's do.
        """
        reject_unknown("astream_events", kwargs, EVENTS_KEYWORDS)
        if version not in ("v1", "v2"):
            raise ValueError(f"astream_events supports version='v2', got {version!r}")
        keep = EventFilter(include_names, include_types, include_tags, exclude_names,
                           exclude_types, exclude_tags)
        call = StreamCall(self, ["events", "values"], (), None, None, False)
        return self._events(input, _with_budget(config, budget), call, keep, interrupt_before,
                            interrupt_after, durability, context, store)

    async def _events(self, input: Any, config: dict[str, Any] | None, call: StreamCall,
                      keep: EventFilter, interrupt_before: Any, interrupt_after: Any,
                      durability: str | None, context: Any, store: BaseStore | None
                      ) -> AsyncIterator[dict[str, Any]]:
        import uuid

        root = str(uuid.uuid4())
        name = self.name
        start = {"event": "on_chain_start", "name": name, "run_id": root, "parent_ids": [],
                 "tags": [], "metadata": {}, "data": {"input": input}}
        if keep(start):
            yield start
        final: dict[str, Any] = {}
        async for part in self._aparts(input, config, call, interrupt_before, interrupt_after,
                                       durability, context, store):
            _, mode, payload = part
            if mode == "values":
                final = payload
                continue
            payload["parent_ids"] = [root, *payload.get("parent_ids", [])]
            if keep(payload):
                yield payload
        end = {"event": "on_chain_end", "name": name, "run_id": root, "parent_ids": [],
               "tags": [], "metadata": {}, "data": {"output": final}}
        if keep(end):
            yield end

    # -- nested runs (subgraphs): see nested.py ----------------------------------------

    def run_as_node(self, parent: RunLoop, task: Task) -> Any:
        """Run this graph as a node of `parent` (a subgraph)."""
        return nested.invoke_nested(self, nested.node_input(self, parent, task),
                                    current_runtime())

    async def arun_as_node(self, parent: RunLoop, task: Task) -> Any:
        return await nested.ainvoke_nested(self, nested.node_input(self, parent, task),
                                           current_runtime())

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
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise ValueError(f"get_state_history(limit=...) must be a whole number >= 0 or "
                             f"None, got {limit!r}")
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


def _nested_mode(stream_mode: Any) -> None:
    if stream_mode != "values":
        raise ValueError(
            f"a graph invoked inside a node runs as a subgraph and returns its values, so "
            f"stream_mode={stream_mode!r} cannot apply there; stream the parent graph with "
            f"subgraphs=True to see its steps")


def _run_options(durability: str | None, budget: Any, run_timeout: float | None
                 ) -> dict[str, Any]:
    """compile()'s run defaults, checked now rather than at the first run."""
    from ..types import Budget

    options: dict[str, Any] = {}
    if durability is not None:
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY_MODES)}, got "
                             f"{durability!r}")
        options["durability"] = durability
    if budget is not None:
        if not isinstance(budget, Budget):
            raise TypeError(f"budget must be a waypoint Budget, got {type(budget).__name__}")
        options["budget"] = budget
    if run_timeout is not None:
        if isinstance(run_timeout, bool) or not isinstance(run_timeout, (int, float)) \
                or run_timeout <= 0:
            raise ValueError(f"run_timeout must be a positive number of seconds, got "
                             f"{run_timeout!r}")
        options["run_timeout"] = run_timeout
    return options


register_compiler(CompiledStateGraph)
__all__ = ["CompiledStateGraph", "make_config"]
