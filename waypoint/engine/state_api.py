"""Reading and editing a thread's checkpoints: get_state, history, update_state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ..checkpoint.base import BaseCheckpointSaver, CheckpointTuple, make_config, thread_of
from ..constants import END, ERROR, INTERRUPT, RESULT, START
from ..errors import InvalidUpdateError
from ..types import PregelTask, StateSnapshot
from .loop import RunLoop
from .resume import group_pending
from .task import Task
from .task_errors import error_from_record
from .writes import record_result

if TYPE_CHECKING:
    from ..graph.spec import GraphSpec


class CompiledGraph(Protocol):
    """What reading and editing state needs of a compiled graph (no import of compiled.py,
    which imports this module)."""

    spec: GraphSpec


class _NoGraph:
    """Stands in for a graph we do not have (a graph invoked inside a node function)."""

    spec = None


_NO_GRAPH = _NoGraph()


def _snapshot(graph: CompiledGraph | None, saver: BaseCheckpointSaver, saved: CheckpointTuple,
              subgraphs: bool) -> StateSnapshot:
    checkpoint = saved.checkpoint
    thread_id, ns, _ = thread_of(saved.config)
    probe = RunLoop(graph if graph is not None else _NO_GRAPH, None, saved.config,
                    saver=saver, ns=ns)
    probe.checkpoint_id = checkpoint.id
    probe.step = checkpoint.step
    pending = group_pending(saved.pending_writes)
    tasks: list[PregelTask] = []
    finished: list[Task] = []
    all_interrupts = []
    for index, ref in enumerate(checkpoint.next_tasks):
        name = ref[0]
        task_id = probe.task_id(index, name)
        record = pending.get(task_id, {})
        interrupts = tuple(record.get(INTERRUPT, ()))
        all_interrupts.extend(interrupts)
        error = error_from_record(record[ERROR]) if ERROR in record else None
        result = dict(tuple(w) for w in record[RESULT][0]) if RESULT in record else None
        state = None
        node = graph.spec.nodes.get(name) if graph is not None else None
        if RESULT in record:
            done = Task(index, name, node, task_id, ref[1] if len(ref) > 1 else None,
                        len(ref) > 1)
            done.writes = [tuple(w) for w in record[RESULT][0]]
            finished.append(done)
        nested = node.subgraph if node is not None and node.subgraph is not None else None
        if nested is not None or interrupts:
            child_ns = probe.child_namespace(Task(index, name, node, task_id), 0)
            child_config = make_config(thread_id, child_ns, None)
            if subgraphs:
                child = saver.get_tuple(child_config)
                if child is not None:
                    state = _snapshot(nested, saver, child, True)
            elif nested is not None:
                state = child_config
        path = ("__pregel_push", index) if len(ref) > 1 else ("__pregel_pull", name)
        tasks.append(PregelTask(task_id, name, path, error, interrupts, state, result))
    values = dict(checkpoint.values)
    done_ids = {t.id for t in finished}
    if finished and graph is not None:  # show what finished tasks of a stopped step wrote
        probe.values = values
        probe._apply(finished)
    return StateSnapshot(
        values=values,
        next=tuple(t.name for t in tasks if t.id not in done_ids),
        config=saved.config,
        metadata=saved.metadata,
        created_at=checkpoint.ts,
        parent_config=saved.parent_config,
        tasks=tuple(tasks),
        interrupts=tuple(all_interrupts),
    )


def get_state(graph: CompiledGraph, saver: BaseCheckpointSaver, config: dict[str, Any],
              subgraphs: bool) -> StateSnapshot:
    saved = saver.get_tuple(config)
    if saved is None:
        return StateSnapshot({}, (), config, None, None, None, (), ())
    return _snapshot(graph, saver, saved, subgraphs)


def get_state_history(graph: CompiledGraph, saver: BaseCheckpointSaver,
                      config: dict[str, Any], filter: dict[str, Any] | None,
                      before: dict[str, Any] | None, limit: int | None
                      ) -> Iterator[StateSnapshot]:
    thread_id, ns, _ = thread_of(config)
    for saved in saver.list(make_config(thread_id, ns, None), filter=filter, before=before,
                            limit=limit):
        yield _snapshot(graph, saver, saved, False)


def _infer_as_node(graph: CompiledGraph, saved: CheckpointTuple | None) -> str:
    if saved is None:
        return START
    ran = [n for n in dict.fromkeys(saved.checkpoint.ran)]
    if not ran:
        return START
    if len(ran) == 1:
        return ran[0]
    raise InvalidUpdateError(
        f"ambiguous update: nodes {ran} all ran in the last step; pass as_node= to say which "
        f"node the update comes from"
    )


def update_state(graph: CompiledGraph, saver: BaseCheckpointSaver, config: dict[str, Any],
                 values: Any, as_node: str | None) -> dict[str, Any]:
    thread_id, ns, checkpoint_id = thread_of(config)
    saved = saver.get_tuple(config)
    if checkpoint_id is not None and saved is None:
        raise ValueError(f"checkpoint {checkpoint_id!r} does not exist in thread {thread_id!r}")
    head = saver.head_id(thread_id, ns)
    if as_node is None:
        as_node = _infer_as_node(graph, saved)
    elif as_node not in graph.spec.nodes and as_node not in (START, END):
        known = ", ".join(graph.spec.nodes)
        raise InvalidUpdateError(f"update_state(as_node={as_node!r}): not a node (nodes: {known})")
    loop = RunLoop(graph, None, make_config(thread_id, ns, None), saver=saver, ns=ns)
    loop.head = head
    if saved is not None:
        cp = saved.checkpoint
        loop.values = dict(cp.values)
        loop.barriers = {k: list(v) for k, v in cp.barriers.items()}
        loop.step = cp.step
        loop.checkpoint_id = cp.id
    task = Task(0, as_node, graph.spec.nodes.get(as_node), loop.task_id(0, as_node))
    record_result(loop, task, values)
    loop._apply([task])
    if as_node == END:
        loop.next_tasks = []
    loop.step += 1
    loop._commit(source="update", updated=loop._updated, ran=(as_node,))
    loop.flush()
    return make_config(thread_id, ns, loop.checkpoint_id)
