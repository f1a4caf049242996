"""Small helpers the table modules share: times, ids, visibility, paging."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

# LangGraph's namespace for an assistant made from a graph, so that a graph's default
# assistant has the same id on waypoint as on the Agent Server.
GRAPH_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


def now() -> float:
    return time.time()


def iso(ts: float | None) -> str | None:
    """Epoch seconds as the Agent Server writes times (ISO 8601, UTC offset)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()


def epoch(value: Any) -> float | None:
    """An ISO 8601 string, datetime or number as epoch seconds (naive times are UTC)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    raise ValueError(f"expected a time (ISO 8601 string), got {value!r}")


def new_id() -> str:
    """A UUID version 7: time-ordered, so new rows land at the end of their index."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | (rand >> 64 & 0xFFF) << 64 \
        | 0b10 << 62 | (rand & 0x3FFFFFFFFFFFFFFF)
    return str(uuid.UUID(int=value))


def graph_assistant_id(graph_id: str) -> str:
    return str(uuid.uuid5(GRAPH_NAMESPACE, graph_id))


def visible(column: str, tenant: str | None) -> tuple[str, list[Any]]:
    """The WHERE part limiting rows to a tenant (None: an admin sees every tenant)."""
    if tenant is None:
        return "1 = 1", []
    return f"{column} = ?", [tenant]


def order_by(sort_by: str | None, sort_order: str | None, allowed: Sequence[str],
             default: str, tiebreak: str) -> str:
    """An ORDER BY clause from a column name checked against `allowed` (never raw input)."""
    column = sort_by if sort_by in allowed else default
    direction = "ASC" if (sort_order or "desc").lower() == "asc" else "DESC"
    return f" ORDER BY {column} {direction}, {tiebreak} {direction}"


def page(limit: int, offset: int) -> tuple[str, list[Any]]:
    return " LIMIT ? OFFSET ?", [int(limit), int(offset)]
