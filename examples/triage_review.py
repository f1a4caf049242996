#!/usr/bin/env python
"""Seed 003's sampled review: every day a person spot-checks N of the tickets the model
handled alone, so a drifting model shows up as falling agreement, not as complaints.

    pick ──Send──► spot_check x N (approve(): agree, or give the right label) ──► summarize

``triage_confidence.py`` keeps every decision in the store under ``("triage",
"decisions")``, keyed by its thread, with its day (UTC). ``pick`` samples N of the day's
decisions made by the model (``decided_by == "model"``) that nobody has checked yet, with
a seeded random choice (the run's thread id unless the input gives ``seed``); each goes to
a person as its own approval (the approvals inbox shows them all at once); the answers
are kept under ``("triage", "reviews")`` with the same keys, and ``summarize`` reports the
agreement. The store is the simplest durable place to look: the triage runs' own threads
may be gone (a stateless run's thread is deleted after it), their store items are not.

Served as the assistant ``sample_review`` by ``waypoint serve --config
examples/triage_service/langgraph.json`` and run daily by a cron (see that folder's
README). Locally, on the decisions ``triage_confidence.py`` kept in ``.waypoint/triage.db``:

    python examples/triage_review.py --n 5            # asks you on the terminal
    python examples/triage_review.py --n 5 --day 2026-12-05
"""

from __future__ import annotations

import argparse
import operator
import os
import random
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from waypoint import END, START, Command, Send, StateGraph, approve, get_config, get_store

# Loaded by path by the server, or as examples.triage_review: either way the triage
# module sits next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from triage_confidence import DECISIONS, REVIEWS, TEAMS, Relabel, today


class ReviewState(TypedDict, total=False):
    n: int                 # how many to check (default 5)
    day: str               # YYYY-MM-DD (UTC); default: today
    seed: str              # for the sample; default: the run's thread id
    picked: list[dict]
    item: dict             # one spot_check's ticket (its Send payload)
    reviews: Annotated[list[dict], operator.add]
    reviewed: int
    agreed: int
    agreement: float | None


def _store() -> Any:
    store = get_store()
    if store is None:
        raise RuntimeError("sample_review reads the triage decisions from the store: compile "
                           "it with store=... (waypoint serve gives every graph one)")
    return store


def pick(state: ReviewState) -> dict:
    """N of the day's unchecked model decisions, sampled reproducibly."""
    store = _store()
    day = state.get("day") or today()
    decided = store.search(DECISIONS, filter={"day": day, "decided_by": "model"}, limit=10_000)
    checked = {item.key for item in store.search(REVIEWS, filter={"day": day}, limit=10_000)}
    candidates = sorted((i for i in decided if i.key not in checked), key=lambda i: i.key)
    seed = state.get("seed") or str(get_config()["configurable"].get("thread_id"))
    chosen = random.Random(f"{day}:{seed}").sample(
        candidates, min(max(0, int(state.get("n", 5))), len(candidates)))
    return {"day": day, "picked": [{"key": i.key, **i.value} for i in chosen]}


def fan_out(state: ReviewState) -> list[Send] | str:
    return [Send("spot_check", {"item": item}) for item in state["picked"]] or "summarize"


def spot_check(state: ReviewState) -> dict:
    """One ticket in front of a person; their answer is kept beside the decision."""
    item = state["item"]
    decision = approve({"kind": "spot_check", "ticket_id": item.get("ticket_id"),
                        "text": item["text"], "model_label": item["category"],
                        "confidence": item.get("confidence"),
                        "triage_thread": item.get("thread_id"),
                        "question": "approve if the model's label is right; edit with "
                                    "{\"category\": ...} if not"},
                       schema=Relabel, actions=("approve", "edit"))
    person = decision.edits.category if decision.action == "edit" else item["category"]
    review = {"key": item["key"], "ticket_id": item.get("ticket_id"),
              "model_category": item["category"], "person_category": person,
              "agree": person == item["category"], "by": decision.by, "day": item["day"],
              "at": time.time()}
    _store().put(REVIEWS, item["key"], review)
    return {"reviews": [review]}


def summarize(state: ReviewState) -> dict:
    reviews = state.get("reviews") or []
    agreed = sum(r["agree"] for r in reviews)
    return {"reviewed": len(reviews), "agreed": agreed,
            "agreement": agreed / len(reviews) if reviews else None}


def build_review_graph(checkpointer: Any = None, store: Any = None):
    builder = StateGraph(ReviewState)
    builder.add_node("pick", pick)
    builder.add_node("spot_check", spot_check)
    builder.add_node("summarize", summarize)
    builder.add_edge(START, "pick")
    builder.add_conditional_edges("pick", fan_out, ["spot_check", "summarize"])
    builder.add_edge("spot_check", "summarize")
    builder.add_edge("summarize", END)
    return builder.compile(checkpointer=checkpointer, store=store, name="sample_review")


def served_graph():
    """The `sample_review` assistant of examples/triage_service (no model needed)."""
    return build_review_graph()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5, help="tickets to check")
    parser.add_argument("--day", help="YYYY-MM-DD (UTC); default today")
    parser.add_argument("--db", default=".waypoint/triage.db")
    args = parser.parse_args(argv)
    from waypoint.checkpoint import SqliteSaver
    from waypoint.store import SqliteStore

    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    with SqliteSaver.from_conn_string(args.db) as saver, \
            SqliteStore.from_conn_string(args.db) as store:
        app = build_review_graph(saver, store)
        config = {"configurable": {"thread_id": f"review-{time.time_ns()}"}}
        out = app.invoke({"n": args.n, **({"day": args.day} if args.day else {})}, config)
        while pending := app.get_state(config).interrupts:
            request = pending[0].value["request"]
            print(f"\nticket: {request['text']}\nmodel's label: {request['model_label']} "
                  f"(confidence {request['confidence'] or 0:.2f})")
            answer = input("right category (Enter agrees): ").strip().lower()
            while answer and answer not in TEAMS:
                answer = input(f"one of {', '.join(TEAMS)}, or Enter: ").strip().lower()
            by = os.environ.get("USER")
            decision = ({"action": "edit", "edits": {"category": answer}, "by": by} if answer
                        else {"action": "approve", "by": by})
            out = app.invoke(Command(resume={pending[0].id: decision}), config)
    if not out.get("reviewed"):
        print(f"nothing to check: no unchecked decisions by the model on {out['day']}")
        return 0
    print(f"\n{out['agreed']}/{out['reviewed']} agreed with the model on {out['day']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
