"""Fencing tokens: a commit that counts only while its writer still holds its lease.

A worker that stalls (a long GC pause, a network partition) may lose its lease while it
still believes it runs the thread; another worker takes the run over. Checking the lease
before committing is not enough (it can lapse right after the check), so the check goes
inside the commit: the store refuses the write in the same statement that would move the
head, unless a row elsewhere in the same database still names this writer's epoch.

The orchestrator (the service's run queue) owns that row; the store knows it only as a
table, a key and an epoch column, given by `fenced()` around the code that runs the graph.
A contextvar carries it, so every commit made on the writer's behalf (checkpoints, task
writes, effect claims) is fenced without threading it through the engine.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from ..errors import FencedOut

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class Fence:
    """Commits are allowed while `table` has a row with `key_column = key` and
    `epoch_column = epoch` (and, if given, `state_column = state`)."""

    table: str
    key_column: str
    key: str
    epoch_column: str
    epoch: int
    state_column: str | None = None
    state: str | None = None

    def __post_init__(self) -> None:
        for name in (self.table, self.key_column, self.epoch_column, self.state_column):
            if name is not None and not _IDENTIFIER.match(name):
                raise ValueError(f"fence: {name!r} is not a plain SQL identifier")
        if (self.state_column is None) != (self.state is None):
            raise ValueError("fence: state_column and state go together")

    def __str__(self) -> str:
        return f"{self.table}.{self.key_column}={self.key} {self.epoch_column}={self.epoch}"

    def condition(self, *, lock: bool) -> str:
        """A PostgreSQL boolean expression over the named parameters of `params()`;
        `lock` holds the row (FOR SHARE) until the commit, so a takeover that changes it
        waits for this commit, or this commit sees the takeover and writes nothing."""
        where = f'"{self.key_column}" = %(fence_key)s AND "{self.epoch_column}" = %(fence_epoch)s'
        if self.state_column is not None:
            where += f' AND "{self.state_column}" = %(fence_state)s'
        return (f'EXISTS (SELECT 1 FROM "{self.table}" WHERE {where}'
                + (" FOR SHARE)" if lock else ")"))

    def sqlite_query(self) -> tuple[str, tuple[object, ...]]:
        """The same check for SQLite, whose write transactions are serial: run inside the
        writing transaction, it cannot race a takeover."""
        where = f'"{self.key_column}" = ? AND "{self.epoch_column}" = ?'
        args: tuple[object, ...] = (self.key, self.epoch)
        if self.state_column is not None:
            where += f' AND "{self.state_column}" = ?'
            args += (self.state,)
        return f'SELECT 1 FROM "{self.table}" WHERE {where}', args

    def params(self) -> dict[str, object]:
        return {"fence_key": self.key, "fence_epoch": self.epoch, "fence_state": self.state}


_current: ContextVar[Fence | None] = ContextVar("waypoint_fence", default=None)


def current_fence() -> Fence | None:
    """The fence of the writer running in this context, if any."""
    return _current.get()


def check_sqlite(conn: Any, fence: Fence | None, thread_id: str) -> None:
    """Raise FencedOut inside a SQLite write transaction unless `fence` still holds."""
    if fence is None:
        return
    sql, args = fence.sqlite_query()
    if conn.execute(sql, args).fetchone() is None:
        raise FencedOut(thread_id, fence)


@contextlib.contextmanager
def fenced(fence: Fence | None) -> Iterator[None]:
    """Fence every commit made in this context (and the tasks it starts) with `fence`."""
    token = _current.set(fence)
    try:
        yield
    finally:
        _current.reset(token)
