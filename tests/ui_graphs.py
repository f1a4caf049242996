"""Graphs the web UI tests serve (`tests/test_ui_browser.py`, `tests/ui_screenshots.py`).

`pipeline` has what every view of the UI shows: a typed state (so an edit can be refused
by the schema), a priced model call that streams tokens (costs per node and model), and an
approval with a JSON schema, an assignee and a deadline (the inbox). `flaky` fails once
and is retried (retries in the timeline). `research` is the
research-pipeline example on its scripted model, paused before `publish` for a person.
"""

from __future__ import annotations

import operator
import sys
from pathlib import Path
from typing import Annotated, Any, TypedDict

from waypoint import END, START, RetryPolicy, StateGraph, approve
from waypoint.messages import HumanMessage
from waypoint.models.pricing import PriceBook
from waypoint.models.scripted import ScriptedModel

REPO = Path(__file__).resolve().parent.parent


class Draft(TypedDict, total=False):
    topic: str
    count: int
    notes: Annotated[list[str], operator.add]
    draft: str
    title: str
    verdict: str


_writer = ScriptedModel(["Tides are steady, predictable and quietly powerful."], cycle=True,
                        model="scripted-writer",
                        prices=PriceBook({"scripted-writer": (2_000_000.0, 4_000_000.0)}))


def _plan(state: Draft) -> dict[str, Any]:
    count = state.get("count", 1)
    return {"notes": [f"plan {count} section(s) on {state.get('topic', 'tides')}"],
            "count": count}


def _write(state: Draft) -> dict[str, Any]:
    reply = _writer.invoke([HumanMessage(f"Write about {state.get('topic', 'tides')}")])
    return {"draft": reply.text, "notes": [f"wrote {state.get('count', 1)} section(s)"]}


def _review(state: Draft) -> dict[str, Any]:
    decision = approve({"draft": state.get("draft", ""), "topic": state.get("topic")},
                       schema={"type": "object", "required": ["title"],
                               "properties": {"title": {"type": "string", "minLength": 3,
                                                        "title": "Title"},
                                              "urgent": {"type": "boolean"}}},
                       actions=("approve", "reject", "edit"), assignee="editor",
                       deadline=3600)
    title = (decision.edits or {}).get("title") if decision.action == "edit" else None
    return {"verdict": decision.action, "title": title or f"On {state.get('topic')}"}


def _publish(state: Draft) -> dict[str, Any]:
    return {"notes": [f"published: {state.get('verdict')}"]}


_pipeline = StateGraph(Draft)
_pipeline.add_sequence([("plan", _plan), ("write", _write), ("review", _review),
                        ("publish", _publish)])
_pipeline.add_edge(START, "plan")
_pipeline.add_edge("publish", END)
pipeline = _pipeline.compile()


def _count(state: Draft) -> dict[str, Any]:
    return {"count": state.get("count", 0) + 1, "notes": ["counted"]}


def _double(state: Draft) -> dict[str, Any]:
    return {"count": state.get("count", 0) * 2, "notes": ["doubled"]}


_counter = StateGraph(Draft)
_counter.add_sequence([("count", _count), ("double", _double)])
_counter.add_edge(START, "count")
_counter.add_edge("double", END)
counter = _counter.compile()


_failed_once: set[str] = set()


def _fetch(state: Draft, config: dict[str, Any]) -> dict[str, Any]:
    """Fails on its first attempt in each thread (a retried, transient error)."""
    thread = config["configurable"]["thread_id"]
    if thread not in _failed_once:
        _failed_once.add(thread)
        raise ConnectionError("source unavailable, try again")
    return {"notes": ["fetched"]}


_flaky = StateGraph(Draft)
_flaky.add_node("fetch", _fetch, retry_policy=RetryPolicy(initial_interval=0.01, jitter=False,
                                                          retry_on=ConnectionError))
_flaky.add_edge(START, "fetch")
_flaky.add_edge("fetch", END)
flaky = _flaky.compile()


def research() -> Any:
    """examples/research_pipeline.py as shipped, on its scripted model, with its gate
    before `publish` (a factory with no argument: the server calls it once)."""
    sys.path.insert(0, str(REPO / "examples"))
    import research_pipeline

    return research_pipeline.build_graph(research_pipeline.scripted_model())
