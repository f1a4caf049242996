"""Graphs the server tests serve (`waypoint serve --config` loads this file by path)."""

from __future__ import annotations

import logging
import operator
import os
import signal
import time
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel, Field

from waypoint import (
    END,
    START,
    StateGraph,
    approve,
    effect,
    get_stream_writer,
    interrupt,
    sleep,
)
from waypoint.graph import MessagesState
from waypoint.models.scripted import ScriptedModel


class State(TypedDict, total=False):
    items: Annotated[list[str], operator.add]
    count: int
    delay: float
    side_file: str


def _a(state: State) -> dict[str, Any]:
    return {"items": ["a"], "count": state.get("count", 0) + 1}


def _b(state: State) -> dict[str, Any]:
    return {"items": ["b"]}


def _c(state: State) -> dict[str, Any]:
    return {"items": ["c"]}


def _chain() -> Any:
    builder = StateGraph(State)
    builder.add_sequence([("a", _a), ("b", _b), ("c", _c)])
    builder.add_edge(START, "a")
    builder.add_edge("c", END)
    return builder


three = _chain().compile()


def _ask(state: State) -> dict[str, Any]:
    answer = interrupt({"question": "ok?"})
    return {"items": [f"answer:{answer}"]}


_hitl = StateGraph(State)
_hitl.add_node("a", _a)
_hitl.add_node("ask", _ask)
_hitl.add_edge(START, "a")
_hitl.add_edge("a", "ask")
_hitl.add_edge("ask", END)
hitl = _hitl.compile()


def _boom(state: State) -> dict[str, Any]:
    logging.getLogger("server_graphs").warning("boom is about to fail")
    raise ValueError("kaboom")


_failing = StateGraph(State)
_failing.add_node("a", _a)
_failing.add_node("boom", _boom)
_failing.add_edge(START, "a")
_failing.add_edge("a", "boom")
boom = _failing.compile()


def _slow(state: State) -> dict[str, Any]:
    if state.get("side_file"):  # lets a test see the step has begun
        with open(state["side_file"], "a") as out:
            out.write("started\n")
    time.sleep(state.get("delay", 0.5))
    return {"items": ["slow"]}


# Two slow steps: long enough to be caught running, stopped, double-texted.
_slow_graph = StateGraph(State)
_slow_graph.add_node("first", _slow)
_slow_graph.add_node("second", _slow)
_slow_graph.add_edge(START, "first")
_slow_graph.add_edge("first", "second")
_slow_graph.add_edge("second", END)
slow = _slow_graph.compile()


def _charge(state: State) -> dict[str, Any]:
    """An effect (appends a line to a file), then a long step: a server killed during the
    step must not charge twice when the run is taken over."""
    def write(*, idempotency_key: str) -> str:
        with open(state["side_file"], "a") as out:
            out.write(f"charged {idempotency_key}\n")
        return idempotency_key

    key = effect("charge", write)
    return {"items": [f"charged:{key[:8]}"]}


def _wait_for_file(path: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.05)


def _wait_for_release(state: State) -> dict[str, Any]:
    _wait_for_file(state["side_file"] + ".release")
    return {"items": ["released"]}


_payment = StateGraph(State)
_payment.add_node("charge", _charge)
_payment.add_node("hold", _wait_for_release)
_payment.add_edge(START, "charge")
_payment.add_edge("charge", "hold")
_payment.add_edge("hold", END)
payment = _payment.compile()


def _hold_for_attempt(state: State, config: dict[str, Any]) -> dict[str, Any]:
    """Wait for a release file of this attempt: a test decides which attempt finishes the
    step first (a paused worker's, or the one that took the run over)."""
    attempt = config["metadata"]["run_attempt"]
    with open(state["side_file"], "a") as out:
        out.write(f"holding {attempt}\n")
    _wait_for_file(f"{state['side_file']}.release{attempt}")
    return {"items": [f"held-by-{attempt}"]}


_fenced = StateGraph(State)
_fenced.add_node("charge", _charge)
_fenced.add_node("hold", _hold_for_attempt)
_fenced.add_edge(START, "charge")
_fenced.add_edge("charge", "hold")
_fenced.add_edge("hold", END)
fenced = _fenced.compile()


def _store_drops(state: State, config: dict[str, Any]) -> dict[str, Any]:
    """Loses its database connection (as a commit during a PostgreSQL restart would) on the
    first `delay` attempts of its run, then works."""
    import psycopg

    attempt = config["metadata"]["run_attempt"]
    if attempt <= state.get("delay", 1):
        raise psycopg.OperationalError("consuming input failed: server closed the "
                                       "connection unexpectedly")
    return {"items": [f"stored-on-{attempt}"]}


_outage = StateGraph(State)
_outage.add_node("a", _a)
_outage.add_node("store", _store_drops)
_outage.add_edge(START, "a")
_outage.add_edge("a", "store")
_outage.add_edge("store", END)
outage = _outage.compile()


def _chat(state: MessagesState) -> dict[str, Any]:
    get_stream_writer()({"progress": "thinking"})
    model = ScriptedModel(["hello there friend"])
    return {"messages": [model.invoke(state["messages"])]}


_chat_graph = StateGraph(MessagesState)
_chat_graph.add_node("chat", _chat)
_chat_graph.add_edge(START, "chat")
_chat_graph.add_edge("chat", END)
chat = _chat_graph.compile()


def _review(state: State) -> dict[str, Any]:
    decision = approve({"publish": state.get("items", [])},
                       schema={"type": "object", "properties": {"title": {"type": "string"}},
                               "required": ["title"]},
                       actions=("approve", "reject", "edit"), assignee="editor")
    return {"items": [f"decision:{decision.action}"]}


_approval = StateGraph(State)
_approval.add_node("a", _a)
_approval.add_node("review", _review)
_approval.add_edge(START, "a")
_approval.add_edge("a", "review")
_approval.add_edge("review", END)
approval = _approval.compile()


_inner = _chain().compile(name="inner")
_outer = StateGraph(State)
_outer.add_node("start", _a)
_outer.add_node("inner", _inner)
_outer.add_edge(START, "start")
_outer.add_edge("start", "inner")
_outer.add_edge("inner", END)
nested = _outer.compile()


def _remember(state: State, *, store: Any) -> dict[str, Any]:
    """Reads what the API stored for the run's tenant, and leaves a note of its own."""
    found = store.get(("prefs", "user-1"), "colour")
    store.put(("notes",), "last-run", {"items": len(state.get("items", []))})
    return {"items": [f"colour:{found.value['name'] if found else None}"]}


_memory = StateGraph(State)
_memory.add_node("remember", _remember)
_memory.add_edge(START, "remember")
_memory.add_edge("remember", END)
memory = _memory.compile()


def _book(state: State) -> dict[str, Any]:
    return {"items": ["booked"]}


def _unbook(state: State) -> None:
    with open(state["side_file"], "a") as out:
        out.write("unbooked\n")


_trip = StateGraph(State)
_trip.add_node("book", _book, compensate=_unbook)
_trip.add_node("ask", _ask)
_trip.add_edge(START, "book")
_trip.add_edge("book", "ask")
_trip.add_edge("ask", END)
trip = _trip.compile()


def _nap(state: State) -> dict[str, Any]:
    sleep(state.get("delay", 0.5))  # a durable timer: the run stops, the server wakes it
    return {"items": ["woke"]}


_napper = StateGraph(State)
_napper.add_node("nap", _nap)
_napper.add_edge(START, "nap")
_napper.add_edge("nap", END)
napper = _napper.compile()


def _greet(state: State) -> dict[str, Any]:
    from waypoint import get_runtime

    context = get_runtime().context or {}
    return {"items": [f"hello {context.get('user', 'nobody')}"]}


_greeter = StateGraph(State)
_greeter.add_node("greet", _greet)
_greeter.add_edge(START, "greet")
_greeter.add_edge("greet", END)
greeter = _greeter  # a StateGraph builder: the server compiles it


def per_user(config: dict[str, Any]) -> Any:
    """A factory the server calls for every run with its config."""
    suffix = (config.get("configurable") or {}).get("suffix", "none")
    builder = StateGraph(State)
    builder.add_node("mark", lambda state: {"items": [f"built for {suffix}"]})
    builder.add_edge(START, "mark")
    builder.add_edge("mark", END)
    return builder.compile()


def _crash(state: State) -> dict[str, Any]:
    """Kills the process running it, every time: a poison run."""
    if state.get("side_file"):
        with open(state["side_file"], "a") as out:
            out.write("crashed\n")
    os.kill(os.getpid(), signal.SIGKILL)
    return {"items": ["never"]}


_crasher = StateGraph(State)
_crasher.add_node("crash", _crash)
_crasher.add_edge(START, "crash")
_crasher.add_edge("crash", END)
crasher = _crasher.compile()


def _priced_agent() -> Any:
    """A ReAct agent on a priced scripted model with a tool that has a cost estimate: one
    tool call, then an answer (two model calls and one tool call per run)."""
    from waypoint.models.pricing import PriceBook
    from waypoint.prebuilt import create_react_agent
    from waypoint.tools import tool

    @tool(cost_estimate=0.25)
    def lookup(city: str) -> str:
        """Look up the weather of a city."""
        return f"sunny in {city}"

    model = ScriptedModel([{"tool_calls": [{"name": "lookup", "args": {"city": "Oslo"}}]},
                           "It is sunny in Oslo."], cycle=True, model="scripted-priced",
                          prices=PriceBook({"scripted-priced": (1_000_000.0, 2_000_000.0)}))
    return create_react_agent(model, [lookup])


agent = _priced_agent()


# -- a pydantic state, for the state-update checks (served by tests/test_server_state_checks.py)


def _merge_tags(left: list[str], right: list[str] | str) -> list[str]:
    """A reducer whose update type is annotated: a tag or a list of tags."""
    return [*left, *([right] if isinstance(right, str) else right)]


class TypedState(BaseModel):
    items: Annotated[list[str], operator.add] = []
    count: int = 0
    score: float = Field(default=0.0, ge=0)
    tags: Annotated[list[str], _merge_tags] = []


def _typed_step(state: TypedState) -> dict[str, Any]:
    return {"items": ["t"], "count": state.count + 1}


_typed = StateGraph(TypedState)
_typed.add_node("t", _typed_step)
_typed.add_edge(START, "t")
_typed.add_edge("t", END)
typed = _typed.compile()


# A subgraph that pauses inside itself, for thread state with `subgraphs=true`.
_asking_outer = StateGraph(State)
_asking_outer.add_node("start", _a)
_asking_outer.add_node("inner", _hitl.compile(name="inner"))
_asking_outer.add_edge(START, "start")
_asking_outer.add_edge("start", "inner")
_asking_outer.add_edge("inner", END)
nested_ask = _asking_outer.compile()
