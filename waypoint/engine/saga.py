"""Compensation (sagas): undoing completed steps when a run fails for good or is cancelled.

Nodes declare `compensate=fn`. Each committed step notes, in its checkpoint metadata,
which compensable nodes completed and what they wrote; when the run fails permanently
(a task's final error, the run deadline, the recursion limit) or is cancelled, the
compensations of the nodes completed in this run (since its input) run in reverse order
of completion, each under its node's retry policy and each recorded as an effect, so a
compensation never runs twice. A final checkpoint (no next tasks) records in its
metadata what was compensated and what could not be, and the thread stops there.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from typing import TYPE_CHECKING, Any

from ..types import RetryPolicy
from . import observers
from .context import TaskRuntime, reset_runtime, set_runtime
from .notes import SAGA, saga_entries
from .task import Task

if TYPE_CHECKING:
    from .protocols import RunView


def completed_in_run(loop: RunView) -> list[dict[str, Any]]:
    """Compensable nodes completed in this run, most recent first."""
    done: list[dict[str, Any]] = []
    # Tasks of the failed step that finished before it stopped completed last.
    done.extend(reversed(saga_entries(loop.last_tasks if loop.status == "error" else [])))
    if loop.saver is None:
        done.extend(reversed(loop.saga_log))
        return done
    config: dict[str, Any] | None = loop.load_config_at_head()
    while config is not None:  # walk the head's ancestry back to this run's input
        saved = loop.saver.get_tuple(config)
        if saved is None:
            break
        metadata = saved.metadata or {}
        done.extend(reversed(metadata.get(SAGA) or ()))
        if metadata.get("source") == "input":
            break
        config = saved.parent_config
    return done


def _key(loop: RunView, entry: dict[str, Any]) -> str:
    raw = f"compensate|{loop.thread_id}|{loop.ns}|{entry['task']}|{entry['node']}"
    return "wp-" + hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def _policy(node: Any) -> RetryPolicy | None:
    policy = node.retry_policy
    if policy is None or isinstance(policy, RetryPolicy):
        return policy
    return policy[0]


def _call(loop: RunView, node: Any, entry: dict[str, Any],
          scope: observers.Scope | None = None) -> None:
    """Call a compensation as the node it undoes (so `get_config()` works inside it);
    model and tool calls inside it nest under its scope."""
    runtime = TaskRuntime(loop, Task(0, node.name, node, entry["task"]))
    runtime.scope = scope
    token = set_runtime(runtime)
    try:
        _invoke(node, entry, node.codec.build(loop.values))
    finally:
        reset_runtime(token)


def _invoke(node: Any, entry: dict[str, Any], state: Any) -> None:
    fn = node.compensate
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    result = fn(state, entry["update"]) if len(params) >= 2 else fn(state)
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()
        raise TypeError(f"compensate of node {node.name!r} is async; compensations are sync")


def _compensate_observed(loop: RunView, entry: dict[str, Any]) -> dict[str, Any]:
    scope = observers.start("compensation", entry["node"], {"node": entry["node"]},
                            parent=loop.scope, loop=loop) if observers.OBSERVERS else None
    outcome = _compensate_one(loop, entry, scope)
    observers.end(scope, None, outcome=outcome["status"], key=outcome.get("key"),
                  attempts=outcome.get("attempts"), error_text=outcome.get("error"))
    return outcome


def _compensate_one(loop: RunView, entry: dict[str, Any],
                    scope: observers.Scope | None = None) -> dict[str, Any]:
    node = loop.spec.nodes.get(entry["node"])
    if node is None or node.compensate is None:
        return {"node": entry["node"], "status": "skipped",
                "error": "the node no longer declares a compensation"}
    saver = loop.saver
    thread = str(loop.thread_id)
    key = _key(loop, entry)
    if saver is not None:
        record = saver.begin_effect(thread, key, f"compensate {node.name}")
        if record is not None and record.status == "done":
            return {"node": node.name, "status": "compensated", "key": key}
        if record is not None:  # a compensation in doubt: undo actions are meant to be
            saver.begin_effect(thread, key, f"compensate {node.name}", retry_started=True)
    policy = _policy(node)
    attempt = 0
    while True:
        attempt += 1
        try:
            _call(loop, node, entry, scope)
        except Exception as exc:
            if policy is not None and attempt < policy.max_attempts and policy.should_retry(exc):
                time.sleep(policy.delay(attempt, exc))
                continue
            if saver is not None:
                saver.finish_effect(thread, key,
                                    error={"type": type(exc).__name__, "message": str(exc)})
            return {"node": node.name, "status": "failed", "attempts": attempt,
                    "error": f"{type(exc).__name__}: {exc}", "key": key}
        if saver is not None:
            saver.finish_effect(thread, key, result=True)
        return {"node": node.name, "status": "compensated", "attempts": attempt, "key": key}


def has_compensations(loop: RunView) -> bool:
    return any(n.compensate is not None for n in loop.spec.nodes.values())


def compensate_run(loop: RunView, reason: str, source: str = "compensation") -> dict[str, Any]:
    """Run the compensations of this run's completed nodes, newest first; record the outcome.

    Returns the summary written to the final checkpoint's metadata under "compensation".
    """
    outcomes = [_compensate_observed(loop, entry) for entry in completed_in_run(loop)]
    summary = {
        "reason": reason,
        "compensated": [o["node"] for o in outcomes if o["status"] == "compensated"],
        "failed": [{"node": o["node"], "error": o["error"]} for o in outcomes
                   if o["status"] != "compensated"],
        "order": [o["node"] for o in outcomes],
    }
    loop.close_run(summary, source)
    return summary
