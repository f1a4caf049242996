"""Turning a node's return value into writes and routes (and control signals into outcomes).

Shared by the loop (START tasks, routing), the task runner and `update_state`; it reads the
run only through the `RunView` protocol, so it never imports the loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..constants import END
from ..errors import GraphInterrupt, InvalidUpdateError, ParentCommand, RouteTo
from ..graph.schema import object_to_update
from ..types import Command, Send
from .task import ChildCommand, Task

if TYPE_CHECKING:
    from ..graph.spec import BranchSpec
    from .protocols import RunView


def _check_keys(loop: RunView, task: Task, items: list[tuple[str, Any]]) -> None:
    keys = loop.spec.keys
    for key, _ in items:
        if key not in keys:
            known = ", ".join(keys) or "none"
            raise InvalidUpdateError(
                f"node {task.name!r} returned key {key!r}, which is not in the state "
                f"(keys: {known})"
            )


def _command_items(update: Any, task: Task) -> list[tuple[str, Any]]:
    if update is None:
        return []
    if isinstance(update, dict):
        return list(update.items())
    if isinstance(update, (list, tuple)) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in update
    ):
        return list(update)
    as_dict = object_to_update(update)
    if as_dict is None:
        raise InvalidUpdateError(
            f"node {task.name!r}: Command(update=...) must be a dict or a state object, "
            f"got {type(update).__name__}"
        )
    return list(as_dict.items())


def record_result(loop: RunView, task: Task, result: Any, routes: bool = True) -> None:
    """Validate a node's return value and turn it into writes plus routing."""
    node = task.node
    gotos: list[str | Send] = []
    if result is None:
        items: list[tuple[str, Any]] = []
    elif type(result) is dict:
        items = list(result.items())
    elif isinstance(result, Command):
        if result.graph == Command.PARENT:
            raise ParentCommand(result)
        items = _command_items(result.update, task)
        gotos = result.goto_list()
    elif isinstance(result, dict):
        items = list(result.items())
    elif isinstance(result, (list, tuple)) and result and all(
        isinstance(c, Command) for c in result
    ):
        items = []
        for command in result:
            if command.graph == Command.PARENT:
                raise ParentCommand(command)
            items.extend(_command_items(command.update, task))
            gotos.extend(command.goto_list())
    else:
        as_dict = object_to_update(result)
        if as_dict is None:
            raise InvalidUpdateError(
                f"node {task.name!r} must return a dict, a Command or None, got "
                f"{type(result).__name__}: {result!r:.100}"
            )
        items = list(as_dict.items())
    if node is not None and node.subgraph is not None:
        keys = loop.spec.keys
        items = [(k, v) for k, v in items if k in keys]
    else:
        _check_keys(loop, task, items)
    for target in gotos:
        name = target.node if isinstance(target, Send) else target
        if name != END and name not in loop.spec.nodes:
            raise InvalidUpdateError(
                f"node {task.name!r} sent Command(goto={name!r}), which is not a node"
            )
    task.writes = items
    task.update = result.update if isinstance(result, Command) else (
        dict(items) if result is not None and not isinstance(result, dict) else result
    )
    if routes:
        gotos.extend(route(loop, task, items))
    task.gotos = gotos


def route(loop: RunView, task: Task, items: list[tuple[str, Any]]) -> list[str | Send]:
    """Evaluate the conditional edges leaving this task's node, on its own view of state."""
    branches = loop.spec.branches.get(task.name)
    if not branches:
        return []
    view = loop.local_view(items)
    targets: list[str | Send] = []
    for branch in branches:
        targets.extend(resolve_branch(loop, branch, branch.path(*loop.branch_args(branch, view))))
    return targets


def resolve_branch(loop: RunView, branch: BranchSpec, result: Any) -> list[str | Send]:
    if asyncio.iscoroutine(result):
        result.close()
        raise InvalidUpdateError(
            f"conditional edge from {branch.source!r} is async: run the graph with ainvoke/astream"
        )
    values = result if isinstance(result, (list, tuple)) else [result]
    out: list[str | Send] = []
    for value in values:
        if isinstance(value, Send):
            if value.node not in loop.spec.nodes:
                raise InvalidUpdateError(
                    f"conditional edge from {branch.source!r} sent Send({value.node!r}), "
                    f"which is not a node"
                )
            out.append(value)
            continue
        target = value
        if branch.path_map is not None:
            try:
                target = branch.path_map[value]
            except (KeyError, TypeError):
                choices = ", ".join(repr(k) for k in branch.path_map)
                raise InvalidUpdateError(
                    f"conditional edge from {branch.source!r} returned {value!r}, which is not "
                    f"in its path_map (choices: {choices})"
                ) from None
        if target is None or target == END:
            continue
        if target not in loop.spec.nodes:
            raise InvalidUpdateError(
                f"conditional edge from {branch.source!r} returned {target!r}, which is not a "
                f"node of this graph"
            )
        out.append(target)
    return out


def settle_signal(loop: RunView, task: Task, exc: Exception) -> None:
    """Record a final failure or a control signal as the task's outcome."""
    if isinstance(exc, ChildCommand):  # a nested graph routed in this graph
        try:
            record_result(loop, task, Command(update=exc.command.update, goto=exc.command.goto))
            task.done = True
        except Exception as error:
            task.error = error
    elif isinstance(exc, GraphInterrupt):
        task.interrupts = exc.interrupts
    elif isinstance(exc, RouteTo):  # e.g. an approval whose deadline passed
        try:
            record_result(loop, task, Command(goto=exc.node), routes=False)
            task.done = True
            task.handled = {"node": task.name, "error": exc.reason, "goto": exc.node}
        except Exception as error:
            task.error = error
    else:
        task.error = exc


async def _arecord(loop: RunView, task: Task, result: Any) -> None:
    """`record_result` with async routers awaited."""
    branches = loop.spec.branches.get(task.name, ())
    if not any(b.is_async for b in branches):
        record_result(loop, task, result)
        return
    record_result(loop, task, result, routes=False)
    view = loop.local_view(task.writes)
    for branch in branches:
        value = branch.path(*loop.branch_args(branch, view))
        if asyncio.iscoroutine(value):
            value = await value
        task.gotos.extend(resolve_branch(loop, branch, value))

