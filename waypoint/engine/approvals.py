"""Approvals: `approve(request, ...)` pauses a node for a person's validated decision.

Built on `interrupt()`: the approval is also a stored record (request, allowed actions,
response schema, assignee, deadline, and once decided: who, when, what, comment, edits),
listable per thread and across threads with `saver.list_pending_approvals()`. A deadline
is a durable timer; when it passes, `on_timeout` applies: "reject" (the decision is a
timed-out rejection), "escalate" (the request goes to `escalate_to` with a fresh deadline
of the same length; if that passes too, it expires as a rejection), or a node name
(the node's run is dropped and the run goes there).
An answer that is not a valid decision is not lost: the person is asked again, with the
error in the request.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, timedelta
from typing import Any

from ..checkpoint.durable_records import ApprovalRecord
from ..checkpoint.serde import register_type
from ..errors import RouteTo
from . import observers
from .context import TaskRuntime, current_runtime, interrupt, interrupt_id
from .timers import due_time, is_fired, schedule

ACTIONS = ("approve", "reject", "edit", "respond")


@register_type
@dataclass(frozen=True, slots=True)
class Decision:
    """A person's (or a deadline's) answer to an approval request."""

    action: str
    approval_id: str = ""
    by: str | None = None
    comment: str | None = None
    edits: Any = None  # the edited payload ("edit") or the response ("respond")
    at: float = 0.0
    timed_out: bool = False
    escalations: int = 0

    @property
    def approved(self) -> bool:
        return self.action in ("approve", "edit")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def record(self) -> dict[str, Any]:
        """The decision as the approval record keeps it: plain data, so any process (an
        inbox, a server restarted without the graph's schema classes) can read it back."""
        data = asdict(self)
        data["edits"] = _plain(self.edits)
        return data


def _plain(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def _schema_json(schema: Any) -> dict[str, Any] | None:
    if schema is None:
        return None
    if isinstance(schema, dict):
        return schema
    from pydantic import TypeAdapter

    return TypeAdapter(schema).json_schema()


def _check_edits(schema: Any, edits: Any) -> Any:
    if schema is None or isinstance(schema, dict):
        return edits
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(schema).validate_python(edits)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'edits'}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise ValueError(f"edits do not fit the schema: {problems}") from None


def parse_decision(answer: Any, approval_id: str, actions: Sequence[str],
                   schema: Any) -> Decision:
    """A resume value as a Decision; ValueError naming what is wrong otherwise."""
    if isinstance(answer, Decision):
        data = answer.to_dict()
    elif isinstance(answer, str):
        data = {"action": answer}
    elif isinstance(answer, dict):
        data = dict(answer)
    else:
        raise ValueError(f"a decision is an action name or a dict with 'action', got "
                         f"{type(answer).__name__}")
    action = data.get("action")
    if action not in actions:
        raise ValueError(f"action must be one of {', '.join(actions)}, got {action!r}")
    unknown = set(data) - {"action", "approval_id", "by", "comment", "edits", "at", "timed_out",
                           "escalations"}
    if unknown:
        raise ValueError(f"unknown decision field(s) {sorted(unknown)}")
    edits = data.get("edits")
    if action in ("edit", "respond"):
        if edits is None:
            raise ValueError(f"action {action!r} needs 'edits' (the edited payload)")
        edits = _check_edits(schema, edits)
    return Decision(action=action, approval_id=approval_id, by=data.get("by"),
                    comment=data.get("comment"), edits=edits,
                    at=float(data.get("at") or time.time()))


def _check_arguments(runtime: TaskRuntime, actions: Sequence[str], on_timeout: str,
                     deadline: Any, escalate_to: str | None) -> None:
    if isinstance(actions, str) or not actions or not all(
        isinstance(a, str) and a for a in actions
    ):
        raise ValueError(f"actions must be a non-empty list of names, got {actions!r}")
    if on_timeout not in ("reject", "escalate") and on_timeout not in runtime.loop.spec.nodes:
        raise ValueError(f"on_timeout must be 'reject', 'escalate' or a node name, got "
                         f"{on_timeout!r}")
    if on_timeout == "escalate" and escalate_to is None:
        raise ValueError("on_timeout='escalate' needs escalate_to= (who to ask next)")
    if deadline is None and on_timeout != "reject":
        raise ValueError(f"on_timeout={on_timeout!r} needs a deadline")


def approve(request: Any, *, schema: Any = None,
            actions: Sequence[str] = ("approve", "reject", "edit"),
            deadline: float | timedelta | datetime | None = None,
            on_timeout: str = "reject", assignee: str | None = None,
            escalate_to: str | None = None) -> Decision:
    """Pause for a person's decision on `request`; return it validated.

    `deadline`: seconds or a timedelta from the first time this runs, or an aware
    datetime. `schema`: what `edits` must look like (a pydantic model, TypedDict,
    dataclass, or a JSON-schema dict that is shown but not enforced).
    """
    runtime = current_runtime()
    if runtime is None:
        raise RuntimeError("approve() can only be called inside a node of a running graph")
    runtime.check_alive()
    loop = runtime.loop
    saver = loop.saver
    if saver is None:
        raise RuntimeError("approve() needs a checkpointer: compile(checkpointer=...)")
    actions = tuple(actions)
    _check_arguments(runtime, actions, on_timeout, deadline, escalate_to)
    thread = str(loop.thread_id)
    approval_id = interrupt_id(runtime.task.id, runtime.interrupt_index)
    record = saver.get_approval(thread, approval_id)
    if record is None:
        due = None
        if deadline is not None:
            due = due_time(deadline, relative=not isinstance(deadline, datetime))
        record = ApprovalRecord(
            thread_id=thread, id=approval_id, ns=loop.ns, node=runtime.task.name,
            graph=loop.root_name, request=request, schema=_schema_json(schema),
            actions=actions, assignee=assignee, deadline=due,
            on_timeout=on_timeout, created_at=time.time())
        saver.put_approval(record)
        if due is not None:
            schedule(runtime, approval_id, due, "approval", {"approval_id": approval_id})
        if observers.OBSERVERS:
            _observe(record, "requested")
    if isinstance(deadline, datetime):
        window = deadline.timestamp() - record.created_at
    elif isinstance(deadline, timedelta):
        window = deadline.total_seconds()
    else:
        window = deadline  # seconds (or None)
    escalations = 0
    assigned = record.assignee
    error: str | None = None
    while True:
        asked_id = interrupt_id(runtime.task.id, runtime.interrupt_index)
        question = {"kind": "approval", "approval_id": approval_id, "request": request,
                    "actions": list(actions), "assignee": assigned,
                    "deadline": record.deadline, "schema": record.schema,
                    "escalations": escalations}
        if error is not None:
            question["error"] = error
        answer = interrupt(question)
        if is_fired(answer):
            fired_at = float(answer.get("fired_at") or time.time())
            if on_timeout == "escalate" and escalations == 0:  # once; then it expires
                escalations += 1
                assigned = escalate_to
                new_due = fired_at + (window or 0.0)
                if record.escalations < escalations:  # first time through this escalation
                    record.escalations, record.assignee = escalations, assigned
                    record.deadline = new_due
                    saver.put_approval(record)
                next_id = interrupt_id(runtime.task.id, runtime.interrupt_index)
                schedule(runtime, next_id, new_due, "approval", {"approval_id": approval_id})
                error = None
                continue
            expired = Decision("reject", approval_id, by="deadline",
                               comment="the deadline passed without a decision",
                               at=fired_at, timed_out=True, escalations=escalations)
            saver.decide_approval(thread, approval_id, expired.record(), status="expired")
            if observers.OBSERVERS:
                _observe(record, "expired", expired)
            if on_timeout not in ("reject", "escalate"):
                raise RouteTo(on_timeout, f"approval {approval_id} timed out")
            return expired
        try:
            decision = parse_decision(answer, approval_id, actions, schema)
        except ValueError as exc:
            error = f"the last answer was not a valid decision: {exc}"
            continue
        if escalations:
            decision = Decision(decision.action, approval_id, decision.by, decision.comment,
                                decision.edits, decision.at, False, escalations)
        saver.decide_approval(thread, approval_id, decision.record())
        saver.cancel_timer(thread, asked_id)
        if observers.OBSERVERS:
            _observe(record, "decided", decision)
        return decision


def _observe(record: ApprovalRecord, status: str, decision: Decision | None = None) -> None:
    """An approval asked or answered, as a moment in the run's trace."""
    attrs: dict[str, Any] = {"approval_id": record.id, "node": record.node,
                             "status": status, "assignee": record.assignee,
                             "deadline": record.deadline, "actions": list(record.actions)}
    if decision is not None:
        attrs.update(action=decision.action, decided_by=decision.by,
                     timed_out=decision.timed_out,
                     waited_s=max(0.0, (decision.at or time.time()) - record.created_at))
    observers.point("approval", record.node, attrs)


def decide(graph: Any, config: dict[str, Any], approval_id: str, action: str, *,
           by: str | None = None, comment: str | None = None, edits: Any = None,
           **invoke_options: Any) -> Any:
    """Answer a pending approval by its id and resume the thread (for inboxes and scripts)."""
    state = graph.get_state(config)
    for item in state.interrupts:
        value = item.value
        if isinstance(value, dict) and value.get("kind") == "approval" and value.get(
            "approval_id"
        ) == approval_id:
            from ..types import Command

            answer = {"action": action, "by": by, "comment": comment, "edits": edits}
            return graph.invoke(Command(resume={item.id: answer}), config, **invoke_options)
    thread = (config.get("configurable") or {}).get("thread_id")
    raise ValueError(f"thread {thread!r} has no pending approval {approval_id!r}")
