"""bench/server.py's workload graphs on waypoint (lg_graphs.py: the same, on LangGraph).

Compiled without a checkpointer: the server supplies its own (SQLite here).
"""

from typing import Any, TypedDict

from waypoint import END, START, StateGraph, interrupt


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
