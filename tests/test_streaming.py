"""stream()/astream(): values, updates, custom, messages, tasks, checkpoints, debug,
lists of modes and subgraphs=True.

Expectations follow LangGraph 1.2 semantics. Token splitting of ScriptedChatModel is not
specified, so message tests compare the concatenated tokens, never the individual pieces.
"""

from __future__ import annotations

import itertools
import operator
import uuid
from typing import Annotated, TypedDict

from waypoint import (
    END,
    START,
    Command,
    Interrupt,
    MessagesState,
    StateGraph,
    get_stream_writer,
    interrupt,
)
from waypoint.checkpoint import MemorySaver
from waypoint.messages import AIMessageChunk, HumanMessage
from waypoint.models import ScriptedChatModel


class State(TypedDict):
    log: Annotated[list, operator.add]


def cfg() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


# ------------------------------------------------ builders


def chain_graph(*, async_nodes: bool = False, **compile_kwargs):
    """a -> b; a writes two custom chunks."""

    def a(state: State):
        writer = get_stream_writer()
        writer({"progress": 50})
        writer("half-way")
        return {"log": ["a"]}

    def b(state: State):
        return {"log": ["b"]}

    async def aa(state: State):
        writer = get_stream_writer()
        writer({"progress": 50})
        writer("half-way")
        return {"log": ["a"]}

    async def ab(state: State):
        return {"log": ["b"]}

    g = StateGraph(State)
    g.add_node("a", aa if async_nodes else a)
    g.add_node("b", ab if async_nodes else b)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", END)
    return g.compile(checkpointer=MemorySaver(), **compile_kwargs)


def chat_graph(responses, *, mode: str = "invoke"):
    """One node "chat" calling a ScriptedChatModel (invoke / ainvoke / stream)."""
    model = ScriptedChatModel(responses=responses)

    def chat(state: MessagesState):
        if mode == "stream":
            full = None
            for chunk in model.stream(state["messages"]):
                full = chunk if full is None else full + chunk
            return {"messages": [full]}
        return {"messages": [model.invoke(state["messages"])]}

    async def achat(state: MessagesState):
        return {"messages": [await model.ainvoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("chat", achat if mode == "ainvoke" else chat)
    g.add_edge(START, "chat")
    g.add_edge("chat", END)
    return g.compile(checkpointer=MemorySaver())


def two_chat_graph():
    first = ScriptedChatModel(responses=["alpha beta gamma"])
    second = ScriptedChatModel(responses=["delta epsilon"])

    def one(state: MessagesState):
        return {"messages": [first.invoke(state["messages"])]}

    def two(state: MessagesState):
        return {"messages": [second.invoke(state["messages"])]}

    g = StateGraph(MessagesState)
    g.add_node("one", one)
    g.add_node("two", two)
    g.add_edge(START, "one")
    g.add_edge("one", "two")
    g.add_edge("two", END)
    return g.compile(checkpointer=MemorySaver())


def subgraph_parent():
    def inner1(state: State):
        get_stream_writer()("from-inner")
        return {"log": ["inner1"]}

    sg = StateGraph(State)
    sg.add_node("inner1", inner1)
    sg.add_node("inner2", lambda s: {"log": ["inner2"]})
    sg.add_edge(START, "inner1")
    sg.add_edge("inner1", "inner2")
    sg.add_edge("inner2", END)

    g = StateGraph(State)
    g.add_node("outer", lambda s: {"log": ["outer"]})
    g.add_node("child", sg.compile())
    g.add_edge(START, "outer")
    g.add_edge("outer", "child")
    g.add_edge("child", END)
    return g.compile(checkpointer=MemorySaver())


def interrupting_graph():
    def a(state: State):
        return {"log": ["a"]}

    def ask(state: State):
        return {"log": [interrupt("q")]}

    g = StateGraph(State)
    g.add_node("a", a)
    g.add_node("ask", ask)
    g.add_edge(START, "a")
    g.add_edge("a", "ask")
    g.add_edge("ask", END)
    return g.compile(checkpointer=MemorySaver())


def _messages_text(chunks) -> str:
    return "".join(msg.content for msg, _ in chunks)


# ------------------------------------------------ values / updates


def test_stream_values_yields_full_state_after_each_step():
    app = chain_graph()
    chunks = list(app.stream({"log": ["in"]}, cfg(), stream_mode="values"))
    assert chunks == [{"log": ["in"]}, {"log": ["in", "a"]}, {"log": ["in", "a", "b"]}]


def test_stream_updates_yields_node_name_to_update():
    app = chain_graph()
    chunks = list(app.stream({"log": []}, cfg(), stream_mode="updates"))
    assert chunks == [{"a": {"log": ["a"]}}, {"b": {"log": ["b"]}}]


def test_stream_updates_of_parallel_nodes_are_separate_chunks():
    g = StateGraph(State)
    g.add_node("x", lambda s: {"log": ["x"]})
    g.add_node("y", lambda s: {"log": ["y"]})
    g.add_edge(START, "x")
    g.add_edge(START, "y")
    app = g.compile()
    chunks = list(app.stream({"log": []}, stream_mode="updates"))
    assert sorted(chunks, key=lambda c: next(iter(c))) == [
        {"x": {"log": ["x"]}},
        {"y": {"log": ["y"]}},
    ]
    final = list(app.stream({"log": []}, stream_mode="values"))[-1]
    assert sorted(final["log"]) == ["x", "y"]


def test_stream_updates_node_returning_nothing_gives_none():
    g = StateGraph(State)
    g.add_node("noop", lambda s: None)
    g.add_edge(START, "noop")
    app = g.compile()
    assert list(app.stream({"log": []}, stream_mode="updates")) == [{"noop": None}]


def test_stream_values_with_interrupt_ends_with_interrupt_entry():
    app = interrupting_graph()
    config = cfg()
    chunks = list(app.stream({"log": []}, config, stream_mode="values"))
    assert chunks[0] == {"log": []}
    assert chunks[1] == {"log": ["a"]}
    last = chunks[-1]
    assert last["log"] == ["a"]
    (intr,) = last["__interrupt__"]
    assert isinstance(intr, Interrupt)
    assert intr.value == "q"


def test_stream_values_on_resume_starts_with_current_state():
    app = interrupting_graph()
    config = cfg()
    list(app.stream({"log": []}, config, stream_mode="values"))
    chunks = list(app.stream(Command(resume="answer"), config, stream_mode="values"))
    assert chunks == [{"log": ["a"]}, {"log": ["a", "answer"]}]


def test_stream_updates_at_static_breakpoint_reports_empty_interrupt():
    app = chain_graph(interrupt_before=["b"])
    config = cfg()
    chunks = list(app.stream({"log": []}, config, stream_mode="updates"))
    assert chunks[0] == {"a": {"log": ["a"]}}
    assert len(chunks) == 2
    assert list(chunks[1]) == ["__interrupt__"]
    assert list(chunks[1]["__interrupt__"]) == []
    assert list(app.stream(None, config, stream_mode="updates")) == [{"b": {"log": ["b"]}}]


# ------------------------------------------------ custom


def test_stream_custom_yields_writer_chunks_in_order():
    app = chain_graph()
    chunks = list(app.stream({"log": []}, cfg(), stream_mode="custom"))
    assert chunks == [{"progress": 50}, "half-way"]


async def test_astream_custom_from_async_node():
    app = chain_graph(async_nodes=True)
    chunks = [c async for c in app.astream({"log": []}, cfg(), stream_mode="custom")]
    assert chunks == [{"progress": 50}, "half-way"]


def test_stream_writer_outside_custom_mode_is_harmless():
    app = chain_graph()
    chunks = list(app.stream({"log": []}, cfg(), stream_mode="updates"))
    assert chunks == [{"a": {"log": ["a"]}}, {"b": {"log": ["b"]}}]
    assert app.invoke({"log": []}, cfg()) == {"log": ["a", "b"]}


# ------------------------------------------------ messages


def test_stream_messages_yields_model_tokens_with_node_metadata():
    app = chat_graph(["hello there brave new world"])
    chunks = list(app.stream({"messages": [HumanMessage(content="hi")]}, cfg(),
                             stream_mode="messages"))
    assert len(chunks) > 1
    for msg, metadata in chunks:
        assert isinstance(msg, AIMessageChunk)
        assert metadata["langgraph_node"] == "chat"
    assert _messages_text(chunks) == "hello there brave new world"


def test_stream_messages_final_state_holds_full_message():
    app = chat_graph(["one two"])
    config = cfg()
    list(app.stream({"messages": [("user", "hi")]}, config, stream_mode="messages"))
    messages = app.get_state(config).values["messages"]
    assert [m.type for m in messages] == ["human", "ai"]
    assert messages[-1].content == "one two"


def test_stream_messages_from_model_stream_call():
    app = chat_graph(["streamed reply here"], mode="stream")
    config = cfg()
    chunks = list(app.stream({"messages": [("user", "hi")]}, config, stream_mode="messages"))
    assert _messages_text(chunks) == "streamed reply here"
    assert all(meta["langgraph_node"] == "chat" for _, meta in chunks)
    assert app.get_state(config).values["messages"][-1].content == "streamed reply here"


def test_stream_messages_from_two_nodes_in_order():
    app = two_chat_graph()
    chunks = list(app.stream({"messages": [("user", "go")]}, cfg(), stream_mode="messages"))
    nodes = [meta["langgraph_node"] for _, meta in chunks]
    split = nodes.index("two")
    assert set(nodes[:split]) == {"one"}
    assert set(nodes[split:]) == {"two"}
    assert _messages_text(chunks[:split]) == "alpha beta gamma"
    assert _messages_text(chunks[split:]) == "delta epsilon"


def test_scripted_model_cycles_through_responses_across_runs():
    app = chat_graph(["first answer", "second answer"])
    config = cfg()
    runs = []
    for _ in range(3):
        chunks = list(app.stream({"messages": [("user", "q")]}, config, stream_mode="messages"))
        runs.append(_messages_text(chunks))
    assert runs == ["first answer", "second answer", "first answer"]


async def test_astream_messages_from_async_node():
    app = chat_graph(["async tokens arrive"], mode="ainvoke")
    chunks = [
        c async for c in app.astream({"messages": [("user", "hi")]}, cfg(),
                                     stream_mode="messages")
    ]
    assert len(chunks) > 1
    assert all(isinstance(m, AIMessageChunk) for m, _ in chunks)
    assert all(meta["langgraph_node"] == "chat" for _, meta in chunks)
    assert _messages_text(chunks) == "async tokens arrive"


async def test_astream_messages_from_sync_node():
    app = chat_graph(["sync node async stream"])
    chunks = [
        c async for c in app.astream({"messages": [("user", "hi")]}, cfg(),
                                     stream_mode="messages")
    ]
    assert _messages_text(chunks) == "sync node async stream"


# ------------------------------------------------ tasks / checkpoints / debug


def test_stream_tasks_reports_start_and_result_of_each_task():
    app = chain_graph()
    chunks = list(app.stream({"log": []}, cfg(), stream_mode="tasks"))
    assert [c["name"] for c in chunks] == ["a", "a", "b", "b"]
    start_a, end_a, start_b, end_b = chunks
    assert start_a["id"] == end_a["id"]
    assert start_b["id"] == end_b["id"]
    assert start_a["id"] != start_b["id"]
    assert start_a["input"] == {"log": []}
    assert start_b["input"] == {"log": ["a"]}
    assert "triggers" in start_a
    assert end_a["error"] is None
    assert end_a["result"] == {"log": ["a"]}
    assert list(end_a["interrupts"]) == []
    assert end_b["result"] == {"log": ["b"]}


def test_stream_tasks_reports_interrupts():
    app = interrupting_graph()
    chunks = list(app.stream({"log": []}, cfg(), stream_mode="tasks"))
    ask_results = [c for c in chunks if c["name"] == "ask" and "result" in c]
    assert len(ask_results) == 1
    # LangGraph serialises them as dicts here: {"value": ..., "id": ..., ...}
    (intr,) = ask_results[0]["interrupts"]
    value = intr["value"] if isinstance(intr, dict) else intr.value
    assert value == "q"
    assert ask_results[0]["error"] is None


def test_stream_checkpoints_reports_each_saved_checkpoint():
    app = chain_graph()
    config = cfg()
    chunks = list(app.stream({"log": []}, config, stream_mode="checkpoints"))
    assert [c["metadata"]["step"] for c in chunks] == [-1, 0, 1, 2]
    assert [c["metadata"]["source"] for c in chunks] == ["input", "loop", "loop", "loop"]
    assert [list(c["next"]) for c in chunks] == [["__start__"], ["a"], ["b"], []]
    assert [c["values"] for c in chunks[1:]] == [{"log": []}, {"log": ["a"]}, {"log": ["a", "b"]}]
    assert chunks[0]["parent_config"] is None
    for older, newer in itertools.pairwise(chunks):
        assert (newer["parent_config"]["configurable"]["checkpoint_id"]
                == older["config"]["configurable"]["checkpoint_id"])
    last_id = chunks[-1]["config"]["configurable"]["checkpoint_id"]
    assert app.get_state(config).config["configurable"]["checkpoint_id"] == last_id


def test_stream_debug_has_checkpoint_task_and_task_result_events():
    app = chain_graph()
    chunks = list(app.stream({"log": []}, cfg(), stream_mode="debug"))
    assert all({"type", "step", "payload"} <= set(c) for c in chunks)
    types = [c["type"] for c in chunks]
    assert {"checkpoint", "task", "task_result"} <= set(types)
    results = [c["payload"] for c in chunks if c["type"] == "task_result"]
    assert [(p["name"], p["result"]) for p in results] == [
        ("a", {"log": ["a"]}),
        ("b", {"log": ["b"]}),
    ]


# ------------------------------------------------ several modes


def test_list_of_modes_yields_mode_chunk_tuples():
    app = chain_graph()
    chunks = list(app.stream({"log": []}, cfg(), stream_mode=["updates", "values", "custom"]))
    assert all(isinstance(c, tuple) and len(c) == 2 for c in chunks)
    by_mode: dict = {}
    for mode, chunk in chunks:
        by_mode.setdefault(mode, []).append(chunk)
    assert by_mode["updates"] == [{"a": {"log": ["a"]}}, {"b": {"log": ["b"]}}]
    assert by_mode["values"] == [{"log": []}, {"log": ["a"]}, {"log": ["a", "b"]}]
    assert by_mode["custom"] == [{"progress": 50}, "half-way"]
    # custom output of "a" comes before a's update, which comes before b's update
    order = [(m, c) for m, c in chunks if m != "values"]
    assert order == [
        ("custom", {"progress": 50}),
        ("custom", "half-way"),
        ("updates", {"a": {"log": ["a"]}}),
        ("updates", {"b": {"log": ["b"]}}),
    ]


def test_list_with_single_mode_still_yields_tuples():
    app = chain_graph()
    chunks = list(app.stream({"log": []}, cfg(), stream_mode=["updates"]))
    assert chunks == [("updates", {"a": {"log": ["a"]}}), ("updates", {"b": {"log": ["b"]}})]


def test_list_of_modes_with_messages():
    app = chat_graph(["mixed mode reply"])
    chunks = list(app.stream({"messages": [("user", "hi")]}, cfg(),
                             stream_mode=["messages", "updates"]))
    tokens = [c for m, c in chunks if m == "messages"]
    updates = [c for m, c in chunks if m == "updates"]
    assert _messages_text(tokens) == "mixed mode reply"
    assert len(updates) == 1
    assert updates[0]["chat"]["messages"][-1].content == "mixed mode reply"


async def test_astream_list_of_modes():
    app = chain_graph(async_nodes=True)
    chunks = [
        c async for c in app.astream({"log": []}, cfg(), stream_mode=["values", "custom"])
    ]
    assert [m for m, _ in chunks].count("values") == 3
    assert [c for m, c in chunks if m == "custom"] == [{"progress": 50}, "half-way"]


# ------------------------------------------------ subgraphs=True


def test_stream_subgraphs_yields_namespace_tuples():
    app = subgraph_parent()
    chunks = list(app.stream({"log": []}, cfg(), stream_mode="updates", subgraphs=True))
    assert all(isinstance(ns, tuple) for ns, _ in chunks)
    root = [c for ns, c in chunks if ns == ()]
    inner = [(ns, c) for ns, c in chunks if ns != ()]
    assert [next(iter(c)) for c in root] == ["outer", "child"]
    assert [c for _, c in inner] == [{"inner1": {"log": ["inner1"]}},
                                     {"inner2": {"log": ["inner2"]}}]
    assert all(len(ns) == 1 and ns[0].startswith("child:") for ns, _ in inner)
    # inner updates arrive before the parent's update for the subgraph node
    kinds = ["root" if ns == () else "inner" for ns, _ in chunks]
    assert kinds == ["root", "inner", "inner", "root"]


def test_stream_subgraphs_with_list_of_modes_yields_triples():
    app = subgraph_parent()
    chunks = list(app.stream({"log": []}, cfg(), stream_mode=["updates", "custom"],
                             subgraphs=True))
    assert all(len(c) == 3 for c in chunks)
    custom = [(ns, c) for ns, mode, c in chunks if mode == "custom"]
    assert len(custom) == 1
    assert custom[0][1] == "from-inner"
    assert custom[0][0][0].startswith("child:")
    root_updates = [c for ns, mode, c in chunks if ns == () and mode == "updates"]
    assert [next(iter(c)) for c in root_updates] == ["outer", "child"]


def test_stream_without_subgraphs_hides_inner_nodes():
    app = subgraph_parent()
    chunks = list(app.stream({"log": []}, cfg(), stream_mode="updates"))
    assert [next(iter(c)) for c in chunks] == ["outer", "child"]


def test_stream_messages_subgraphs_namespace():
    model = ScriptedChatModel(responses=["inside the child"])

    def talk(state: MessagesState):
        return {"messages": [model.invoke(state["messages"])]}

    sg = StateGraph(MessagesState)
    sg.add_node("talk", talk)
    sg.add_edge(START, "talk")
    sg.add_edge("talk", END)
    g = StateGraph(MessagesState)
    g.add_node("child", sg.compile())
    g.add_edge(START, "child")
    g.add_edge("child", END)
    app = g.compile(checkpointer=MemorySaver())
    chunks = list(app.stream({"messages": [("user", "hi")]}, cfg(), stream_mode="messages",
                             subgraphs=True))
    tokens = [(ns, c) for ns, c in chunks]
    assert all(ns and ns[0].startswith("child:") for ns, _ in tokens)
    assert all(meta["langgraph_node"] == "talk" for _, (_, meta) in tokens)
    assert "".join(msg.content for _, (msg, _) in tokens) == "inside the child"


async def test_astream_subgraphs():
    app = subgraph_parent()
    chunks = [
        c async for c in app.astream({"log": []}, cfg(), stream_mode="values", subgraphs=True)
    ]
    root = [c for ns, c in chunks if ns == ()]
    assert root[-1] == {"log": ["outer", "outer", "inner1", "inner2"]}
    inner = [c for ns, c in chunks if ns != ()]
    assert inner[-1] == {"log": ["outer", "inner1", "inner2"]}


# ------------------------------------------------ astream basics


async def test_astream_values_and_updates():
    app = chain_graph(async_nodes=True)
    values = [c async for c in app.astream({"log": []}, cfg(), stream_mode="values")]
    assert values == [{"log": []}, {"log": ["a"]}, {"log": ["a", "b"]}]
    updates = [c async for c in app.astream({"log": []}, cfg(), stream_mode="updates")]
    assert updates == [{"a": {"log": ["a"]}}, {"b": {"log": ["b"]}}]


async def test_astream_tasks_and_checkpoints():
    app = chain_graph(async_nodes=True)
    tasks = [c async for c in app.astream({"log": []}, cfg(), stream_mode="tasks")]
    assert [c["name"] for c in tasks] == ["a", "a", "b", "b"]
    cps = [c async for c in app.astream({"log": []}, cfg(), stream_mode="checkpoints")]
    assert [c["metadata"]["step"] for c in cps] == [-1, 0, 1, 2]


async def test_astream_interrupt_and_resume():
    app = interrupting_graph()
    config = cfg()
    first = [c async for c in app.astream({"log": []}, config, stream_mode="updates")]
    assert first[0] == {"a": {"log": ["a"]}}
    assert [i.value for i in first[-1]["__interrupt__"]] == ["q"]
    second = [c async for c in app.astream(Command(resume="r"), config, stream_mode="updates")]
    assert second == [{"ask": {"log": ["r"]}}]
