"""Graph building: nodes, edges, joins, conditional edges, sequences and compile() validation.

Expectations were checked against LangGraph 1.2 (waypoint has LangGraph's API and meaning).
"""

import asyncio
import operator
import re
from typing import Annotated, Literal, TypedDict

import pytest

from waypoint import END, START, StateGraph


class State(TypedDict, total=False):
    log: Annotated[list, operator.add]
    value: int


def logger(name: str):
    """A node that appends its own name to ``log``."""

    def node(state):
        return {"log": [name]}

    node.__name__ = f"log_{name}"
    return node


# --------------------------------------------------------------------------- add_node


async def test_add_node_with_name_and_function(run):
    g = StateGraph(State)
    g.add_node("first", logger("first"))
    g.add_edge(START, "first")
    g.add_edge("first", END)
    assert await run(g.compile(), {"log": []}) == {"log": ["first"]}


async def test_add_node_function_only_uses_function_name(run):
    def my_step(state):
        return {"log": ["ran my_step"]}

    g = StateGraph(State)
    g.add_node(my_step)
    g.add_edge(START, "my_step")
    compiled = g.compile()
    assert "my_step" in compiled.get_graph().nodes
    assert await run(compiled, {"log": []}) == {"log": ["ran my_step"]}


async def test_async_function_node_by_name_only():
    async def fetch(state):
        await asyncio.sleep(0)
        return {"value": 42}

    g = StateGraph(State)
    g.add_node(fetch)
    g.add_edge(START, "fetch")
    # reducer keys (log) are always present, starting from an empty list
    assert await g.compile().ainvoke({}) == {"log": [], "value": 42}


# --------------------------------------------------------------------------- add_edge


async def test_linear_chain_runs_in_order(run):
    g = StateGraph(State)
    for name in ["a", "b", "c"]:
        g.add_node(name, logger(name))
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    assert await run(g.compile(), {"log": []}) == {"log": ["a", "b", "c"]}


async def test_node_without_outgoing_edge_ends_the_run(run):
    g = StateGraph(State)
    g.add_node("only", logger("only"))
    g.add_edge(START, "only")
    assert await run(g.compile(), {"log": ["in"]}) == {"log": ["in", "only"]}


async def test_several_start_edges_fan_out_in_one_step(run):
    seen = []

    def make(name):
        def node(state):
            seen.append((name, list(state["log"])))
            return {"log": [name]}

        return node

    g = StateGraph(State)
    g.add_node("left", make("left"))
    g.add_node("right", make("right"))
    g.add_edge(START, "left")
    g.add_edge(START, "right")
    out = await run(g.compile(), {"log": ["in"]})
    assert sorted(out["log"]) == ["in", "left", "right"]
    # both ran in the first step: each saw only the input
    assert sorted(seen) == [("left", ["in"]), ("right", ["in"])]


async def test_compiled_graph_is_reusable_and_runs_are_independent(run):
    g = StateGraph(State)
    g.add_node("a", logger("a"))
    g.add_edge(START, "a")
    compiled = g.compile()
    assert await run(compiled, {"log": ["x"]}) == {"log": ["x", "a"]}
    assert await run(compiled, {"log": ["y"]}) == {"log": ["y", "a"]}


# --------------------------------------------------------------------------- join edges


async def test_join_edge_runs_target_once_after_both_in_same_step(run):
    calls = []

    def c(state):
        calls.append(sorted(state["log"]))
        return {"log": ["c"]}

    g = StateGraph(State)
    g.add_node("a", logger("a"))
    g.add_node("b", logger("b"))
    g.add_node("c", c)
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    g.add_edge(["a", "b"], "c")
    g.add_edge("c", END)
    out = await run(g.compile(), {"log": []})
    assert out == {"log": ["a", "b", "c"]}
    assert calls == [["a", "b"]]


async def test_join_edge_waits_for_branches_finishing_in_different_steps(run):
    calls = []

    def c(state):
        calls.append(list(state["log"]))
        return {"log": ["c"]}

    g = StateGraph(State)
    g.add_node("a", logger("a"))  # finishes in step 1
    g.add_node("b", logger("b"))
    g.add_node("b2", logger("b2"))  # finishes in step 2
    g.add_node("b3", logger("b3"))  # finishes in step 3
    g.add_node("c", c)
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    g.add_edge("b", "b2")
    g.add_edge("b2", "b3")
    g.add_edge(["a", "b3"], "c")
    out = await run(g.compile(), {"log": []})
    # c ran exactly once, and only after both a and b3 had written
    assert calls == [["a", "b", "b2", "b3"]]
    assert out == {"log": ["a", "b", "b2", "b3", "c"]}


async def test_plain_edges_into_same_node_trigger_it_per_step(run):
    """Contrast with a join: two ordinary edges into c make c run each time one fires."""
    g = StateGraph(State)
    g.add_node("a", logger("a"))
    g.add_node("b", logger("b"))
    g.add_node("b2", logger("b2"))
    g.add_node("c", logger("c"))
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    g.add_edge("b", "b2")
    g.add_edge("a", "c")
    g.add_edge("b2", "c")
    out = await run(g.compile(), {"log": []})
    assert out == {"log": ["a", "b", "b2", "c", "c"]}


async def test_plain_edges_into_same_node_in_same_step_run_it_once(run):
    g = StateGraph(State)
    g.add_node("a", logger("a"))
    g.add_node("b", logger("b"))
    g.add_node("c", logger("c"))
    g.add_edge(START, "a")
    g.add_edge(START, "b")
    g.add_edge("a", "c")
    g.add_edge("b", "c")
    assert await run(g.compile(), {"log": []}) == {"log": ["a", "b", "c"]}


async def test_join_edge_with_three_sources(run):
    g = StateGraph(State)
    for name in ["x", "y", "z", "y2", "done"]:
        g.add_node(name, logger(name))
    g.add_edge(START, "x")
    g.add_edge(START, "y")
    g.add_edge(START, "z")
    g.add_edge("y", "y2")
    g.add_edge(["x", "y2", "z"], "done")
    out = await run(g.compile(), {"log": []})
    assert out["log"].count("done") == 1
    assert out["log"][-1] == "done"


# --------------------------------------------------------------------------- conditional edges


def _branching_graph(router, path_map=None):
    g = StateGraph(State)
    for name in ["decide", "left", "right", "other"]:
        g.add_node(name, logger(name))
    g.add_edge(START, "decide")
    if path_map is None:
        g.add_conditional_edges("decide", router)
    else:
        g.add_conditional_edges("decide", router, path_map)
    return g.compile()


async def test_router_returning_node_name(run):
    graph = _branching_graph(lambda s: "right" if s["value"] > 0 else "left")
    assert await run(graph, {"log": [], "value": 1}) == {"log": ["decide", "right"], "value": 1}
    assert await run(graph, {"log": [], "value": -1}) == {"log": ["decide", "left"], "value": -1}


async def test_router_returning_list_of_names_runs_them_in_parallel(run):
    seen = []

    def left(state):
        seen.append(("left", list(state["log"])))
        return {"log": ["left"]}

    def right(state):
        seen.append(("right", list(state["log"])))
        return {"log": ["right"]}

    g = StateGraph(State)
    g.add_node("decide", logger("decide"))
    g.add_node("left", left)
    g.add_node("right", right)
    g.add_edge(START, "decide")
    g.add_conditional_edges("decide", lambda s: ["right", "left"])
    out = await run(g.compile(), {"log": []})
    assert sorted(out["log"]) == ["decide", "left", "right"]
    assert sorted(seen) == [("left", ["decide"]), ("right", ["decide"])]


async def test_router_returning_end_stops(run):
    graph = _branching_graph(lambda s: END)
    assert await run(graph, {"log": []}) == {"log": ["decide"]}


async def test_router_returning_list_with_end(run):
    graph = _branching_graph(lambda s: ["left", END])
    assert await run(graph, {"log": []}) == {"log": ["decide", "left"]}


async def test_router_returning_empty_list_stops(run):
    graph = _branching_graph(lambda s: [])
    assert await run(graph, {"log": []}) == {"log": ["decide"]}


async def test_conditional_edges_with_dict_path_map(run):
    path_map = {"go_left": "left", "go_right": "right", "stop": END}
    graph = _branching_graph(lambda s: s["log"][0], path_map)
    assert await run(graph, {"log": ["go_left"]}) == {"log": ["go_left", "decide", "left"]}
    assert await run(graph, {"log": ["go_right"]}) == {"log": ["go_right", "decide", "right"]}
    assert await run(graph, {"log": ["stop"]}) == {"log": ["stop", "decide"]}


async def test_conditional_edges_with_list_path_map(run):
    graph = _branching_graph(lambda s: "other", ["left", "other", END])
    assert await run(graph, {"log": []}) == {"log": ["decide", "other"]}


async def test_dict_path_map_router_returning_list_of_keys(run):
    graph = _branching_graph(lambda s: ["L", "R"], {"L": "left", "R": "right"})
    out = await run(graph, {"log": []})
    assert sorted(out["log"]) == ["decide", "left", "right"]


async def test_router_with_literal_annotation(run):
    def router(state) -> Literal["left", "right"]:
        return "left"

    graph = _branching_graph(router)
    assert await run(graph, {"log": []}) == {"log": ["decide", "left"]}


async def test_async_router():
    async def router(state):
        await asyncio.sleep(0)
        return "right"

    graph = _branching_graph(router)
    assert await graph.ainvoke({"log": []}) == {"log": ["decide", "right"]}


async def test_router_sees_state_after_source_node_update(run):
    def decide(state):
        return {"value": 7}

    g = StateGraph(State)
    g.add_node("decide", decide)
    g.add_node("left", logger("left"))
    g.add_node("right", logger("right"))
    g.add_edge(START, "decide")
    g.add_conditional_edges("decide", lambda s: "right" if s["value"] == 7 else "left")
    assert await run(g.compile(), {"log": [], "value": 0}) == {"log": ["right"], "value": 7}


async def test_conditional_edges_from_start(run):
    g = StateGraph(State)
    g.add_node("small", logger("small"))
    g.add_node("big", logger("big"))
    g.add_conditional_edges(START, lambda s: "big" if s["value"] > 10 else "small")
    graph = g.compile()
    assert await run(graph, {"log": [], "value": 11}) == {"log": ["big"], "value": 11}
    assert await run(graph, {"log": [], "value": 1}) == {"log": ["small"], "value": 1}


async def test_loop_with_conditional_exit(run):
    def inc(state):
        return {"value": state["value"] + 1, "log": [state["value"]]}

    g = StateGraph(State)
    g.add_node("inc", inc)
    g.add_edge(START, "inc")
    g.add_conditional_edges("inc", lambda s: END if s["value"] >= 4 else "inc")
    assert await run(g.compile(), {"log": [], "value": 0}) == {"log": [0, 1, 2, 3], "value": 4}


async def test_static_and_conditional_edges_from_same_node(run):
    g = StateGraph(State)
    for name in ["a", "b", "c"]:
        g.add_node(name, logger(name))
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_conditional_edges("a", lambda s: "c")
    out = await run(g.compile(), {"log": []})
    assert sorted(out["log"]) == ["a", "b", "c"]


# ------------------------------------------------------------- add_sequence, entry/finish


async def test_add_sequence_with_functions_and_named_pairs(run):
    def first(state):
        return {"log": ["first"]}

    def second(state):
        return {"log": ["second"]}

    g = StateGraph(State)
    g.add_sequence([first, second, ("third", logger("third"))])
    g.add_edge(START, "first")
    compiled = g.compile()
    nodes = set(compiled.get_graph().nodes)
    assert {"first", "second", "third"} <= nodes
    assert await run(compiled, {"log": []}) == {"log": ["first", "second", "third"]}


async def test_add_sequence_then_more_edges(run):
    def one(state):
        return {"log": [1]}

    def two(state):
        return {"log": [2]}

    g = StateGraph(State)
    g.add_sequence([one, two])
    g.add_node("tail", logger("tail"))
    g.add_edge(START, "one")
    g.add_edge("two", "tail")
    assert await run(g.compile(), {"log": []}) == {"log": [1, 2, "tail"]}


async def test_set_entry_point_and_finish_point(run):
    g = StateGraph(State)
    g.add_node("a", logger("a"))
    g.add_node("b", logger("b"))
    g.set_entry_point("a")
    g.add_edge("a", "b")
    g.set_finish_point("b")
    assert await run(g.compile(), {"log": []}) == {"log": ["a", "b"]}


async def test_set_conditional_entry_point(run):
    g = StateGraph(State)
    g.add_node("a", logger("a"))
    g.add_node("b", logger("b"))
    g.set_conditional_entry_point(lambda s: "b" if s["log"] else "a")
    graph = g.compile()
    assert await run(graph, {"log": []}) == {"log": ["a"]}
    assert await run(graph, {"log": ["x"]}) == {"log": ["x", "b"]}


async def test_builder_methods_chain():
    g = StateGraph(State)
    # LangGraph's builder methods return the builder itself.
    assert g.add_node("a", logger("a")) is g
    assert g.add_edge(START, "a") is g
    assert g.add_conditional_edges("a", lambda s: END) is g
    assert await g.compile().ainvoke({"log": []}) == {"log": ["a"]}


# --------------------------------------------------------------------------- compile() validation


def _noop(state):
    return {}


def test_edge_to_unknown_node_is_refused():
    g = StateGraph(State)
    g.add_node("a", _noop)
    g.add_edge(START, "a")
    g.add_edge("a", "ghost_target")
    with pytest.raises(ValueError, match="ghost_target"):
        g.compile()


def test_edge_from_unknown_node_is_refused():
    g = StateGraph(State)
    g.add_node("a", _noop)
    g.add_edge(START, "a")
    g.add_edge("ghost_source", "a")
    with pytest.raises(ValueError, match="ghost_source"):
        g.compile()


def test_conditional_edges_from_unknown_node_are_refused():
    g = StateGraph(State)
    g.add_node("a", _noop)
    g.add_edge(START, "a")
    g.add_conditional_edges("ghost_branch", lambda s: "a")
    with pytest.raises(ValueError, match="ghost_branch"):
        g.compile()


def test_entry_point_to_unknown_node_is_refused():
    g = StateGraph(State)
    g.add_node("a", _noop)
    g.set_entry_point("ghost_entry")
    with pytest.raises(ValueError, match="ghost_entry"):
        g.compile()


def test_finish_point_on_unknown_node_is_refused():
    g = StateGraph(State)
    g.add_node("a", _noop)
    g.set_entry_point("a")
    g.set_finish_point("ghost_finish")
    with pytest.raises(ValueError, match="ghost_finish"):
        g.compile()


def test_missing_entry_point_is_refused():
    g = StateGraph(State)
    g.add_node("a", _noop)
    g.add_node("b", _noop)
    g.add_edge("a", "b")
    with pytest.raises(ValueError, match=r"(?i)entry|start"):
        g.compile()


def test_dict_path_map_target_that_does_not_exist_is_refused():
    g = StateGraph(State)
    g.add_node("a", _noop)
    g.add_edge(START, "a")
    g.add_conditional_edges("a", lambda s: "x", {"x": "ghost_mapped", "y": END})
    with pytest.raises(ValueError, match="ghost_mapped"):
        g.compile()


def test_list_path_map_target_that_does_not_exist_is_refused():
    g = StateGraph(State)
    g.add_node("a", _noop)
    g.add_edge(START, "a")
    g.add_conditional_edges("a", lambda s: END, ["ghost_listed", END])
    with pytest.raises(ValueError, match="ghost_listed"):
        g.compile()


def test_node_name_used_twice_is_refused():
    # LangGraph refuses already in add_node; waypoint may refuse there or in compile().
    with pytest.raises(ValueError, match="twice_node"):
        g = StateGraph(State)
        g.add_node("twice_node", _noop)
        g.add_node("twice_node", _noop)
        g.add_edge(START, "twice_node")
        g.compile()


def test_function_name_clash_is_refused():
    def step(state):
        return {}

    with pytest.raises(ValueError, match="step"):
        g = StateGraph(State)
        g.add_node(step)
        g.add_node("step", _noop)
        g.add_edge(START, "step")
        g.compile()


@pytest.mark.parametrize("reserved", [START, END])
def test_reserved_node_names_are_refused(reserved):
    assert reserved in ("__start__", "__end__")
    with pytest.raises(ValueError, match=re.escape(reserved)):
        g = StateGraph(State)
        g.add_node(reserved, _noop)
        g.add_edge(START, "a")
        g.compile()


def test_join_edge_from_unknown_node_is_refused():
    with pytest.raises(ValueError, match="ghost_joiner"):
        g = StateGraph(State)
        g.add_node("a", _noop)
        g.add_node("c", _noop)
        g.add_edge(START, "a")
        g.add_edge(["a", "ghost_joiner"], "c")
        g.compile()


def test_edge_out_of_end_is_refused():
    with pytest.raises(ValueError, match=r"(?i)end"):
        g = StateGraph(State)
        g.add_node("a", _noop)
        g.add_edge(START, "a")
        g.add_edge(END, "a")
        g.compile()


def test_edge_into_start_is_refused():
    with pytest.raises(ValueError, match=r"(?i)start"):
        g = StateGraph(State)
        g.add_node("a", _noop)
        g.add_edge(START, "a")
        g.add_edge("a", START)
        g.compile()


def test_valid_graph_compiles():
    g = StateGraph(State)
    g.add_node("a", _noop)
    g.add_edge(START, "a")
    g.add_edge("a", END)
    compiled = g.compile()
    assert hasattr(compiled, "invoke")
    assert hasattr(compiled, "ainvoke")
