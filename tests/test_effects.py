"""Exactly-once effects: reuse on re-execution, idempotency keys, in-doubt handling,
including a process killed with SIGKILL between an effect and its recording."""

from __future__ import annotations

import asyncio
import operator
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from effect_child import effect_graph
from store_backends import backend, saver  # noqa: F401

from waypoint import END, START, Command, EffectInDoubt, RetryPolicy, StateGraph, interrupt
from waypoint.checkpoint import MemorySaver
from waypoint.engine.effects import aeffect, effect

HERE = Path(__file__).parent
FAST = RetryPolicy(initial_interval=0, jitter=False, max_attempts=3)


class State(TypedDict, total=False):
    log: Annotated[list, operator.add]
    keys: Annotated[list, operator.add]
    answers: list


def cfg(thread: str | None = None) -> dict:
    return {"configurable": {"thread_id": thread or str(uuid.uuid4())}}


def test_effect_before_interrupt_runs_once_across_three_resumes(backend, saver):  # noqa: F811
    sent: list[str] = []

    def send_email(to: str, *, idempotency_key: str) -> str:
        sent.append(idempotency_key)
        return f"message-id-{len(sent)}"

    def notify(state: State) -> dict:
        message_id = effect("send email", send_email, "ops@example.com")
        answers = [interrupt(f"question {n}") for n in range(3)]
        return {"log": [message_id], "answers": answers}

    builder = StateGraph(State)
    builder.add_node("notify", notify)
    builder.add_edge(START, "notify")
    builder.add_edge("notify", END)
    graph = builder.compile(checkpointer=saver)
    config = cfg(backend.thread())
    result = graph.invoke({"log": []}, config)
    for n in range(3):
        assert result["__interrupt__"][0].value == f"question {n}"
        result = graph.invoke(Command(resume=f"answer {n}"), config)
    assert result["answers"] == ["answer 0", "answer 1", "answer 2"]
    assert result["log"] == ["message-id-1"]
    assert len(sent) == 1
    record = saver.get_effect(config["configurable"]["thread_id"], sent[0])
    assert record.status == "done" and record.result == "message-id-1"
    effects = graph.get_state(config).metadata["effects"]
    assert effects == [{"node": "notify", "effect": "send email", "key": sent[0],
                        "status": "reused"}]


def test_effect_is_reused_when_the_node_is_retried():
    calls = {"charge": 0, "node": 0}

    def charge() -> str:
        calls["charge"] += 1
        return "receipt"

    def pay(state: State) -> dict:
        calls["node"] += 1
        receipt = effect("charge", charge)
        if calls["node"] < 3:
            raise ConnectionError("ledger unreachable after charging")
        return {"log": [receipt]}

    for saver_ in (MemorySaver(), None):
        calls.update(charge=0, node=0)
        builder = StateGraph(State)
        builder.add_node("pay", pay, retry_policy=FAST)
        builder.add_edge(START, "pay")
        graph = builder.compile(checkpointer=saver_)
        assert graph.invoke({"log": []}, cfg())["log"] == ["receipt"]
        assert calls == {"charge": 1, "node": 3}


def test_a_failed_action_is_recorded_and_tried_again_on_retry():
    calls = {"n": 0}

    def flaky_api() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("503")
        return "ok"

    builder = StateGraph(State)
    builder.add_node("call", lambda s: {"log": [effect("call api", flaky_api)]},
                     retry_policy=FAST)
    builder.add_edge(START, "call")
    saver_ = MemorySaver()
    config = cfg()
    assert builder.compile(checkpointer=saver_).invoke({"log": []}, config)["log"] == ["ok"]
    assert calls["n"] == 2
    (record,) = saver_.list_effects(config["configurable"]["thread_id"])
    assert record.status == "done" and record.attempts == 2


def test_keys_differ_per_call_and_per_step_and_are_stable():
    def two_effects(state: State) -> dict:
        first = effect("a", lambda *, idempotency_key: idempotency_key)
        second = effect("b", lambda *, idempotency_key: idempotency_key)
        return {"keys": [first, second]}

    builder = StateGraph(State)
    builder.add_node("twice", two_effects)
    builder.add_conditional_edges("twice", lambda s: "twice" if len(s["keys"]) < 4 else END)
    builder.add_edge(START, "twice")
    graph = builder.compile(checkpointer=MemorySaver())
    keys = graph.invoke({"keys": []}, cfg())["keys"]
    assert len(keys) == len(set(keys)) == 4
    assert all(k.startswith("wp-") for k in keys)


def test_effect_outside_a_node_and_bad_arguments():
    with pytest.raises(RuntimeError, match="inside a node"):
        effect("x", lambda: 1)

    def node(state: State) -> dict:
        effect("", lambda: 1)
        return {}

    builder = StateGraph(State)
    builder.add_node("n", node)
    builder.add_edge(START, "n")
    with pytest.raises(ValueError, match="effect name must be a non-empty string"):
        builder.compile().invoke({"log": []})


# -- in doubt -------------------------------------------------------------------------------


def _stuck_first_run(saver_: Any, side: Path, on_doubt: str) -> tuple[Any, dict, threading.Event]:
    """Start a run whose effect acts and then hangs (as if the process died there)."""
    release = threading.Event()
    config = cfg()
    calls: list[str] = []

    def charge(amount: int, *, idempotency_key: str) -> dict:
        calls.append(idempotency_key)
        first = len(calls) == 1  # decided before anyone else can write to the file
        with open(side, "a") as out:
            out.write(f"charged {amount} {idempotency_key}\n")
        if first and not release.is_set():
            release.wait(30)
        return {"amount": amount, "key": idempotency_key}

    def pay(state: State) -> dict:
        return {"log": [effect("charge card", charge, 42)]}

    builder = StateGraph(State)
    builder.add_node("pay", pay, on_doubt=on_doubt)
    builder.add_edge(START, "pay")
    graph = builder.compile(checkpointer=saver_)
    stuck = threading.Thread(target=lambda: _quietly(graph.invoke, {"log": []}, config),
                             daemon=True)
    stuck.start()
    for _ in range(500):
        if side.exists() and "\n" in side.read_text():  # the first line is complete
            break
        time.sleep(0.01)
    return graph, config, release


def _quietly(fn, *args):
    try:
        fn(*args)
    except Exception:
        pass


def test_in_doubt_fail_and_retry(tmp_path):
    side = tmp_path / "side.txt"
    graph, config, release = _stuck_first_run(MemorySaver(), side, "fail")
    try:
        with pytest.raises(EffectInDoubt, match=r"'charge card'.*never recorded"):
            graph.invoke(None, config)
        assert side.read_text().count("charged") == 1
    finally:
        release.set()

    side2 = tmp_path / "side2.txt"
    graph, config, release = _stuck_first_run(MemorySaver(), side2, "retry")
    try:
        result = graph.invoke(None, config)
    finally:
        release.set()
    lines = side2.read_text().splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]  # the same idempotency key both times
    assert result["log"][0]["key"] in lines[0]


def test_killed_between_effect_and_commit_is_in_doubt_not_repeated(backend, tmp_path):  # noqa: F811
    backend.require_reopen()
    side = tmp_path / "side.txt"
    thread = backend.thread("kill")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    child = subprocess.Popen(
        [sys.executable, str(HERE / "effect_child.py"), backend.kind, backend.url, thread,
         str(side)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(3000):
            if side.exists() and side.read_text().count("charged") == 1:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the child never ran its effect")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    config = cfg(thread)
    with backend.open() as store:
        (record,) = store.list_effects(thread)
        assert record.status == "started"
        graph = effect_graph(store, str(side), block=False)
        paused = graph.invoke(None, config)
        question = paused["__interrupt__"][0].value
        assert question["kind"] == "effect_in_doubt"
        assert question["effect"] == "charge card" and question["key"] == record.key
        assert side.read_text().count("charged") == 1  # not repeated
        receipt = {"amount": 42, "key": record.key, "confirmed": "by a person"}
        done = graph.invoke(Command(resume={"action": "done", "result": receipt}), config)
        assert done["receipt"] == receipt and done["log"] == ["paid", "shipped"]
        assert side.read_text().count("charged") == 1
        assert store.get_effect(thread, record.key).status == "done"


def test_async_effect_runs_once_across_resume():
    calls = {"n": 0}

    async def send(*, idempotency_key: str) -> str:
        calls["n"] += 1
        await asyncio.sleep(0)
        return idempotency_key

    async def node(state: State) -> dict:
        key = await aeffect("send", send)
        answer = interrupt("ok?")
        return {"keys": [key], "answers": [answer]}

    builder = StateGraph(State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    graph = builder.compile(checkpointer=MemorySaver())
    config = cfg()

    async def run() -> dict:
        await graph.ainvoke({"keys": []}, config)
        return await graph.ainvoke(Command(resume="yes"), config)

    result = asyncio.run(run())
    assert calls["n"] == 1 and result["answers"] == ["yes"]


def test_replaying_a_step_from_history_reuses_the_effect():
    calls: list[str] = []

    def pay(state: State) -> dict:
        return {"log": [effect("charge", lambda *, idempotency_key: calls.append(
            idempotency_key) or "receipt")]}

    builder = StateGraph(State)
    builder.add_node("prepare", lambda s: {"log": ["prepared"]})
    builder.add_node("pay", pay)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "pay")
    graph = builder.compile(checkpointer=MemorySaver())
    config = cfg()
    graph.invoke({"log": []}, config)
    before_pay = next(s for s in graph.get_state_history(config) if s.next == ("pay",))
    replayed = graph.invoke(None, before_pay.config)
    assert replayed["log"] == ["prepared", "receipt"]
    assert len(calls) == 1
