"""astream_events(version="v2"): chain start/end per node, chat model token events.

Expectations follow LangGraph 1.2 + LangChain chat model semantics. Token splitting of
ScriptedChatModel is not specified, so tests compare the concatenated tokens.
"""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, TypedDict

from waypoint import END, START, Command, MessagesState, StateGraph, interrupt
from waypoint.checkpoint import MemorySaver
from waypoint.models import ScriptedChatModel


class State(TypedDict):
    log: Annotated[list, operator.add]
    route: str


def cfg() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def routed_graph():
    """first -> (route) -> left | right -> last"""

    def first(state: State):
        return {"log": ["first"]}

    async def left(state: State):
        return {"log": ["left"]}

    def right(state: State):
        return {"log": ["right"]}

    def last(state: State):
        return {"log": ["last"]}

    g = StateGraph(State)
    g.add_node("first", first)
    g.add_node("left", left)
    g.add_node("right", right)
    g.add_node("last", last)
    g.add_edge(START, "first")
    g.add_conditional_edges("first", lambda s: s["route"], ["left", "right"])
    g.add_edge("left", "last")
    g.add_edge("right", "last")
    g.add_edge("last", END)
    return g.compile(checkpointer=MemorySaver())


def chat_graph(responses, *, use_async: bool = True):
    model = ScriptedChatModel(responses=responses)

    def prepare(state: MessagesState):
        return {}

    async def achat(state: MessagesState):
        return {"messages": [await model.ainvoke(state["messages"])]}

    def chat(state: MessagesState):
        return {"messages": [model.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("prepare", prepare)
    g.add_node("chat", achat if use_async else chat)
    g.add_edge(START, "prepare")
    g.add_edge("prepare", "chat")
    g.add_edge("chat", END)
    return g.compile(checkpointer=MemorySaver())


async def collect(app, inp, config) -> list[dict]:
    return [ev async for ev in app.astream_events(inp, config, version="v2")]


def _names(events, kind: str) -> list[str]:
    return [ev["name"] for ev in events if ev["event"] == kind]


# ------------------------------------------------ chain events


async def test_chain_start_and_end_for_every_node_that_ran():
    app = routed_graph()
    events = await collect(app, {"log": [], "route": "left"}, cfg())
    starts = _names(events, "on_chain_start")
    ends = _names(events, "on_chain_end")
    for node in ("first", "left", "last"):
        assert starts.count(node) == 1, starts
        assert ends.count(node) == 1, ends
    # the branch that was not taken has no events
    assert "right" not in starts
    assert "right" not in ends


async def test_node_events_are_ordered():
    app = routed_graph()
    events = await collect(app, {"log": [], "route": "right"}, cfg())
    idx = {}
    for i, ev in enumerate(events):
        if ev["event"] in ("on_chain_start", "on_chain_end"):
            idx.setdefault((ev["event"], ev["name"]), i)
    for node in ("first", "right", "last"):
        assert idx[("on_chain_start", node)] < idx[("on_chain_end", node)]
    assert idx[("on_chain_end", "first")] < idx[("on_chain_start", "right")]
    assert idx[("on_chain_end", "right")] < idx[("on_chain_start", "last")]


async def test_root_graph_events_wrap_the_run():
    app = routed_graph()
    events = await collect(app, {"log": [], "route": "left"}, cfg())
    assert events[0]["event"] == "on_chain_start"
    assert events[-1]["event"] == "on_chain_end"
    assert events[0]["run_id"] == events[-1]["run_id"]
    assert events[-1]["data"]["output"] == {"log": ["first", "left", "last"], "route": "left"}


async def test_node_chain_end_carries_node_output():
    app = routed_graph()
    events = await collect(app, {"log": [], "route": "left"}, cfg())
    (end_first,) = [e for e in events if e["event"] == "on_chain_end" and e["name"] == "first"]
    assert end_first["data"]["output"] == {"log": ["first"]}
    assert end_first["metadata"]["langgraph_node"] == "first"


async def test_every_event_has_common_keys():
    app = routed_graph()
    events = await collect(app, {"log": [], "route": "left"}, cfg())
    for ev in events:
        assert {"event", "name", "run_id", "data", "metadata"} <= set(ev)


async def test_events_stop_at_interrupt_and_continue_on_resume():
    def ask(state: State):
        return {"log": [interrupt("q")]}

    g = StateGraph(State)
    g.add_node("pre", lambda s: {"log": ["pre"]})
    g.add_node("ask", ask)
    g.add_node("post", lambda s: {"log": ["post"]})
    g.add_edge(START, "pre")
    g.add_edge("pre", "ask")
    g.add_edge("ask", "post")
    g.add_edge("post", END)
    app = g.compile(checkpointer=MemorySaver())
    config = cfg()

    first = await collect(app, {"log": [], "route": ""}, config)
    assert "pre" in _names(first, "on_chain_end")
    assert "post" not in _names(first, "on_chain_start")
    assert (await app.aget_state(config)).next == ("ask",)

    second = await collect(app, Command(resume="yes"), config)
    assert "ask" in _names(second, "on_chain_end")
    assert "post" in _names(second, "on_chain_end")
    assert "pre" not in _names(second, "on_chain_start")
    assert (await app.aget_state(config)).values["log"] == ["pre", "yes", "post"]


# ------------------------------------------------ chat model events


async def test_chat_model_stream_events_carry_tokens_in_order():
    app = chat_graph(["the quick brown fox"])
    events = await collect(app, {"messages": [("user", "hi")]}, cfg())
    stream = [e for e in events if e["event"] == "on_chat_model_stream"]
    assert len(stream) > 1
    assert "".join(e["data"]["chunk"].content for e in stream) == "the quick brown fox"
    for node in ("prepare", "chat"):
        assert node in _names(events, "on_chain_start")
        assert node in _names(events, "on_chain_end")


async def test_chat_model_events_from_sync_node():
    app = chat_graph(["sync node tokens"], use_async=False)
    events = await collect(app, {"messages": [("user", "hi")]}, cfg())
    stream = [e for e in events if e["event"] == "on_chat_model_stream"]
    assert "".join(e["data"]["chunk"].content for e in stream) == "sync node tokens"


async def test_chat_model_events_are_inside_the_node_and_tagged_with_it():
    app = chat_graph(["a b c"])
    events = await collect(app, {"messages": [("user", "hi")]}, cfg())
    kinds = [e["event"] for e in events]
    start_chat = next(i for i, e in enumerate(events)
                      if e["event"] == "on_chain_start" and e["name"] == "chat")
    end_chat = next(i for i, e in enumerate(events)
                    if e["event"] == "on_chain_end" and e["name"] == "chat")
    model_idx = [i for i, k in enumerate(kinds) if k.startswith("on_chat_model_")]
    assert model_idx
    assert all(start_chat < i < end_chat for i in model_idx)
    assert kinds[model_idx[0]] == "on_chat_model_start"
    assert kinds[model_idx[-1]] == "on_chat_model_end"
    for i in model_idx:
        assert events[i]["metadata"]["langgraph_node"] == "chat"


async def test_chat_model_end_event_has_full_message():
    app = chat_graph(["full message text"])
    events = await collect(app, {"messages": [("user", "hi")]}, cfg())
    (end,) = [e for e in events if e["event"] == "on_chat_model_end"]
    assert end["data"]["output"].content == "full message text"


async def test_chat_model_tokens_across_two_runs_follow_script():
    app = chat_graph(["first reply", "second reply"])
    config = cfg()
    texts = []
    for _ in range(2):
        events = await collect(app, {"messages": [("user", "hi")]}, config)
        texts.append("".join(e["data"]["chunk"].content for e in events
                             if e["event"] == "on_chat_model_stream"))
    assert texts == ["first reply", "second reply"]
    messages = (await app.aget_state(config)).values["messages"]
    assert [m.content for m in messages if m.type == "ai"] == ["first reply", "second reply"]
