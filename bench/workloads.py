"""Benchmark workloads, written once against an engine namespace.

Every factory takes ``ns``, an object exposing ``StateGraph``, ``START``, ``END``, ``Send``,
``Command``, ``interrupt`` and ``MemorySaver`` (see ``engine_namespace`` in ``run.py``), so the
very same graph code is built on LangGraph and on waypoint.

A factory returns a ``Case``:

* ``prepare()`` does the untimed set-up for one timed call (compiling, a fresh checkpointer,
  a fresh thread id) and returns a zero-argument callable;
* that callable is the timed part; it returns the (normalised) final state;
* ``expected`` is what that final state must equal on every engine.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict


@dataclass
class Case:
    prepare: Callable[[], Callable[[], Any]]
    expected: Any


@dataclass(frozen=True)
class Workload:
    name: str
    factory: Callable[[Any], Case]
    divisor: int  # the measured time is divided by this (steps, iterations, cycles)
    unit: str  # what one divided unit is, for the table
    what: str  # one line for --help and the README


# ---------------------------------------------------------------- chain200 / chain2000


class ChainState(TypedDict):
    x: int


def _inc(state: ChainState) -> dict:
    return {"x": state["x"] + 1}


def make_chain(ns: Any, n: int) -> Case:
    builder = ns.StateGraph(ChainState)
    names = [f"n{i}" for i in range(n)]
    for name in names:
        builder.add_node(name, _inc)
    builder.add_edge(ns.START, names[0])
    for a, b in itertools.pairwise(names):
        builder.add_edge(a, b)
    builder.add_edge(names[-1], ns.END)
    graph = builder.compile()  # no checkpointer: compile once, reuse for every call
    config = {"recursion_limit": n + 50}

    def prepare() -> Callable[[], Any]:
        return lambda: dict(graph.invoke({"x": 0}, config))

    return Case(prepare, {"x": n})


# ---------------------------------------------------------------- loop100


LOOP_ITERATIONS = 100


class LoopState(TypedDict):
    drafts: Annotated[list, operator.add]
    count: int
    approved: bool


def _write(state: LoopState) -> dict:
    count = state["count"] + 1
    return {"drafts": [f"{count:04d}:" + "x" * 1019], "count": count}  # 1 KB per draft


def _review(state: LoopState) -> dict:
    return {"approved": state["count"] >= LOOP_ITERATIONS}


def _after_review(state: LoopState) -> str:
    return "done" if state["approved"] else "again"


def make_loop(ns: Any) -> Case:
    builder = ns.StateGraph(LoopState)
    builder.add_node("write", _write)
    builder.add_node("review", _review)
    builder.add_edge(ns.START, "write")
    builder.add_edge("write", "review")
    builder.add_conditional_edges("review", _after_review, {"again": "write", "done": ns.END})

    def prepare() -> Callable[[], Any]:
        graph = builder.compile(checkpointer=ns.MemorySaver())  # fresh saver per call
        config = {"configurable": {"thread_id": "loop"}, "recursion_limit": 4 * LOOP_ITERATIONS}
        return lambda: dict(graph.invoke({"drafts": [], "count": 0, "approved": False}, config))

    expected = {
        "drafts": [f"{i:04d}:" + "x" * 1019 for i in range(1, LOOP_ITERATIONS + 1)],
        "count": LOOP_ITERATIONS,
        "approved": True,
    }
    return Case(prepare, expected)


# ---------------------------------------------------------------- fanout1000


FANOUT = 1000


class FanState(TypedDict):
    n: int
    results: Annotated[list, operator.add]
    total: int


def _fan(state: FanState) -> dict:
    return {"total": 0}


def _work(arg: dict) -> dict:
    return {"results": [arg["i"]]}


def _join(state: FanState) -> dict:
    return {"total": sum(state["results"])}


def make_fanout(ns: Any) -> Case:
    def route(state: FanState) -> list:
        return [ns.Send("work", {"i": i}) for i in range(state["n"])]

    builder = ns.StateGraph(FanState)
    builder.add_node("fan", _fan)
    builder.add_node("work", _work)
    builder.add_node("join", _join)
    builder.add_edge(ns.START, "fan")
    builder.add_conditional_edges("fan", route, ["work"])
    builder.add_edge("work", "join")
    builder.add_edge("join", ns.END)
    graph = builder.compile()

    def prepare() -> Callable[[], Any]:
        return lambda: dict(graph.invoke({"n": FANOUT, "results": [], "total": 0}))

    expected = {"n": FANOUT, "results": list(range(FANOUT)), "total": sum(range(FANOUT))}
    return Case(prepare, expected)


# ---------------------------------------------------------------- interrupt100


CYCLES = 100


class AskState(TypedDict, total=False):
    n: int
    answer: Any


def make_interrupt(ns: Any) -> Case:
    def ask(state: AskState) -> dict:
        answer = ns.interrupt("ok?")
        return {"n": state["n"] + 1, "answer": answer}

    builder = ns.StateGraph(AskState)
    builder.add_node("ask", ask)
    builder.add_edge(ns.START, "ask")
    builder.add_edge("ask", ns.END)
    resume = ns.Command(resume=True)

    def prepare() -> Callable[[], Any]:
        graph = builder.compile(checkpointer=ns.MemorySaver())
        configs = [{"configurable": {"thread_id": f"t{i}"}} for i in range(CYCLES)]

        def run() -> Any:
            outcomes = []
            for config in configs:  # one cycle = invoke until the interrupt, then resume
                paused = graph.invoke({"n": 0}, config)
                done = graph.invoke(resume, config)
                outcomes.append((_describe_pause(paused), dict(done)))
            return _summarise(outcomes)

        return run

    paused = {"n": 0, "__interrupt__": ["ok?"]}
    return Case(prepare, {"cycles": CYCLES, "distinct": [(paused, {"n": 1, "answer": True})]})


def _describe_pause(out: Any) -> dict:
    """The paused result with interrupts reduced to their values (ids are engine-specific)."""
    out = dict(out)
    if "__interrupt__" in out:
        out["__interrupt__"] = [getattr(i, "value", i) for i in out["__interrupt__"]]
    return out


def _summarise(outcomes: list) -> dict:
    distinct: list = []
    for item in outcomes:
        if item not in distinct:
            distinct.append(item)
    return {"cycles": len(outcomes), "distinct": distinct}


# ---------------------------------------------------------------- registry


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "chain200",
            lambda ns: make_chain(ns, 200),
            200,
            "step",
            "linear chain of 200 nodes, x += 1 each; no checkpointer",
        ),
        Workload(
            "chain2000",
            lambda ns: make_chain(ns, 2000),
            2000,
            "step",
            "the same chain with 2,000 nodes; flatness = per-step(2000) / per-step(200)",
        ),
        Workload(
            "loop100",
            make_loop,
            LOOP_ITERATIONS,
            "iteration",
            "write/review loop x100, 1 KB appended per write, MemorySaver + thread_id",
        ),
        Workload(
            "fanout1000",
            make_fanout,
            1,
            "run",
            "1,000 Send('work') from a conditional edge into an operator.add list, then join",
        ),
        Workload(
            "interrupt100",
            make_interrupt,
            CYCLES,
            "cycle",
            "interrupt('ok?') then Command(resume=True), 100 thread ids, MemorySaver",
        ),
    )
}
