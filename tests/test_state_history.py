"""get_state / get_state_history / update_state, replay and fork (time travel).

Expectations follow LangGraph 1.2 semantics.
"""

from __future__ import annotations

import asyncio
import itertools
import operator
import threading
import uuid
from datetime import datetime
from typing import Annotated, TypedDict

import pytest

from waypoint import END, START, Command, StateGraph, StateSnapshot, interrupt
from waypoint.checkpoint import MemorySaver

ON_LANGGRAPH = StateGraph.__module__.startswith("langgraph")


class State(TypedDict):
    log: Annotated[list, operator.add]


class RouteState(TypedDict):
    log: Annotated[list, operator.add]
    route: str


def cfg() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def cid(config: dict) -> str:
    return config["configurable"]["checkpoint_id"]


def chain_graph(calls: dict, names=("a", "b", "c"), **compile_kwargs):
    def make(name: str):
        def node(state: State):
            calls[name] = calls.get(name, 0) + 1
            return {"log": [name]}

        return node

    g = StateGraph(State)
    for name in names:
        g.add_node(name, make(name))
    g.add_edge(START, names[0])
    for x, y in itertools.pairwise(names):
        g.add_edge(x, y)
    g.add_edge(names[-1], END)
    return g.compile(checkpointer=MemorySaver(), **compile_kwargs)


def ask_graph(calls: dict):
    """pre -> ask (interrupt) -> post"""

    def pre(state: State):
        calls["pre"] = calls.get("pre", 0) + 1
        return {"log": ["pre"]}

    def ask(state: State):
        calls["ask"] = calls.get("ask", 0) + 1
        answer = interrupt("question")
        return {"log": [f"answer:{answer}"]}

    def post(state: State):
        calls["post"] = calls.get("post", 0) + 1
        return {"log": ["post"]}

    g = StateGraph(State)
    g.add_node("pre", pre)
    g.add_node("ask", ask)
    g.add_node("post", post)
    g.add_edge(START, "pre")
    g.add_edge("pre", "ask")
    g.add_edge("ask", "post")
    g.add_edge("post", END)
    return g.compile(checkpointer=MemorySaver())


class SignallingSaver(MemorySaver):
    """LangGraph only: MemorySaver that sets `good_saved` once node "good"'s write is stored.

    LangGraph saves a finished task's writes as soon as it finishes, from a callback that
    races with a failing sibling; the failing node waits for this signal so the test is
    deterministic. (waypoint's saver API differs, so there a plain MemorySaver is used.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.good_saved = threading.Event()

    def put_writes(self, config, writes, *args, **kwargs):
        result = super().put_writes(config, writes, *args, **kwargs)
        if any(value == ["good"] for _, value in writes):
            self.good_saved.set()
        return result

    async def aput_writes(self, config, writes, *args, **kwargs):
        result = await super().aput_writes(config, writes, *args, **kwargs)
        if any(value == ["good"] for _, value in writes):
            self.good_saved.set()
        return result


def failing_sibling_graph(calls: dict, broken: dict, *, async_nodes: bool = False):
    """START -> good, bad (parallel) -> join; bad raises while broken["on"].

    bad raises only after good has finished (bounded waits, no timing assertions)."""
    saver = SignallingSaver() if ON_LANGGRAPH else MemorySaver()
    good_finished = threading.Event()
    signals = [good_finished]
    if ON_LANGGRAPH:
        signals.append(saver.good_saved)

    def good(state: State):
        calls["good"] = calls.get("good", 0) + 1
        good_finished.set()
        return {"log": ["good"]}

    def bad(state: State):
        calls["bad"] = calls.get("bad", 0) + 1
        if broken["on"]:
            for signal in signals:
                signal.wait(timeout=10)
            raise ValueError("boom in bad")
        return {"log": ["bad"]}

    def join(state: State):
        calls["join"] = calls.get("join", 0) + 1
        return {"log": ["join"]}

    async def agood(state: State):
        return good(state)

    async def abad(state: State):
        calls["bad"] = calls.get("bad", 0) + 1
        if broken["on"]:
            for _ in range(1000):
                if all(signal.is_set() for signal in signals):
                    break
                await asyncio.sleep(0.01)
            raise ValueError("boom in bad")
        return {"log": ["bad"]}

    async def ajoin(state: State):
        return join(state)

    g = StateGraph(State)
    g.add_node("good", agood if async_nodes else good)
    g.add_node("bad", abad if async_nodes else bad)
    g.add_node("join", ajoin if async_nodes else join)
    g.add_edge(START, "good")
    g.add_edge(START, "bad")
    g.add_edge(["good", "bad"], "join")
    g.add_edge("join", END)
    return g.compile(checkpointer=saver)


def routed_graph(calls: dict, **compile_kwargs):
    """decide --(route)--> left | right"""

    def decide(state: RouteState):
        calls["decide"] = calls.get("decide", 0) + 1
        return {"log": ["decide"]}

    def make(name: str):
        def node(state: RouteState):
            calls[name] = calls.get(name, 0) + 1
            return {"log": [name]}

        return node

    g = StateGraph(RouteState)
    g.add_node("decide", decide)
    g.add_node("left", make("left"))
    g.add_node("right", make("right"))
    g.add_edge(START, "decide")
    g.add_conditional_edges(
        "decide", lambda s: s["route"], {"left": "left", "right": "right"}
    )
    g.add_edge("left", END)
    g.add_edge("right", END)
    return g.compile(checkpointer=MemorySaver(), **compile_kwargs)


# ------------------------------------------------ get_state


def test_get_state_after_completed_run():
    app = chain_graph({})
    config = cfg()
    app.invoke({"log": []}, config)
    snapshot = app.get_state(config)

    assert isinstance(snapshot, StateSnapshot)
    assert snapshot.values == {"log": ["a", "b", "c"]}
    assert snapshot.next == ()
    assert snapshot.tasks == ()
    assert snapshot.interrupts == ()
    assert snapshot.config["configurable"]["thread_id"] == config["configurable"]["thread_id"]
    assert isinstance(cid(snapshot.config), str)
    assert snapshot.metadata["source"] == "loop"
    assert snapshot.metadata["step"] == 3
    assert snapshot.parent_config is not None
    assert cid(snapshot.parent_config) != cid(snapshot.config)
    assert isinstance(snapshot.created_at, str)
    datetime.fromisoformat(snapshot.created_at)


def test_get_state_of_unknown_thread_is_empty():
    app = chain_graph({})
    snapshot = app.get_state(cfg())
    assert snapshot.values == {}
    assert snapshot.next == ()
    assert snapshot.tasks == ()
    assert snapshot.metadata is None
    assert snapshot.created_at is None
    assert snapshot.parent_config is None


def test_get_state_while_interrupted_shows_task_interrupts():
    app = ask_graph({})
    config = cfg()
    result = app.invoke({"log": []}, config)
    (intr,) = result["__interrupt__"]
    snapshot = app.get_state(config)

    assert snapshot.values == {"log": ["pre"]}
    assert snapshot.next == ("ask",)
    (task,) = snapshot.tasks
    assert task.name == "ask"
    assert task.error is None
    assert isinstance(task.id, str)
    assert [i.value for i in task.interrupts] == ["question"]
    assert task.interrupts[0].id == intr.id
    assert [i.id for i in snapshot.interrupts] == [intr.id]
    assert snapshot.metadata["source"] == "loop"
    assert snapshot.metadata["step"] == 1


def test_get_state_with_explicit_checkpoint_id_returns_that_checkpoint():
    app = chain_graph({})
    config = cfg()
    app.invoke({"log": []}, config)
    history = list(app.get_state_history(config))
    older = history[2]
    snapshot = app.get_state(older.config)
    assert cid(snapshot.config) == cid(older.config)
    assert snapshot.values == older.values
    assert snapshot.next == older.next


def test_get_state_after_failure_shows_task_error():
    calls: dict = {}
    broken = {"on": True}
    app = failing_sibling_graph(calls, broken)
    config = cfg()
    with pytest.raises(ValueError, match="boom in bad"):
        app.invoke({"log": []}, config)

    snapshot = app.get_state(config)
    assert "bad" in snapshot.next
    by_name = {t.name: t for t in snapshot.tasks}
    assert by_name["bad"].error is not None
    assert "boom in bad" in str(by_name["bad"].error)
    assert by_name["good"].error is None


def test_get_state_after_failure_applies_finished_sibling_writes():
    """LangGraph's get_state applies the pending writes of tasks that already finished:
    the finished sibling is no longer in `next` and its write shows in `values`."""
    app = failing_sibling_graph({}, {"on": True})
    config = cfg()
    with pytest.raises(ValueError):
        app.invoke({"log": []}, config)
    snapshot = app.get_state(config)
    assert snapshot.next == ("bad",)
    assert snapshot.values == {"log": ["good"]}
    by_name = {t.name: t for t in snapshot.tasks}
    assert by_name["good"].result == {"log": ["good"]}


def test_failed_task_finished_sibling_not_rerun_on_resume():
    calls: dict = {}
    broken = {"on": True}
    app = failing_sibling_graph(calls, broken)
    config = cfg()
    with pytest.raises(ValueError):
        app.invoke({"log": []}, config)
    assert calls == {"good": 1, "bad": 1}

    broken["on"] = False
    result = app.invoke(None, config)
    assert sorted(result["log"][:2]) == ["bad", "good"]
    assert result["log"][2:] == ["join"]
    # the finished sibling's write was kept: it did not run again
    assert calls == {"good": 1, "bad": 2, "join": 1}


async def test_async_failed_task_finished_sibling_not_rerun_on_resume():
    calls: dict = {}
    broken = {"on": True}
    app = failing_sibling_graph(calls, broken, async_nodes=True)
    config = cfg()
    with pytest.raises(ValueError, match="boom in bad"):
        await app.ainvoke({"log": []}, config)
    assert calls == {"good": 1, "bad": 1}
    snapshot = await app.aget_state(config)
    assert "bad" in snapshot.next

    broken["on"] = False
    result = await app.ainvoke(None, config)
    assert sorted(result["log"]) == ["bad", "good", "join"]
    assert calls == {"good": 1, "bad": 2, "join": 1}


async def test_aget_state_matches_get_state():
    app = ask_graph({})
    config = cfg()
    await app.ainvoke({"log": []}, config)
    sync_snapshot = app.get_state(config)
    async_snapshot = await app.aget_state(config)
    assert async_snapshot.values == sync_snapshot.values
    assert async_snapshot.next == sync_snapshot.next
    assert cid(async_snapshot.config) == cid(sync_snapshot.config)
    assert async_snapshot.metadata == sync_snapshot.metadata


# ------------------------------------------------ history


def test_history_is_newest_first_with_sources_and_steps():
    app = chain_graph({})
    config = cfg()
    app.invoke({"log": []}, config)
    history = list(app.get_state_history(config))

    assert [s.metadata["step"] for s in history] == [3, 2, 1, 0, -1]
    assert [s.metadata["source"] for s in history] == ["loop"] * 4 + ["input"]
    assert [s.next for s in history] == [(), ("c",), ("b",), ("a",), ("__start__",)]
    assert [s.values["log"] for s in history[:4]] == [["a", "b", "c"], ["a", "b"], ["a"], []]
    # each snapshot's parent is the next (older) one in the list
    for newer, older in itertools.pairwise(history):
        assert cid(newer.parent_config) == cid(older.config)
    assert history[-1].parent_config is None
    # the newest entry is what get_state returns
    assert cid(history[0].config) == cid(app.get_state(config).config)
    assert len({cid(s.config) for s in history}) == len(history)


def test_history_limit():
    app = chain_graph({})
    config = cfg()
    app.invoke({"log": []}, config)
    limited = list(app.get_state_history(config, limit=2))
    assert [s.metadata["step"] for s in limited] == [3, 2]


def test_history_before():
    app = chain_graph({})
    config = cfg()
    app.invoke({"log": []}, config)
    history = list(app.get_state_history(config))
    before = list(app.get_state_history(config, before=history[1].config))
    assert [cid(s.config) for s in before] == [cid(s.config) for s in history[2:]]
    assert [s.metadata["step"] for s in before] == [1, 0, -1]


def test_history_filter_by_source():
    app = chain_graph({})
    config = cfg()
    app.invoke({"log": []}, config)
    loop = list(app.get_state_history(config, filter={"source": "loop"}))
    assert [s.metadata["step"] for s in loop] == [3, 2, 1, 0]
    inputs = list(app.get_state_history(config, filter={"source": "input"}))
    assert [s.metadata["step"] for s in inputs] == [-1]


def test_history_spans_several_runs_on_one_thread():
    app = chain_graph({}, names=("a",))
    config = cfg()
    app.invoke({"log": ["x"]}, config)
    app.invoke({"log": ["y"]}, config)
    history = list(app.get_state_history(config))
    assert [s.metadata["source"] for s in history] == [
        "loop", "loop", "input", "loop", "loop", "input"
    ]
    assert [s.metadata["step"] for s in history] == [4, 3, 2, 1, 0, -1]
    assert history[0].values == {"log": ["x", "a", "y", "a"]}
    # the second run's input checkpoint continues from the first run's final state
    assert history[2].values == {"log": ["x", "a"]}
    assert history[2].next == ("__start__",)


def test_history_keeps_interrupts_of_past_checkpoints():
    app = ask_graph({})
    config = cfg()
    app.invoke({"log": []}, config)
    app.invoke(Command(resume="yes"), config)
    history = list(app.get_state_history(config))
    paused = [s for s in history if s.next == ("ask",)]
    assert len(paused) == 1
    assert [i.value for t in paused[0].tasks for i in t.interrupts] == ["question"]
    assert history[0].next == ()
    assert history[0].values == {"log": ["pre", "answer:yes", "post"]}


async def test_aget_state_history_with_limit_and_filter():
    app = chain_graph({})
    config = cfg()
    await app.ainvoke({"log": []}, config)
    steps = [s.metadata["step"] async for s in app.aget_state_history(config)]
    assert steps == [3, 2, 1, 0, -1]
    limited = [s.metadata["step"] async for s in app.aget_state_history(config, limit=3)]
    assert limited == [3, 2, 1]
    inputs = [
        s.metadata["source"]
        async for s in app.aget_state_history(config, filter={"source": "input"})
    ]
    assert inputs == ["input"]


# ------------------------------------------------ update_state


def test_update_state_applies_reducers_and_records_update_checkpoint():
    app = chain_graph({}, interrupt_before=["b"])
    config = cfg()
    app.invoke({"log": []}, config)
    before = app.get_state(config)

    new_config = app.update_state(config, {"log": ["manual"]})
    assert cid(new_config) != cid(before.config)
    snapshot = app.get_state(config)
    assert cid(snapshot.config) == cid(new_config)
    assert snapshot.values == {"log": ["a", "manual"]}
    assert snapshot.metadata["source"] == "update"
    assert snapshot.metadata["step"] == before.metadata["step"] + 1
    assert cid(snapshot.parent_config) == cid(before.config)
    # with no as_node the update counts as coming from the last node that ran ("a")
    assert snapshot.next == ("b",)


def test_update_state_then_resume_sees_update():
    calls: dict = {}
    app = chain_graph(calls, interrupt_before=["b"])
    config = cfg()
    app.invoke({"log": []}, config)
    app.update_state(config, {"log": ["manual"]})
    result = app.invoke(None, config)
    assert result == {"log": ["a", "manual", "b", "c"]}
    assert calls == {"a": 1, "b": 1, "c": 1}


def test_update_state_as_node_computes_next_as_if_node_ran():
    calls: dict = {}
    app = chain_graph(calls, interrupt_before=["b"])
    config = cfg()
    app.invoke({"log": []}, config)

    app.update_state(config, {"log": ["b-by-hand"]}, as_node="b")
    snapshot = app.get_state(config)
    assert snapshot.next == ("c",)
    assert snapshot.values == {"log": ["a", "b-by-hand"]}
    assert snapshot.metadata["source"] == "update"

    result = app.invoke(None, config)
    assert result == {"log": ["a", "b-by-hand", "c"]}
    assert "b" not in calls
    assert calls == {"a": 1, "c": 1}


def test_update_state_as_node_follows_conditional_edges():
    calls: dict = {}
    app = routed_graph(calls, interrupt_after=["decide"])
    config = cfg()
    app.invoke({"log": [], "route": "left"}, config)
    assert app.get_state(config).next == ("left",)

    app.update_state(config, {"route": "right"}, as_node="decide")
    assert app.get_state(config).next == ("right",)
    result = app.invoke(None, config)
    assert result == {"log": ["decide", "right"], "route": "right"}
    assert "left" not in calls


def test_update_state_as_node_on_finished_thread_schedules_successors():
    calls: dict = {}
    app = chain_graph(calls)
    config = cfg()
    app.invoke({"log": []}, config)
    assert app.get_state(config).next == ()

    app.update_state(config, {"log": ["again"]}, as_node="a")
    assert app.get_state(config).next == ("b",)
    result = app.invoke(None, config)
    assert result == {"log": ["a", "b", "c", "again", "b", "c"]}
    assert calls == {"a": 1, "b": 2, "c": 2}


def test_update_state_answers_nothing_about_pending_interrupt():
    """Updating state while an interrupt is pending keeps the node scheduled."""
    calls: dict = {}
    app = ask_graph(calls)
    config = cfg()
    app.invoke({"log": []}, config)
    app.update_state(config, {"log": ["note"]})
    snapshot = app.get_state(config)
    assert snapshot.next == ("ask",)
    assert snapshot.values == {"log": ["pre", "note"]}
    result = app.invoke(Command(resume="later"), config)
    assert result == {"log": ["pre", "note", "answer:later", "post"]}


async def test_aupdate_state_as_node():
    calls: dict = {}
    app = chain_graph(calls, interrupt_before=["b"])
    config = cfg()
    await app.ainvoke({"log": []}, config)
    new_config = await app.aupdate_state(config, {"log": ["hand"]}, as_node="b")
    snapshot = await app.aget_state(config)
    assert cid(snapshot.config) == cid(new_config)
    assert snapshot.next == ("c",)
    assert await app.ainvoke(None, config) == {"log": ["a", "hand", "c"]}
    assert calls == {"a": 1, "c": 1}


# ------------------------------------------------ replay / fork


def test_replay_from_earlier_checkpoint_reruns_downstream_nodes():
    calls: dict = {}
    app = chain_graph(calls)
    config = cfg()
    app.invoke({"log": []}, config)
    assert calls == {"a": 1, "b": 1, "c": 1}
    history = list(app.get_state_history(config))
    before_b = next(s for s in history if s.next == ("b",))

    result = app.invoke(None, before_b.config)
    assert result == {"log": ["a", "b", "c"]}
    # b and c ran again, a did not
    assert calls == {"a": 1, "b": 2, "c": 2}
    # the thread's head is the replayed branch; older checkpoints are still there
    latest = app.get_state(config)
    assert latest.values == {"log": ["a", "b", "c"]}
    assert cid(latest.config) != cid(history[0].config)
    new_history = list(app.get_state_history(config))
    assert len(new_history) > len(history)
    old_ids = {cid(s.config) for s in history}
    assert old_ids <= {cid(s.config) for s in new_history}


def test_replay_creates_fork_checkpoint_from_replayed_one():
    """LangGraph 1.2: replaying a past checkpoint first writes a "fork" checkpoint whose
    parent is the replayed checkpoint; the new loop checkpoints descend from it."""
    app = chain_graph({})
    config = cfg()
    app.invoke({"log": []}, config)
    history = list(app.get_state_history(config))
    before_b = next(s for s in history if s.next == ("b",))
    app.invoke(None, before_b.config)

    new = [s for s in app.get_state_history(config) if cid(s.config) not in
           {cid(h.config) for h in history}]
    forks = [s for s in new if s.metadata["source"] == "fork"]
    assert len(forks) == 1
    assert cid(forks[0].parent_config) == cid(before_b.config)
    assert forks[0].next == ("b",)
    assert forks[0].values == before_b.values
    assert all(s.metadata["source"] in ("fork", "loop") for s in new)


def test_replay_before_interrupting_node_interrupts_again():
    calls: dict = {}
    app = ask_graph(calls)
    config = cfg()
    app.invoke({"log": []}, config)
    app.invoke(Command(resume="first"), config)
    assert calls == {"pre": 1, "ask": 2, "post": 1}

    before_ask = next(s for s in app.get_state_history(config) if s.next == ("ask",))
    result = app.invoke(None, before_ask.config)
    assert [i.value for i in result["__interrupt__"]] == ["question"]
    assert result["log"] == ["pre"]
    assert app.get_state(config).next == ("ask",)
    assert calls["ask"] == 3

    result = app.invoke(Command(resume="second"), config)
    assert result == {"log": ["pre", "answer:second", "post"]}
    assert calls == {"pre": 1, "ask": 4, "post": 2}


def test_fork_with_update_state_on_old_checkpoint_creates_branch():
    calls: dict = {}
    app = chain_graph(calls)
    config = cfg()
    app.invoke({"log": []}, config)
    original_head = app.get_state(config)
    before_b = next(s for s in app.get_state_history(config) if s.next == ("b",))

    fork_config = app.update_state(before_b.config, {"log": ["forked"]})
    fork = app.get_state(fork_config)
    assert fork.metadata["source"] == "update"
    assert fork.metadata["step"] == before_b.metadata["step"] + 1
    assert cid(fork.parent_config) == cid(before_b.config)
    assert fork.values == {"log": ["a", "forked"]}
    assert fork.next == ("b",)

    result = app.invoke(None, fork_config)
    assert result == {"log": ["a", "forked", "b", "c"]}
    assert calls == {"a": 1, "b": 2, "c": 2}
    assert app.get_state(config).values == {"log": ["a", "forked", "b", "c"]}
    # the original branch is still readable
    assert app.get_state(original_head.config).values == {"log": ["a", "b", "c"]}


def test_fork_as_node_skips_node():
    calls: dict = {}
    app = chain_graph(calls)
    config = cfg()
    app.invoke({"log": []}, config)
    before_b = next(s for s in app.get_state_history(config) if s.next == ("b",))
    fork_config = app.update_state(before_b.config, {"log": ["B!"]}, as_node="b")
    assert app.get_state(fork_config).next == ("c",)
    result = app.invoke(None, fork_config)
    assert result == {"log": ["a", "B!", "c"]}
    assert calls == {"a": 1, "b": 1, "c": 2}


async def test_async_replay_and_fork():
    calls: dict = {}
    app = chain_graph(calls)
    config = cfg()
    await app.ainvoke({"log": []}, config)
    history = [s async for s in app.aget_state_history(config)]
    before_c = next(s for s in history if s.next == ("c",))

    assert await app.ainvoke(None, before_c.config) == {"log": ["a", "b", "c"]}
    assert calls == {"a": 1, "b": 1, "c": 2}

    fork_config = await app.aupdate_state(before_c.config, {"log": ["x"]})
    assert await app.ainvoke(None, fork_config) == {"log": ["a", "b", "x", "c"]}
    assert calls == {"a": 1, "b": 1, "c": 3}
