"""Token usage and its cost, recorded per call and summed per run, thread, node or model.

Lives below the engine and the models so both can read it: the models write a record per
call, budgets read the totals. An unknown price is `None`, never 0: a total that includes
a call of unknown price has an unknown cost, and says how many calls were unpriced.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one model call."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens)

    def as_metadata(self) -> dict[str, int]:
        """LangChain's `usage_metadata` shape, for messages."""
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "total_tokens": self.total_tokens}


USAGE_KINDS = ("model", "tool")
OUTCOMES = ("ok", "error")


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One model or tool call: who made it, what it used, what it cost (None: price
    unknown), how long it took and whether it worked. `model` names the model, or the
    tool when `kind` is "tool" (a tool's cost is its `cost_estimate`)."""

    model: str
    usage: Usage
    cost_usd: float | None
    latency_s: float = 0.0
    thread_id: str | None = None
    run_id: str | None = None
    node: str | None = None
    cached: bool = False
    at: float = field(default_factory=time.time)
    kind: str = "model"
    outcome: str = "ok"
    checkpoint_ns: str = ""
    tenant: str | None = None
    user_id: str | None = None
    assistant_id: str | None = None


@dataclass(frozen=True, slots=True)
class UsageTotal:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0  # None as soon as one call had no known price
    unpriced_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class UsageLedger:
    """Every model call of a process (or of one gateway), filterable by run, thread, node."""

    def __init__(self) -> None:
        self._records: list[UsageRecord] = []
        self._lock = threading.Lock()

    def record(self, record: UsageRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self, *, run_id: str | None = None, thread_id: str | None = None,
                node: str | None = None, model: str | None = None) -> list[UsageRecord]:
        with self._lock:
            items = list(self._records)
        return [r for r in items
                if (run_id is None or r.run_id == run_id)
                and (thread_id is None or r.thread_id == thread_id)
                and (node is None or r.node == node)
                and (model is None or r.model == model)]

    def total(self, *, run_id: str | None = None, thread_id: str | None = None,
              node: str | None = None, model: str | None = None) -> UsageTotal:
        calls = inp = out = unpriced = 0
        cost = 0.0
        for r in self.records(run_id=run_id, thread_id=thread_id, node=node, model=model):
            calls += 1
            inp += r.usage.input_tokens
            out += r.usage.output_tokens
            if r.cost_usd is None:
                unpriced += 1
            else:
                cost += r.cost_usd
        return UsageTotal(calls, inp, out, None if unpriced else cost, unpriced)

    def by_node(self, *, run_id: str | None = None,
                thread_id: str | None = None) -> dict[str | None, UsageTotal]:
        nodes = dict.fromkeys(r.node for r in self.records(run_id=run_id, thread_id=thread_id))
        return {n: self.total(run_id=run_id, thread_id=thread_id, node=n) for n in nodes}

    def __iter__(self) -> Iterator[UsageRecord]:
        return iter(self.records())

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_moment(value: str, *, now: float | None = None) -> float:
    """Epoch seconds from a time bound of a usage query: "7d" / "24h" / "30m" (that long
    ago), epoch seconds, or an ISO 8601 date or time (UTC when it names no offset).
    ValueError says which forms are accepted."""
    text = value.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([mhdw])", text)
    if match:
        return (time.time() if now is None else now) - float(match.group(1)) * _UNITS[
            match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a duration (7d, 24h, 30m), an ISO 8601 date or "
                         f"time, or epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
