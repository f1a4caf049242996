"""State schemas: TypedDict, dataclass, pydantic; reducers; defaults; input/output/private schemas.

Expectations were checked against LangGraph 1.2 (waypoint has LangGraph's API and meaning).
"""

import operator
from dataclasses import dataclass, field
from typing import Annotated, TypedDict

import pytest
from pydantic import BaseModel, Field

from waypoint import START, StateGraph


def single_node_graph(schema, node, **kwargs):
    g = StateGraph(schema, **kwargs)
    g.add_node("node", node)
    g.add_edge(START, "node")
    return g.compile()


# --------------------------------------------------------------------------- TypedDict


class Plain(TypedDict, total=False):
    name: str
    count: int


async def test_typeddict_last_value_keys_are_overwritten(run):
    def node(state):
        return {"count": state["count"] + 1, "name": "new"}

    out = await run(single_node_graph(Plain, node), {"name": "old", "count": 1})
    assert out == {"name": "new", "count": 2}


async def test_typeddict_keys_not_written_are_kept(run):
    out = await run(single_node_graph(Plain, lambda s: {"count": 5}), {"name": "keep"})
    assert out == {"name": "keep", "count": 5}


async def test_typeddict_unset_key_is_absent_from_node_state(run):
    seen = []

    def node(state):
        seen.append(dict(state))
        return {"count": 1}

    out = await run(single_node_graph(Plain, node), {"name": "n"})
    assert seen == [{"name": "n"}]
    assert out == {"name": "n", "count": 1}


async def test_last_value_key_written_in_successive_steps(run):
    g = StateGraph(Plain)
    g.add_node("a", lambda s: {"count": 1})
    g.add_node("b", lambda s: {"count": s["count"] * 10})
    g.add_node("c", lambda s: {"count": s["count"] + 3})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    assert await run(g.compile(), {"count": 0}) == {"count": 13}


# --------------------------------------------------------------------------- reducers


class Acc(TypedDict, total=False):
    log: Annotated[list, operator.add]
    total: Annotated[int, operator.add]
    text: Annotated[str, operator.add]
    last: str


async def test_operator_add_list_accumulates_across_steps(run):
    g = StateGraph(Acc)
    g.add_node("a", lambda s: {"log": ["a"]})
    g.add_node("b", lambda s: {"log": ["b1", "b2"]})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    assert (await run(g.compile(), {"log": ["in"]}))["log"] == ["in", "a", "b1", "b2"]


async def test_input_value_goes_through_the_reducer(run):
    out = await run(single_node_graph(Acc, lambda s: {"total": 5}), {"total": 100})
    assert out["total"] == 105


async def test_reducer_keys_start_empty_and_are_visible_to_nodes(run):
    seen = []

    def node(state):
        seen.append(dict(state))
        return {"total": 2, "text": "ab", "last": "z"}

    out = await run(single_node_graph(Acc, node), {"last": "y"})
    # list/int/str reducer keys start from list()/int()/str()
    assert seen == [{"log": [], "total": 0, "text": "", "last": "y"}]
    assert out == {"log": [], "total": 2, "text": "ab", "last": "z"}


async def test_parallel_writes_to_reducer_keys_are_all_applied(run):
    g = StateGraph(Acc)
    g.add_node("a", lambda s: {"total": 1, "log": ["a"]})
    g.add_node("b", lambda s: {"total": 10, "log": ["b"]})
    g.add_node("c", lambda s: {"total": 100, "log": ["c"]})
    for n in "abc":
        g.add_edge(START, n)
    out = await run(g.compile(), {})
    assert out["total"] == 111
    assert sorted(out["log"]) == ["a", "b", "c"]


def merge_dicts(left, right):
    return {**(left or {}), **right}


def keep_max(left, right):
    if left is None:
        return right
    return max(left, right)


class Custom(TypedDict, total=False):
    data: Annotated[dict, merge_dicts]
    best: Annotated[int | None, keep_max]


async def test_custom_reducer_merges_dicts(run):
    g = StateGraph(Custom)
    g.add_node("a", lambda s: {"data": {"a": 1, "shared": "a"}})
    g.add_node("b", lambda s: {"data": {"b": 2}})
    g.add_node("c", lambda s: {"data": {"shared": "c"}})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    out = await run(g.compile(), {"data": {"in": 0}})
    assert out["data"] == {"in": 0, "a": 1, "b": 2, "shared": "c"}


async def test_custom_reducer_with_parallel_writes(run):
    g = StateGraph(Custom)
    g.add_node("a", lambda s: {"best": 3, "data": {"a": 1}})
    g.add_node("b", lambda s: {"best": 9, "data": {"b": 1}})
    g.add_node("c", lambda s: {"best": 5, "data": {"c": 1}})
    for n in "abc":
        g.add_edge(START, n)
    out = await run(g.compile(), {"best": 4})
    assert out["best"] == 9
    assert out["data"] == {"a": 1, "b": 1, "c": 1}


async def test_custom_reducer_receives_current_value_then_update(run):
    calls = []

    def record(left, right):
        calls.append((left, right))
        return (left or []) + [right]

    class S(TypedDict, total=False):
        seq: Annotated[list, record]

    g = StateGraph(S)
    g.add_node("a", lambda s: {"seq": "a"})
    g.add_node("b", lambda s: {"seq": "b"})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    out = await run(g.compile(), {})
    assert out == {"seq": ["a", "b"]}
    assert calls[-1] == (["a"], "b")


# --------------------------------------------------------------------------- dataclass state


@dataclass
class DCState:
    name: str
    items: Annotated[list, operator.add] = field(default_factory=list)
    count: int = 0


async def test_dataclass_state_node_gets_instance_with_defaults(run):
    seen = []

    def node(state):
        seen.append(state)
        return {"items": [state.name], "count": state.count + 1}

    out = await run(single_node_graph(DCState, node), {"name": "x"})
    assert isinstance(seen[0], DCState)
    assert (seen[0].name, seen[0].items, seen[0].count) == ("x", [], 0)
    assert out == {"name": "x", "items": ["x"], "count": 1}


async def test_dataclass_state_accepts_instance_as_input(run):
    out = await run(
        single_node_graph(DCState, lambda s: {"items": [s.name]}),
        DCState(name="y", items=[0], count=4),
    )
    assert out == {"name": "y", "items": [0, "y"], "count": 4}


async def test_dataclass_state_multi_step(run):
    g = StateGraph(DCState)
    g.add_node("a", lambda s: {"count": s.count + 1, "items": ["a"]})
    g.add_node("b", lambda s: {"count": s.count * 5, "items": ["b"]})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    out = await run(g.compile(), {"name": "n", "count": 1})
    assert out == {"name": "n", "items": ["a", "b"], "count": 10}


# --------------------------------------------------------------------------- pydantic state


class PState(BaseModel):
    name: str
    items: Annotated[list, operator.add] = Field(default_factory=list)
    count: int = 5


async def test_pydantic_state_node_gets_model_with_defaults(run):
    seen = []

    def node(state):
        seen.append(state)
        return {"items": [state.name], "count": state.count + 1}

    out = await run(single_node_graph(PState, node), {"name": "x"})
    assert isinstance(seen[0], PState)
    assert (seen[0].name, seen[0].items, seen[0].count) == ("x", [], 5)
    # the result of invoke is a plain dict, like LangGraph
    assert isinstance(out, dict)
    assert out == {"name": "x", "items": ["x"], "count": 6}


async def test_pydantic_state_multi_step_sees_updates(run):
    g = StateGraph(PState)
    g.add_node("a", lambda s: {"count": s.count + 1, "items": ["a"]})
    g.add_node("b", lambda s: {"items": [s.count], "name": s.name.upper()})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    out = await run(g.compile(), {"name": "n", "count": 1})
    assert out == {"name": "N", "items": ["a", 2], "count": 2}


async def test_pydantic_state_invalid_input_raises_validation_error(run):
    graph = single_node_graph(PState, lambda s: {})
    with pytest.raises(ValueError, match="name"):  # pydantic.ValidationError is a ValueError
        await run(graph, {"name": 123})


async def test_pydantic_state_missing_required_field_raises(run):
    graph = single_node_graph(PState, lambda s: {})
    with pytest.raises(ValueError, match="name"):
        await run(graph, {"count": 1})


# --------------------------------------------------------------------------- input / output schemas


class In(TypedDict):
    question: str


class Out(TypedDict):
    answer: str


class Overall(TypedDict, total=False):
    question: str
    answer: str
    notes: str


class Private(TypedDict):
    secret: str


def _io_graph(seen, **kwargs):
    def think(state: In) -> Private:
        seen.append(("think", dict(state)))
        return {"secret": state["question"].upper(), "notes": "thought"}

    def speak(state: Private):
        seen.append(("speak", dict(state)))
        return {"answer": state["secret"] + "!"}

    def check(state: Overall):
        seen.append(("check", dict(state)))
        return None

    g = StateGraph(Overall, **kwargs)
    g.add_node("think", think)
    g.add_node("speak", speak)
    g.add_node("check", check)
    g.add_edge(START, "think")
    g.add_edge("think", "speak")
    g.add_edge("speak", "check")
    return g.compile()


async def test_output_schema_filters_result(run):
    seen = []
    graph = _io_graph(seen, input_schema=In, output_schema=Out)
    assert await run(graph, {"question": "hi"}) == {"answer": "HI!"}


async def test_input_schema_filters_input(run):
    seen = []
    graph = _io_graph(seen, input_schema=In, output_schema=Out)
    out = await run(graph, {"question": "q", "notes": "sneaky", "answer": "preset"})
    assert out == {"answer": "Q!"}
    # keys outside the input schema were not written to the state
    assert seen[0] == ("think", {"question": "q"})
    assert seen[2] == ("check", {"question": "q", "answer": "Q!", "notes": "thought"})


async def test_node_reads_private_keys_declared_by_its_annotation(run):
    seen = []
    graph = _io_graph(seen, input_schema=In, output_schema=Out)
    await run(graph, {"question": "abc"})
    # speak is annotated with Private and sees exactly the private channel
    assert seen[1] == ("speak", {"secret": "ABC"})
    # private keys are not part of the overall state seen by an Overall node
    assert "secret" not in seen[2][1]


async def test_input_schema_only_returns_full_state(run):
    seen = []
    graph = _io_graph(seen, input_schema=In)
    out = await run(graph, {"question": "x"})
    assert out == {"question": "x", "answer": "X!", "notes": "thought"}


async def test_output_schema_only(run):
    seen = []
    graph = _io_graph(seen, output_schema=Out)
    out = await run(graph, {"question": "z", "notes": "given"})
    assert out == {"answer": "Z!"}
    assert seen[0] == ("think", {"question": "z"})  # think is annotated with In


async def test_node_input_annotation_restricts_what_it_sees(run):
    class Full(TypedDict, total=False):
        a: int
        b: int

    class OnlyA(TypedDict):
        a: int

    seen = []

    def node(state: OnlyA):
        seen.append(dict(state))
        return {"b": state["a"] * 2}

    out = await run(single_node_graph(Full, node), {"a": 4, "b": 0})
    assert seen == [{"a": 4}]
    assert out == {"a": 4, "b": 8}


async def test_output_schema_with_reducer_key(run):
    class St(TypedDict, total=False):
        q: str
        log: Annotated[list, operator.add]

    class OutLog(TypedDict):
        log: Annotated[list, operator.add]

    g = StateGraph(St, output_schema=OutLog)
    g.add_node("a", lambda s: {"log": [s["q"]]})
    g.add_node("b", lambda s: {"log": ["b"]})
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    assert await run(g.compile(), {"q": "question"}) == {"log": ["question", "b"]}
