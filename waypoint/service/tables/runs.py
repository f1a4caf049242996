"""Runs: the queue. A row per accepted run; workers claim them with renewable leases.

A thread runs one run at a time, in the order runs were accepted (`enqueue`); a claim
takes, among due pending runs whose thread has nothing running, the highest priority,
then the tenant with the fewest runs running (so one busy tenant cannot starve the
others), then the oldest. Concurrency limits (all runs, or per tenant) count running runs
across every worker. A run whose lease lapsed (its worker died) goes back to pending in
the next claim transaction of any worker (`claim_next`) and is taken again from its
thread's last checkpoint.

A run is pinned to the version of its graph it started on (`graph_version`, set by the
first claim and inherited by later runs on the thread): a worker claims only runs of the
graphs it serves, at the versions it serves, so a rolling deploy never resumes a thread
on a graph it did not start on. `migrate_version` moves them on purpose.
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
            "worker, lease_until, cancel_action, error, priority, graph_version")
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
    priority: int = 0
    graph_version: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "thread_id": self.thread_id,
                "assistant_id": self.assistant_id, "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at), "status": self.status,
                "metadata": self.metadata, "kwargs": self.kwargs,
                "multitask_strategy": self.multitask_strategy}


def _row(row: tuple[Any, ...]) -> Run:
    (run_id, thread_id, tenant, assistant_id, graph_id, status, created_at, updated_at,
     not_before, metadata, kwargs, strategy, temporary, attempt, worker, lease_until,
     cancel_action, error, priority, graph_version) = row
    return Run(run_id, thread_id, tenant, assistant_id, graph_id, status, created_at,
               updated_at, not_before, from_json(metadata), from_json(kwargs), strategy,
               bool(temporary), attempt, worker, lease_until, cancel_action,
               from_json(error), priority, graph_version)




def insert(tx: Tx, run: Run) -> None:
    tx.execute(f"INSERT INTO waypoint_runs ({_COLUMNS}) VALUES "
               "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?j, ?j, ?, ?, ?, ?, ?, ?, ?j, ?, ?)",
               (run.run_id, run.thread_id, run.tenant, run.assistant_id, run.graph_id,
                run.status, run.created_at, run.updated_at, run.not_before,
                to_json(run.metadata), to_json(run.kwargs), run.multitask_strategy,
                run.temporary, run.attempt, run.worker, run.lease_until,
                run.cancel_action, to_json(run.error), run.priority, run.graph_version))
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
    their thread to go. A thread that waits for a person (an `interrupt()`, an approval) or
    runs again is not done: deleting it would lose the pending decision, so it goes once
    it ends for good."""
    sql = ("SELECT thread_id FROM waypoint_runs WHERE temporary = ? AND status IN "
           "('success', 'error', 'timeout', 'interrupted') AND NOT EXISTS (SELECT 1 FROM "
           "waypoint_service_threads t WHERE t.thread_id = waypoint_runs.thread_id AND "
           "t.status IN ('interrupted', 'busy'))")
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


_RUNNING_OF_TENANT = ("(SELECT count(*) FROM waypoint_runs t WHERE t.tenant = r.tenant "
                      "AND t.status = 'running')")
_LIMITS_LOCK = 7243002  # claims serialise on it while concurrency limits are set


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """What a worker may claim: its graphs at their versions (None: any graph, unpinned),
    and the fleet-wide concurrency limits."""

    versions: dict[str, str] | None = None
    max_running: int | None = None
    tenant_max_running: int | None = None


def _served(rules: ClaimRules) -> tuple[str, list[Any]]:
    """` AND <one of this worker's graphs, new or at the version served here>`."""
    if rules.versions is None:
        return "", []
    if not rules.versions:
        return " AND FALSE", []
    terms, args = [], []
    for graph_id, version in sorted(rules.versions.items()):
        terms.append("(r.graph_id = ? AND (r.graph_version IS NULL OR r.graph_version = ?))")
        args += [graph_id, version]
    return " AND (" + " OR ".join(terms) + ")", args


def claim(tx: Tx, worker: str, lease_seconds: float, at: float | None = None,
          rules: ClaimRules | None = None) -> Run | None:
    """Take the due run that should start next (see the module docstring), for `worker`,
    under a lease; None if none may start now."""
    at = now() if at is None else at
    rules = rules or ClaimRules()
    postgres = tx.dialect == "postgres"
    limited = rules.max_running is not None or rules.tenant_max_running is not None
    if limited and postgres:  # counts stay true while claims from many workers race
        tx.execute("SELECT pg_advisory_xact_lock(?)", [_LIMITS_LOCK])
    if rules.max_running is not None:
        row = tx.one("SELECT count(*) FROM waypoint_runs WHERE status = 'running'")
        if row and int(row[0]) >= rules.max_running:
            return None
    where, args = _served(rules)
    if rules.tenant_max_running is not None:
        where += f" AND {_RUNNING_OF_TENANT} < ?"
        args.append(rules.tenant_max_running)
    lock = " FOR UPDATE OF r SKIP LOCKED" if postgres else ""
    row = tx.one(f"SELECT {', '.join('r.' + c for c in _COLUMNS.split(', '))} "
                 f"FROM waypoint_runs r WHERE {_CLAIMABLE}{where} "
                 f"ORDER BY r.priority DESC, {_RUNNING_OF_TENANT}, r.created_at, r.run_id "
                 f"LIMIT 1{lock}", [at, *args])
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
    if run.graph_version is None and rules.versions is not None:
        run.graph_version = rules.versions.get(run.graph_id)  # pinned from its first step
    tx.execute("UPDATE waypoint_runs SET status = 'running', worker = ?, lease_until = ?, "
               "attempt = ?, updated_at = ?, graph_version = ? WHERE run_id = ?",
               (worker, run.lease_until, run.attempt, at, run.graph_version, run.run_id))
    return run


@dataclass(slots=True)
class Claimed:
    """What one claim transaction did: the run taken (or when the next falls due), and the
    runs of dead workers it put back (requeued, or failed as poison runs)."""

    run: Run | None
    due: float | None
    lapsed: list[str]
    poisoned: list[Run]


def claim_next(tx: Tx, worker: str, lease_seconds: float, *, rules: ClaimRules | None = None,
               max_takeovers: int | None = None, at: float | None = None) -> Claimed:
    """Put back the runs whose lease lapsed, then claim, in one transaction: a dead
    worker's run is taken by the next claim or poll of any idle worker (within the lease
    plus one poll interval, not the renewers' lease / 3 later), and its attempt (the
    fencing epoch) moves on in the same transaction. A live lease is never taken."""
    at = now() if at is None else at
    lapsed, poisoned = recover_lapsed(tx, at, max_takeovers=max_takeovers)
    run = claim(tx, worker, lease_seconds, at=at, rules=rules)
    return Claimed(run, None if run is not None else next_due(tx, at), lapsed, poisoned)


def thread_version(tx: Tx, thread_id: str, graph_id: str) -> str | None:
    """The graph version the thread's runs of `graph_id` are pinned to (None: not yet)."""
    row = tx.one("SELECT graph_version FROM waypoint_runs WHERE thread_id = ? AND "
                 "graph_id = ? AND graph_version IS NOT NULL ORDER BY created_at DESC, "
                 "run_id DESC LIMIT 1", [thread_id, graph_id])
    return row[0] if row else None


def versions_in_use(tx: Tx, graph_id: str | None = None) -> list[tuple[str, str | None, str,
                                                                       int]]:
    """(graph, version, status, runs) of the runs that are pending, running or paused
    (their thread's last run was interrupted): what a rolling deploy must still serve."""
    sql = ("SELECT graph_id, graph_version, status, count(*) FROM waypoint_runs WHERE "
           "status IN ('pending', 'running', 'interrupted')")
    args: list[Any] = []
    if graph_id is not None:
        sql += " AND graph_id = ?"
        args.append(graph_id)
    sql += " GROUP BY graph_id, graph_version, status ORDER BY graph_id, graph_version, status"
    return [(r[0], r[1], r[2], int(r[3])) for r in tx.all(sql, args)]


def migrate_version(tx: Tx, graph_id: str, to_version: str,
                    from_version: str | None = None, thread_id: str | None = None) -> int:
    """Re-pin the runs of `graph_id` (of one version, one thread, or all) to `to_version`,
    so workers serving it resume their threads; returns how many runs moved. Running runs
    are left alone: they finish, or are taken over, where they are."""
    sql = ("UPDATE waypoint_runs SET graph_version = ? WHERE graph_id = ? AND "
           "graph_version IS NOT NULL AND status <> 'running'")
    args: list[Any] = [to_version, graph_id]
    if from_version is not None:
        sql += " AND graph_version = ?"
        args.append(from_version)
    if thread_id is not None:
        sql += " AND thread_id = ?"
        args.append(thread_id)
    moved = tx.execute(sql, args)
    notify(tx, QUEUE_CHANNEL)
    return moved


def next_due(tx: Tx, at: float | None = None) -> float | None:
    """When the earliest pending run still in the future falls due (None: none). Runs due
    already but not claimable (their thread busy, a limit reached) are not counted: what
    frees them notifies the queue, and the poll is the fallback."""
    row = tx.one("SELECT min(not_before) FROM waypoint_runs WHERE status = 'pending' AND "
                 "cancel_action IS NULL AND not_before > ?", [now() if at is None else at])
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
    """Extend this worker's leases; returns the runs another worker holds now, or that
    went back to the queue (a run that just ended, or was deleted, is not lost)."""
    lost: list[str] = []
    for run_id in run_ids:
        if tx.execute("UPDATE waypoint_runs SET lease_until = ? WHERE run_id = ? AND "
                      "worker = ? AND status = 'running'", (until, run_id, worker)):
            continue
        if tx.one("SELECT 1 FROM waypoint_runs WHERE run_id = ? AND status IN ('pending', "
                  "'running')", [run_id]):
            lost.append(run_id)
    return lost


def finish(tx: Tx, run_id: str, status: str, error: Any = None,
           metadata: dict[str, Any] | None = None, *, attempt: int | None = None) -> bool:
    """The run's end; `metadata` (what it spent, say) is merged into its metadata. Given
    `attempt`, only that attempt may end it (False: another worker took it over)."""
    if attempt is not None and not tx.one(
            "SELECT 1 FROM waypoint_runs WHERE run_id = ? AND attempt = ? AND status = "
            "'running'" + (" FOR UPDATE" if tx.dialect == "postgres" else ""),
            [run_id, attempt]):
        return False
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
    return True


def requeue(tx: Tx, run_id: str, *, attempt: int | None = None) -> None:
    """Back to the queue (drained or orphaned); the next attempt resumes its checkpoint.
    Given `attempt`, only if that attempt still holds it."""
    sql = ("UPDATE waypoint_runs SET status = 'pending', worker = NULL, lease_until = NULL, "
           "updated_at = ? WHERE run_id = ? AND status = 'running'")
    args: list[Any] = [now(), run_id]
    if attempt is not None:
        sql += " AND attempt = ?"
        args.append(attempt)
    tx.execute(sql, args)
    notify(tx, QUEUE_CHANNEL)


def retry_later(tx: Tx, run_id: str, attempt: int, not_before: float,
                max_takeovers: int | None) -> bool:
    """Back to the queue after its database went away mid-run, due at `not_before`; it
    counts as a takeover, so a run that always meets an outage stops at the poison limit.
    False (and nothing changed) when over that limit; True also when this attempt no
    longer holds the run (someone else has it: nothing to do)."""
    row = tx.one("SELECT takeovers FROM waypoint_runs WHERE run_id = ? AND attempt = ? AND "
                 "status = 'running'" + (" FOR UPDATE" if tx.dialect == "postgres" else ""),
                 [run_id, attempt])
    if row is None:
        return True
    count = (row[0] or 0) + 1
    if max_takeovers is not None and count > max_takeovers:
        return False
    tx.execute("UPDATE waypoint_runs SET status = 'pending', worker = NULL, lease_until = NULL, "
               "takeovers = ?, not_before = ?, updated_at = ? WHERE run_id = ?",
               (count, not_before, now(), run_id))
    notify(tx, QUEUE_CHANNEL)
    return True


def recover_lapsed(tx: Tx, at: float, *, everything: bool = False,
                   max_takeovers: int | None = None) -> tuple[list[str], list[Run]]:
    """Runs whose worker stopped renewing (or, at a single-process start, every running
    run) go back to pending: (requeued ids, runs failed as poison). A run taken back more
    than `max_takeovers` times is likely what kills its workers: it fails instead."""
    # Locked, skipping rows another transaction holds: two workers looking at once never
    # both take the same run (the second would requeue the first one's fresh claim), and a
    # stale worker's commit in flight (holding the row) finishes before it is taken over.
    lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgres" else ""
    if everything:
        rows = tx.all("SELECT run_id, takeovers FROM waypoint_runs WHERE status = 'running'"
                      + lock)
    else:
        rows = tx.all("SELECT run_id, takeovers FROM waypoint_runs WHERE status = 'running' "
                      "AND lease_until < ?" + lock, [at])
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


def status_counts(tx: Tx) -> dict[str, int]:
    return {row[0]: int(row[1]) for row in tx.all(
        "SELECT status, count(*) FROM waypoint_runs GROUP BY status")}


def queue_stats(tx: Tx, at: float) -> tuple[int, float | None]:
    """(pending runs due now, when the oldest of them fell due)."""
    row = tx.one("SELECT count(*), min(not_before) FROM waypoint_runs WHERE status = "
                 "'pending' AND not_before <= ? AND cancel_action IS NULL", [at])
    return (int(row[0]), row[1]) if row else (0, None)
