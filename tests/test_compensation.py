"""Sagas: compensations of completed nodes run in reverse order when a run fails for good
or is cancelled, each under its retry policy, each once, and the outcome is recorded."""

from __future__ import annotations

import asyncio
import operator
import threading
import uuid
from typing import Annotated, TypedDict

import pytest
from store_backends import backend, saver  # noqa: F401

from waypoint import END, START, RetryPolicy, RunTimeoutError, Send, StateGraph, interrupt
from waypoint.checkpoint import MemorySaver

FAST = RetryPolicy(initial_interval=0, jitter=False, max_attempts=3)


class State(TypedDict, total=False):
    log: Annotated[list, operator.add]
    ids: Annotated[dict, lambda a, b: {**a, **b}]
    fail_at: str


def cfg(thread: str | None = None) -> dict:
    return {"configurable": {"thread_id": thread or str(uuid.uuid4())}}


def five_steps(undone: list, *, fail_at: str = "s4", compensate_policy=None):
    """s1 -> s2 -> s3 -> s4 -> s5; each creates a resource and can delete it again."""

    def make(name: str):
        def step(state: State) -> dict:
            if state.get("fail_at") == name:
                raise ValueError(f"{name} broke")
            return {"log": [name], "ids": {name: f"res-{name}"}}

        def undo(state: State, update: dict) -> None:
            undone.append((name, update["ids"][name], state["ids"][name]))

        return step, undo

    builder = StateGraph(State)
    previous = START
    for index in range(1, 6):
        name = f"s{index}"
        step, undo = make(name)
        builder.add_node(name, step, compensate=undo, retry_policy=compensate_policy)
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder


def test_failure_at_step_4_of_5_compensates_3_2_1_in_reverse(backend, saver):  # noqa: F811
    undone: list = []
    graph = five_steps(undone).compile(checkpointer=saver)
    config = cfg(backend.thread())
    with pytest.raises(ValueError, match="s4 broke") as info:
        graph.invoke({"log": [], "ids": {}, "fail_at": "s4"}, config)
    assert undone == [("s3", "res-s3", "res-s3"), ("s2", "res-s2", "res-s2"),
                      ("s1", "res-s1", "res-s1")]
    summary = info.value.compensation
    assert summary["compensated"] == ["s3", "s2", "s1"] and summary["failed"] == []
    assert summary["reason"] == "ValueError: s4 broke"
    assert any("waypoint compensated: s3, s2, s1" in n for n in info.value.__notes__)
    state = graph.get_state(config)
    assert state.next == ()
    assert state.metadata["source"] == "compensation"
    assert state.metadata["compensation"]["compensated"] == ["s3", "s2", "s1"]
    # The thread is over: resuming it runs nothing and compensates nothing again.
    graph.invoke(None, config)
    assert len(undone) == 3


def test_without_a_checkpointer_compensation_still_runs():
    undone: list = []
    with pytest.raises(ValueError):
        five_steps(undone).compile().invoke({"log": [], "ids": {}, "fail_at": "s3"})
    assert [u[0] for u in undone] == ["s2", "s1"]


def test_success_and_retried_success_compensate_nothing():
    undone: list = []
    graph = five_steps(undone).compile(checkpointer=MemorySaver())
    assert graph.invoke({"log": [], "ids": {}}, cfg())["log"] == ["s1", "s2", "s3", "s4", "s5"]
    assert undone == []


def test_a_failing_compensation_is_retried_then_reported():
    attempts = {"s2": 0, "s1": 0}

    def step(name):
        return lambda state: {"log": [name]}

    def flaky_undo(state: State) -> None:
        attempts["s2"] += 1
        if attempts["s2"] < 2:
            raise ConnectionError("undo failed once")

    def broken_undo(state: State) -> None:
        attempts["s1"] += 1
        raise PermissionError("cannot delete")

    def fails(state: State) -> dict:
        raise ValueError("boom")

    builder = StateGraph(State)
    builder.add_node("s1", step("s1"), compensate=broken_undo, retry_policy=FAST)
    builder.add_node("s2", step("s2"), compensate=flaky_undo, retry_policy=FAST)
    builder.add_node("s3", fails)
    builder.add_edge(START, "s1")
    builder.add_edge("s1", "s2")
    builder.add_edge("s2", "s3")
    graph = builder.compile(checkpointer=MemorySaver())
    config = cfg()
    with pytest.raises(ValueError) as info:
        graph.invoke({"log": []}, config)
    summary = info.value.compensation
    assert summary["compensated"] == ["s2"]
    assert summary["failed"] == [{"node": "s1", "error": "PermissionError: cannot delete"}]
    assert attempts == {"s2": 2, "s1": 1}  # a permanent error is not retried
    assert graph.get_state(config).metadata["compensation"]["order"] == ["s2", "s1"]


def test_finished_siblings_of_a_failed_parallel_step_are_compensated():
    undone: list = []

    def fan_out(state: State):
        return [Send("book", name) for name in ("flight", "hotel", "car")]

    def book(item: str) -> dict:
        if item == "car":
            raise ValueError("no cars left")
        return {"log": [item]}

    builder = StateGraph(State)
    builder.add_node("plan", lambda s: {"log": ["plan"]},
                     compensate=lambda s: undone.append("plan"))
    builder.add_node("book", book, compensate=lambda s, u: undone.append(u["log"][0]))
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", fan_out, ["book"])
    with pytest.raises(ValueError, match="no cars"):
        builder.compile(checkpointer=MemorySaver()).invoke({"log": []}, cfg())
    assert undone[-1] == "plan"
    assert sorted(undone[:-1]) == ["flight", "hotel"]


def test_cancel_a_paused_thread_compensates_what_completed(backend, saver):  # noqa: F811
    undone: list = []

    def reserve(state: State) -> dict:
        return {"ids": {"reservation": "r-1"}}

    def confirm(state: State) -> dict:
        return {"log": [interrupt("confirm the booking?")]}

    builder = StateGraph(State)
    builder.add_node("reserve", reserve,
                     compensate=lambda s: undone.append(s["ids"]["reservation"]))
    builder.add_node("confirm", confirm)
    builder.add_edge(START, "reserve")
    builder.add_edge("reserve", "confirm")
    graph = builder.compile(checkpointer=saver)
    config = cfg(backend.thread())
    assert "__interrupt__" in graph.invoke({"log": [], "ids": {}}, config)
    summary = graph.cancel(config, reason="customer changed their mind")
    assert summary == {"reason": "customer changed their mind", "compensated": ["reserve"],
                       "failed": [], "order": ["reserve"]}
    assert undone == ["r-1"]
    state = graph.get_state(config)
    assert state.next == () and state.metadata["source"] == "cancel"
    with pytest.raises(ValueError, match="has finished"):
        graph.cancel(config)
    with pytest.raises(ValueError, match="no checkpoint"):
        graph.cancel(cfg(backend.thread()))


def test_run_deadline_compensates():
    undone: list = []
    release = threading.Event()

    def slow(state: State) -> dict:
        release.wait(10)
        return {}

    builder = StateGraph(State)
    builder.add_node("first", lambda s: {"log": ["first"]}, compensate=lambda s: undone.append(1))
    builder.add_node("slow", slow)
    builder.add_edge(START, "first")
    builder.add_edge("first", "slow")
    try:
        with pytest.raises(RunTimeoutError):
            builder.compile().invoke({"log": []}, {"run_timeout": 0.3})
    finally:
        release.set()
    assert undone == [1]


def test_async_run_compensates():
    undone: list = []

    async def fails(state: State) -> dict:
        raise ValueError("async boom")

    builder = StateGraph(State)
    builder.add_node("a", lambda s: {"log": ["a"]}, compensate=lambda s: undone.append("a"))
    builder.add_node("b", fails)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    with pytest.raises(ValueError):
        asyncio.run(builder.compile(checkpointer=MemorySaver()).ainvoke({"log": []}, cfg()))
    assert undone == ["a"]


def test_a_compensation_can_read_its_config():
    from waypoint import get_config

    seen: list = []

    def undo(state: State) -> None:
        seen.append(get_config()["configurable"]["thread_id"])

    builder = StateGraph(State)
    builder.add_node("a", lambda s: {"log": ["a"]}, compensate=undo)
    builder.add_node("b", lambda s: (_ for _ in ()).throw(ValueError("b broke")))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    config = cfg()
    with pytest.raises(ValueError):
        builder.compile(checkpointer=MemorySaver()).invoke({"log": []}, config)
    assert seen == [config["configurable"]["thread_id"]]
