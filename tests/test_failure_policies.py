"""Retries, error classification, timeouts (sync and async), run deadlines, error handlers,
output validation and node defaults."""

from __future__ import annotations

import asyncio
import operator
import threading
import time
import uuid
from typing import Annotated, TypedDict

import httpx
import pytest
from pydantic import BaseModel

from waypoint import (
    END,
    START,
    Command,
    GraphValidationError,
    NodeError,
    NodeTimeoutError,
    OutputValidationError,
    PermanentError,
    RetryPolicy,
    RunTimeoutError,
    StateGraph,
    TimeoutPolicy,
    TransientError,
    get_attempt,
    heartbeat,
)
from waypoint.checkpoint import MemorySaver
from waypoint.failures import classify, parse_retry_after, retry_after

FAST = RetryPolicy(initial_interval=0, jitter=False, max_attempts=3)


class State(TypedDict, total=False):
    log: Annotated[list, operator.add]
    answer: str
    score: int


def cfg() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def _status_error(status: int, headers: dict | None = None) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://example.invalid/")
    response = httpx.Response(status, headers=headers or {}, request=request)
    return httpx.HTTPStatusError(f"status {status}", request=request, response=response)


# -- classification -------------------------------------------------------------------------


class Marked(TransientError):
    pass


@pytest.mark.parametrize("exc, kind", [
    (ConnectionError("reset"), "transient"),
    (TimeoutError("slow"), "transient"),
    (httpx.ConnectTimeout("connect"), "transient"),
    (httpx.ReadError("eof"), "transient"),
    (_status_error(429), "transient"),
    (_status_error(503), "transient"),
    (_status_error(500), "transient"),
    (_status_error(408), "transient"),
    (_status_error(404), "permanent"),
    (_status_error(400), "permanent"),
    (_status_error(401), "permanent"),
    (ValueError("bad"), "permanent"),
    (TypeError("bad"), "permanent"),
    (PermissionError("no"), "permanent"),
    (KeyError("k"), "permanent"),
    (FileNotFoundError("f"), "permanent"),
    (Marked("explicit"), "transient"),
    (PermanentError("explicit"), "permanent"),
    (Exception("unknown"), "transient"),
])
def test_classify(exc, kind):
    assert classify(exc) == kind


def test_retry_after_from_attribute_header_and_date():
    marked = Marked("busy")
    marked.retry_after = 7
    assert retry_after(marked) == 7
    assert retry_after(_status_error(429, {"Retry-After": "12"})) == 12
    assert retry_after(_status_error(429)) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("not a date") is None


def test_retry_policy_checks_and_delays():
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="backoff_factor"):
        RetryPolicy(backoff_factor=0.5)
    with pytest.raises(TypeError, match="non_retryable"):
        RetryPolicy(non_retryable=("x",))
    policy = RetryPolicy(initial_interval=1, backoff_factor=2, max_interval=5, jitter=False)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    busy = _status_error(503, {"Retry-After": "30"})
    assert policy.delay(1, busy) == 30
    assert RetryPolicy(jitter=False, respect_retry_after=False).delay(1, busy) == 0.5
    only_conn = RetryPolicy(non_retryable=(ConnectionRefusedError,))
    assert only_conn.should_retry(ConnectionResetError())
    assert not only_conn.should_retry(ConnectionRefusedError())


# -- retries --------------------------------------------------------------------------------


def flaky_graph(failures: list[BaseException], policy=FAST, seen: list | None = None,
                **node_options):
    calls = {"n": 0}

    def work(state: State) -> dict:
        attempt = get_attempt()
        if seen is not None:
            seen.append((attempt.number, attempt.max_attempts, attempt.previous_error))
        calls["n"] += 1
        if calls["n"] <= len(failures):
            raise failures[calls["n"] - 1]
        return {"log": [f"ok on attempt {attempt.number}"]}

    builder = StateGraph(State)
    builder.add_node("work", work, retry_policy=policy, **node_options)
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    return builder, calls


def test_transient_failures_are_retried_and_attempt_is_visible():
    seen: list = []
    reset = ConnectionResetError("reset")
    builder, calls = flaky_graph([reset, _status_error(503)], seen=seen)
    graph = builder.compile(checkpointer=MemorySaver())
    config = cfg()
    assert graph.invoke({"log": []}, config) == {"log": ["ok on attempt 3"]}
    assert calls["n"] == 3
    assert [s[0] for s in seen] == [1, 2, 3]
    assert seen[0][1] == 3 and seen[0][2] is None and seen[1][2] is reset
    retries = graph.get_state(config).metadata["retries"]
    assert [(r["node"], r["attempt"], r["kind"]) for r in retries] == [
        ("work", 1, "transient"), ("work", 2, "transient")]
    assert retries[0]["error"] == "ConnectionResetError: reset"
    assert retries[1]["error"].startswith("HTTPStatusError")


def test_retries_appear_in_the_tasks_stream():
    builder, _ = flaky_graph([ConnectionError("down")])
    graph = builder.compile()
    parts = list(graph.stream({"log": []}, stream_mode="tasks"))
    retries = [p["retry"] for p in parts if "retry" in p]
    assert len(retries) == 1
    assert retries[0]["attempt"] == 1 and retries[0]["error"] == "ConnectionError: down"
    assert parts[-1]["result"] == {"log": ["ok on attempt 2"]}


def test_permanent_failures_are_not_retried():
    builder, calls = flaky_graph([ValueError("bad input")] * 3)
    with pytest.raises(ValueError, match="bad input"):
        builder.compile().invoke({"log": []})
    assert calls["n"] == 1


def test_a_failure_that_outlasts_the_policy_fails_the_run_with_its_retries_recorded():
    builder, calls = flaky_graph([ConnectionError("down")] * 5)
    graph = builder.compile(checkpointer=MemorySaver())
    config = cfg()
    with pytest.raises(ConnectionError):
        graph.invoke({"log": []}, config)
    assert calls["n"] == 3
    task = graph.get_state(config).tasks[0]
    assert isinstance(task.error, ConnectionError)
    writes = graph.checkpointer.get_tuple(config).pending_writes
    error = next(v for _, channel, v in writes if channel == "__error__")
    assert [r["attempt"] for r in error["retries"]] == [1, 2]


def test_non_retryable_and_a_list_of_policies():
    builder, calls = flaky_graph([ConnectionRefusedError("refused")] * 3,
                                 policy=RetryPolicy(initial_interval=0, jitter=False,
                                                    non_retryable=(ConnectionRefusedError,)))
    with pytest.raises(ConnectionRefusedError):
        builder.compile().invoke({"log": []})
    assert calls["n"] == 1
    policies = [RetryPolicy(retry_on=KeyError, max_attempts=5, initial_interval=0, jitter=False),
                RetryPolicy(retry_on=ConnectionError, max_attempts=2, initial_interval=0,
                            jitter=False)]
    builder, calls = flaky_graph([ConnectionError("a")] * 4, policy=policies)
    with pytest.raises(ConnectionError):
        builder.compile().invoke({"log": []})
    assert calls["n"] == 2
    builder, calls = flaky_graph([KeyError("a")] * 4, policy=policies)
    assert builder.compile().invoke({"log": []})["log"] == ["ok on attempt 5"]


def test_async_node_retries():
    calls = {"n": 0}

    async def work(state: State) -> dict:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TimeoutError("slow upstream")
        return {"log": [get_attempt().number]}

    builder = StateGraph(State)
    builder.add_node("work", work, retry_policy=FAST)
    builder.add_edge(START, "work")
    assert asyncio.run(builder.compile().ainvoke({"log": []})) == {"log": [3]}


# -- timeouts -------------------------------------------------------------------------------


def test_sync_node_timeout_is_retried_and_the_late_result_is_discarded():
    release = threading.Event()
    late = {}

    def slow_then_fast(state: State) -> dict:
        if get_attempt().number == 1:
            release.wait(10)
            late["returned"] = True
            return {"answer": "late"}
        return {"answer": "fast"}

    builder = StateGraph(State)
    builder.add_node("work", slow_then_fast, timeout=0.2, retry_policy=FAST)
    builder.add_edge(START, "work")
    graph = builder.compile(checkpointer=MemorySaver())
    config = cfg()
    try:
        assert graph.invoke({"log": []}, config)["answer"] == "fast"
    finally:
        release.set()
    retries = graph.get_state(config).metadata["retries"]
    assert retries[0]["error"].startswith("NodeTimeoutError")
    assert graph.get_state(config).values["answer"] == "fast"


def test_sync_node_timeout_without_retry_fails():
    release = threading.Event()

    def stuck(state: State) -> dict:
        release.wait(10)
        return {}

    builder = StateGraph(State)
    builder.add_node("stuck", stuck, timeout=TimeoutPolicy(run_timeout=0.1))
    builder.add_edge(START, "stuck")
    try:
        with pytest.raises(NodeTimeoutError, match=r"'stuck' timed out after 0\.1 s"):
            builder.compile().invoke({"log": []})
    finally:
        release.set()


def test_async_node_timeout_cancels_it():
    cancelled = {}

    async def stuck(state: State) -> dict:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled["yes"] = True
            raise
        return {}

    builder = StateGraph(State)
    builder.add_node("stuck", stuck, timeout=0.1)
    builder.add_edge(START, "stuck")
    with pytest.raises(NodeTimeoutError):
        asyncio.run(builder.compile().ainvoke({"log": []}))
    assert cancelled == {"yes": True}


def test_idle_timeout_is_refreshed_by_heartbeats():
    def chatty(state: State) -> dict:
        for _ in range(8):
            time.sleep(0.05)
            heartbeat()
        return {"answer": "done"}

    def silent(state: State) -> dict:
        time.sleep(0.6)
        return {"answer": "done"}

    for fn, ok in ((chatty, True), (silent, False)):
        builder = StateGraph(State)
        builder.add_node("work", fn, timeout=TimeoutPolicy(idle_timeout=0.25))
        builder.add_edge(START, "work")
        graph = builder.compile()
        if ok:
            assert graph.invoke({"log": []})["answer"] == "done"
        else:
            with pytest.raises(NodeTimeoutError, match="idle_timeout"):
                graph.invoke({"log": []})


def test_run_deadline_stops_the_run_and_is_not_retried():
    calls = {"n": 0}
    release = threading.Event()

    def stuck(state: State) -> dict:
        calls["n"] += 1
        release.wait(10)
        return {}

    builder = StateGraph(State)
    builder.add_node("stuck", stuck, retry_policy=FAST)
    builder.add_edge(START, "stuck")
    try:
        with pytest.raises(RunTimeoutError, match="deadline passed while node 'stuck'"):
            builder.compile().invoke({"log": []}, {"run_timeout": 0.2})
        assert calls["n"] == 1
        with pytest.raises(RunTimeoutError):
            builder.compile(run_timeout=0.2).invoke({"log": []})
    finally:
        release.set()
    with pytest.raises(ValueError, match="run_timeout"):
        builder.compile().invoke({"log": []}, {"run_timeout": -1})


# -- error handlers -------------------------------------------------------------------------


def test_error_handler_replaces_the_failed_node_and_routes_with_command():
    received: list[NodeError] = []

    def broken(state: State) -> dict:
        raise ValueError("no quota")

    def handler(state: State, error: NodeError) -> Command:
        received.append(error)
        return Command(update={"log": [f"handled {error.node}"]}, goto="fallback")

    builder = StateGraph(State)
    builder.add_node("broken", broken, error_handler=handler)
    builder.add_node("fallback", lambda s: {"log": ["fallback ran"]})
    builder.add_node("after", lambda s: {"log": ["after broken"]})
    builder.add_edge(START, "broken")
    builder.add_edge("broken", "after")
    graph = builder.compile(checkpointer=MemorySaver())
    config = cfg()
    assert graph.invoke({"log": []}, config) == {"log": ["handled broken", "fallback ran"]}
    assert received[0].node == "broken" and isinstance(received[0].error, ValueError)
    assert received[0].attempts == 1
    history = list(graph.get_state_history(config))
    handled = [s.metadata["handled_errors"] for s in history if "handled_errors" in s.metadata]
    assert handled == [[{"node": "broken", "error": "ValueError: no quota"}]]


def test_error_handler_runs_after_retries_and_its_own_failure_fails_the_run():
    builder, calls = flaky_graph([ConnectionError("x")] * 5,
                                 error_handler=lambda state: {"answer": "degraded"})
    assert builder.compile().invoke({"log": []})["answer"] == "degraded"
    assert calls["n"] == 3

    def bad_handler(state: State, error: NodeError) -> dict:
        raise RuntimeError("handler broke")

    builder, _ = flaky_graph([ValueError("x")], error_handler=bad_handler)
    with pytest.raises(RuntimeError, match="handler broke") as info:
        builder.compile().invoke({"log": []})
    assert isinstance(info.value.__cause__, ValueError)


def test_async_error_handler():
    async def broken(state: State) -> dict:
        raise ValueError("nope")

    async def handler(state: State, error: NodeError) -> dict:
        return {"answer": f"recovered from {type(error.error).__name__}"}

    builder = StateGraph(State)
    builder.add_node("broken", broken, error_handler=handler)
    builder.add_edge(START, "broken")
    result = asyncio.run(builder.compile().ainvoke({"log": []}))
    assert result["answer"] == "recovered from ValueError"


# -- output validation ----------------------------------------------------------------------


class Scored(BaseModel):
    answer: str
    score: int


def test_invalid_update_is_retried_with_feedback_then_accepted():
    feedback: list = []

    def model_like(state: State) -> dict:
        attempt = get_attempt()
        feedback.append(attempt.feedback)
        if attempt.number == 1:
            return {"answer": "x", "score": "very high"}
        return {"answer": "x", "score": 9}

    builder = StateGraph(State)
    builder.add_node("score", model_like, validate=Scored, retry_policy=FAST)
    builder.add_edge(START, "score")
    assert builder.compile().invoke({"log": []})["score"] == 9
    assert feedback[0] is None
    assert "score" in feedback[1] and "integer" in feedback[1]


def test_invalid_update_goes_to_error_handler_or_fails_with_the_errors():
    def always_bad(state: State) -> dict:
        return {"answer": ""}

    def not_empty(update: dict) -> str | None:
        return None if update.get("answer") else "answer must not be empty"

    builder = StateGraph(State)
    builder.add_node("write", always_bad, validate=not_empty, retry_policy=FAST)
    builder.add_edge(START, "write")
    with pytest.raises(OutputValidationError, match="answer must not be empty"):
        builder.compile().invoke({"log": []})

    seen: list = []
    builder = StateGraph(State)
    builder.add_node("write", always_bad, validate=not_empty,
                     error_handler=lambda s, e: seen.append(e) or {"answer": "fallback text"})
    builder.add_edge(START, "write")
    assert builder.compile().invoke({"log": []})["answer"] == "fallback text"
    assert isinstance(seen[0].error, OutputValidationError)


# -- defaults and bad arguments -------------------------------------------------------------


def test_set_node_defaults_apply_where_a_node_sets_nothing():
    calls = {"a": 0, "b": 0}

    def a(state: State) -> dict:
        calls["a"] += 1
        if calls["a"] < 3:
            raise ConnectionError("a")
        return {"log": ["a"]}

    def b(state: State) -> dict:
        calls["b"] += 1
        raise ConnectionError("b")

    builder = StateGraph(State)
    builder.set_node_defaults(retry_policy=FAST,
                              error_handler=lambda state: {"log": ["default handler"]})
    builder.add_node("a", a)
    builder.add_node("b", b, retry_policy=RetryPolicy(max_attempts=1))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    assert builder.compile().invoke({"log": []}) == {"log": ["a", "default handler"]}
    assert calls == {"a": 3, "b": 1}


@pytest.mark.parametrize("options, message", [
    ({"timeout": -1}, "positive number"),
    ({"timeout": "soon"}, "timeout must be seconds"),
    ({"on_doubt": "maybe"}, "on_doubt must be one of"),
    ({"retry_policy": "always"}, "retry_policy must be a RetryPolicy"),
    ({"error_handler": 3}, "error_handler must be callable"),
    ({"validate": 5}, "validate= takes"),
])
def test_bad_policy_arguments_are_named(options, message):
    with pytest.raises(GraphValidationError, match=message):
        StateGraph(State).add_node("n", lambda s: {}, **options)
    with pytest.raises(TypeError):
        StateGraph(State).add_node("n", lambda s: {}, retries=3)
