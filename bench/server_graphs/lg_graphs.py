"""bench/server.py's workload graphs on LangGraph (wp_graphs.py: the same, on waypoint).

Compiled without a checkpointer: `langgraph dev` supplies its own (in memory).
"""

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class Count(TypedDict):
    x: int


class Ask(TypedDict, total=False):
    n: int
    answer: Any


def bump(state: Count) -> dict:
    return {"x": state["x"] + 1}


def ask_once(state: Ask) -> dict:
    answer = interrupt("ok?")
    return {"n": state["n"] + 1, "answer": answer}


def _chain() -> Any:
    builder = StateGraph(Count)
    builder.add_node("a", bump)
    builder.add_node("b", bump)
    builder.add_node("c", bump)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder.compile()


def _ask() -> Any:
    builder = StateGraph(Ask)
    builder.add_node("ask", ask_once)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder.compile()


chain = _chain()  # a -> b -> c, each x + 1
ask = _ask()  # interrupt("ok?"), then n + 1 and the resume value as answer
