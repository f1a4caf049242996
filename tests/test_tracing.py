"""OpenTelemetry traces of runs (waypoint.observe.tracing): span trees and GenAI attributes
for parallel branches, Send fan-out, subgraphs, retries, model and tool calls, effects,
interrupts resumed later, approvals, compensations, opt-in content, and trace context
from a caller or a `traceparent`."""

from __future__ import annotations

import asyncio
import json
import operator
import uuid
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from waypoint import (
    END,
    START,
    Command,
    RetryPolicy,
    Send,
    StateGraph,
    TransientError,
    approve,
    effect,
    interrupt,
)
from waypoint.checkpoint import MemorySaver
from waypoint.engine import observers
from waypoint.models import ScriptedModel
from waypoint.models.pricing import PriceBook
from waypoint.observe.tracing import (
    CAPTURE_ENV,
    continue_trace,
    current_carrier,
    instrument,
    is_instrumented,
    uninstrument,
)
from waypoint.prebuilt import create_react_agent
from waypoint.tools import tool


class Log(TypedDict, total=False):
    log: Annotated[list, operator.add]
    answer: str


def cfg() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(tracer_provider=provider, capture_content=False)
    tracer = provider.get_tracer("test")
    yield Spans(exporter, provider, tracer)
    uninstrument()
    provider.shutdown()


class Spans:
    def __init__(self, exporter: InMemorySpanExporter, provider: Any, tracer: Any) -> None:
        self.exporter = exporter
        self.provider = provider
        self.tracer = tracer

    def all(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[Any]:
        return [s for s in self.all() if s.name == name]

    def one(self, name: str) -> Any:
        found = self.named(name)
        assert len(found) == 1, [s.name for s in self.all()]
        return found[0]

    def children(self, parent: Any) -> list[Any]:
        return [s for s in self.all() if s.parent is not None
                and s.parent.span_id == parent.context.span_id]


def is_child(child: Any, parent: Any) -> bool:
    return (child.parent is not None and child.parent.span_id == parent.context.span_id
            and child.context.trace_id == parent.context.trace_id)


def priced_model(*responses: Any, model: str = "gpt-test") -> ScriptedModel:
    return ScriptedModel(list(responses), model=model,
                         prices=PriceBook({model: (1_000_000.0, 2_000_000.0)}))


# -- span trees -----------------------------------------------------------------------------


async def test_parallel_branches_are_sibling_children_of_the_run(spans, run):
    builder = StateGraph(Log)
    builder.add_node("a", lambda s: {"log": ["a"]})
    builder.add_node("b", lambda s: {"log": ["b"]})
    builder.add_node("c", lambda s: {"log": ["c"]})
    builder.add_edge(START, "a")
    builder.add_edge(START, "b")
    builder.add_edge(["a", "b"], "c")
    builder.add_edge("c", END)
    graph = builder.compile(checkpointer=MemorySaver(), name="fork")
    config = cfg()
    assert (await run(graph, {"log": []}, config))["log"] == ["a", "b", "c"]

    root = spans.one("invoke_agent fork")
    assert root.parent is None and root.kind == SpanKind.INTERNAL
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "fork"
    thread = config["configurable"]["thread_id"]
    assert root.attributes["gen_ai.conversation.id"] == thread
    assert root.attributes["waypoint.thread_id"] == thread
    assert root.attributes["waypoint.status"] == "success"
    assert root.attributes["waypoint.checkpoint_id"]
    assert root.status.status_code == StatusCode.UNSET
    a, b, c = spans.one("node a"), spans.one("node b"), spans.one("node c")
    assert all(is_child(s, root) for s in (a, b, c))
    assert (a.attributes["waypoint.step"], b.attributes["waypoint.step"],
            c.attributes["waypoint.step"]) == (1, 1, 2)
    assert a.attributes["waypoint.node"] == "a" and a.attributes["waypoint.attempt"] == 1
    assert a.attributes["waypoint.outcome"] == "ok"
    assert a.attributes["waypoint.run_id"] == root.attributes["waypoint.run_id"]
    assert c.attributes["waypoint.parent_checkpoint_id"]
    # The run's checkpoints are events of its span, each with its id and step.
    commits = [e for e in root.events if e.name == "checkpoint"]
    assert commits and commits[-1].attributes["waypoint.checkpoint_id"] == \
        root.attributes["waypoint.checkpoint_id"]
    assert [e.attributes["waypoint.step"] for e in commits] == sorted(
        e.attributes["waypoint.step"] for e in commits)


async def test_send_fan_out_gives_each_task_its_own_span(spans, run):
    class Fan(TypedDict, total=False):
        items: list
        done: Annotated[list, operator.add]

    builder = StateGraph(Fan)
    builder.add_node("work", lambda item: {"done": [item["x"] * 2]})
    builder.add_conditional_edges(START, lambda s: [Send("work", {"x": x}) for x in s["items"]],
                                  ["work"])
    builder.add_edge("work", END)
    graph = builder.compile(name="fan")
    result = await run(graph, {"items": [1, 2, 3]})
    assert sorted(result["done"]) == [2, 4, 6]
    root = spans.one("invoke_agent fan")
    works = spans.named("node work")
    assert len(works) == 3 and all(is_child(w, root) for w in works)
    assert all(w.attributes["waypoint.send"] is True for w in works)
    assert len({w.attributes["waypoint.task_id"] for w in works}) == 3
    assert len({w.context.span_id for w in works}) == 3


async def test_a_subgraph_run_nests_under_the_node_that_runs_it(spans, run):
    inner = StateGraph(Log)
    inner.add_node("first", lambda s: {"log": ["first"]})
    inner.add_node("second", lambda s: {"log": ["second"]})
    inner.add_edge(START, "first")
    inner.add_edge("first", "second")
    inner.add_edge("second", END)
    outer = StateGraph(Log)
    outer.add_node("prepare", lambda s: {"log": ["prepare"]})
    outer.add_node("inner", inner.compile(name="inner"))
    outer.add_edge(START, "prepare")
    outer.add_edge("prepare", "inner")
    outer.add_edge("inner", END)
    graph = outer.compile(checkpointer=MemorySaver(), name="outer")
    result = await run(graph, {"log": []}, cfg())
    assert result["log"][-2:] == ["first", "second"]

    root = spans.one("invoke_agent outer")
    node = spans.one("node inner")
    sub = spans.one("invoke_agent inner")
    assert is_child(node, root) and is_child(sub, node)
    assert sub.attributes["waypoint.checkpoint_ns"].startswith("inner")
    assert sub.attributes["gen_ai.agent.name"] == "inner"
    first, second = spans.one("node first"), spans.one("node second")
    assert is_child(first, sub) and is_child(second, sub)
    assert first.attributes["waypoint.checkpoint_ns"].startswith("inner")
    assert {s.context.trace_id for s in spans.all()} == {root.context.trace_id}


def test_a_retried_attempt_is_an_error_span_with_a_retry_event(spans):
    calls = []

    def flaky(state: Log) -> dict:
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("the service blinked")
        return {"log": ["ok"]}

    builder = StateGraph(Log)
    builder.add_node("flaky", flaky,
                     retry_policy=RetryPolicy(initial_interval=0.01, jitter=False))
    builder.add_edge(START, "flaky")
    builder.add_edge("flaky", END)
    builder.compile(name="retry").invoke({"log": []})

    first, second = sorted(spans.named("node flaky"),
                           key=lambda s: s.attributes["waypoint.attempt"])
    root = spans.one("invoke_agent retry")
    assert is_child(first, root) and is_child(second, root)
    assert first.attributes["waypoint.attempt"] == 1 and second.attributes["waypoint.attempt"] == 2
    assert first.status.status_code == StatusCode.ERROR
    assert "the service blinked" in first.status.description
    assert first.attributes["waypoint.outcome"] == "retry"
    assert first.attributes["waypoint.error.kind"] == "transient"
    assert first.attributes["error.type"] == "TransientError"
    assert first.attributes["waypoint.retry_delay_s"] == pytest.approx(0.01)
    names = [e.name for e in first.events]
    assert "exception" in names and "retry" in names
    (exception,) = [e for e in first.events if e.name == "exception"]
    assert exception.attributes["exception.type"].endswith("TransientError")
    assert second.status.status_code == StatusCode.UNSET
    assert second.attributes["waypoint.outcome"] == "ok"
    assert root.status.status_code == StatusCode.UNSET


def test_a_failed_run_is_an_error_span(spans):
    def broken(state: Log) -> dict:
        raise ValueError("bad input")

    builder = StateGraph(Log)
    builder.add_node("broken", broken)
    builder.add_edge(START, "broken")
    builder.add_edge("broken", END)
    with pytest.raises(ValueError):
        builder.compile(name="fails").invoke({"log": []})
    root, node = spans.one("invoke_agent fails"), spans.one("node broken")
    assert node.status.status_code == StatusCode.ERROR
    assert node.attributes["waypoint.outcome"] == "error"
    assert node.attributes["error.type"] == "ValueError"
    assert root.status.status_code == StatusCode.ERROR
    assert root.attributes["waypoint.status"] == "error"
    assert root.attributes["error.type"] == "ValueError"


# -- model and tool calls -------------------------------------------------------------------


def _model_graph(model: ScriptedModel, asynchronous: bool) -> Any:
    if asynchronous:
        async def ask(state: Log) -> dict:
            return {"answer": (await model.ainvoke("What is the capital of France?")).content}
    else:
        def ask(state: Log) -> dict:
            return {"answer": model.invoke("What is the capital of France?").content}

    builder = StateGraph(Log)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder.compile(name="asker")


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-invoke", "async-ainvoke"])
def test_a_model_call_is_a_chat_span_under_its_node(spans, asynchronous):
    model = priced_model("Paris is the capital.")
    model.base_url = "https://user:hunter2@llm.example.com:8443/v1?key=abc"  # host and port only
    graph = _model_graph(model, asynchronous)
    config = cfg()
    if asynchronous:
        result = asyncio.run(graph.ainvoke({"log": []}, config))
    else:
        result = graph.invoke({"log": []}, config)
    assert result["answer"] == "Paris is the capital."

    node, chat = spans.one("node ask"), spans.one("chat gpt-test")
    assert is_child(chat, node) and chat.kind == SpanKind.CLIENT
    attrs = chat.attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "waypoint.scripted"
    assert attrs["gen_ai.request.model"] == "gpt-test"
    assert attrs["gen_ai.response.model"] == "gpt-test"
    assert attrs["gen_ai.usage.input_tokens"] == 6  # words of the question
    assert attrs["gen_ai.usage.output_tokens"] == 4
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.response.id"]
    assert attrs["waypoint.cost_usd"] == pytest.approx(6 * 1.0 + 4 * 2.0)
    assert attrs["gen_ai.conversation.id"] == config["configurable"]["thread_id"]
    assert attrs["waypoint.node"] == "ask"
    assert (attrs["server.address"], attrs["server.port"]) == ("llm.example.com", 8443)
    assert "gen_ai.input.messages" not in attrs and "gen_ai.output.messages" not in attrs
    text = json.dumps(dict(attrs))
    assert "hunter2" not in text and "key=abc" not in text


def test_an_unpriced_model_call_has_no_cost_attribute(spans):
    model = ScriptedModel(["fine"], model="no-price-known-for-this-model")
    _model_graph(model, False).invoke({"log": []})
    chat = spans.one("chat no-price-known-for-this-model")
    assert "waypoint.cost_usd" not in chat.attributes
    assert chat.attributes["gen_ai.usage.output_tokens"] == 1


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny in {city}"


def test_a_tool_call_is_an_execute_tool_span_under_the_tools_node(spans):
    model = priced_model({"tool_calls": [{"name": "get_weather", "args": {"city": "Paris"},
                                          "id": "call_42"}]}, "Sunny in Paris.")
    agent = create_react_agent(model, [get_weather], name="weather")
    result = agent.invoke({"messages": [("user", "weather in Paris?")]}, cfg())
    assert result["messages"][-1].content == "Sunny in Paris."

    root = spans.one("invoke_agent weather")
    tools_node = spans.one("node tools")
    call = spans.one("execute_tool get_weather")
    assert is_child(tools_node, root) and is_child(call, tools_node)
    assert call.attributes["gen_ai.operation.name"] == "execute_tool"
    assert call.attributes["gen_ai.tool.name"] == "get_weather"
    assert call.attributes["gen_ai.tool.call.id"] == "call_42"
    assert call.attributes["gen_ai.tool.type"] == "function"
    assert call.attributes["gen_ai.tool.description"] == "The current weather in a city."
    assert call.attributes["waypoint.outcome"] == "ok"
    assert "gen_ai.tool.call.arguments" not in call.attributes
    chats = spans.named("chat gpt-test")
    agent_nodes = spans.named("node agent")
    assert len(chats) == 2 and len(agent_nodes) == 2
    assert all(any(is_child(c, n) for n in agent_nodes) for c in chats)


def test_a_model_called_inside_a_tool_nests_under_the_tool_span(spans):
    expert = priced_model("It is Paris.", model="expert")

    @tool
    def ask_expert(question: str) -> str:
        """Ask an expert model."""
        return expert.invoke(question).content

    model = priced_model({"tool_calls": [{"name": "ask_expert", "args": {"question": "capital?"},
                                          "id": "call_7"}]}, "Paris.")
    create_react_agent(model, [ask_expert], name="team").invoke(
        {"messages": [("user", "capital of France?")]}, cfg())
    call, inner = spans.one("execute_tool ask_expert"), spans.one("chat expert")
    assert is_child(inner, call)
    assert inner.attributes["waypoint.node"] == "tools"


def test_content_is_captured_only_when_asked(spans, monkeypatch):
    model = priced_model({"tool_calls": [{"name": "get_weather", "args": {"city": "Paris"},
                                          "id": "call_1"}]}, "Sunny in Paris.")
    instrument(tracer_provider=spans.provider, capture_content=True)
    secret = "sk-" + "A" * 32
    agent = create_react_agent(model, [get_weather], name="weather")
    agent.invoke({"messages": [("user", f"weather in Paris? my key is {secret}")]}, cfg())

    first, second = sorted(spans.named("chat gpt-test"), key=lambda s: s.start_time)
    sent = json.loads(first.attributes["gen_ai.input.messages"])
    assert sent[0]["role"] == "user" and sent[0]["parts"][0]["type"] == "text"
    assert "weather in Paris?" in sent[0]["parts"][0]["content"]
    assert secret not in first.attributes["gen_ai.input.messages"]
    assert "[redacted]" in first.attributes["gen_ai.input.messages"]
    answer = json.loads(first.attributes["gen_ai.output.messages"])
    assert answer[0]["role"] == "assistant"
    assert answer[0]["parts"][0] == {"type": "tool_call", "id": "call_1", "name": "get_weather",
                                     "arguments": {"city": "Paris"}}
    assert answer[0]["finish_reason"]
    history = json.loads(second.attributes["gen_ai.input.messages"])
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert history[2]["parts"][0]["type"] == "tool_call_response"
    assert history[2]["parts"][0]["id"] == "call_1"
    call = spans.one("execute_tool get_weather")
    assert json.loads(call.attributes["gen_ai.tool.call.arguments"]) == {"city": "Paris"}
    assert json.loads(call.attributes["gen_ai.tool.call.result"]) == "sunny in Paris"

    # The standard environment variable turns it on too; unset, it stays off.
    spans.exporter.clear()
    monkeypatch.setenv(CAPTURE_ENV, "true")
    instrument(tracer_provider=spans.provider)
    _model_graph(priced_model("Paris."), False).invoke({"log": []})
    assert "gen_ai.input.messages" in spans.one("chat gpt-test").attributes
    spans.exporter.clear()
    monkeypatch.delenv(CAPTURE_ENV)
    instrument(tracer_provider=spans.provider)
    _model_graph(priced_model("Paris."), False).invoke({"log": []})
    assert "gen_ai.input.messages" not in spans.one("chat gpt-test").attributes


def test_long_content_is_truncated_and_stays_valid_json(spans):
    instrument(tracer_provider=spans.provider, capture_content=True)
    model = priced_model("ok")

    def ask(state: Log) -> dict:
        return {"answer": model.invoke([("user", "word " * 20_000)]).content}

    builder = StateGraph(Log)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    builder.compile(name="long").invoke({"log": []})
    sent = spans.one("chat gpt-test").attributes["gen_ai.input.messages"]
    assert len(sent) <= 16_000
    assert json.loads(sent)[0]["parts"][0]["content"].endswith("[truncated]")


# -- effects, interrupts, approvals, compensations ------------------------------------------


def test_an_effect_is_a_span_under_its_node(spans):
    charged = []

    def charge() -> str:
        with spans.tracer.start_as_current_span("http POST"):  # a library traced inside
            charged.append(1)
        return "r-1"

    def pay(state: Log) -> dict:
        return {"log": [effect("charge", charge)]}

    builder = StateGraph(Log)
    builder.add_node("pay", pay)
    builder.add_edge(START, "pay")
    builder.add_edge("pay", END)
    builder.compile(checkpointer=MemorySaver(), name="payments").invoke({"log": []}, cfg())
    node, span = spans.one("node pay"), spans.one("effect charge")
    assert is_child(span, node)
    assert span.attributes["waypoint.effect.name"] == "charge"
    assert span.attributes["waypoint.effect.status"] == "ran"
    assert span.attributes["waypoint.effect.key"]
    assert span.attributes["waypoint.outcome"] == "ok"
    assert is_child(spans.one("http POST"), span) and charged == [1]


def test_a_resumed_run_links_to_the_run_it_resumes(spans):
    def ask(state: Log) -> dict:
        return {"log": [interrupt("name?")]}

    builder = StateGraph(Log)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    saver = MemorySaver()
    graph = builder.compile(checkpointer=saver, name="asking")
    config = cfg()
    graph.invoke({"log": []}, config)
    (first,) = spans.named("invoke_agent asking")
    assert first.attributes["waypoint.status"] == "interrupted"
    assert first.status.status_code == StatusCode.UNSET
    (paused,) = spans.named("node ask")
    assert paused.attributes["waypoint.outcome"] == "interrupted"
    assert paused.status.status_code == StatusCode.UNSET
    traceparent = graph.get_state(config).metadata["trace"]["traceparent"]
    assert traceparent == (f"00-{first.context.trace_id:032x}-"
                           f"{first.context.span_id:016x}-{int(first.context.trace_flags):02x}")
    assert int(traceparent[-2:], 16) & 1  # sampled

    spans.exporter.clear()
    assert graph.invoke(Command(resume="Ada"), config)["log"] == ["Ada"]
    second = spans.one("invoke_agent asking")
    assert second.context.trace_id != first.context.trace_id
    assert second.attributes["waypoint.resumed"] is True
    assert second.attributes["waypoint.resumes_checkpoint_id"]
    (link,) = second.links
    assert (link.context.trace_id, link.context.span_id) == (first.context.trace_id,
                                                             first.context.span_id)
    assert link.attributes["waypoint.link"] == "resumes"


def test_approvals_are_spans_under_the_node_that_asks(spans):
    def gate(state: Log) -> dict:
        decision = approve({"deploy": "v2"}, assignee="release-managers")
        return {"log": [decision.action]}

    builder = StateGraph(Log)
    builder.add_node("gate", gate)
    builder.add_edge(START, "gate")
    builder.add_edge("gate", END)
    graph = builder.compile(checkpointer=MemorySaver(), name="release")
    config = cfg()
    graph.invoke({"log": []}, config)
    asked = spans.one("approval gate")
    assert is_child(asked, spans.one("node gate"))
    assert asked.attributes["waypoint.approval.status"] == "requested"
    assert asked.attributes["waypoint.approval.assignee"] == "release-managers"
    assert asked.attributes["waypoint.approval.id"]
    assert "approve" in asked.attributes["waypoint.approval.actions"]

    spans.exporter.clear()
    graph.invoke(Command(resume={"action": "approve", "by": "alice"}), config)
    decided = spans.one("approval gate")
    assert decided.attributes["waypoint.approval.status"] == "decided"
    assert decided.attributes["waypoint.approval.action"] == "approve"
    assert decided.attributes["waypoint.approval.decided_by"] == "alice"
    assert decided.attributes["waypoint.approval.waited_s"] >= 0
    assert "deploy" not in json.dumps(dict(decided.attributes))  # never the request itself


def test_compensations_are_spans_under_the_failed_run(spans):
    undone = []

    def cancel_booking(state: Log) -> None:
        undone.append(trace.get_current_span().get_span_context().span_id)

    builder = StateGraph(Log)
    builder.add_node("book", lambda s: {"log": ["booked"]}, compensate=cancel_booking)

    def pay(state: Log) -> dict:
        raise ValueError("card declined")

    builder.add_node("pay", pay)
    builder.add_edge(START, "book")
    builder.add_edge("book", "pay")
    builder.add_edge("pay", END)
    with pytest.raises(ValueError):
        builder.compile(checkpointer=MemorySaver(), name="trip").invoke({"log": []}, cfg())
    root, span = spans.one("invoke_agent trip"), spans.one("compensate book")
    assert undone == [span.context.span_id]  # the compensation runs inside its span
    assert is_child(span, root)
    assert span.attributes["waypoint.compensation.status"] == "compensated"
    assert span.attributes["waypoint.node"] == "book"
    assert span.status.status_code == StatusCode.UNSET
    assert root.status.status_code == StatusCode.ERROR


# -- trace context --------------------------------------------------------------------------


def _two_nodes() -> Any:
    builder = StateGraph(Log)
    builder.add_node("one", lambda s: {"log": ["one"]})
    builder.add_edge(START, "one")
    builder.add_edge("one", END)
    return builder.compile(name="small")


def test_a_callers_span_parents_the_run(spans):
    with spans.tracer.start_as_current_span("request") as outer:
        _two_nodes().invoke({"log": []})
    run = spans.one("invoke_agent small")
    assert run.parent.span_id == outer.get_span_context().span_id
    assert run.context.trace_id == outer.get_span_context().trace_id


async def test_parallel_async_nodes_keep_their_model_calls_apart(spans):
    model = priced_model("one", "two", model="m")

    def asker(name: str) -> Any:
        async def ask(state: Log) -> dict:
            await asyncio.sleep(0.01)
            reply = await model.ainvoke(f"question from {name}")
            await asyncio.sleep(0.01)
            return {"log": [reply.content]}

        return ask

    builder = StateGraph(Log)
    builder.add_node("left", asker("left"))
    builder.add_node("right", asker("right"))
    builder.add_edge(START, "left")
    builder.add_edge(START, "right")
    builder.add_edge("left", END)
    builder.add_edge("right", END)
    await builder.compile(name="pair").ainvoke({"log": []})
    root = spans.one("invoke_agent pair")
    left, right = spans.one("node left"), spans.one("node right")
    assert is_child(left, root) and is_child(right, root)
    chats = spans.named("chat m")
    assert len(chats) == 2
    assert {c.attributes["waypoint.node"] for c in chats} == {"left", "right"}
    for chat in chats:
        owner = left if chat.attributes["waypoint.node"] == "left" else right
        assert is_child(chat, owner)


@pytest.mark.parametrize("timeout", [None, 30.0], ids=["plain", "time-limited"])
def test_code_in_a_node_runs_inside_the_node_span(spans, timeout):
    seen = {}

    def work(state: Log) -> dict:
        seen["span"] = trace.get_current_span().get_span_context()
        seen["carrier"] = current_carrier()
        with spans.tracer.start_as_current_span("library call"):
            pass
        return {"log": ["work"]}

    builder = StateGraph(Log)
    builder.add_node("work", work, timeout=timeout)  # time-limited: in a worker thread
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    builder.compile(name="inside").invoke({"log": []})
    node = spans.one("node work")
    assert seen["span"].span_id == node.context.span_id
    assert is_child(spans.one("library call"), node)
    assert seen["carrier"]["traceparent"].split("-")[2] == f"{node.context.span_id:016x}"
    assert not trace.get_current_span().get_span_context().is_valid  # detached after


def test_continue_trace_parents_the_run_with_a_traceparent(spans):
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with continue_trace({"traceparent": f"00-{trace_id}-{parent_id}-01"}):
        assert current_carrier()["traceparent"].startswith(f"00-{trace_id}-")
        _two_nodes().invoke({"log": []})
    run = spans.one("invoke_agent small")
    assert f"{run.context.trace_id:032x}" == trace_id
    assert f"{run.parent.span_id:016x}" == parent_id
    assert current_carrier() == {}
    with continue_trace(None), continue_trace({}):
        pass


def test_nothing_is_traced_when_not_instrumented():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(tracer_provider=provider)
    instrument(tracer_provider=provider)  # idempotent
    assert is_instrumented() and len(observers.OBSERVERS) == 1
    uninstrument()
    assert not is_instrumented() and observers.OBSERVERS == ()
    _two_nodes().invoke({"log": []})
    assert exporter.get_finished_spans() == ()
