"""Plans and their drivers: how PostgresSaver talks to the database.

Every store operation is a small "plan", a generator of SQL batches; one sync and one async
driver run plans, so both APIs share the logic and each batch is a single pipelined round
trip. Fencing helpers live here too: they only add conditions to a plan's statements.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg.pq import TransactionStatus

from .fencing import Fence, current_fence


@dataclass(frozen=True, slots=True)
class _Stmt:
    sql: str
    params: Any = None
    prepare: bool | None = None  # False for DDL and SET, which cannot be prepared


class _Last(list):  # type: ignore[type-arg]
    """A plan's final batch: it goes out with the COMMIT, in the same round trip."""


_Plan = Generator[list[_Stmt], list[Any], Any]


def _send(conn: Connection[Any], batch: Sequence[_Stmt]) -> list[Any]:
    cursors = []
    for stmt in batch:
        cur = conn.cursor(binary=True)
        cur.execute(stmt.sql, stmt.params, prepare=stmt.prepare)
        cursors.append(cur)
    return cursors


def _results(cursors: list[Any]) -> list[Any]:
    return [cur.fetchall() if cur.description is not None else cur.rowcount for cur in cursors]


_BEGIN, _COMMIT, _ROLLBACK = (_Stmt(s, prepare=False) for s in ("BEGIN", "COMMIT", "ROLLBACK"))


def _drive(conn: Connection[Any], plan: _Plan, tx: bool) -> Any:
    """Run `plan` on `conn`, one pipeline sync per batch; `tx`: all in one transaction.

    BEGIN and COMMIT are queued by hand with the first and last batch, because psycopg's
    transaction() syncs the pipeline on entry and exit (two more round trips). A connection
    not in autocommit (a pool passed in) gets psycopg's implicit transaction instead, which
    the pool commits when the connection is returned.
    """
    try:
        batch = next(plan)
    except StopIteration as stop:
        return stop.value
    manual = tx and conn.autocommit
    cursors: list[Any] = []
    finished, value = False, None
    try:
        with conn.pipeline() as pipe:
            try:
                head = [_BEGIN] if manual else []
                while True:
                    last = isinstance(batch, _Last)
                    cursors = _send(conn, [*head, *batch])[len(head):]
                    head = []
                    if last:
                        break
                    pipe.sync()
                    try:
                        batch = plan.send(_results(cursors))
                    except StopIteration as stop:
                        finished, value = True, stop.value
                        break
                if manual:
                    _send(conn, [_COMMIT])
            except Exception:
                if manual:
                    with suppress(Exception):
                        _send(conn, [_ROLLBACK])  # goes out with the pipeline's closing sync
                raise
    except Exception:
        if manual and not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.rollback()
        raise
    return value if finished else _finish(plan, _results(cursors))


async def _adrive(conn: AsyncConnection[Any], plan: _Plan, tx: bool) -> Any:
    """The async twin of `_drive`."""
    try:
        batch = next(plan)
    except StopIteration as stop:
        return stop.value
    manual = tx and conn.autocommit
    cursors: list[Any] = []
    finished, value = False, None
    try:
        async with conn.pipeline() as pipe:
            try:
                head = [_BEGIN] if manual else []
                while True:
                    last = isinstance(batch, _Last)
                    cursors = (await _asend(conn, [*head, *batch]))[len(head):]
                    head = []
                    if last:
                        break
                    await pipe.sync()
                    results = await _aresults(cursors)
                    try:
                        batch = plan.send(results)
                    except StopIteration as stop:
                        finished, value = True, stop.value
                        break
                if manual:
                    await _asend(conn, [_COMMIT])
            except Exception:
                if manual:
                    with suppress(Exception):
                        await _asend(conn, [_ROLLBACK])
                raise
    except Exception:
        if manual and not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.rollback()
        raise
    return value if finished else _finish(plan, await _aresults(cursors))


async def _asend(conn: AsyncConnection[Any], batch: Sequence[_Stmt]) -> list[Any]:
    cursors = []
    for stmt in batch:
        cur = conn.cursor(binary=True)
        await cur.execute(stmt.sql, stmt.params, prepare=stmt.prepare)
        cursors.append(cur)
    return cursors


async def _aresults(cursors: list[Any]) -> list[Any]:
    return [await cur.fetchall() if cur.description is not None else cur.rowcount
            for cur in cursors]


def _finish(plan: _Plan, results: list[Any]) -> Any:
    try:
        plan.send(results)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("a store plan yielded after its last batch")


def _fence_clause(args: dict[str, Any], *, lock: bool = True) -> str:
    """` AND <the writer still holds its lease>` for a fenced put (else nothing)."""
    fence: Fence | None = args.get("fence")
    return f" AND {fence.condition(lock=lock)}" if fence is not None else ""


def _fence_checks(args: dict[str, Any]) -> list[_Stmt]:
    """For a fenced put, a statement reading whether its writer still holds its lease."""
    fence: Fence | None = args.get("fence")
    return [_Stmt(f"SELECT {fence.condition(lock=False)}", args)] if fence is not None else []


def _holds(results: list[Any]) -> bool:
    """What `_fence_checks` read (no statement: not fenced, so it holds)."""
    return bool(results[0][0][0]) if results else True


def with_fence(args: dict[str, Any]) -> dict[str, Any]:
    """Add this context's fence (if any) to a statement's arguments."""
    fence = current_fence()
    if fence is not None:
        args["fence"] = fence
        args.update(fence.params())
    return args


def _is_fork(parent_id: str | None, expected_head: str | None) -> bool:
    """A put on an existing head whose parent is another record: it needs the locked
    two-step transaction. (A new thread has no records, so its parent is never found.)"""
    return parent_id is not None and expected_head is not None and parent_id != expected_head
