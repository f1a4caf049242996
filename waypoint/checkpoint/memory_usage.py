"""MemorySaver's usage ledger: checked rows in a list, summed in Python.

Rows keep the column layout of the SQL tables (usage_ledger.USAGE_COLUMNS) and are summed
by the same rules, so a MemorySaver answers exactly as SQLite and PostgreSQL do. The saver's
lock makes each call atomic. Nothing survives the process, as with its checkpoints.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from ..usage import UsageRecord
from .usage_ledger import (
    COLUMN,
    UsageGroup,
    UsageStore,
    check_before,
    check_filters,
    check_group_by,
    check_page,
    check_window,
    row_matches,
    sort_groups,
    total_rows,
    usage_from_row,
    usage_rows,
)

_AT = COLUMN["at"]


class MemoryUsage(UsageStore):
    """UsageStore for MemorySaver (which provides `_lock`)."""

    _lock: threading.RLock

    def _usage_rows(self) -> list[tuple[Any, ...]]:
        rows = self.__dict__.get("_usage_table")
        if rows is None:
            with self._lock:
                rows = self.__dict__.setdefault("_usage_table", [])
        return rows

    def put_usage(self, records: Sequence[UsageRecord]) -> None:
        rows = usage_rows(records)
        if not rows:
            return
        table = self._usage_rows()
        with self._lock:
            table.extend(rows)

    def _usage_matching(self, filters: dict[str, Any], since: Any,
                  until: Any) -> list[tuple[Any, ...]]:
        used = check_filters(filters)
        start, end = check_window(since, until)
        table = self._usage_rows()
        with self._lock:
            return [r for r in table if row_matches(r, used, start, end)]

    def usage_records(self, *, since: float | None = None, until: float | None = None,
                      limit: int = 1000, offset: int = 0,
                      **filters: str | None) -> list[UsageRecord]:
        limit, offset = check_page(limit, offset)
        rows = self._usage_matching(filters, since, until)
        # Newest first: by time, then the later insertion first (as the SQL stores' id).
        order = sorted(range(len(rows)), key=lambda i: (rows[i][_AT], i), reverse=True)
        return [usage_from_row(rows[i]) for i in order[offset:offset + limit]]

    def usage_totals(self, group_by: Sequence[str] = (), *, since: float | None = None,
                     until: float | None = None, **filters: str | None) -> list[UsageGroup]:
        dims = check_group_by(group_by)
        return sort_groups(total_rows(self._usage_matching(filters, since, until), dims), dims)

    def prune_usage(self, before: float) -> int:
        cutoff = check_before(before)
        table = self._usage_rows()
        with self._lock:
            kept = [r for r in table if r[_AT] >= cutoff]
            removed = len(table) - len(kept)
            table[:] = kept
        return removed

    # No I/O here: the async twins answer on the caller's loop.

    async def aput_usage(self, records: Sequence[UsageRecord]) -> None:
        self.put_usage(records)

    async def ausage_records(self, *, since: float | None = None, until: float | None = None,
                             limit: int = 1000, offset: int = 0,
                             **filters: str | None) -> list[UsageRecord]:
        return self.usage_records(since=since, until=until, limit=limit, offset=offset,
                                  **filters)

    async def ausage_totals(self, group_by: Sequence[str] = (), *, since: float | None = None,
                            until: float | None = None,
                            **filters: str | None) -> list[UsageGroup]:
        return self.usage_totals(group_by, since=since, until=until, **filters)

    async def aprune_usage(self, before: float) -> int:
        return self.prune_usage(before)
