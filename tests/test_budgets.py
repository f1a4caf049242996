"""Budgets: checked before every model call with the worst case reserved, steps and seconds
before every step, paused for a person (raise or stop) or failed, and kept across restarts."""

from __future__ import annotations

import operator
import threading
import uuid
from typing import Annotated, Any, TypedDict

import pytest
from store_backends import backend  # noqa: F401

from waypoint import (
    START,
    Budget,
    BudgetExceeded,
    Command,
    GraphInterrupt,
    InvalidResumeError,
    PermanentError,
    Send,
    StateGraph,
    interrupt,
)
from waypoint.checkpoint import MemorySaver
from waypoint.models import PriceBook, Reply, ScriptedModel
from waypoint.usage import Usage

# $10 per million output tokens, input free: a call capped at 400 tokens may cost $0.004.
PRICES = PriceBook({"paid": (0.0, 10.0)})
WORST = 0.004


class State(TypedDict, total=False):
    log: Annotated[list, operator.add]
    topics: list


def cfg(thread: str | None = None) -> dict:
    return {"configurable": {"thread_id": thread or str(uuid.uuid4())}}


def three_branches(model: ScriptedModel, refused: threading.Event, budget: Budget | None,
                   saver: Any) -> Any:
    arrived = threading.Barrier(3, timeout=10)

    def fan_out(state: State) -> list[Send]:
        return [Send("research", topic) for topic in state["topics"]]

    def research(topic: str) -> dict:
        if not refused.is_set():
            arrived.wait()  # all three branches ask for their call at the same moment
        try:
            answer = model.invoke(f"research {topic}", max_tokens=400)
        except (GraphInterrupt, BudgetExceeded):
            refused.set()
            raise
        return {"log": [answer.content]}

    builder = StateGraph(State)
    builder.add_node("research", research)
    builder.add_conditional_edges(START, fan_out, ["research"])
    return builder.compile(checkpointer=saver, budget=budget)


def held_model(refused: threading.Event) -> ScriptedModel:
    def answer(request: Any) -> Reply:
        refused.wait(10)  # admitted calls finish only after the third was turned away
        return Reply("ten output tokens " * 3, usage=Usage(10, 10))

    return ScriptedModel([answer], cycle=True, model="paid", prices=PRICES)


def test_a_cent_with_three_parallel_branches_never_overshoots():
    refused = threading.Event()
    model = held_model(refused)
    graph = three_branches(model, refused, Budget(max_cost_usd=0.01), MemorySaver())
    config = cfg()
    paused = graph.invoke({"log": [], "topics": ["a", "b", "c"]}, config)
    (question,) = paused["__interrupt__"]
    assert question.value["kind"] == "budget" and question.value["limit"] == "max_cost_usd"
    assert question.value["allowed"] == 0.01
    # Two calls were admitted (2 x $0.004 reserved); the third would have made $0.012.
    assert len(model.requests) == 2
    assert question.value["spent"] == pytest.approx(2 * WORST)
    spent = graph.checkpointer.get_tuple(config).pending_writes
    kept = next(v for t, c, v in spent if t == "__budget__")
    assert kept["run"]["cost_usd"] == pytest.approx(2 * 10 * 10 / 1e6)
    assert kept["run"]["cost_usd"] <= 0.01 and kept["run"]["model_calls"] == 2
    # A person raises the budget: only the refused branch runs; the others are not repeated.
    done = graph.invoke(Command(resume={"action": "raise", "budget": {"max_cost_usd": 0.02}}),
                        config)
    assert len(done["log"]) == 3 and len(model.requests) == 3
    final = graph.get_state(config).metadata["budget"]
    assert final["run"]["model_calls"] == 3
    assert final["limits"]["max_cost_usd"] == 0.02


def test_on_exceed_fail_raises():
    refused = threading.Event()
    model = held_model(refused)
    graph = three_branches(model, refused, Budget(max_cost_usd=0.01, on_exceed="fail"), None)
    with pytest.raises(BudgetExceeded, match=r"max_cost_usd=0\.01: would exceed"):
        graph.invoke({"log": [], "topics": ["a", "b", "c"]})
    assert len(model.requests) == 2


def call_twice_then_ask(model: ScriptedModel):
    def work(state: State) -> dict:
        first = model.invoke("one", max_tokens=5).content
        second = model.invoke("two", max_tokens=5).content
        return {"log": [first, second]}

    def ask(state: State) -> dict:
        return {"log": [interrupt("go on?")]}

    def more(state: State) -> dict:
        return {"log": [model.invoke("three", max_tokens=5).content]}

    builder = StateGraph(State)
    builder.add_node("work", work)
    builder.add_node("ask", ask)
    builder.add_node("more", more)
    builder.add_edge(START, "work")
    builder.add_edge("work", "ask")
    builder.add_edge("ask", "more")
    return builder


def test_budget_state_survives_a_restart(backend):  # noqa: F811
    backend.require_reopen()
    model = ScriptedModel(["fine"], cycle=True, model="free", prices=PriceBook({"free": (0, 0)}))
    thread = backend.thread()
    with backend.open() as store:
        graph = call_twice_then_ask(model).compile(
            checkpointer=store, budget=Budget(max_model_calls=2, on_exceed="fail"))
        graph.invoke({"log": []}, cfg(thread))
    with backend.open() as store:  # a new process, as far as the run can tell
        graph = call_twice_then_ask(model).compile(
            checkpointer=store, budget=Budget(max_model_calls=2, on_exceed="fail"))
        assert graph.get_state(cfg(thread)).metadata["budget"]["run"]["model_calls"] == 2
        with pytest.raises(BudgetExceeded, match="max_model_calls=2"):
            graph.invoke(Command(resume="yes"), cfg(thread))
    assert len(model.requests) == 2


def test_max_steps_pauses_between_steps_then_raise_or_stop():
    def count(state: State) -> dict:
        return {"log": [len(state["log"])]}

    builder = StateGraph(State)
    builder.add_node("count", count)
    builder.add_edge(START, "count")
    builder.add_conditional_edges("count",
                                  lambda s: "count" if len(s["log"]) < 6 else "__end__")
    graph = builder.compile(checkpointer=MemorySaver(), budget=Budget(max_steps=2))
    config = cfg()
    paused = graph.invoke({"log": []}, config)
    assert paused["log"] == [0, 1]
    assert paused["__interrupt__"][0].value["limit"] == "max_steps"
    paused = graph.invoke(Command(resume={"action": "raise", "budget": {"max_steps": 4}}),
                          config)
    assert paused["log"] == [0, 1, 2, 3] and paused["__interrupt__"]
    with pytest.raises(BudgetExceeded, match="stopped at"):
        graph.invoke(Command(resume="stop"), config)
    state = graph.get_state(config)
    assert state.next == () and state.metadata["source"] == "cancel"


def test_bad_budget_answers_and_unpriced_models_are_named():
    def count(state: State) -> dict:
        return {"log": [1]}

    builder = StateGraph(State)
    builder.add_node("count", count)
    builder.add_edge(START, "count")
    builder.add_conditional_edges("count", lambda s: "count")
    graph = builder.compile(checkpointer=MemorySaver(), budget=Budget(max_steps=1))
    config = cfg()
    graph.invoke({"log": []}, config)
    with pytest.raises(InvalidResumeError, match="budget question is answered with"):
        graph.invoke(Command(resume={"action": "more please"}), config)
    with pytest.raises(ValueError, match=r"Budget\.max_cost_usd must be a number"):
        Budget(max_cost_usd=-1)

    unpriced = ScriptedModel(["x"], cycle=True, model="mystery")
    builder = StateGraph(State)
    builder.add_node("call", lambda s: {"log": [unpriced.invoke("hi").content]})
    builder.add_edge(START, "call")
    with pytest.raises(PermanentError, match="'mystery' has no known price"):
        builder.compile(budget=Budget(max_cost_usd=1)).invoke({"log": []})


def test_per_invoke_budget_and_thread_scope():
    model = ScriptedModel(["ok"], cycle=True, model="free", prices=PriceBook({"free": (0, 0)}))

    def call(state: State) -> dict:
        return {"log": [model.invoke("hi", max_tokens=5).content]}

    builder = StateGraph(State)
    builder.add_node("call", call)
    builder.add_edge(START, "call")
    graph = builder.compile(checkpointer=MemorySaver(),
                            budget=Budget(max_model_calls=2, scope="thread", on_exceed="fail"))
    config = cfg()
    graph.invoke({"log": []}, config)
    graph.invoke({"log": []}, config)  # a second run on the thread: 2 calls in all
    with pytest.raises(BudgetExceeded):
        graph.invoke({"log": []}, config)
    with pytest.raises(BudgetExceeded, match="max_tokens=3"):
        graph.invoke({"log": []}, cfg(), budget=Budget(max_tokens=3, on_exceed="fail"))
    assert graph.invoke({"log": []}, cfg())["log"] == ["ok"]
