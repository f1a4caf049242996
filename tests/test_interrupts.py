"""Human-in-the-loop: interrupt(), Command(resume=...), static breakpoints.

Expectations follow LangGraph 1.2 semantics. Tests that check a documented waypoint
deviation (SPEC "Deliberate differences") live in the last section and are skipped when
the `waypoint` package is a LangGraph shim.
"""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, TypedDict

import pytest

from waypoint import END, START, Command, Interrupt, StateGraph, interrupt
from waypoint.checkpoint import MemorySaver

ON_LANGGRAPH = StateGraph.__module__.startswith("langgraph")
waypoint_only = pytest.mark.skipif(ON_LANGGRAPH, reason="documented waypoint deviation")


class State(TypedDict):
    log: Annotated[list, operator.add]


def cfg() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def _interrupts_of(result: dict) -> list:
    assert "__interrupt__" in result, result
    return list(result["__interrupt__"])


# ------------------------------------------------ graphs


def single_interrupt_graph(calls: dict, *, async_node: bool = False):
    """start -> ask (interrupts once) -> done."""

    def ask(state: State):
        calls["ask"] = calls.get("ask", 0) + 1
        answer = interrupt({"question": "approve?"})
        return {"log": [f"answer:{answer}"]}

    async def aask(state: State):
        calls["ask"] = calls.get("ask", 0) + 1
        answer = interrupt({"question": "approve?"})
        return {"log": [f"answer:{answer}"]}

    def done(state: State):
        calls["done"] = calls.get("done", 0) + 1
        return {"log": ["done"]}

    g = StateGraph(State)
    g.add_node("ask", aask if async_node else ask)
    g.add_node("done", done)
    g.add_edge(START, "ask")
    g.add_edge("ask", "done")
    g.add_edge("done", END)
    return g.compile(checkpointer=MemorySaver())


def multi_interrupt_graph(calls: dict):
    """One node asks three questions in a row."""

    def survey(state: State):
        calls["survey"] = calls.get("survey", 0) + 1
        name = interrupt("name?")
        calls["after_first"] = calls.get("after_first", 0) + 1
        age = interrupt("age?")
        color = interrupt("color?")
        return {"log": [name, age, color]}

    g = StateGraph(State)
    g.add_node("survey", survey)
    g.add_edge(START, "survey")
    g.add_edge("survey", END)
    return g.compile(checkpointer=MemorySaver())


def parallel_interrupt_graph(calls: dict):
    """START fans out to a and b, both interrupt in the same step; join afterwards."""

    def make(name: str):
        def node(state: State):
            calls[name] = calls.get(name, 0) + 1
            answer = interrupt(f"question-{name}")
            return {"log": [f"{name}={answer}"]}

        return node

    def join(state: State):
        calls["join"] = calls.get("join", 0) + 1
        return {"log": ["join"]}

    g = StateGraph(State)
    g.add_node("a", make("a"))
    g.add_node("b", make("b"))
    g.add_node("join", join)
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    g.add_edge(["a", "b"], "join")
    g.add_edge("join", END)
    return g.compile(checkpointer=MemorySaver())


def chain_graph(calls: dict, **compile_kwargs):
    """a -> b -> c, each appends its name."""

    def make(name: str):
        def node(state: State):
            calls[name] = calls.get(name, 0) + 1
            return {"log": [name]}

        return node

    g = StateGraph(State)
    for name in ("a", "b", "c"):
        g.add_node(name, make(name))
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    return g.compile(checkpointer=MemorySaver(), **compile_kwargs)


# ------------------------------------------------ interrupt()


def test_interrupt_pauses_and_reports_interrupt_in_result():
    calls: dict = {}
    app = single_interrupt_graph(calls)
    config = cfg()
    result = app.invoke({"log": ["start"]}, config)

    assert isinstance(result["__interrupt__"], list)
    (intr,) = result["__interrupt__"]
    assert isinstance(intr, Interrupt)
    assert intr.value == {"question": "approve?"}
    assert isinstance(intr.id, str) and intr.id
    # state values are returned next to the interrupt, the paused node wrote nothing
    assert result["log"] == ["start"]
    assert calls == {"ask": 1}

    snapshot = app.get_state(config)
    assert snapshot.next == ("ask",)
    assert [i.id for i in snapshot.interrupts] == [intr.id]


def test_resume_with_plain_value_completes_run():
    calls: dict = {}
    app = single_interrupt_graph(calls)
    config = cfg()
    app.invoke({"log": []}, config)
    result = app.invoke(Command(resume="yes"), config)

    assert "__interrupt__" not in result
    assert result == {"log": ["answer:yes", "done"]}
    assert app.get_state(config).next == ()
    assert app.get_state(config).interrupts == ()


def test_resume_with_id_map_for_single_interrupt():
    app = single_interrupt_graph({})
    config = cfg()
    (intr,) = _interrupts_of(app.invoke({"log": []}, config))
    result = app.invoke(Command(resume={intr.id: "mapped"}), config)
    assert result == {"log": ["answer:mapped", "done"]}


def test_code_before_interrupt_reruns_on_resume():
    calls: dict = {}
    app = single_interrupt_graph(calls)
    config = cfg()
    app.invoke({"log": []}, config)
    assert calls == {"ask": 1}
    app.invoke(Command(resume="ok"), config)
    # the node restarts from its beginning on resume: its code before interrupt() runs again
    assert calls == {"ask": 2, "done": 1}


def test_resume_value_can_be_any_json_like_object():
    app = single_interrupt_graph({})
    config = cfg()
    app.invoke({"log": []}, config)
    result = app.invoke(Command(resume={"approved": True, "note": "fine"}), config)
    assert result["log"][0] == "answer:{'approved': True, 'note': 'fine'}"


def test_several_interrupts_in_one_node_are_matched_in_order():
    calls: dict = {}
    app = multi_interrupt_graph(calls)
    config = cfg()

    r1 = app.invoke({"log": []}, config)
    assert [i.value for i in _interrupts_of(r1)] == ["name?"]
    r2 = app.invoke(Command(resume="Ada"), config)
    assert [i.value for i in _interrupts_of(r2)] == ["age?"]
    r3 = app.invoke(Command(resume=36), config)
    assert [i.value for i in _interrupts_of(r3)] == ["color?"]
    r4 = app.invoke(Command(resume="green"), config)

    assert r4 == {"log": ["Ada", 36, "green"]}
    # the node body ran once per invoke; every earlier answer was replayed, in order
    assert calls["survey"] == 4
    assert calls["after_first"] == 3


def test_several_interrupts_in_one_node_resumed_by_id():
    app = multi_interrupt_graph({})
    config = cfg()
    seen_ids = []
    result = app.invoke({"log": []}, config)
    for answer in ("Bob", 7, "red"):
        (intr,) = _interrupts_of(result)
        seen_ids.append(intr.id)
        result = app.invoke(Command(resume={intr.id: answer}), config)
    assert result == {"log": ["Bob", 7, "red"]}
    # each interrupt() call in a task has its own id
    assert len(set(seen_ids)) == 3


def test_pending_interrupt_shows_in_state_between_resumes():
    app = multi_interrupt_graph({})
    config = cfg()
    app.invoke({"log": []}, config)
    app.invoke(Command(resume="Ada"), config)
    snapshot = app.get_state(config)
    assert snapshot.next == ("survey",)
    (task,) = snapshot.tasks
    assert task.name == "survey"
    assert [i.value for i in task.interrupts] == ["age?"]
    assert snapshot.values == {"log": []}


def test_parallel_interrupts_in_same_step():
    calls: dict = {}
    app = parallel_interrupt_graph(calls)
    config = cfg()
    result = app.invoke({"log": []}, config)

    interrupts = _interrupts_of(result)
    assert sorted(i.value for i in interrupts) == ["question-a", "question-b"]
    assert len({i.id for i in interrupts}) == 2
    snapshot = app.get_state(config)
    assert set(snapshot.next) == {"a", "b"}
    by_name = {t.name: t for t in snapshot.tasks}
    assert [i.value for i in by_name["a"].interrupts] == ["question-a"]
    assert [i.value for i in by_name["b"].interrupts] == ["question-b"]
    assert {i.id for i in snapshot.interrupts} == {i.id for i in interrupts}


def test_parallel_interrupts_resumed_together_with_id_map():
    calls: dict = {}
    app = parallel_interrupt_graph(calls)
    config = cfg()
    interrupts = _interrupts_of(app.invoke({"log": []}, config))
    answers = {i.id: i.value.upper() for i in interrupts}

    result = app.invoke(Command(resume=answers), config)
    assert "__interrupt__" not in result
    assert sorted(result["log"][:2]) == ["a=QUESTION-A", "b=QUESTION-B"]
    assert result["log"][2:] == ["join"]
    assert calls == {"a": 2, "b": 2, "join": 1}
    assert app.get_state(config).next == ()


def test_parallel_interrupts_resumed_one_at_a_time():
    calls: dict = {}
    app = parallel_interrupt_graph(calls)
    config = cfg()
    interrupts = _interrupts_of(app.invoke({"log": []}, config))
    by_value = {i.value: i for i in interrupts}

    r = app.invoke(Command(resume={by_value["question-a"].id: "first"}), config)
    remaining = _interrupts_of(r)
    assert [i.value for i in remaining] == ["question-b"]
    assert remaining[0].id == by_value["question-b"].id
    assert app.get_state(config).next == ("b",)

    r = app.invoke(Command(resume={remaining[0].id: "second"}), config)
    assert sorted(r["log"][:2]) == ["a=first", "b=second"]
    assert r["log"][2:] == ["join"]
    # a finished when answered: it is not re-run when b is answered
    assert calls["a"] == 2
    assert calls["join"] == 1


def test_plain_resume_with_several_pending_is_an_error_and_keeps_state():
    app = parallel_interrupt_graph({})
    config = cfg()
    interrupts = _interrupts_of(app.invoke({"log": []}, config))
    # LangGraph raises RuntimeError; waypoint raises InvalidResumeError (a ValueError)
    with pytest.raises((ValueError, RuntimeError)):
        app.invoke(Command(resume="ambiguous"), config)
    # nothing was consumed: both interrupts are still pending and can be answered
    assert {i.id for i in app.get_state(config).interrupts} == {i.id for i in interrupts}
    result = app.invoke(Command(resume={i.id: "x" for i in interrupts}), config)
    assert sorted(result["log"]) == ["a=x", "b=x", "join"]


def test_resume_map_with_unknown_keys_while_several_pending_is_an_error():
    calls: dict = {}
    app = parallel_interrupt_graph(calls)
    config = cfg()
    interrupts = _interrupts_of(app.invoke({"log": []}, config))
    # LangGraph: RuntimeError (treated as an ambiguous plain value); waypoint: ValueError
    with pytest.raises((ValueError, RuntimeError)):
        app.invoke(Command(resume={"not-an-id": 1}), config)
    assert {i.id for i in app.get_state(config).interrupts} == {i.id for i in interrupts}
    assert calls == {"a": 1, "b": 1}


def test_interrupt_in_stream_updates_mode():
    app = single_interrupt_graph({})
    config = cfg()
    chunks = list(app.stream({"log": []}, config, stream_mode="updates"))
    assert len(chunks) == 1
    (chunk,) = chunks
    assert set(chunk) == {"__interrupt__"}
    interrupts = list(chunk["__interrupt__"])
    assert len(interrupts) == 1
    assert isinstance(interrupts[0], Interrupt)
    assert interrupts[0].value == {"question": "approve?"}
    assert interrupts[0].id == app.get_state(config).interrupts[0].id

    resumed = list(app.stream(Command(resume="go"), config, stream_mode="updates"))
    assert resumed == [{"ask": {"log": ["answer:go"]}}, {"done": {"log": ["done"]}}]


def test_parallel_interrupts_in_stream_updates_mode():
    app = parallel_interrupt_graph({})
    config = cfg()
    chunks = list(app.stream({"log": []}, config, stream_mode="updates"))
    assert all(set(c) == {"__interrupt__"} for c in chunks)
    values = sorted(i.value for c in chunks for i in c["__interrupt__"])
    assert values == ["question-a", "question-b"]


async def test_async_node_interrupt_and_resume():
    calls: dict = {}
    app = single_interrupt_graph(calls, async_node=True)
    config = cfg()
    result = await app.ainvoke({"log": []}, config)
    (intr,) = _interrupts_of(result)
    assert intr.value == {"question": "approve?"}
    snapshot = await app.aget_state(config)
    assert snapshot.next == ("ask",)

    result = await app.ainvoke(Command(resume="async-yes"), config)
    assert result == {"log": ["answer:async-yes", "done"]}
    assert calls == {"ask": 2, "done": 1}


async def test_async_parallel_interrupts_resume_map():
    app = parallel_interrupt_graph({})
    config = cfg()
    interrupts = _interrupts_of(await app.ainvoke({"log": []}, config))
    result = await app.ainvoke(Command(resume={i.id: i.value[-1] for i in interrupts}), config)
    assert sorted(result["log"]) == ["a=a", "b=b", "join"]


async def test_async_astream_updates_reports_interrupt():
    app = single_interrupt_graph({}, async_node=True)
    config = cfg()
    chunks = [c async for c in app.astream({"log": []}, config, stream_mode="updates")]
    assert [list(c) for c in chunks] == [["__interrupt__"]]
    chunks = [c async for c in app.astream(Command(resume="z"), config, stream_mode="updates")]
    assert chunks == [{"ask": {"log": ["answer:z"]}}, {"done": {"log": ["done"]}}]


# ------------------------------------------------ static breakpoints


def test_interrupt_before_stops_before_node_and_resumes_with_none():
    calls: dict = {}
    app = chain_graph(calls, interrupt_before=["b"])
    config = cfg()
    result = app.invoke({"log": []}, config)
    assert result == {"log": ["a"]}
    assert calls == {"a": 1}

    snapshot = app.get_state(config)
    assert snapshot.next == ("b",)
    assert [t.name for t in snapshot.tasks] == ["b"]
    assert snapshot.tasks[0].interrupts == ()

    result = app.invoke(None, config)
    assert result == {"log": ["a", "b", "c"]}
    assert calls == {"a": 1, "b": 1, "c": 1}
    assert app.get_state(config).next == ()


def test_interrupt_after_stops_after_node_and_resumes_with_none():
    calls: dict = {}
    app = chain_graph(calls, interrupt_after=["a"])
    config = cfg()
    result = app.invoke({"log": []}, config)
    assert result == {"log": ["a"]}
    assert calls == {"a": 1}
    assert app.get_state(config).next == ("b",)

    result = app.invoke(None, config)
    assert result == {"log": ["a", "b", "c"]}
    # "a" already ran: it is not executed again
    assert calls == {"a": 1, "b": 1, "c": 1}


def test_interrupt_before_several_nodes_stops_at_each():
    calls: dict = {}
    app = chain_graph(calls, interrupt_before=["b", "c"])
    config = cfg()
    assert app.invoke({"log": []}, config) == {"log": ["a"]}
    assert app.get_state(config).next == ("b",)
    assert app.invoke(None, config) == {"log": ["a", "b"]}
    assert app.get_state(config).next == ("c",)
    assert app.invoke(None, config) == {"log": ["a", "b", "c"]}
    assert calls == {"a": 1, "b": 1, "c": 1}


def test_interrupt_before_stream_resume_only_runs_remaining_nodes():
    app = chain_graph({}, interrupt_before=["c"])
    config = cfg()
    first = list(app.stream({"log": []}, config, stream_mode="updates"))
    assert [k for c in first for k in c if k != "__interrupt__"] == ["a", "b"]
    second = list(app.stream(None, config, stream_mode="updates"))
    assert second == [{"c": {"log": ["c"]}}]


def test_interrupt_before_passed_at_invoke_time():
    calls: dict = {}
    app = chain_graph(calls)
    config = cfg()
    result = app.invoke({"log": []}, config, interrupt_before=["c"])
    assert result == {"log": ["a", "b"]}
    assert app.get_state(config).next == ("c",)
    assert app.invoke(None, config) == {"log": ["a", "b", "c"]}


async def test_async_interrupt_before_and_after():
    calls: dict = {}
    app = chain_graph(calls, interrupt_before=["b"], interrupt_after=["b"])
    config = cfg()
    assert await app.ainvoke({"log": []}, config) == {"log": ["a"]}
    assert (await app.aget_state(config)).next == ("b",)
    assert await app.ainvoke(None, config) == {"log": ["a", "b"]}
    assert (await app.aget_state(config)).next == ("c",)
    assert await app.ainvoke(None, config) == {"log": ["a", "b", "c"]}
    assert calls == {"a": 1, "b": 1, "c": 1}


def test_new_input_on_interrupted_thread_starts_over():
    calls: dict = {}
    app = single_interrupt_graph(calls)
    config = cfg()
    app.invoke({"log": ["one"]}, config)
    # a new input (not a Command) does not resume: "ask" runs again and interrupts again
    result = app.invoke({"log": ["two"]}, config)
    assert [i.value for i in _interrupts_of(result)] == [{"question": "approve?"}]
    assert result["log"] == ["one", "two"]
    assert calls == {"ask": 2}


# ------------------------------------------------ waypoint deviations
# SPEC "Deliberate differences" 3: a plain resume with several pending interrupts raises
# waypoint.errors.InvalidResumeError (a ValueError) listing the pending ids.


@waypoint_only
def test_waypoint_plain_resume_with_several_pending_raises_invalid_resume_error():
    from waypoint.errors import InvalidResumeError

    app = parallel_interrupt_graph({})
    config = cfg()
    interrupts = _interrupts_of(app.invoke({"log": []}, config))
    with pytest.raises(ValueError) as excinfo:
        app.invoke(Command(resume="which one?"), config)
    assert isinstance(excinfo.value, InvalidResumeError)
    message = str(excinfo.value)
    for intr in interrupts:
        assert intr.id in message
    # still resumable afterwards
    result = app.invoke(Command(resume={i.id: "ok" for i in interrupts}), config)
    assert sorted(result["log"]) == ["a=ok", "b=ok", "join"]


@waypoint_only
def test_waypoint_resume_map_with_unknown_ids_is_rejected():
    calls: dict = {}
    app = parallel_interrupt_graph(calls)
    config = cfg()
    interrupts = _interrupts_of(app.invoke({"log": []}, config))
    with pytest.raises(ValueError):
        app.invoke(Command(resume={"no-such-interrupt": 1, "another-bad-id": 2}), config)
    assert {i.id for i in app.get_state(config).interrupts} == {i.id for i in interrupts}
    assert "join" not in calls


@waypoint_only
async def test_waypoint_async_plain_resume_with_several_pending_raises():
    app = parallel_interrupt_graph({})
    config = cfg()
    await app.ainvoke({"log": []}, config)
    with pytest.raises(ValueError):
        await app.ainvoke(Command(resume="ambiguous"), config)


def test_resume_map_of_unknown_ids_is_refused_and_keeps_state():
    app = parallel_interrupt_graph({})
    config = cfg()
    interrupts = _interrupts_of(app.invoke({"log": []}, config))
    with pytest.raises(ValueError, match="not pending"):
        app.invoke(Command(resume={"0" * 32: "x"}), config)
    assert {i.id for i in app.get_state(config).interrupts} == {i.id for i in interrupts}
