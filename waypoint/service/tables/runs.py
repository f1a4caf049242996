"""Runs: the queue. A row per accepted run; workers claim them with renewable leases.

A thread runs one run at a time, in the order runs were accepted (`enqueue`); a claim
takes the oldest due pending run whose thread has nothing running. A run whose lease
lapsed (its worker died) goes back to pending and is taken again from its thread's last
checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .common import iso, now, page, visible
from .db import Tx, from_json, notify, to_json

# the channels of `waypoint.service.runs.notices` (tables do not import the runs layer)
QUEUE_CHANNEL = "waypoint_runs"
CANCEL_CHANNEL = "waypoint_cancels"
RUN_EVENTS_CHANNEL = "waypoint_run_events"

_COLUMNS = ("run_id, thread_id, tenant, assistant_id, graph_id, status, created_at, "
            "updated_at, not_before, metadata, kwargs, multitask_strategy, temporary, attempt, "
            "worker, lease_until, cancel_action, error")
STATUSES = ("pending", "running", "error", "success", "timeout", "interrupted")
ACTIVE = ("pending", "running")


@dataclass(slots=True)
class Run:
    run_id: str
    thread_id: str
    tenant: str
    assistant_id: str
    graph_id: str
    status: str
    created_at: float
    updated_at: float
    not_before: float
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    multitask_strategy: str
    temporary: bool
    attempt: int = 0
    worker: str | None = None
    lease_until: float | None = None
    cancel_action: str | None = None
    error: Any = None

    def to_api(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "thread_id": self.thread_id,
                "assistant_id": self.assistant_id, "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at), "status": self.status,
                "metadata": self.metadata, "kwargs": self.kwargs,
                "multitask_strategy": self.multitask_strategy}


def _row(row: tuple[Any, ...]) -> Run:
    (run_id, thread_id, tenant, assistant_id, graph_id, status, created_at, updated_at,
     not_before, metadata, kwargs, strategy, temporary, attempt, worker, lease_until,
     cancel_action, error) = row
    return Run(run_id, thread_id, tenant, assistant_id, graph_id, status, created_at,
               updated_at, not_before, from_json(metadata), from_json(kwargs), strategy,
               bool(temporary), attempt, worker, lease_until, cancel_action,
               from_json(error))




def insert(tx: Tx, run: Run) -> None:
    tx.execute(f"INSERT INTO waypoint_runs ({_COLUMNS}) VALUES "
               "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?j, ?j, ?, ?, ?, ?, ?, ?, ?j)",
               (run.run_id, run.thread_id, run.tenant, run.assistant_id, run.graph_id,
                run.status, run.created_at, run.updated_at, run.not_before,
                to_json(run.metadata), to_json(run.kwargs), run.multitask_strategy,
                run.temporary, run.attempt, run.worker, run.lease_until,
                run.cancel_action, to_json(run.error)))
    notify(tx, QUEUE_CHANNEL)


def get(tx: Tx, run_id: str, tenant: str | None, thread_id: str | None = None) -> Run | None:
    where, params = visible("tenant", tenant)
    sql = f"SELECT {_COLUMNS} FROM waypoint_runs WHERE run_id = ? AND {where}"
    args = [run_id, *params]
    if thread_id is not None:
        sql += " AND thread_id = ?"
        args.append(thread_id)
    row = tx.one(sql, args)
    return _row(row) if row else None


def list_for_thread(tx: Tx, thread_id: str, *, status: str | None = None, limit: int = 10,
                    offset: int = 0) -> list[Run]:
    sql = f"SELECT {_COLUMNS} FROM waypoint_runs WHERE thread_id = ?"
    args: list[Any] = [thread_id]
    if status:
        sql += " AND status = ?"
        args.append(status)
    limits, more = page(limit, offset)
    rows = tx.all(sql + " ORDER BY created_at DESC, run_id DESC" + limits, [*args, *more])
    return [_row(r) for r in rows]


def active_on_thread(tx: Tx, thread_id: str) -> list[Run]:
    rows = tx.all(f"SELECT {_COLUMNS} FROM waypoint_runs WHERE thread_id = ? AND status IN "
                  "('pending', 'running') ORDER BY created_at, run_id", [thread_id])
    return [_row(r) for r in rows]


def running_count(tx: Tx, tenant: str) -> int:
    row = tx.one("SELECT count(*) FROM waypoint_runs WHERE tenant = ? AND status IN "
                 "('pending', 'running')", [tenant])
    return int(row[0]) if row else 0


def delete(tx: Tx, run_id: str) -> None:
    tx.execute("DELETE FROM waypoint_run_events WHERE run_id = ?", [run_id])
    tx.execute("DELETE FROM waypoint_runs WHERE run_id = ?", [run_id])


def delete_for_thread(tx: Tx, thread_id: str) -> None:
    tx.execute("DELETE FROM waypoint_run_events WHERE run_id IN "
               "(SELECT run_id FROM waypoint_runs WHERE thread_id = ?)", [thread_id])
    tx.execute("DELETE FROM waypoint_runs WHERE thread_id = ?", [thread_id])


def finished_temporary(tx: Tx, ended_before: float | None = None,
                       limit: int = 200) -> list[str]:
    """Threads of stateless runs that ended (before `ended_before`, if given) and asked for
    their thread to go."""
    sql = ("SELECT thread_id FROM waypoint_runs WHERE temporary = ? AND status IN "
           "('success', 'error', 'timeout', 'interrupted')")
    params: list[Any] = [True]
    if ended_before is not None:
        sql += " AND updated_at < ?"
        params.append(ended_before)
    rows = tx.all(sql + " LIMIT ?", [*params, limit])
    return [r[0] for r in rows]


_CLAIMABLE = (
    "r.status = 'pending' AND r.not_before <= ? AND r.cancel_action IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM waypoint_runs o WHERE o.thread_id = r.thread_id "
    "AND o.status = 'running') "
    "AND NOT EXISTS (SELECT 1 FROM waypoint_runs e WHERE e.thread_id = r.thread_id "
    "AND e.status = 'pending' AND (e.created_at < r.created_at OR "
    "(e.created_at = r.created_at AND e.run_id < r.run_id)))"
)


def claim(tx: Tx, worker: str, lease_seconds: float, at: float | None = None) -> Run | None:
    """Take the oldest due run that may start, for `worker`, under a lease."""
    at = now() if at is None else at
    lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgres" else ""
    row = tx.one(f"SELECT {_COLUMNS} FROM waypoint_runs r WHERE {_CLAIMABLE} "
                 f"ORDER BY r.created_at, r.run_id LIMIT 1{lock}", [at])
    if row is None:
        return None
    run = _row(row)
    if tx.dialect == "postgres":  # one running run per thread, even across processes
        tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", [run.thread_id])
        if tx.one("SELECT 1 FROM waypoint_runs WHERE thread_id = ? AND status = 'running'",
                  [run.thread_id]):
            return None
    run.attempt += 1
    run.status, run.worker, run.lease_until, run.updated_at = (
        "running", worker, at + lease_seconds, at)
    tx.execute("UPDATE waypoint_runs SET status = 'running', worker = ?, lease_until = ?, "
               "attempt = ?, updated_at = ? WHERE run_id = ?",
               (worker, run.lease_until, run.attempt, at, run.run_id))
    return run


def next_due(tx: Tx) -> float | None:
    """When the earliest pending run falls due (None: nothing pending)."""
    row = tx.one("SELECT min(not_before) FROM waypoint_runs WHERE status = 'pending' AND "
                 "cancel_action IS NULL")
    return row[0] if row and row[0] is not None else None


def cancel_requests(tx: Tx, run_ids: list[str]) -> list[tuple[str, str]]:
    """(run id, action) of the given runs that someone asked to cancel."""
    if not run_ids:
        return []
    marks = ", ".join("?" for _ in run_ids)
    return [(row[0], row[1]) for row in tx.all(
        f"SELECT run_id, cancel_action FROM waypoint_runs WHERE run_id IN ({marks}) AND "
        f"cancel_action IS NOT NULL", run_ids)]


def renew(tx: Tx, worker: str, run_ids: list[str], until: float) -> list[str]:
    """Extend this worker's leases; returns the runs it no longer holds."""
    lost: list[str] = []
    for run_id in run_ids:
        if not tx.execute("UPDATE waypoint_runs SET lease_until = ? WHERE run_id = ? AND "
                          "worker = ? AND status = 'running'", (until, run_id, worker)):
            lost.append(run_id)
    return lost


def finish(tx: Tx, run_id: str, status: str, error: Any = None,
           metadata: dict[str, Any] | None = None) -> None:
    """The run's end; `metadata` (what it spent, say) is merged into its metadata."""
    if metadata:
        row = tx.one("SELECT metadata FROM waypoint_runs WHERE run_id = ?", [run_id])
        merged = {**(from_json(row[0]) if row else {}), **metadata}
        tx.execute("UPDATE waypoint_runs SET metadata = ?j WHERE run_id = ?",
                   (to_json(merged), run_id))
    tx.execute("UPDATE waypoint_runs SET status = ?, error = ?j, worker = NULL, "
               "lease_until = NULL, updated_at = ? WHERE run_id = ?",
               (status, to_json(error), now(), run_id))
    notify(tx, QUEUE_CHANNEL)  # its thread may have a queued run
    notify(tx, RUN_EVENTS_CHANNEL, run_id)  # followers elsewhere: it ended


def requeue(tx: Tx, run_id: str) -> None:
    """Back to the queue (drained or orphaned); the next attempt resumes its checkpoint."""
    tx.execute("UPDATE waypoint_runs SET status = 'pending', worker = NULL, lease_until = NULL, "
               "updated_at = ? WHERE run_id = ? AND status = 'running'", (now(), run_id))
    notify(tx, QUEUE_CHANNEL)


def recover_lapsed(tx: Tx, at: float, *, everything: bool = False,
                   max_takeovers: int | None = None) -> tuple[list[str], list[Run]]:
    """Runs whose worker stopped renewing (or, at a single-process start, every running
    run) go back to pending: (requeued ids, runs failed as poison). A run taken back more
    than `max_takeovers` times is likely what kills its workers: it fails instead."""
    if everything:
        rows = tx.all("SELECT run_id, takeovers FROM waypoint_runs WHERE status = 'running'")
    else:
        rows = tx.all("SELECT run_id, takeovers FROM waypoint_runs WHERE status = 'running' "
                      "AND lease_until < ?", [at])
    requeued: list[str] = []
    poisoned: list[Run] = []
    for run_id, takeovers in rows:
        count = (takeovers or 0) + 1
        tx.execute("UPDATE waypoint_runs SET takeovers = ? WHERE run_id = ?", (count, run_id))
        if max_takeovers is not None and count > max_takeovers:
            finish(tx, run_id, "error", {
                "error": "PoisonRun",
                "message": f"run {run_id} was stopped after its worker died {count} times "
                           f"running it (limit {max_takeovers}): it may be what kills the "
                           f"process; its last checkpoint is kept"})
            found = get(tx, run_id, None)
            if found is not None:
                poisoned.append(found)
            continue
        requeue(tx, run_id)
        requeued.append(run_id)
    return requeued, poisoned


def request_cancel(tx: Tx, run_id: str, action: str) -> str | None:
    """Mark a run to stop; returns its status before (None if it is not active)."""
    row = tx.one("SELECT status FROM waypoint_runs WHERE run_id = ?", [run_id])
    if row is None or row[0] not in ACTIVE:
        return None
    tx.execute("UPDATE waypoint_runs SET cancel_action = ?, updated_at = ? WHERE run_id = ?",
               (action, now(), run_id))
    notify(tx, CANCEL_CHANNEL, run_id)
    return row[0]


def ids_by_status(tx: Tx, tenant: str | None, statuses: tuple[str, ...],
                  thread_id: str | None = None) -> list[str]:
    where, params = visible("tenant", tenant)
    sql = (f"SELECT run_id FROM waypoint_runs WHERE {where} AND status IN ("
           + ", ".join("?" for _ in statuses) + ")")
    args = [*params, *statuses]
    if thread_id:
        sql += " AND thread_id = ?"
        args.append(thread_id)
    return [r[0] for r in tx.all(sql, args)]
