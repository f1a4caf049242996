"""SqliteSaver's usage ledger: the `waypoint_usage` table beside the checkpoints.

A batch is written through the saver's group writer (sqlite_group.py), so it shares the
transaction and the fsync of the commits arriving with it (the engine writes usage right
after a step's checkpoint) instead of paying for a commit of its own; it is still atomic
(its own savepoint) and never fenced. Reads and prunes are plain statements; the async
twins run them in a worker thread (a report may scan many rows), while `aput_usage` joins
the group writer's batches without a thread hand-off.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ..usage import UsageRecord
from .sqlite_group import GroupWriter
from .usage_ledger import (
    USAGE_INDEXES,
    UsageGroup,
    UsageStore,
    check_before,
    check_filters,
    check_group_by,
    check_page,
    check_window,
    groups_from_rows,
    insert_sql,
    prune_sql,
    records_sql,
    totals_sql,
    usage_from_row,
    usage_rows,
)

_TABLE = "waypoint_usage"

# Schema migration 5 (sqlite.py's _MIGRATIONS): statements split on ";".
USAGE_TABLE = f"""
    CREATE TABLE {_TABLE} (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        day TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_usd REAL,
        latency_s REAL NOT NULL,
        cached INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        thread_id TEXT,
        run_id TEXT,
        node TEXT,
        checkpoint_ns TEXT NOT NULL,
        tenant TEXT,
        user_id TEXT,
        assistant_id TEXT
    );
""" + ";\n".join(f"CREATE INDEX {name} ON {_TABLE} ({columns})"
                 for name, columns in USAGE_INDEXES)

_INSERT = insert_sql(_TABLE, "?")
_PRUNE = prune_sql(_TABLE, "?")


class SqliteUsage(UsageStore):
    """UsageStore for SqliteSaver (which provides _ensure, _group and _reading)."""

    _group: GroupWriter

    def _ensure(self) -> None:  # provided by SqliteSaver
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[sqlite3.Connection]:  # from SqliteSaver
        raise NotImplementedError

    def _usage_query(self, query: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
        with self._reading() as conn:
            return conn.execute(query, tuple(params)).fetchall()

    def _usage_write(self, records: Sequence[UsageRecord]
                     ) -> Callable[[sqlite3.Connection], None] | None:
        rows = usage_rows(records)  # checked before the transaction: all or nothing
        if not rows:
            return None
        self._ensure()

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT, rows)

        return write

    def put_usage(self, records: Sequence[UsageRecord]) -> None:
        write = self._usage_write(records)
        if write is not None:
            self._group.run(write)

    async def aput_usage(self, records: Sequence[UsageRecord]) -> None:
        write = self._usage_write(records)
        if write is not None:
            await self._group.arun(write)

    def usage_records(self, *, since: float | None = None, until: float | None = None,
                      limit: int = 1000, offset: int = 0,
                      **filters: str | None) -> list[UsageRecord]:
        limit, offset = check_page(limit, offset)
        start, end = check_window(since, until)
        query, params = records_sql(_TABLE, check_filters(filters), start, end, limit,
                                    offset, "?")
        return [usage_from_row(r) for r in self._usage_query(query, params)]

    def usage_totals(self, group_by: Sequence[str] = (), *, since: float | None = None,
                     until: float | None = None, **filters: str | None) -> list[UsageGroup]:
        dims = check_group_by(group_by)
        start, end = check_window(since, until)
        query, params = totals_sql(_TABLE, dims, check_filters(filters), start, end, "?")
        return groups_from_rows(self._usage_query(query, params), dims)

    def prune_usage(self, before: float) -> int:
        cutoff = check_before(before)
        self._ensure()
        return self._group.run(lambda conn: conn.execute(_PRUNE, (cutoff,)).rowcount)

    async def aprune_usage(self, before: float) -> int:
        cutoff = check_before(before)
        self._ensure()
        return await self._group.arun(lambda conn: conn.execute(_PRUNE, (cutoff,)).rowcount)

    async def ausage_records(self, *, since: float | None = None, until: float | None = None,
                             limit: int = 1000, offset: int = 0,
                             **filters: str | None) -> list[UsageRecord]:
        check_page(limit, offset)  # bad input fails before the hand-off
        check_window(since, until)
        check_filters(filters)
        return await asyncio.to_thread(lambda: self.usage_records(
            since=since, until=until, limit=limit, offset=offset, **filters))

    async def ausage_totals(self, group_by: Sequence[str] = (), *, since: float | None = None,
                            until: float | None = None,
                            **filters: str | None) -> list[UsageGroup]:
        check_group_by(group_by)
        check_window(since, until)
        check_filters(filters)
        return await asyncio.to_thread(lambda: self.usage_totals(
            group_by, since=since, until=until, **filters))
