"""Durable records beside a thread's checkpoints: effects, approvals and timers.

The engine needs three small kinds of state that must outlive a process yet are not part of
a graph's state: which external actions (effects) were started or finished, so a re-run node
reuses a result instead of acting twice; which approvals wait for a person; and which timers
a scheduler must fire. Every checkpointer keeps them (memory: dicts; SQLite and PostgreSQL:
their own tables), keyed by thread, with payloads sealed exactly like checkpoint values (the
safe serializer, and the saver's cipher when encryption is on).

`delete_thread` and `sweep` remove a thread's records with it. `copy_thread` copies none:
records belong to the run that made them, so a fork starts with no effects, approvals or
timers (a node re-run on a fork performs its effects again).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import SerializationError
from . import serde
from .crypto import Cipher

EFFECT_STATUSES = ("started", "done", "failed")
APPROVAL_STATUSES = ("pending", "decided", "expired", "cancelled")
TIMER_STATUSES = ("pending", "claimed", "fired", "cancelled")
TIMER_KINDS = ("sleep", "approval")
TIMER_FINAL = ("fired", "cancelled")
DECIDED_STATUSES = ("decided", "expired", "cancelled")  # what decide_approval may set


@dataclass(slots=True)
class EffectRecord:
    """An external action's progress, keyed by an idempotency key unique per thread."""

    thread_id: str
    key: str
    name: str
    status: str  # "started" | "done" | "failed"
    result: Any = None
    error: dict[str, Any] | None = None  # {"type": ..., "message": ...} when failed
    attempts: int = 1  # how many times it was started
    started_at: float = 0.0
    finished_at: float | None = None


@dataclass(slots=True)
class ApprovalRecord:
    """A question to a person that a paused run waits on (its id is the interrupt id)."""

    thread_id: str
    id: str
    ns: str = ""
    node: str = ""
    graph: str = ""  # so a scheduler or inbox knows which graph resumes it
    request: Any = None
    schema: dict[str, Any] | None = None  # JSON schema of an edit/response payload
    actions: tuple[str, ...] = ("approve", "reject", "edit")
    assignee: str | None = None
    deadline: float | None = None
    on_timeout: str = "reject"  # "reject" | "escalate" | a node name
    status: str = "pending"  # "pending" | "decided" | "expired" | "cancelled"
    decision: dict[str, Any] | None = None  # {"action", "by", "at", ...} once decided
    created_at: float = 0.0  # 0.0: set to the time it is first stored
    decided_at: float | None = None
    escalations: int = 0


@dataclass(slots=True)
class TimerRecord:
    """A wake-up a scheduler owes a paused run (its id is the interrupt id)."""

    thread_id: str
    id: str
    due_at: float
    ns: str = ""
    graph: str = ""
    kind: str = "sleep"  # "sleep" | "approval"
    payload: Any = None
    status: str = "pending"  # "pending" | "claimed" | "fired" | "cancelled"
    claimed_by: str | None = None
    claimed_at: float | None = None
    created_at: float = 0.0  # 0.0: set to the time it is first stored


# -- checking input: every error names the argument that was wrong ---------------------


def check_id(value: Any, argument: str) -> str:
    """A non-empty string id (thread id, effect key, approval or timer id)."""
    if not isinstance(value, str):
        raise ValueError(f"{argument} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{argument} must not be empty")
    return value


def check_text(value: Any, argument: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{argument} must be a str, not {type(value).__name__}")
    return value


def check_status(value: Any, allowed: Sequence[str], argument: str = "status") -> str:
    if value not in allowed:
        raise ValueError(f"{argument} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def check_time(value: Any, argument: str, *, optional: bool = False) -> float | None:
    """Float epoch seconds (finite; ints are taken)."""
    if value is None and optional:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value)):
        raise ValueError(f"{argument} must be a finite number of seconds, got {value!r}")
    return float(value)


def check_limit(value: Any, argument: str = "limit") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{argument} must be an int or None, got {value!r}")
    if value < 0:
        raise ValueError(f"{argument} must be >= 0, got {value}")
    return value


def check_dict(value: Any, argument: str, *, optional: bool = True) -> dict[str, Any] | None:
    if value is None and optional:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{argument} must be a dict, not {type(value).__name__}")
    return value


def check_approval(record: Any) -> ApprovalRecord:
    """A validated copy of `record` (actions as a tuple, created_at filled in if 0)."""
    if not isinstance(record, ApprovalRecord):
        raise ValueError(f"record must be an ApprovalRecord, not {type(record).__name__}")
    check_id(record.thread_id, "record.thread_id")
    check_id(record.id, "record.id")
    for name in ("ns", "node", "graph"):
        check_text(getattr(record, name), f"record.{name}")
    check_text(record.assignee, "record.assignee", optional=True)
    actions = record.actions
    if isinstance(actions, str) or not isinstance(actions, (tuple, list)) or not all(
            isinstance(a, str) and a for a in actions):
        raise ValueError(f"record.actions must be a tuple of non-empty str, got {actions!r}")
    if not isinstance(record.on_timeout, str) or not record.on_timeout:
        raise ValueError(f"record.on_timeout must be a non-empty str, got {record.on_timeout!r}")
    check_status(record.status, APPROVAL_STATUSES, "record.status")
    check_dict(record.schema, "record.schema")
    check_dict(record.decision, "record.decision")
    escalations = record.escalations
    if isinstance(escalations, bool) or not isinstance(escalations, int) or escalations < 0:
        raise ValueError(f"record.escalations must be an int >= 0, got {escalations!r}")
    return replace(
        record, actions=tuple(actions),
        deadline=check_time(record.deadline, "record.deadline", optional=True),
        created_at=check_time(record.created_at, "record.created_at") or time.time(),
        decided_at=check_time(record.decided_at, "record.decided_at", optional=True),
    )


def check_timer(record: Any) -> TimerRecord:
    """A validated copy of `record` (created_at filled in if 0)."""
    if not isinstance(record, TimerRecord):
        raise ValueError(f"record must be a TimerRecord, not {type(record).__name__}")
    check_id(record.thread_id, "record.thread_id")
    check_id(record.id, "record.id")
    check_text(record.ns, "record.ns")
    check_text(record.graph, "record.graph")
    check_status(record.kind, TIMER_KINDS, "record.kind")
    check_status(record.status, TIMER_STATUSES, "record.status")
    check_text(record.claimed_by, "record.claimed_by", optional=True)
    return replace(
        record, due_at=check_time(record.due_at, "record.due_at"),
        claimed_at=check_time(record.claimed_at, "record.claimed_at", optional=True),
        created_at=check_time(record.created_at, "record.created_at") or time.time(),
    )


def check_outcome(result: Any, error: Any) -> tuple[str, dict[str, Any] | None]:
    """finish_effect's (status, error): "failed" when an error dict is given, else "done"."""
    if error is None:
        return "done", None
    check_dict(error, "error", optional=False)
    if result is not None:
        raise ValueError("finish_effect takes a result or an error, not both")
    return "failed", error


# -- rows: one column layout shared by every backend ------------------------------------

EFFECT_COLUMNS = ("thread_id", "key", "name", "status", "result", "error", "attempts",
                  "started_at", "finished_at")
APPROVAL_COLUMNS = ("thread_id", "id", "ns", "node", "graph", "request", "response_schema",
                    "actions", "assignee", "deadline", "on_timeout", "status", "decision",
                    "created_at", "decided_at", "escalations")
TIMER_COLUMNS = ("thread_id", "id", "due_at", "ns", "graph", "kind", "payload", "status",
                 "claimed_by", "claimed_at", "created_at")


def pack(value: Any, cipher: Cipher | None, what: str) -> bytes | None:
    """Seal a payload as checkpoint values are sealed (None stays NULL); an unstorable
    value fails naming its path under `what`, e.g. `request.files[2]`."""
    from .records import seal  # late: records imports base, which imports this module

    if value is None:
        return None
    try:
        return seal(value, cipher)
    except SerializationError:
        found = serde.find_unserializable(value, what)
        if found is None:
            raise
        path, type_name = found
        raise SerializationError(
            f"cannot store {path}: {type_name} is not serializable (store plain data, a "
            f"dataclass or pydantic model, or register the type with register_type)"
        ) from None


def unpack(blob: bytes | None, cipher: Cipher | None) -> Any:
    from .records import unseal

    return None if blob is None else unseal(bytes(blob), cipher)


def effect_from_row(row: Sequence[Any], cipher: Cipher | None) -> EffectRecord:
    thread_id, key, name, status, result, error, attempts, started_at, finished_at = row
    return EffectRecord(thread_id, key, name, status, unpack(result, cipher),
                        unpack(error, cipher), attempts, started_at, finished_at)


def approval_to_row(record: ApprovalRecord, cipher: Cipher | None) -> tuple[Any, ...]:
    """The row of a record already checked by check_approval."""
    r = record
    return (r.thread_id, r.id, r.ns, r.node, r.graph, pack(r.request, cipher, "request"),
            pack(r.schema, cipher, "schema"), json.dumps(list(r.actions)), r.assignee,
            r.deadline, r.on_timeout, r.status, pack(r.decision, cipher, "decision"),
            r.created_at, r.decided_at, r.escalations)


def approval_from_row(row: Sequence[Any], cipher: Cipher | None) -> ApprovalRecord:
    (thread_id, id_, ns, node, graph, request, schema, actions, assignee, deadline,
     on_timeout, status, decision, created_at, decided_at, escalations) = row
    return ApprovalRecord(
        thread_id, id_, ns, node, graph, unpack(request, cipher), unpack(schema, cipher),
        tuple(json.loads(actions)), assignee, deadline, on_timeout, status,
        unpack(decision, cipher), created_at, decided_at, escalations)


def timer_to_row(record: TimerRecord, cipher: Cipher | None) -> tuple[Any, ...]:
    """The row of a record already checked by check_timer."""
    r = record
    return (r.thread_id, r.id, r.due_at, r.ns, r.graph, r.kind,
            pack(r.payload, cipher, "payload"), r.status, r.claimed_by, r.claimed_at,
            r.created_at)


def timer_from_row(row: Sequence[Any], cipher: Cipher | None) -> TimerRecord:
    (thread_id, id_, due_at, ns, graph, kind, payload, status, claimed_by, claimed_at,
     created_at) = row
    return TimerRecord(thread_id, id_, due_at, ns, graph, kind, unpack(payload, cipher),
                       status, claimed_by, claimed_at, created_at)


# -- the contract -----------------------------------------------------------------------


class RecordStore:
    """Effects, approvals and timers: the methods every checkpointer provides.

    Sync methods are implemented per backend; the async twins default to running the sync
    one in a worker thread (a backend with real async I/O overrides them). Every write is
    committed (durable, as the saver's checkpoints are) before it returns.
    """

    # -- effects -----------------------------------------------------------------------

    def begin_effect(self, thread_id: str, key: str, name: str, *,
                     retry_started: bool = False) -> EffectRecord | None:
        """Atomically claim the right to run effect `key`: None means "run it".

        Absent: recorded as started (attempts 1). Failed, or started with
        `retry_started`: started again (attempts + 1, error cleared). Otherwise the
        existing record, unchanged: "done" means reuse its result, "started" means in
        doubt (it may have run). Of concurrent callers on one absent key, exactly one gets
        None.
        """
        raise NotImplementedError

    def finish_effect(self, thread_id: str, key: str, *, result: Any = None,
                      error: dict[str, Any] | None = None) -> None:
        """Record the outcome: "done" with `result`, or "failed" with `error`.
        KeyError if the effect was never begun."""
        raise NotImplementedError

    def get_effect(self, thread_id: str, key: str) -> EffectRecord | None:
        raise NotImplementedError

    def list_effects(self, thread_id: str) -> list[EffectRecord]:
        """A thread's effects in the order they were first started."""
        raise NotImplementedError

    # -- approvals ---------------------------------------------------------------------

    def put_approval(self, record: ApprovalRecord) -> None:
        """Insert, or replace every field of the one with the same (thread_id, id)."""
        raise NotImplementedError

    def get_approval(self, thread_id: str, approval_id: str) -> ApprovalRecord | None:
        raise NotImplementedError

    def decide_approval(self, thread_id: str, approval_id: str, decision: dict[str, Any], *,
                        status: str = "decided") -> bool:
        """Compare-and-set: only a pending approval takes the decision (True); one already
        decided or expired is left alone (False), so two deciders cannot both win.
        KeyError if there is no such approval."""
        raise NotImplementedError

    def list_approvals(self, *, thread_id: str | None = None, status: str | None = None,
                       assignee: str | None = None, graph: str | None = None,
                       limit: int | None = None) -> list[ApprovalRecord]:
        """Matching approvals, oldest first (created_at, then thread_id, id)."""
        raise NotImplementedError

    def list_pending_approvals(self, thread_id: str | None = None, *,
                               assignee: str | None = None, graph: str | None = None,
                               limit: int | None = None) -> list[ApprovalRecord]:
        """The inbox: pending approvals, oldest first."""
        return self.list_approvals(thread_id=thread_id, status="pending", assignee=assignee,
                                   graph=graph, limit=limit)

    # -- timers ------------------------------------------------------------------------

    def put_timer(self, record: TimerRecord) -> None:
        """Insert, or replace every field (status included) of the one with the same
        (thread_id, id): putting a claimed timer back as "pending" releases it."""
        raise NotImplementedError

    def claim_due_timers(self, *, now: float | None = None, owner: str,
                         graph: str | None = None, limit: int | None = 100,
                         lease_seconds: float = 300.0) -> list[TimerRecord]:
        """Claim, for `owner`, timers that are due (pending, due_at <= now) or whose claim
        has lapsed (claimed before now - lease_seconds: its scheduler died); in due order.
        Concurrent claimers never get the same timer."""
        raise NotImplementedError

    def complete_timer(self, thread_id: str, timer_id: str, *, status: str = "fired",
                       owner: str | None = None) -> bool:
        """Set a final status ("fired" or "cancelled") on a pending or claimed timer, only if
        `owner` is None or holds the claim; whether it changed (False if unknown)."""
        raise NotImplementedError

    def cancel_timer(self, thread_id: str, timer_id: str) -> bool:
        """Cancel a pending or claimed timer; whether it changed (False if unknown)."""
        return self.complete_timer(thread_id, timer_id, status="cancelled")

    def get_timer(self, thread_id: str, timer_id: str) -> TimerRecord | None:
        raise NotImplementedError

    def list_timers(self, *, thread_id: str | None = None, status: str | None = None,
                    graph: str | None = None) -> list[TimerRecord]:
        """Matching timers in due order (due_at, then thread_id, id)."""
        raise NotImplementedError

    def next_timer_due(self, *, graph: str | None = None) -> float | None:
        """The earliest due_at of a pending timer (None if there is none), so a scheduler
        knows how long it may sleep."""
        raise NotImplementedError

    # -- async twins -------------------------------------------------------------------

    async def abegin_effect(self, thread_id: str, key: str, name: str, *,
                            retry_started: bool = False) -> EffectRecord | None:
        return await asyncio.to_thread(self.begin_effect, thread_id, key, name,
                                       retry_started=retry_started)

    async def afinish_effect(self, thread_id: str, key: str, *, result: Any = None,
                             error: dict[str, Any] | None = None) -> None:
        await asyncio.to_thread(self.finish_effect, thread_id, key, result=result, error=error)

    async def aget_effect(self, thread_id: str, key: str) -> EffectRecord | None:
        return await asyncio.to_thread(self.get_effect, thread_id, key)

    async def alist_effects(self, thread_id: str) -> list[EffectRecord]:
        return await asyncio.to_thread(self.list_effects, thread_id)

    async def aput_approval(self, record: ApprovalRecord) -> None:
        await asyncio.to_thread(self.put_approval, record)

    async def aget_approval(self, thread_id: str, approval_id: str) -> ApprovalRecord | None:
        return await asyncio.to_thread(self.get_approval, thread_id, approval_id)

    async def adecide_approval(self, thread_id: str, approval_id: str,
                               decision: dict[str, Any], *, status: str = "decided") -> bool:
        return await asyncio.to_thread(self.decide_approval, thread_id, approval_id, decision,
                                       status=status)

    async def alist_approvals(self, *, thread_id: str | None = None, status: str | None = None,
                              assignee: str | None = None, graph: str | None = None,
                              limit: int | None = None) -> list[ApprovalRecord]:
        return await asyncio.to_thread(self.list_approvals, thread_id=thread_id, status=status,
                                       assignee=assignee, graph=graph, limit=limit)

    async def alist_pending_approvals(self, thread_id: str | None = None, *,
                                      assignee: str | None = None, graph: str | None = None,
                                      limit: int | None = None) -> list[ApprovalRecord]:
        return await self.alist_approvals(thread_id=thread_id, status="pending",
                                          assignee=assignee, graph=graph, limit=limit)

    async def aput_timer(self, record: TimerRecord) -> None:
        await asyncio.to_thread(self.put_timer, record)

    async def aclaim_due_timers(self, *, now: float | None = None, owner: str,
                                graph: str | None = None, limit: int | None = 100,
                                lease_seconds: float = 300.0) -> list[TimerRecord]:
        return await asyncio.to_thread(self.claim_due_timers, now=now, owner=owner, graph=graph,
                                       limit=limit, lease_seconds=lease_seconds)

    async def acomplete_timer(self, thread_id: str, timer_id: str, *, status: str = "fired",
                              owner: str | None = None) -> bool:
        return await asyncio.to_thread(self.complete_timer, thread_id, timer_id, status=status,
                                       owner=owner)

    async def acancel_timer(self, thread_id: str, timer_id: str) -> bool:
        return await self.acomplete_timer(thread_id, timer_id, status="cancelled")

    async def aget_timer(self, thread_id: str, timer_id: str) -> TimerRecord | None:
        return await asyncio.to_thread(self.get_timer, thread_id, timer_id)

    async def alist_timers(self, *, thread_id: str | None = None, status: str | None = None,
                           graph: str | None = None) -> list[TimerRecord]:
        return await asyncio.to_thread(self.list_timers, thread_id=thread_id, status=status,
                                       graph=graph)

    async def anext_timer_due(self, *, graph: str | None = None) -> float | None:
        return await asyncio.to_thread(self.next_timer_due, graph=graph)


def check_claim(now: Any, owner: Any, graph: Any, limit: Any,
                lease_seconds: Any) -> tuple[float, str, str | None, int | None, float]:
    """claim_due_timers' arguments, checked: (now, owner, graph, limit, stale_before)."""
    at = check_time(time.time() if now is None else now, "now")
    assert at is not None
    check_id(owner, "owner")
    check_text(graph, "graph", optional=True)
    lease = check_time(lease_seconds, "lease_seconds")
    assert lease is not None
    if lease < 0:
        raise ValueError(f"lease_seconds must be >= 0, got {lease_seconds!r}")
    return at, owner, graph, check_limit(limit), at - lease


def check_filters(thread_id: Any, status: Any, allowed: Sequence[str], **texts: Any) -> None:
    """List filters: an optional thread id, an optional status, optional str fields."""
    if thread_id is not None:
        check_id(thread_id, "thread_id")
    if status is not None:
        check_status(status, allowed)
    for name, value in texts.items():
        check_text(value, name, optional=True)
