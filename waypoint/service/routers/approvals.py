"""`/approvals`: the inbox of decisions people owe paused runs (a waypoint addition).

An approval is the record `approve()` keeps beside the checkpoints: the request, the
allowed actions, the JSON schema of an edit, the assignee, the deadline. Deciding checks
the decision first (422 with every error) and then queues the run that resumes the thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query

from ...checkpoint.durable_records import APPROVAL_STATUSES, ApprovalRecord
from ..auth import Identity, current_identity
from ..context import Service
from ..errors import Conflict, NotFound, Unprocessable
from ..schemas.approvals import ApprovalDecide
from ..tables import threads as thread_table
from ..tables.common import iso
from ..timers import pending_interrupts, resume_thread
from .deps import GUARDS, get_service

# An empty or oversized thread id is a 422 here, not an error of the records store.
_THREAD_ID = Query(default=None, min_length=1, max_length=256)

router = APIRouter(prefix="/approvals", tags=["approvals"],
                   dependencies=GUARDS)


def approval_json(record: ApprovalRecord) -> dict[str, Any]:
    return {"approval_id": record.id, "thread_id": record.thread_id, "node": record.node,
            "graph_id": record.graph, "request": record.request,
            "response_schema": record.schema, "actions": list(record.actions),
            "assignee": record.assignee, "deadline": iso(record.deadline),
            "on_timeout": record.on_timeout, "status": record.status,
            "decision": record.decision, "created_at": iso(record.created_at),
            "decided_at": iso(record.decided_at), "escalations": record.escalations}


async def _visible(service: Service, who: Identity, records: list[ApprovalRecord]
                   ) -> list[ApprovalRecord]:
    """Only approvals of threads the caller's tenant owns."""
    if who.is_admin or not records:
        return records
    ids = sorted({r.thread_id for r in records})
    owned = await service.db.arun(lambda tx: {t.thread_id for t in thread_table.search(
        tx, who.tenant, ids=ids, limit=len(ids))})
    return [r for r in records if r.thread_id in owned]


@router.get("", summary="List Approvals")
async def list_approvals(status: str | None = Query(default="pending"),
                         assignee: str | None = None, thread_id: str | None = _THREAD_ID,
                         graph_id: str | None = None,
                         limit: int = Query(default=50, ge=1, le=1000),
                         service: Service = Depends(get_service),
                         who: Identity = Depends(current_identity)) -> list[dict[str, Any]]:
    if status not in (None, "all", *APPROVAL_STATUSES):
        raise Unprocessable(f"status must be one of all, {', '.join(APPROVAL_STATUSES)}")
    records = await asyncio.to_thread(
        service.saver.list_approvals, thread_id=thread_id,
        status=None if status == "all" else status, assignee=assignee, graph=graph_id)
    visible = await _visible(service, who, records)
    return [approval_json(r) for r in visible[:limit]]


async def _find(service: Service, approval_id: str, who: Identity,
                thread_id: str | None) -> ApprovalRecord:
    if thread_id is not None:
        record = await asyncio.to_thread(service.saver.get_approval, thread_id, approval_id)
        found = [record] if record is not None else []
    else:
        found = [r for r in await asyncio.to_thread(service.saver.list_approvals)
                 if r.id == approval_id]
    visible = await _visible(service, who, found)
    if not visible:
        raise NotFound(f"approval {approval_id!r} not found")
    return visible[0]


@router.get("/{approval_id}", summary="Get Approval")
async def get(approval_id: str, thread_id: str | None = _THREAD_ID,
              service: Service = Depends(get_service),
              who: Identity = Depends(current_identity)) -> dict[str, Any]:
    return approval_json(await _find(service, approval_id, who, thread_id))


def check_decision(record: ApprovalRecord, body: ApprovalDecide) -> None:
    """Everything wrong with a decision, at once, or nothing."""
    problems: list[str] = []
    if body.action not in record.actions:
        problems.append(f"action must be one of {', '.join(record.actions)}, got "
                        f"{body.action!r}")
    if body.action in ("edit", "respond"):
        if body.edits is None:
            problems.append(f"action {body.action!r} needs 'edits'")
        elif record.schema:
            import jsonschema

            validator = jsonschema.Draft202012Validator(record.schema)
            for error in validator.iter_errors(body.edits):
                where = "/".join(str(p) for p in error.absolute_path) or "(root)"
                problems.append(f"edits at {where}: {error.message}")
    if problems:
        raise Unprocessable("; ".join(problems))


@router.post("/{approval_id}/decide", summary="Decide Approval")
async def decide(approval_id: str, body: ApprovalDecide, thread_id: str | None = _THREAD_ID,
                 service: Service = Depends(get_service),
                 who: Identity = Depends(current_identity)) -> dict[str, Any]:
    record = await _find(service, approval_id, who, thread_id)
    if record.status != "pending":
        raise Conflict(f"approval {approval_id!r} is {record.status}, not pending")
    check_decision(record, body)
    thread = await service.db.aread(lambda tx: thread_table.get(tx, record.thread_id, None))
    graph_id = thread.metadata.get("graph_id") if thread is not None else None
    asked = [i for i in await pending_interrupts(service, record.thread_id, graph_id)
             if isinstance(i.value, dict) and i.value.get("kind") == "approval"
             and i.value.get("approval_id") == approval_id]
    if not asked:
        raise Conflict(f"thread {record.thread_id!r} is not waiting on approval "
                       f"{approval_id!r} any more")
    answer = {"action": body.action, "by": body.by or who.user_id or who.tenant,
              "comment": body.comment, "edits": body.edits}
    run = await resume_thread(service, record.thread_id, {asked[0].id: answer},
                              metadata={"approval_id": approval_id},
                              stream_mode=body.stream_mode)
    if run is None:
        raise Conflict(f"thread {record.thread_id!r} was not started by this server: resume "
                       f"it where it runs")
    return {"approval": approval_json(record), "run": run.to_api()}
