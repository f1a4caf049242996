"""Durability modes: when a run's steps reach the store."""

import operator
from typing import Annotated, TypedDict

import pytest

from waypoint import START, Command, StateGraph, interrupt
from waypoint.checkpoint import MemorySaver, SqliteSaver


class State(TypedDict):
    log: Annotated[list, operator.add]


def build(saver, steps=5, ask=False):
    builder = StateGraph(State)
    previous = START
    for i in range(steps):
        builder.add_node(f"n{i}", lambda s, i=i: {"log": [i]})
        builder.add_edge(previous, f"n{i}")
        previous = f"n{i}"
    if ask:
        builder.add_node("ask", lambda s: {"log": [interrupt("ok?")]})
        builder.add_edge(previous, "ask")
    return builder.compile(checkpointer=saver)


@pytest.fixture(params=["memory", "sqlite"])
def saver(request, tmp_path):
    if request.param == "memory":
        yield MemorySaver()
        return
    with SqliteSaver.from_conn_string(str(tmp_path / "d.db")) as store:
        yield store


@pytest.mark.parametrize("mode", ["sync", "async", "exit"])
def test_every_mode_reaches_the_same_state_and_history(saver, mode):
    app = build(saver, ask=True)
    config = {"configurable": {"thread_id": mode}}
    paused = app.invoke({"log": []}, config, durability=mode)
    assert paused["log"] == [0, 1, 2, 3, 4]
    assert app.invoke(Command(resume="ok"), config, durability=mode)["log"][-1] == "ok"
    history = list(app.get_state_history(config))
    assert history[0].values["log"] == [0, 1, 2, 3, 4, "ok"]
    assert [h.metadata["step"] for h in history] == list(range(len(history) - 2, -2, -1))


@pytest.mark.parametrize("mode", ["sync", "async", "exit"])
async def test_every_mode_async(saver, mode):
    app = build(saver)
    config = {"configurable": {"thread_id": f"a-{mode}"}}
    result = await app.ainvoke({"log": []}, config, durability=mode)
    assert result["log"] == [0, 1, 2, 3, 4]
    assert (await app.aget_state(config)).values["log"] == [0, 1, 2, 3, 4]


def test_exit_mode_writes_nothing_until_the_run_stops():
    seen = []
    saver = MemorySaver()

    def spy(state):
        seen.append(saver.head_id("x"))
        return {"log": ["spy"]}

    builder = StateGraph(State)
    builder.add_node("a", lambda s: {"log": ["a"]})
    builder.add_node("spy", spy)
    builder.add_edge(START, "a")
    builder.add_edge("a", "spy")
    app = builder.compile(checkpointer=saver)
    app.invoke({"log": []}, {"configurable": {"thread_id": "x"}}, durability="exit")
    assert seen == [None]
    assert saver.head_id("x") is not None

    seen.clear()
    app.invoke({"log": []}, {"configurable": {"thread_id": "y"}}, durability="sync")
    assert seen[0] is not None  # the step before spy was already committed


def test_exit_mode_keeps_progress_when_the_run_fails():
    saver = MemorySaver()
    builder = StateGraph(State)
    builder.add_node("a", lambda s: {"log": ["a"]})

    def boom(state):
        raise RuntimeError("boom")

    builder.add_node("b", boom)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    app = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "f"}}
    with pytest.raises(RuntimeError, match="boom"):
        app.invoke({"log": []}, config, durability="exit")
    state = app.get_state(config)
    assert state.values["log"] == ["a"]
    assert state.next == ("b",)


def test_unknown_durability_is_refused():
    app = build(MemorySaver())
    with pytest.raises(ValueError, match="durability"):
        app.invoke({"log": []}, {"configurable": {"thread_id": "z"}}, durability="lazy")
