"""Approvals (persisted, validated decisions, deadlines with escalation) and durable timers
(sleep / wait_until fired by a scheduler, once even with two schedulers)."""

from __future__ import annotations

import operator
import threading
import time
import uuid
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel
from store_backends import backend, saver  # noqa: F401

from waypoint import (
    END,
    START,
    Command,
    Decision,
    StateGraph,
    approve,
    decide,
    fire_due_timers,
    sleep,
)
from waypoint.checkpoint import MemorySaver


class State(TypedDict, total=False):
    log: Annotated[list, operator.add]
    decision: Any


class Release(BaseModel):
    version: str
    replicas: int


def cfg(thread: str | None = None) -> dict:
    return {"configurable": {"thread_id": thread or str(uuid.uuid4())}}


def approval_graph(saver_: Any, name: str = "approvals", **approve_options: Any):
    def gate(state: State) -> dict:
        decision = approve({"deploy": "v2.1", "to": "prod"}, schema=Release, **approve_options)
        return {"decision": decision.to_dict(), "log": [f"gate:{decision.action}"]}

    builder = StateGraph(State)
    builder.add_node("gate", gate)
    builder.add_node("deploy", lambda s: {"log": ["deployed"]})
    builder.add_node("fallback", lambda s: {"log": ["fallback"]})
    builder.add_edge(START, "gate")
    builder.add_conditional_edges(
        "gate", lambda s: "deploy" if s["decision"]["action"] in ("approve", "edit") else END,
        ["deploy", END])
    builder.add_edge("deploy", END)
    return builder.compile(checkpointer=saver_, name=name)


def _question(result: dict) -> Any:
    (item,) = result["__interrupt__"]
    return item.value


def test_approval_is_a_persisted_record_listable_across_threads(backend, saver):  # noqa: F811
    graph = approval_graph(saver, assignee="release-managers")
    one, two = cfg(backend.thread()), cfg(backend.thread())
    question = _question(graph.invoke({"log": []}, one))
    graph.invoke({"log": []}, two)
    assert question["kind"] == "approval" and question["request"] == {"deploy": "v2.1",
                                                                       "to": "prod"}
    assert question["actions"] == ["approve", "reject", "edit"]
    assert question["schema"]["properties"]["replicas"]["type"] == "integer"
    mine = {one["configurable"]["thread_id"], two["configurable"]["thread_id"]}
    pending = [a for a in saver.list_pending_approvals(assignee="release-managers")
               if a.thread_id in mine]
    assert len(pending) == 2 and {a.node for a in pending} == {"gate"}
    result = graph.invoke(Command(resume={"action": "approve", "by": "alice",
                                          "comment": "looks good"}), one)
    assert result["log"] == ["gate:approve", "deployed"]
    assert result["decision"]["by"] == "alice"
    record = saver.get_approval(one["configurable"]["thread_id"], question["approval_id"])
    assert record.status == "decided"
    assert record.decision["action"] == "approve" and record.decision["comment"] == "looks good"
    assert record.decided_at is not None
    left = [a.thread_id for a in saver.list_pending_approvals() if a.thread_id in mine]
    assert left == [two["configurable"]["thread_id"]]
    result = decide(graph, two, _question_id(graph, two), "reject", by="bob")
    assert result["log"] == ["gate:reject"]


def _question_id(graph: Any, config: dict) -> str:
    (item,) = graph.get_state(config).interrupts
    return item.value["approval_id"]


def test_invalid_answers_are_asked_again_with_the_error():
    graph = approval_graph(MemorySaver())
    config = cfg()
    graph.invoke({"log": []}, config)
    again = _question(graph.invoke(Command(resume="ship it"), config))
    assert "action must be one of approve, reject, edit" in again["error"]
    again = _question(graph.invoke(Command(resume={"action": "edit",
                                                    "edits": {"version": "v2.2"}}), config))
    assert "replicas: Field required" in again["error"]
    result = graph.invoke(Command(resume={"action": "edit", "by": "carol",
                                          "edits": {"version": "v2.2", "replicas": "3"}}), config)
    assert result["log"] == ["gate:edit", "deployed"]
    edits = result["decision"]["edits"]
    assert (edits.version, edits.replicas) == ("v2.2", 3)


def test_deadline_rejects_when_it_passes(backend, saver):  # noqa: F811
    graph = approval_graph(saver, name=f"deadline-{uuid.uuid4().hex[:6]}", deadline=60)
    config = cfg(backend.thread())
    question = _question(graph.invoke({"log": []}, config))
    assert question["deadline"] > time.time() + 50
    assert fire_due_timers(graph) == []  # not due yet
    (fired,) = fire_due_timers(graph, now=time.time() + 61)
    assert fired.outcome == "fired" and fired.kind == "approval"
    state = graph.get_state(config)
    assert state.next == () and state.values["log"] == ["gate:reject"]
    assert state.values["decision"]["timed_out"] is True
    record = saver.get_approval(config["configurable"]["thread_id"], question["approval_id"])
    assert record.status == "expired"
    assert fire_due_timers(graph, now=time.time() + 120) == []  # fired once


def test_deadline_escalates_then_a_decision_is_taken():
    saver_ = MemorySaver()
    graph = approval_graph(saver_, deadline=30, on_timeout="escalate", assignee="oncall",
                           escalate_to="head-of-ops")
    config = cfg()
    first = _question(graph.invoke({"log": []}, config))
    assert first["assignee"] == "oncall"
    fire_due_timers(graph, now=time.time() + 31)
    escalated = _question({"__interrupt__": graph.get_state(config).interrupts})
    assert escalated["assignee"] == "head-of-ops" and escalated["escalations"] == 1
    assert escalated["approval_id"] == first["approval_id"]
    record = saver_.get_approval(config["configurable"]["thread_id"], first["approval_id"])
    assert record.assignee == "head-of-ops" and record.escalations == 1
    result = graph.invoke(Command(resume={"action": "approve", "by": "dana"}), config)
    assert result["decision"]["escalations"] == 1 and result["log"][-1] == "deployed"


def test_deadline_can_route_to_a_node():
    graph = approval_graph(MemorySaver(), deadline=5, on_timeout="fallback")
    config = cfg()
    graph.invoke({"log": []}, config)
    fire_due_timers(graph, now=time.time() + 6)
    assert graph.get_state(config).values["log"] == ["fallback"]


def test_cancel_closes_pending_approvals_and_timers():
    saver_ = MemorySaver()
    graph = approval_graph(saver_, deadline=60)
    config = cfg()
    question = _question(graph.invoke({"log": []}, config))
    graph.cancel(config, reason="release withdrawn")
    thread = config["configurable"]["thread_id"]
    assert saver_.get_approval(thread, question["approval_id"]).status == "cancelled"
    assert [t.status for t in saver_.list_timers(thread_id=thread)] == ["cancelled"]


# -- timers ---------------------------------------------------------------------------------


def sleeper_graph(saver_: Any, woke: list, name: str) -> Any:
    def wait(state: State) -> dict:
        sleep(3600)
        woke.append(1)
        return {"log": ["woke"]}

    builder = StateGraph(State)
    builder.add_node("wait", wait)
    builder.add_edge(START, "wait")
    return builder.compile(checkpointer=saver_, name=name)


def test_sleep_suspends_until_a_scheduler_fires_it(backend, saver):  # noqa: F811
    woke: list = []
    graph = sleeper_graph(saver, woke, f"sleepers-{uuid.uuid4().hex[:6]}")
    config = cfg(backend.thread())
    paused = graph.invoke({"log": []}, config)
    assert paused["__interrupt__"][0].value["kind"] == "timer"
    assert fire_due_timers(graph, now=time.time() + 60) == []
    (fired,) = fire_due_timers(graph, now=time.time() + 3601)
    assert fired.outcome == "fired"
    assert graph.get_state(config).values["log"] == ["woke"] and woke == [1]


def test_a_due_timer_fires_once_with_two_schedulers(backend):  # noqa: F811
    backend.require_reopen()
    name = f"race-{uuid.uuid4().hex[:6]}"
    threads = [backend.thread() for _ in range(6)]
    woke: list = []
    with backend.open() as first, backend.open() as second:
        graphs = [sleeper_graph(first, woke, name), sleeper_graph(second, woke, name)]
        for thread in threads:
            graphs[0].invoke({"log": []}, cfg(thread))
        outcomes: list = []
        barrier = threading.Barrier(2)

        def scheduler(graph: Any) -> None:
            barrier.wait()
            outcomes.extend(fire_due_timers(graph, now=time.time() + 3601))

        workers = [threading.Thread(target=scheduler, args=(g,)) for g in graphs]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert len(woke) == 6
        assert sorted(o.thread_id for o in outcomes if o.outcome == "fired") == sorted(threads)
        for thread in threads:
            assert graphs[0].get_state(cfg(thread)).values["log"] == ["woke"]


def test_waking_a_sleeper_by_hand_cancels_its_timer():
    woke: list = []
    saver_ = MemorySaver()
    graph = sleeper_graph(saver_, woke, "by-hand")
    config = cfg()
    graph.invoke({"log": []}, config)
    graph.invoke(Command(resume="wake up"), config)
    assert woke == [1]
    (timer,) = saver_.list_timers(thread_id=config["configurable"]["thread_id"])
    assert timer.status == "cancelled"
    assert fire_due_timers(graph, now=time.time() + 7200) == []


def test_decision_type_round_trips_in_state():
    decision = Decision("approve", "id1", by="x")
    assert decision.approved and not Decision("reject").approved
    saver_ = MemorySaver()
    builder = StateGraph(State)
    builder.add_node("n", lambda s: {"decision": decision})
    builder.add_edge(START, "n")
    builder.add_edge("n", END)
    graph = builder.compile(checkpointer=saver_)
    config = cfg()
    graph.invoke({"log": []}, config)
    assert graph.get_state(config).values["decision"] == decision


def test_a_sleep_inside_a_subgraph_is_fired_through_the_parent():
    woke: list = []

    def wait(state: State) -> dict:
        sleep(60)
        woke.append(1)
        return {"log": ["inner woke"]}

    inner = StateGraph(State)
    inner.add_node("wait", wait)
    inner.add_edge(START, "wait")
    outer = StateGraph(State)
    outer.add_node("inner", inner.compile(name="inner-graph"))
    outer.add_node("after", lambda s: {"log": ["after"]})
    outer.add_edge(START, "inner")
    outer.add_edge("inner", "after")
    saver_ = MemorySaver()
    graph = outer.compile(checkpointer=saver_, name="outer-graph")
    config = cfg()
    graph.invoke({"log": []}, config)
    (timer,) = saver_.list_timers(thread_id=config["configurable"]["thread_id"])
    assert timer.graph == "outer-graph"
    (fired,) = fire_due_timers(graph, now=time.time() + 61)
    assert fired.outcome == "fired"
    assert graph.get_state(config).values["log"] == ["inner woke", "after"]


def test_escalation_happens_once_then_the_approval_expires():
    saver_ = MemorySaver()
    graph = approval_graph(saver_, deadline=30, on_timeout="escalate", escalate_to="boss")
    config = cfg()
    question = _question(graph.invoke({"log": []}, config))
    now = time.time()
    fire_due_timers(graph, now=now + 31)
    fire_due_timers(graph, now=now + 62)
    state = graph.get_state(config)
    assert state.next == () and state.values["decision"]["timed_out"] is True
    assert state.values["decision"]["escalations"] == 1
    record = saver_.get_approval(config["configurable"]["thread_id"], question["approval_id"])
    assert record.status == "expired"


def test_edits_are_kept_as_plain_data_in_the_record(backend, saver):  # noqa: F811
    """A process without the schema's class (an inbox, a restarted server) reads it back."""
    graph = approval_graph(saver)
    config = cfg(backend.thread())
    question = _question(graph.invoke({"log": []}, config))
    result = graph.invoke(Command(resume={"action": "edit", "edits": {
        "version": "v2.2", "replicas": 3}}), config)
    assert result["log"] == ["gate:edit", "deployed"]
    record = saver.get_approval(config["configurable"]["thread_id"], question["approval_id"])
    assert record.decision["edits"] == {"version": "v2.2", "replicas": 3}
