"""What a finished step adds to its checkpoint's metadata: retries, handled errors,
effects and the compensable work a saga may have to undo.

Written by the loop, read back by sagas (saga.py) and history readers; kept apart so the
loop does not depend on the saga machinery, only on the shape of its notes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .task import Task

SAGA = "saga"  # checkpoint-metadata key of a step's completed compensable nodes


def saga_entries(tasks: list[Task]) -> list[dict[str, Any]]:
    """What a step's compensable tasks did, for its checkpoint metadata."""
    return [{"node": t.name, "task": t.id, "update": dict(t.writes)}
            for t in tasks if t.node is not None and t.node.compensate is not None and t.done]


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
