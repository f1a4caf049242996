"""Subgraphs: compiled graphs as nodes, graphs called inside nodes, interrupts inside
subgraphs, get_state(subgraphs=True) and Command(graph=Command.PARENT).

Expectations follow LangGraph 1.2 semantics.
"""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, TypedDict

from waypoint import END, START, Command, StateGraph, StateSnapshot, interrupt
from waypoint.checkpoint import MemorySaver


class Shared(TypedDict):
    text: str
    steps: Annotated[list, operator.add]


class Log(TypedDict):
    log: Annotated[list, operator.add]


class Outer(TypedDict):
    topic: str
    results: Annotated[list, operator.add]


class Inner(TypedDict):
    text: str
    words: int


def cfg() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


# ------------------------------------------------ builders


def shared_subgraph(calls: dict):
    def upper(state: Shared):
        calls["upper"] = calls.get("upper", 0) + 1
        return {"text": state["text"].upper()}

    def exclaim(state: Shared):
        calls["exclaim"] = calls.get("exclaim", 0) + 1
        return {"text": state["text"] + "!"}

    g = StateGraph(Shared)
    g.add_node("upper", upper)
    g.add_node("exclaim", exclaim)
    g.add_edge(START, "upper")
    g.add_edge("upper", "exclaim")
    g.add_edge("exclaim", END)
    return g.compile()


def parent_with_child(child, *, checkpointer=True):
    def before(state: Shared):
        return {"text": state["text"] + " world", "steps": ["before"]}

    def after(state: Shared):
        return {"steps": [f"after:{state['text']}"]}

    g = StateGraph(Shared)
    g.add_node("before", before)
    g.add_node("child", child)
    g.add_node("after", after)
    g.add_edge(START, "before")
    g.add_edge("before", "child")
    g.add_edge("child", "after")
    g.add_edge("after", END)
    return g.compile(checkpointer=MemorySaver() if checkpointer else None)


def interrupting_subgraph(calls: dict):
    """sub_pre -> sub_ask (interrupt) on the Log schema."""

    def sub_pre(state: Log):
        calls["sub_pre"] = calls.get("sub_pre", 0) + 1
        return {"log": ["sub_pre"]}

    def sub_ask(state: Log):
        calls["sub_ask"] = calls.get("sub_ask", 0) + 1
        answer = interrupt("sub-question")
        return {"log": [f"sub:{answer}"]}

    g = StateGraph(Log)
    g.add_node("sub_pre", sub_pre)
    g.add_node("sub_ask", sub_ask)
    g.add_edge(START, "sub_pre")
    g.add_edge("sub_pre", "sub_ask")
    g.add_edge("sub_ask", END)
    return g.compile()


def parent_of_interrupting_subgraph(calls: dict):
    def first(state: Log):
        calls["first"] = calls.get("first", 0) + 1
        return {"log": ["first"]}

    def last(state: Log):
        calls["last"] = calls.get("last", 0) + 1
        return {"log": ["last"]}

    g = StateGraph(Log)
    g.add_node("first", first)
    g.add_node("child", interrupting_subgraph(calls))
    g.add_node("last", last)
    g.add_edge(START, "first")
    g.add_edge("first", "child")
    g.add_edge("child", "last")
    g.add_edge("last", END)
    return g.compile(checkpointer=MemorySaver())


def inner_graph(*, ask: bool):
    def review(state: Inner):
        if not ask:
            return {}
        extra = interrupt({"text": state["text"]})
        return {"text": f"{state['text']} {extra}"}

    def count(state: Inner):
        return {"words": len(state["text"].split())}

    g = StateGraph(Inner)
    g.add_node("review", review)
    g.add_node("count", count)
    g.add_edge(START, "review")
    g.add_edge("review", "count")
    g.add_edge("count", END)
    return g.compile()


def outer_calling_inner(calls: dict, inner, *, use_async: bool = False):
    def call_inner(state: Outer):
        calls["call_inner"] = calls.get("call_inner", 0) + 1
        out = inner.invoke({"text": state["topic"]})
        return {"results": [out["words"]]}

    async def acall_inner(state: Outer):
        calls["call_inner"] = calls.get("call_inner", 0) + 1
        out = await inner.ainvoke({"text": state["topic"]})
        return {"results": [out["words"]]}

    g = StateGraph(Outer)
    g.add_node("call_inner", acall_inner if use_async else call_inner)
    g.add_edge(START, "call_inner")
    g.add_edge("call_inner", END)
    return g.compile(checkpointer=MemorySaver())


# ------------------------------------------------ subgraph as node


def test_compiled_graph_as_node_shares_state_keys():
    calls: dict = {}
    app = parent_with_child(shared_subgraph(calls))
    result = app.invoke({"text": "hello", "steps": []}, cfg())
    assert result["text"] == "HELLO WORLD!"
    assert result["steps"][-1] == "after:HELLO WORLD!"
    assert calls == {"upper": 1, "exclaim": 1}


def test_subgraph_output_is_applied_as_one_update_of_the_parent_node():
    app = parent_with_child(shared_subgraph({}))
    chunks = list(app.stream({"text": "hi", "steps": []}, cfg(), stream_mode="updates"))
    assert [next(iter(c)) for c in chunks] == ["before", "child", "after"]
    # inner nodes are not visible without subgraphs=True
    assert chunks[1]["child"]["text"] == "HI WORLD!"


def test_subgraph_returns_its_full_state_so_parent_reducers_see_it_again():
    """LangGraph: a subgraph node's update to the parent is the subgraph's final state,
    so an operator.add key shared with the parent gets the parent's items appended again."""

    def sub_node(state: Log):
        return {"log": ["inner"]}

    sg = StateGraph(Log)
    sg.add_node("sub_node", sub_node)
    sg.add_edge(START, "sub_node")
    sg.add_edge("sub_node", END)

    g = StateGraph(Log)
    g.add_node("first", lambda s: {"log": ["first"]})
    g.add_node("child", sg.compile())
    g.add_edge(START, "first")
    g.add_edge("first", "child")
    g.add_edge("child", END)
    app = g.compile()
    assert app.invoke({"log": []}) == {"log": ["first", "first", "inner"]}


def test_subgraph_as_node_without_checkpointer():
    app = parent_with_child(shared_subgraph({}), checkpointer=False)
    assert app.invoke({"text": "x", "steps": []})["text"] == "X WORLD!"


async def test_async_compiled_graph_as_node():
    calls: dict = {}
    app = parent_with_child(shared_subgraph(calls))
    result = await app.ainvoke({"text": "hey", "steps": []}, cfg())
    assert result["text"] == "HEY WORLD!"
    assert calls == {"upper": 1, "exclaim": 1}


# ------------------------------------------------ graph called in a node


def test_graph_invoked_inside_node_with_different_schema():
    app = outer_calling_inner({}, inner_graph(ask=False))
    result = app.invoke({"topic": "one two three", "results": []}, cfg())
    assert result == {"topic": "one two three", "results": [3]}


async def test_graph_ainvoked_inside_async_node_with_different_schema():
    app = outer_calling_inner({}, inner_graph(ask=False), use_async=True)
    result = await app.ainvoke({"topic": "a b", "results": []}, cfg())
    assert result == {"topic": "a b", "results": [2]}


def test_interrupt_in_graph_invoked_inside_node_resumed_through_parent():
    calls: dict = {}
    app = outer_calling_inner(calls, inner_graph(ask=True))
    config = cfg()
    result = app.invoke({"topic": "a b c", "results": []}, config)
    (intr,) = result["__interrupt__"]
    assert intr.value == {"text": "a b c"}
    assert result["results"] == []
    assert app.get_state(config).next == ("call_inner",)

    result = app.invoke(Command(resume="d e"), config)
    assert result == {"topic": "a b c", "results": [5]}
    # the calling node runs again from the start on resume
    assert calls == {"call_inner": 2}


async def test_async_interrupt_in_graph_invoked_inside_node():
    calls: dict = {}
    app = outer_calling_inner(calls, inner_graph(ask=True), use_async=True)
    config = cfg()
    result = await app.ainvoke({"topic": "x", "results": []}, config)
    assert [i.value for i in result["__interrupt__"]] == [{"text": "x"}]
    result = await app.ainvoke(Command(resume="y z"), config)
    assert result["results"] == [3]
    assert calls == {"call_inner": 2}


# ------------------------------------------------ interrupt in subgraph node


def test_interrupt_inside_subgraph_surfaces_in_parent():
    calls: dict = {}
    app = parent_of_interrupting_subgraph(calls)
    config = cfg()
    result = app.invoke({"log": []}, config)
    (intr,) = result["__interrupt__"]
    assert intr.value == "sub-question"
    assert result["log"] == ["first"]

    snapshot = app.get_state(config)
    assert snapshot.next == ("child",)
    (task,) = snapshot.tasks
    assert task.name == "child"
    assert [i.id for i in task.interrupts] == [intr.id]
    assert [i.id for i in snapshot.interrupts] == [intr.id]


def test_interrupt_inside_subgraph_resumed_through_parent():
    calls: dict = {}
    app = parent_of_interrupting_subgraph(calls)
    config = cfg()
    app.invoke({"log": []}, config)
    result = app.invoke(Command(resume="ok"), config)

    assert "__interrupt__" not in result
    # the subgraph returns its whole state (which includes "first") to the parent's reducer
    assert result["log"] == ["first", "first", "sub_pre", "sub:ok", "last"]
    # sub_pre finished before the interrupt and is not re-run; sub_ask re-runs
    assert calls == {"first": 1, "sub_pre": 1, "sub_ask": 2, "last": 1}
    assert app.get_state(config).next == ()


def test_interrupt_inside_subgraph_resumed_with_id_map():
    app = parent_of_interrupting_subgraph({})
    config = cfg()
    (intr,) = app.invoke({"log": []}, config)["__interrupt__"]
    result = app.invoke(Command(resume={intr.id: "by-id"}), config)
    assert "sub:by-id" in result["log"]
    assert result["log"][-1] == "last"


def test_interrupt_inside_subgraph_stream_with_subgraphs_resume():
    app = parent_of_interrupting_subgraph({})
    config = cfg()
    list(app.stream({"log": []}, config))
    chunks = list(app.stream(Command(resume="s"), config, stream_mode="updates", subgraphs=True))
    sub = [(ns, c) for ns, c in chunks if ns]
    root = [c for ns, c in chunks if ns == ()]
    assert [c for _, c in sub] == [{"sub_ask": {"log": ["sub:s"]}}]
    assert sub[0][0][0].startswith("child:")
    assert [next(iter(c)) for c in root] == ["child", "last"]


async def test_async_interrupt_inside_subgraph_resumed_through_parent():
    calls: dict = {}
    app = parent_of_interrupting_subgraph(calls)
    config = cfg()
    result = await app.ainvoke({"log": []}, config)
    assert [i.value for i in result["__interrupt__"]] == ["sub-question"]
    result = await app.ainvoke(Command(resume="async"), config)
    assert result["log"][-2:] == ["sub:async", "last"]
    assert calls["sub_pre"] == 1
    assert calls["sub_ask"] == 2


# ------------------------------------------------ get_state(subgraphs=True)


def test_get_state_with_subgraphs_shows_subgraph_snapshot():
    app = parent_of_interrupting_subgraph({})
    config = cfg()
    (intr,) = app.invoke({"log": []}, config)["__interrupt__"]

    snapshot = app.get_state(config, subgraphs=True)
    (task,) = snapshot.tasks
    assert task.name == "child"
    sub = task.state
    assert isinstance(sub, StateSnapshot)
    assert sub.values == {"log": ["first", "sub_pre"]}
    assert sub.next == ("sub_ask",)
    (sub_task,) = sub.tasks
    assert sub_task.name == "sub_ask"
    assert [i.value for i in sub_task.interrupts] == ["sub-question"]
    assert sub_task.interrupts[0].id == intr.id
    assert sub.config["configurable"]["checkpoint_ns"].startswith("child:")
    assert sub.metadata["step"] == 1


def test_get_state_without_subgraphs_gives_subgraph_config_reference():
    """Without subgraphs=True LangGraph puts the subgraph's config (not a snapshot)
    in task.state; its checkpoint_ns names the subgraph node."""
    app = parent_of_interrupting_subgraph({})
    config = cfg()
    app.invoke({"log": []}, config)
    (task,) = app.get_state(config).tasks
    assert not isinstance(task.state, StateSnapshot)
    assert task.state["configurable"]["checkpoint_ns"].startswith("child:")


def test_get_state_with_subgraphs_for_graph_called_inside_node():
    app = outer_calling_inner({}, inner_graph(ask=True))
    config = cfg()
    app.invoke({"topic": "p q", "results": []}, config)
    (task,) = app.get_state(config, subgraphs=True).tasks
    assert task.name == "call_inner"
    assert isinstance(task.state, StateSnapshot)
    assert task.state.values == {"text": "p q"}
    assert task.state.next == ("review",)


def test_get_state_with_subgraphs_after_completion_has_no_tasks():
    app = parent_of_interrupting_subgraph({})
    config = cfg()
    app.invoke({"log": []}, config)
    app.invoke(Command(resume="done"), config)
    snapshot = app.get_state(config, subgraphs=True)
    assert snapshot.tasks == ()
    assert snapshot.next == ()


async def test_aget_state_with_subgraphs():
    app = parent_of_interrupting_subgraph({})
    config = cfg()
    await app.ainvoke({"log": []}, config)
    snapshot = await app.aget_state(config, subgraphs=True)
    assert isinstance(snapshot.tasks[0].state, StateSnapshot)
    assert snapshot.tasks[0].state.next == ("sub_ask",)


# ------------------------------------------------ Command.PARENT


def parent_command_graph(calls: dict, *, async_node: bool = False):
    def sub_node(state: Log):
        calls["sub_node"] = calls.get("sub_node", 0) + 1
        return Command(graph=Command.PARENT, goto="target", update={"log": ["from_sub"]})

    async def asub_node(state: Log):
        return sub_node(state)

    def never(state: Log):
        calls["never"] = calls.get("never", 0) + 1
        return {"log": ["never"]}

    sg = StateGraph(Log)
    sg.add_node("sub_node", asub_node if async_node else sub_node)
    sg.add_node("never", never)
    sg.add_edge(START, "sub_node")
    sg.add_edge("sub_node", "never")
    sg.add_edge("never", END)

    def target(state: Log):
        calls["target"] = calls.get("target", 0) + 1
        return {"log": ["target"]}

    def other(state: Log):
        calls["other"] = calls.get("other", 0) + 1
        return {"log": ["other"]}

    g = StateGraph(Log)
    g.add_node("child", sg.compile())
    g.add_node("target", target)
    g.add_node("other", other)
    g.add_edge(START, "child")
    g.add_edge("target", END)
    g.add_edge("other", END)
    return g.compile(checkpointer=MemorySaver())


def test_command_parent_goto_and_update_from_subgraph():
    calls: dict = {}
    app = parent_command_graph(calls)
    result = app.invoke({"log": ["start"]}, cfg())
    assert result == {"log": ["start", "from_sub", "target"]}
    # the subgraph stops at the parent command: its own next node does not run
    assert calls == {"sub_node": 1, "target": 1}


def test_command_parent_update_is_attributed_to_subgraph_node():
    app = parent_command_graph({})
    chunks = list(app.stream({"log": []}, cfg(), stream_mode="updates"))
    assert chunks == [{"child": {"log": ["from_sub"]}}, {"target": {"log": ["target"]}}]


async def test_async_command_parent_goto_and_update_from_subgraph():
    calls: dict = {}
    app = parent_command_graph(calls, async_node=True)
    result = await app.ainvoke({"log": []}, cfg())
    assert result == {"log": ["from_sub", "target"]}
    assert "never" not in calls
    assert "other" not in calls
