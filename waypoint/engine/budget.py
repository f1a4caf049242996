"""Budgets at run time: what a run has spent, what in-flight calls may still spend.

One guard per run (nested graphs share their parent's). Before a model call it reserves
the call's worst case — one call, its prompt plus `max_tokens`, their price — under a
lock, so parallel branches see each other's reservations and cannot overshoot together.
When the call ends the reservation becomes the call's actual usage. Reservations a task
still holds when it ends (a failed call) are released then. What was spent is written
into every checkpoint's metadata ("budget"), so a resumed or restarted run continues
from it; a budget a person raised stays raised for the rest of the run.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from dataclasses import asdict, replace
from typing import Any

from ..errors import BudgetExceeded
from ..types import BUDGET_LIMITS, Budget, Interrupt

# What each limit is measured against in the spent dict.
MEASURE = {"max_steps": "steps", "max_model_calls": "model_calls", "max_tokens": "tokens",
           "max_cost_usd": "cost_usd", "max_seconds": "seconds"}
DEFAULT_WORST_OUTPUT = 4096  # output tokens assumed when a call sets no max_tokens
BUDGET_TASK = "__budget__"  # pending-writes owner of a pause between steps
SPENT = "__spent__"  # its channel holding what an unfinished step had spent


def zero() -> dict[str, float]:
    return {"steps": 0, "model_calls": 0, "tokens": 0, "cost_usd": 0.0, "seconds": 0.0}


class Exceeded(Exception):
    """Internal: which limit a check hit, with the figures for the message or question."""

    def __init__(self, limit: str, allowed: float, spent: float, needed: float) -> None:
        super().__init__(limit)
        self.limit, self.allowed, self.spent, self.needed = limit, allowed, spent, needed


class BudgetGuard:
    """Spent and reserved amounts of one run under one budget; thread-safe."""

    def __init__(self, budget: Budget, run: dict[str, float] | None = None,
                 thread: dict[str, float] | None = None) -> None:
        self.budget = budget
        self.run = {**zero(), **(run or {})}
        self.thread = {**zero(), **(thread or {})}
        self.reserved = zero()
        self.raised = False  # a person raised the limits during this run
        self._held: dict[int, tuple[str, dict[str, float]]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._clock = time.monotonic()

    # -- bookkeeping ---------------------------------------------------------------------

    def _scope(self) -> dict[str, float]:
        return self.thread if self.budget.scope == "thread" else self.run

    def tick(self) -> None:
        """Add the running time since the last tick (paused time is never counted)."""
        with self._lock:
            now = time.monotonic()
            elapsed, self._clock = now - self._clock, now
            self.run["seconds"] += elapsed
            self.thread["seconds"] += elapsed

    def step_done(self) -> None:
        with self._lock:
            self.run["steps"] += 1
            self.thread["steps"] += 1

    def snapshot(self) -> dict[str, Any]:
        """For checkpoint metadata: spent per run and per thread, and raised limits."""
        data: dict[str, Any] = {"run": dict(self.run), "thread": dict(self.thread)}
        if self.raised:
            data["limits"] = asdict(self.budget)
        return data

    # -- checks --------------------------------------------------------------------------

    def check_step(self) -> None:
        """Before a super-step: steps and seconds."""
        self.tick()
        spent = self._scope()
        for limit in ("max_steps", "max_seconds"):
            allowed = getattr(self.budget, limit)
            if allowed is not None and spent[MEASURE[limit]] >= allowed:
                raise Exceeded(limit, allowed, spent[MEASURE[limit]], 0)

    def reserve(self, task_id: str, tokens: int, cost: float | None, *,
                model_call: bool = True) -> int:
        """Hold a call's worst case; raises Exceeded when it does not fit. A tool call
        (`model_call=False`) holds only its estimated cost."""
        budget = self.budget
        if cost is None and budget.max_cost_usd is not None:
            raise Exceeded("max_cost_usd", budget.max_cost_usd, self._scope()["cost_usd"],
                           float("inf"))
        need = {"model_calls": int(model_call), "tokens": tokens, "cost_usd": cost or 0.0}
        with self._lock:
            spent = self._scope()
            for limit in ("max_model_calls", "max_tokens", "max_cost_usd"):
                allowed = getattr(budget, limit)
                measure = MEASURE[limit]
                if allowed is None:
                    continue
                used = spent[measure] + self.reserved[measure]
                if used + need[measure] > allowed + 1e-12:
                    raise Exceeded(limit, allowed, used, need[measure])
            for measure, amount in need.items():
                self.reserved[measure] += amount
            ticket = next(self._ids)
            self._held[ticket] = (task_id, need)
            return ticket

    def settle(self, ticket: int | None, tokens: int, cost: float | None, *,
               model_call: bool = True) -> None:
        """A call finished: its reservation becomes what it actually used."""
        with self._lock:
            held = self._held.pop(ticket, None) if ticket is not None else None
            if held is not None:
                for measure, amount in held[1].items():
                    self.reserved[measure] -= amount
            for spent in (self.run, self.thread):
                spent["model_calls"] += int(model_call)
                spent["tokens"] += tokens
                spent["cost_usd"] += cost or 0.0

    def release_task(self, task_id: str) -> None:
        """Free what a finished task still holds (its failed calls)."""
        with self._lock:
            for ticket, (owner, need) in list(self._held.items()):
                if owner == task_id:
                    del self._held[ticket]
                    for measure, amount in need.items():
                        self.reserved[measure] -= amount

    def raise_to(self, changes: dict[str, Any]) -> None:
        unknown = set(changes) - set(BUDGET_LIMITS)
        if unknown:
            raise ValueError(f"unknown budget limit(s) {sorted(unknown)} (known: "
                             f"{', '.join(BUDGET_LIMITS)})")
        self.budget = replace(self.budget, **changes)
        self.raised = True


# -- questions and answers ------------------------------------------------------------------


def budget_question(exceeded: Exceeded, guard: BudgetGuard, owner: str) -> Interrupt:
    """The interrupt a person sees when a budget is reached."""
    allowed = exceeded.allowed
    payload = {
        "kind": "budget", "limit": exceeded.limit, "allowed": allowed,
        "spent": exceeded.spent, "needed": exceeded.needed,
        "spent_so_far": dict(guard._scope()), "scope": guard.budget.scope,
        "question": f"the run reached its budget {exceeded.limit}={allowed:g}; answer "
                    f"{{'action': 'raise', 'budget': {{'{exceeded.limit}': ...}}}} to "
                    f"continue, or 'stop' to end the run",
    }
    raw = f"budget|{owner}|{exceeded.limit}|{allowed}".encode()
    return Interrupt(payload, hashlib.blake2b(raw, digest_size=16).hexdigest())


def exceeded_error(exceeded: Exceeded) -> BudgetExceeded:
    return BudgetExceeded(exceeded.limit, exceeded.allowed, exceeded.spent, exceeded.needed)


def is_budget_question(item: Any) -> bool:
    value = getattr(item, "value", None)
    return isinstance(value, dict) and value.get("kind") == "budget"


def apply_answer(guard: BudgetGuard, answer: Any, question: Any) -> BudgetExceeded | None:
    """Raise the budget as answered; a BudgetExceeded to end the run when told to stop."""
    if isinstance(answer, Budget):
        guard.budget = answer
        guard.raised = True
        return None
    if isinstance(answer, str):
        answer = {"action": answer}
    if not isinstance(answer, dict) or answer.get("action") not in ("raise", "stop"):
        from ..errors import InvalidResumeError

        raise InvalidResumeError(
            f"a budget question is answered with {{'action': 'raise', 'budget': {{...}}}} or "
            f"'stop', got {answer!r}"
        )
    info = getattr(question, "value", {}) or {}
    if answer["action"] == "stop":
        return BudgetExceeded(info.get("limit", "budget"), info.get("allowed", 0),
                              info.get("spent", 0), stopped=True)
    changes = answer.get("budget") or {}
    if isinstance(changes, Budget):
        changes = changes.limits()
    guard.raise_to(dict(changes))
    return None


def open_guard(stored: dict[str, Any], explicit: Budget | None, default: Budget | None,
               new_run: bool) -> BudgetGuard | None:
    """A run's guard: its budget (the call's, else the graph's, else one a person raised
    earlier in this run) and what the thread's checkpoints say was spent (`stored`)."""
    budget = explicit or default
    raised = stored.get("limits") if not new_run and explicit is None else None
    if raised:
        budget = Budget(**raised)
    if budget is None:
        return None
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a waypoint Budget, got {type(budget).__name__}")
    guard = BudgetGuard(budget, None if new_run else stored.get("run"), stored.get("thread"))
    guard.raised = bool(raised)
    return guard
