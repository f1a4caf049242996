"""Mermaid drawing: compiled.get_graph().draw_mermaid().

LangGraph's output was used to learn the format; the assertions only check meaningful
content (node names, solid vs dotted arrows, subgraph contents with xray), not bytes.
"""

import operator
import re
from typing import Annotated, Literal, TypedDict

import pytest

from waypoint import END, START, Command, StateGraph


class State(TypedDict, total=False):
    log: Annotated[list, operator.add]


def noop(state):
    return {}


# An edge line: ``src --> dst``, ``src -.-> dst``, ``src -. label .-> dst`` or
# ``src -- label --> dst`` (optionally ending with ';').
EDGE_RE = re.compile(
    r"^\s*(?P<src>[^\s;]+)\s*"
    r"(?P<arrow>-\.->|-->|-\.\s.*?\s\.->|--\s.*?\s-->)"
    r"\s*(?P<dst>[^\s;]+?)\s*;?\s*$"
)


def edges(mermaid: str) -> set[tuple[str, str, bool]]:
    """(source, target, dotted) for every edge line of a mermaid chart."""
    found = set()
    for line in mermaid.splitlines():
        m = EDGE_RE.match(line)
        if m:
            dotted = m.group("arrow").startswith("-.")
            found.add((m.group("src"), m.group("dst"), dotted))
    return found


def has_edge(mermaid: str, src: str, dst: str, *, dotted: bool) -> bool:
    return (src, dst, dotted) in edges(mermaid)


def has_node(mermaid: str, name: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", mermaid) is not None


@pytest.fixture
def agent_graph():
    g = StateGraph(State)
    g.add_node("plan", noop)
    g.add_node("act", noop)
    g.add_node("review", noop)
    g.add_edge(START, "plan")
    g.add_edge("plan", "act")
    g.add_conditional_edges("act", lambda s: "review", {"review": "review", "done": END})
    g.add_edge("review", "act")
    return g.compile()


def test_draw_mermaid_returns_a_flowchart(agent_graph):
    text = agent_graph.get_graph().draw_mermaid()
    assert isinstance(text, str)
    assert re.search(r"^\s*(graph|flowchart) (TD|TB)", text, re.MULTILINE)


def test_every_node_is_drawn(agent_graph):
    text = agent_graph.get_graph().draw_mermaid()
    for name in ["__start__", "__end__", "plan", "act", "review"]:
        assert has_node(text, name), name


def test_plain_edges_are_solid(agent_graph):
    text = agent_graph.get_graph().draw_mermaid()
    assert has_edge(text, "__start__", "plan", dotted=False)
    assert has_edge(text, "plan", "act", dotted=False)
    assert has_edge(text, "review", "act", dotted=False)


def test_conditional_edges_are_dotted(agent_graph):
    text = agent_graph.get_graph().draw_mermaid()
    assert "-.->" in text or re.search(r"-\.\s.*\s\.->", text)
    assert has_edge(text, "act", "review", dotted=True)
    assert has_edge(text, "act", "__end__", dotted=True)
    # no solid edge was drawn for a conditional branch
    assert not has_edge(text, "act", "review", dotted=False)


def test_conditional_edges_with_list_path_map_are_dotted():
    g = StateGraph(State)
    g.add_node("route", noop)
    g.add_node("left", noop)
    g.add_node("right", noop)
    g.add_edge(START, "route")
    g.add_conditional_edges("route", lambda s: "left", ["left", "right"])
    text = g.compile().get_graph().draw_mermaid()
    assert has_edge(text, "route", "left", dotted=True)
    assert has_edge(text, "route", "right", dotted=True)


def test_router_literal_annotation_gives_dotted_edges():
    def router(state) -> Literal["x", "y"]:
        return "x"

    g = StateGraph(State)
    g.add_node("x", noop)
    g.add_node("y", noop)
    g.add_conditional_edges(START, router)
    text = g.compile().get_graph().draw_mermaid()
    assert has_edge(text, "__start__", "x", dotted=True)
    assert has_edge(text, "__start__", "y", dotted=True)


def test_command_literal_annotation_gives_dotted_edges():
    def chooser(state) -> Command[Literal["x", "__end__"]]:
        return Command(goto="x")

    g = StateGraph(State)
    g.add_node("chooser", chooser)
    g.add_node("x", noop)
    g.add_edge(START, "chooser")
    text = g.compile().get_graph().draw_mermaid()
    assert has_edge(text, "__start__", "chooser", dotted=False)
    assert has_edge(text, "chooser", "x", dotted=True)
    assert has_edge(text, "chooser", "__end__", dotted=True)


def test_join_edges_and_implicit_end():
    g = StateGraph(State)
    for name in ["x", "y", "z"]:
        g.add_node(name, noop)
    g.add_edge(START, "x")
    g.add_edge(START, "y")
    g.add_edge(["x", "y"], "z")
    text = g.compile().get_graph().draw_mermaid()
    assert has_edge(text, "x", "z", dotted=False)
    assert has_edge(text, "y", "z", dotted=False)
    # a node without outgoing edges is drawn as going to __end__
    assert has_edge(text, "z", "__end__", dotted=False)


def test_sequence_edges():
    def one(state):
        return {}

    def two(state):
        return {}

    def three(state):
        return {}

    g = StateGraph(State)
    g.add_sequence([one, two, three])
    g.add_edge(START, "one")
    text = g.compile().get_graph().draw_mermaid()
    assert has_edge(text, "__start__", "one", dotted=False)
    assert has_edge(text, "one", "two", dotted=False)
    assert has_edge(text, "two", "three", dotted=False)


def _parent_with_subgraph():
    sub = StateGraph(State)
    sub.add_node("inner_one", noop)
    sub.add_node("inner_two", noop)
    sub.add_edge(START, "inner_one")
    sub.add_edge("inner_one", "inner_two")
    g = StateGraph(State)
    g.add_node("outer", noop)
    g.add_node("child", sub.compile())
    g.add_edge(START, "outer")
    g.add_edge("outer", "child")
    g.add_edge("child", END)
    return g.compile()


def test_subgraph_is_a_single_node_without_xray():
    text = _parent_with_subgraph().get_graph().draw_mermaid()
    assert has_node(text, "child")
    assert has_edge(text, "outer", "child", dotted=False)
    assert has_edge(text, "child", "__end__", dotted=False)
    assert "inner_one" not in text
    assert "inner_two" not in text


def test_subgraph_nodes_drawn_with_xray():
    text = _parent_with_subgraph().get_graph(xray=True).draw_mermaid()
    assert "inner_one" in text
    assert "inner_two" in text
    assert re.search(r"^\s*subgraph\s+child\b", text, re.MULTILINE)
    found = edges(text)
    # the inner edge is drawn
    assert any("inner_one" in s and "inner_two" in d and not dot for s, d, dot in found)
    # the parent still connects to the subgraph: LangGraph draws outer --> child:inner_one,
    # an edge to the subgraph block itself (outer --> child) is an equally valid drawing
    assert any(
        s == "outer" and (d == "child" or "inner_one" in d) and not dot for s, d, dot in found
    )
    assert any(
        (s == "child" or "inner_two" in s) and d == "__end__" and not dot for s, d, dot in found
    )
