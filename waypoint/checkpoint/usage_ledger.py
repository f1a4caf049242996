"""The durable usage ledger: what every model and tool call of every run used and cost.

The engine records one `waypoint.usage.UsageRecord` per call and writes a run's records with
its commits (`put_usage`). Every checkpointer keeps them (memory: a list; SQLite and
PostgreSQL: a `waypoint_usage` table) so spend can be read back after a restart, by run,
thread, node, model, tool, tenant, user, assistant or day. This module holds what the three
backends share: the row layout, the checks on names and values, the SQL of the two SQL
backends, and the ordering of totals, so all three answer the same question the same way.

Rules every backend follows:

- Rows hold ids and numbers only (no prompts or content), so they are not sealed or
  encrypted like checkpoint values.
- Usage is accounting: `delete_thread`, `sweep`, `prune` and `rewind` leave it in place
  (spend happened even if the thread is gone, or rewound). Only `prune_usage(before)`
  removes rows, by age. `copy_thread` copies none (a fork has spent nothing yet).
- `put_usage` writes a batch in one transaction and is never fenced (fencing.py): spend
  by a worker that lost its lease is still real spend.
- An unknown price is NULL, never 0: a group with one unpriced call has `cost_usd` None and
  counts it in `unpriced_calls`.
- `since` is inclusive, `until` exclusive (`since <= at < until`), epoch seconds.
- `usage_records` returns newest first (`at`, then insertion order, descending).
- `usage_totals` returns, when grouping by `day`, days in ascending order; within a day (or
  without `day`) groups of known cost by cost descending, then those of unknown cost; ties
  by calls descending, then by the key's values ascending (None last). With no `group_by`
  it returns exactly one group (the grand total), even over no rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..usage import OUTCOMES, USAGE_KINDS, Usage, UsageRecord

# -- names: the only column names and expressions that ever reach SQL --------------------

# What a group's key can name, and the SQL expression that gives it. `model` and `tool` are
# the one `name` column split by kind: a tool row has no model, a model row no tool.
DIMENSIONS: dict[str, str] = {
    "run_id": "run_id",
    "thread_id": "thread_id",
    "node": "node",
    "model": "CASE WHEN kind = 'model' THEN name END",
    "tool": "CASE WHEN kind = 'tool' THEN name END",
    "kind": "kind",
    "outcome": "outcome",
    "tenant": "tenant",
    "user_id": "user_id",
    "assistant_id": "assistant_id",
    "day": "day",  # the UTC date of `at`, "YYYY-MM-DD" (stored with the row)
}
GROUP_DIMS: tuple[str, ...] = tuple(DIMENSIONS)  # what usage_totals may group by
FILTERS: tuple[str, ...] = tuple(d for d in DIMENSIONS if d != "day")  # day: group only

# Column order of a row (memory keeps these tuples; SQL tables have these columns, after
# an `id` that keeps insertion order).
USAGE_COLUMNS = ("at", "day", "kind", "name", "input_tokens", "output_tokens", "cost_usd",
                 "latency_s", "cached", "outcome", "thread_id", "run_id", "node",
                 "checkpoint_ns", "tenant", "user_id", "assistant_id")
COLUMN = {name: i for i, name in enumerate(USAGE_COLUMNS)}

_MAX_AT = 253402300800.0  # 10000-01-01: a day must fit "YYYY-MM-DD"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class UsageGroup:
    """The totals of one group of calls: `key` holds the group's value of each dimension
    asked for (e.g. {"model": "gpt-x", "day": "2025-01-31"}; {} for the grand total)."""

    key: dict[str, Any] = field(hash=False)
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0  # None as soon as one call in the group had no price
    unpriced_calls: int = 0
    errors: int = 0  # calls whose outcome was "error"
    cached_calls: int = 0
    latency_s: float = 0.0  # summed over the group's calls

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_json(self) -> dict[str, Any]:
        """The group's key values and totals as one flat object (`GET /usage`, the CLI)."""
        return {**self.key, "calls": self.calls, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "total_tokens": self.total_tokens,
                "cost_usd": self.cost_usd, "unpriced_calls": self.unpriced_calls,
                "errors": self.errors, "cached_calls": self.cached_calls,
                "latency_s": round(self.latency_s, 6)}


def total_of(groups: Iterable[UsageGroup]) -> UsageGroup:
    """The grand total of some groups (their sums; cost unknown if any group's is)."""
    calls = inp = out = unpriced = errors = cached = 0
    cost: float | None = 0.0
    latency = 0.0
    for g in groups:
        calls += g.calls
        inp += g.input_tokens
        out += g.output_tokens
        unpriced += g.unpriced_calls
        errors += g.errors
        cached += g.cached_calls
        latency += g.latency_s
        cost = None if cost is None or g.cost_usd is None else cost + g.cost_usd
    return UsageGroup({}, calls, inp, out, cost, unpriced, errors, cached, latency)


# -- checking names and values ------------------------------------------------------------


def check_group_by(group_by: Any) -> tuple[str, ...]:
    """The dimensions to group by, each once, in the order given; a lone str is one name.
    ValueError names an unknown one and lists the valid ones."""
    if isinstance(group_by, str):
        group_by = (group_by,)
    if not isinstance(group_by, Iterable):
        raise ValueError(f"group_by must be a sequence of names, got {group_by!r}")
    dims: list[str] = []
    for name in group_by:
        if name not in DIMENSIONS:
            raise ValueError(f"unknown usage group_by dimension {name!r}; valid: "
                             f"{', '.join(DIMENSIONS)}")
        if name not in dims:
            dims.append(name)
    return tuple(dims)


def check_filters(filters: dict[str, Any]) -> dict[str, str]:
    """The filters that are set (None is ignored); ValueError names an unknown one and
    lists the valid ones, or a value that is not a str."""
    used: dict[str, str] = {}
    for name, value in filters.items():
        if name not in FILTERS:
            hint = " (day is for group_by only; filter days with since/until)" \
                if name == "day" else ""
            raise ValueError(f"unknown usage filter {name!r}{hint}; valid: "
                             f"{', '.join(FILTERS)}, since, until")
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"usage filter {name} must be a str or None, "
                             f"not {type(value).__name__}")
        used[name] = value
    return used


def check_window(since: Any, until: Any) -> tuple[float | None, float | None]:
    return _time(since, "since", optional=True), _time(until, "until", optional=True)


def check_page(limit: Any, offset: Any) -> tuple[int, int]:
    for value, argument in ((limit, "limit"), (offset, "offset")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{argument} must be an int >= 0, got {value!r}")
    return limit, offset


def check_before(before: Any) -> float:
    value = _time(before, "before")
    assert value is not None
    return value


def _time(value: Any, argument: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value)):
        raise ValueError(f"{argument} must be a finite number of epoch seconds, got {value!r}")
    return float(value)


def _number(value: Any, argument: str, *, integer: bool = False) -> Any:
    kinds = int if integer else (int, float)
    if (isinstance(value, bool) or not isinstance(value, kinds)
            or (not integer and not math.isfinite(value)) or value < 0):
        kind = "an int" if integer else "a finite number"
        raise ValueError(f"{argument} must be {kind} >= 0, got {value!r}")
    return value if integer else float(value)


def _text(value: Any, argument: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{argument} must be a str{' or None' if optional else ''}, "
                         f"not {type(value).__name__}")
    return value


def day_of(at: float) -> str:
    """The UTC date of epoch seconds `at`, "YYYY-MM-DD" (the `day` dimension)."""
    return (_EPOCH + dt.timedelta(seconds=math.floor(at))).date().isoformat()


def usage_to_row(record: Any, index: int = 0) -> tuple[Any, ...]:
    """The checked row of one record (USAGE_COLUMNS order); ValueError names the field."""
    where = f"records[{index}]"
    if not isinstance(record, UsageRecord):
        raise ValueError(f"{where} must be a UsageRecord, not {type(record).__name__}")
    r = record
    if r.kind not in USAGE_KINDS:
        raise ValueError(f"{where}.kind must be one of {', '.join(USAGE_KINDS)}; got {r.kind!r}")
    if r.outcome not in OUTCOMES:
        raise ValueError(f"{where}.outcome must be one of {', '.join(OUTCOMES)}; "
                         f"got {r.outcome!r}")
    if not isinstance(r.usage, Usage):
        raise ValueError(f"{where}.usage must be a Usage, not {type(r.usage).__name__}")
    at = _time(r.at, f"{where}.at")
    assert at is not None
    if not 0 <= at < _MAX_AT:
        raise ValueError(f"{where}.at must be epoch seconds between 1970 and 9999, got {at!r}")
    cost = None if r.cost_usd is None else _number(r.cost_usd, f"{where}.cost_usd")
    return (
        at, day_of(at), r.kind, _text(r.model, f"{where}.model", optional=False),
        _number(r.usage.input_tokens, f"{where}.usage.input_tokens", integer=True),
        _number(r.usage.output_tokens, f"{where}.usage.output_tokens", integer=True),
        cost, _number(r.latency_s, f"{where}.latency_s"), 1 if r.cached else 0, r.outcome,
        _text(r.thread_id, f"{where}.thread_id"), _text(r.run_id, f"{where}.run_id"),
        _text(r.node, f"{where}.node"),
        _text(r.checkpoint_ns, f"{where}.checkpoint_ns", optional=False),
        _text(r.tenant, f"{where}.tenant"), _text(r.user_id, f"{where}.user_id"),
        _text(r.assistant_id, f"{where}.assistant_id"),
    )


def usage_rows(records: Sequence[UsageRecord]) -> list[tuple[Any, ...]]:
    """Every record checked before any is written: a bad one fails the whole batch."""
    if isinstance(records, (str, bytes)) or not isinstance(records, Iterable):
        raise ValueError(f"records must be a sequence of UsageRecord, got {records!r}")
    return [usage_to_row(r, i) for i, r in enumerate(records)]


def usage_from_row(row: Sequence[Any]) -> UsageRecord:
    (at, _day, kind, name, input_tokens, output_tokens, cost, latency, cached, outcome,
     thread_id, run_id, node, checkpoint_ns, tenant, user_id, assistant_id) = row
    return UsageRecord(name, Usage(int(input_tokens), int(output_tokens)),
                       None if cost is None else float(cost), float(latency), thread_id,
                       run_id, node, bool(cached), float(at), kind, outcome, checkpoint_ns,
                       tenant, user_id, assistant_id)


# -- matching and totals in Python (MemorySaver) -----------------------------------------


def row_value(row: Sequence[Any], dim: str) -> Any:
    """A row's value of a dimension, as DIMENSIONS' SQL computes it."""
    if dim == "model":
        return row[COLUMN["name"]] if row[COLUMN["kind"]] == "model" else None
    if dim == "tool":
        return row[COLUMN["name"]] if row[COLUMN["kind"]] == "tool" else None
    return row[COLUMN[dim]]


def row_matches(row: Sequence[Any], filters: dict[str, str], since: float | None,
                until: float | None) -> bool:
    at = row[COLUMN["at"]]
    if (since is not None and at < since) or (until is not None and at >= until):
        return False
    return all(row_value(row, name) == value for name, value in filters.items())


def total_rows(rows: Iterable[Sequence[Any]], dims: tuple[str, ...]) -> list[UsageGroup]:
    """Group and sum rows as `total_sql` does (unordered; see sort_groups)."""
    sums: dict[tuple[Any, ...], list[Any]] = {}
    if not dims:
        sums[()] = [0, 0, 0, 0.0, 0, 0, 0, 0.0]
    for row in rows:
        key = tuple(row_value(row, d) for d in dims)
        acc = sums.setdefault(key, [0, 0, 0, 0.0, 0, 0, 0, 0.0])
        cost = row[COLUMN["cost_usd"]]
        acc[0] += 1
        acc[1] += row[COLUMN["input_tokens"]]
        acc[2] += row[COLUMN["output_tokens"]]
        if cost is None:
            acc[4] += 1
        else:
            acc[3] += cost
        acc[5] += row[COLUMN["outcome"]] == "error"
        acc[6] += row[COLUMN["cached"]]
        acc[7] += row[COLUMN["latency_s"]]
    return [UsageGroup(dict(zip(dims, key, strict=True)), calls, inp, out,
                       None if unpriced else cost, unpriced, errors, cached, latency)
            for key, (calls, inp, out, cost, unpriced, errors, cached, latency)
            in sums.items()]


def sort_groups(groups: list[UsageGroup], dims: tuple[str, ...]) -> list[UsageGroup]:
    """The documented order of usage_totals (the same for every backend)."""
    def order(group: UsageGroup) -> tuple[Any, ...]:
        day = group.key.get("day") or "" if "day" in dims else ""
        cost = group.cost_usd
        values = tuple((group.key[d] is None, group.key[d] or "") for d in dims)
        return (day, cost is None, -(cost or 0.0), -group.calls, values)

    return sorted(groups, key=order)


# -- SQL shared by SQLite ("?") and PostgreSQL ("%s") -------------------------------------

USAGE_INDEXES = (
    ("waypoint_usage_run", "run_id"),
    ("waypoint_usage_thread", "thread_id, at"),
    ("waypoint_usage_tenant", "tenant, at"),
    ("waypoint_usage_at", "at"),
)

_TOTALS = ("count(*), CAST(coalesce(sum(input_tokens), 0) AS BIGINT), "
           "CAST(coalesce(sum(output_tokens), 0) AS BIGINT), "
           "CASE WHEN count(cost_usd) = count(*) THEN coalesce(sum(cost_usd), 0.0) END, "
           "count(*) - count(cost_usd), "
           "CAST(coalesce(sum(CASE WHEN outcome = 'error' THEN 1 ELSE 0 END), 0) AS BIGINT), "
           "CAST(coalesce(sum(cached), 0) AS BIGINT), coalesce(sum(latency_s), 0.0)")


def insert_sql(table: str, mark: str) -> str:
    return (f"INSERT INTO {table} ({', '.join(USAGE_COLUMNS)}) VALUES "
            f"({', '.join(mark for _ in USAGE_COLUMNS)})")


def where_sql(filters: dict[str, str], since: float | None, until: float | None,
              mark: str) -> tuple[str, list[Any]]:
    """` WHERE ...` over checked filters (names from FILTERS only, values as parameters)."""
    terms: list[str] = []
    params: list[Any] = []
    for name, value in filters.items():
        if name in ("model", "tool"):
            terms.append(f"kind = '{name}' AND name = {mark}")
        else:
            terms.append(f"{DIMENSIONS[name]} = {mark}")
        params.append(value)
    if since is not None:
        terms.append(f"at >= {mark}")
        params.append(since)
    if until is not None:
        terms.append(f"at < {mark}")
        params.append(until)
    return (" WHERE " + " AND ".join(terms) if terms else ""), params


def records_sql(table: str, filters: dict[str, str], since: float | None,
                until: float | None, limit: int, offset: int,
                mark: str) -> tuple[str, list[Any]]:
    where, params = where_sql(filters, since, until, mark)
    return (f"SELECT {', '.join(USAGE_COLUMNS)} FROM {table}{where} "
            f"ORDER BY at DESC, id DESC LIMIT {mark} OFFSET {mark}", [*params, limit, offset])


def totals_sql(table: str, dims: tuple[str, ...], filters: dict[str, str],
               since: float | None, until: float | None, mark: str) -> tuple[str, list[Any]]:
    """One row per group: the dims' values, then the sums in UsageGroup's field order."""
    where, params = where_sql(filters, since, until, mark)
    select = ", ".join([*(DIMENSIONS[d] for d in dims), _TOTALS])
    group = (" GROUP BY " + ", ".join(str(i + 1) for i in range(len(dims)))) if dims else ""
    return f"SELECT {select} FROM {table}{where}{group}", params


def groups_from_rows(rows: Iterable[Sequence[Any]], dims: tuple[str, ...]) -> list[UsageGroup]:
    groups = []
    n = len(dims)
    for row in rows:
        calls, inp, out, cost, unpriced, errors, cached, latency = row[n:]
        groups.append(UsageGroup(dict(zip(dims, row[:n], strict=True)), int(calls), int(inp),
                                 int(out), None if cost is None else float(cost),
                                 int(unpriced), int(errors), int(cached), float(latency)))
    return sort_groups(groups, dims)


def prune_sql(table: str, mark: str) -> str:
    return f"DELETE FROM {table} WHERE at < {mark}"


# -- the contract -------------------------------------------------------------------------


class UsageStore:
    """The usage ledger: the methods every checkpointer provides (see the module notes).

    The async twins default to the sync method in a worker thread; a backend with real
    async I/O overrides them.
    """

    def put_usage(self, records: Sequence[UsageRecord]) -> None:
        """Append `records` in one transaction (none if any is invalid; 0 is a no-op)."""
        raise NotImplementedError

    def usage_records(self, *, since: float | None = None, until: float | None = None,
                      limit: int = 1000, offset: int = 0,
                      **filters: str | None) -> list[UsageRecord]:
        """Matching records, newest first; filters are FILTERS' names (None: any)."""
        raise NotImplementedError

    def usage_totals(self, group_by: Sequence[str] = (), *, since: float | None = None,
                     until: float | None = None, **filters: str | None) -> list[UsageGroup]:
        """Sums per group of DIMENSIONS' values, in the order the module notes give."""
        raise NotImplementedError

    def prune_usage(self, before: float) -> int:
        """Delete the records of calls made before `before`; how many went."""
        raise NotImplementedError

    async def aput_usage(self, records: Sequence[UsageRecord]) -> None:
        await asyncio.to_thread(self.put_usage, records)

    async def ausage_records(self, *, since: float | None = None, until: float | None = None,
                             limit: int = 1000, offset: int = 0,
                             **filters: str | None) -> list[UsageRecord]:
        return await asyncio.to_thread(lambda: self.usage_records(
            since=since, until=until, limit=limit, offset=offset, **filters))

    async def ausage_totals(self, group_by: Sequence[str] = (), *, since: float | None = None,
                            until: float | None = None,
                            **filters: str | None) -> list[UsageGroup]:
        return await asyncio.to_thread(lambda: self.usage_totals(
            group_by, since=since, until=until, **filters))

    async def aprune_usage(self, before: float) -> int:
        return await asyncio.to_thread(self.prune_usage, before)
