"""Whole traces, checked end to end.

- The research demo (examples/research_pipeline.py on the scripted model, which revises its
  first draft, approved at the gate) with only `OTEL_EXPORTER_OTLP_ENDPOINT` set: one trace
  with plan, the parallel researchers, write → review → write → review, the approval and
  publish, each chat span with its tokens and its cost (or no cost, for a model with no
  known price). This is issue 13's "done when" check, automated.
- One graph with parallel branches, a subgraph, a retry, a model call and a tool call,
  traced in process: every span's parent is the one it should be.
"""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.proto")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receiver import OtlpReceiver, ReceivedSpan

from waypoint import END, START, RetryPolicy, StateGraph, TransientError, add_messages
from waypoint.checkpoint import MemorySaver
from waypoint.models import PriceBook, ScriptedModel
from waypoint.observe.tracing import instrument, uninstrument
from waypoint.tools import ToolNode, tool

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "research_pipeline.py"
PRICE = (3.0, 15.0)  # USD per million tokens, given to the scripted model by WAYPOINT_PRICES


def _demo(tmp_path: Path, endpoint: str, priced: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WAYPOINT_"))}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_SERVICE_NAME="research-demo")
    if priced:
        prices = tmp_path / "prices.json"
        prices.write_text(json.dumps({"scripted-demo": list(PRICE)}))
        env["WAYPOINT_PRICES"] = str(prices)
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--model", "scripted", "--approve", "--topic",
         "tidal power", "--db", str(tmp_path / "research.db")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("priced", [True, False], ids=["priced", "unpriced"])
def test_the_research_demo_is_one_trace_with_every_step(tmp_path, priced):
    with OtlpReceiver() as receiver:
        done = _demo(tmp_path, receiver.endpoint, priced)
        assert done.returncode == 0, done.stderr
        assert "review score: 0.90 after 1 revision(s)" in done.stdout  # two review rounds
        # Exported when the process exits; the session span ends last.
        receiver.wait_for(lambda: receiver.named("research_pipeline"), timeout=30)
        spans = list(receiver.spans)

    assert len({s.trace_id for s in spans}) == 1
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans)

    def parent(span: ReceivedSpan) -> str:
        return by_id[span.parent_span_id].name if span.parent_span_id else ""

    def named(name: str) -> list[ReceivedSpan]:
        return [s for s in spans if s.name == name]

    (session,) = named("research_pipeline")
    assert session.parent_span_id == "" and session.resource["service.name"] == "research-demo"
    first, resumed = sorted(named("invoke_agent research_pipeline"),
                            key=lambda s: bool(s.attributes.get("waypoint.resumed")))
    assert parent(first) == parent(resumed) == "research_pipeline"
    assert first.attributes["waypoint.status"] == "interrupted"
    assert resumed.attributes["waypoint.status"] == "success"
    assert resumed.attributes["waypoint.resumed"] is True
    (approval,) = named("approval publish")
    assert parent(approval) == "research_pipeline"
    assert approval.attributes["waypoint.approval.action"] == "approved"
    (publish,) = named("node publish")
    assert publish.parent_span_id == resumed.span_id

    nodes = [s for s in spans if s.name.startswith("node ")
             and s.parent_span_id == first.span_id]
    steps: dict[int, list[str]] = {}
    for node in nodes:
        steps.setdefault(node.attributes["waypoint.step"], []).append(node.name[5:])
    order = [sorted(steps[step]) for step in sorted(steps)]
    # plan; the four researchers in one step (parallel, via Send); the revision loop.
    assert order == [["plan"], ["research"] * 4, ["write"], ["review"], ["write"], ["review"]]
    researchers = [n for n in nodes if n.name == "node research"]
    assert all(r.attributes["waypoint.send"] is True for r in researchers)
    assert len({r.attributes["waypoint.task_id"] for r in researchers}) == 4

    chats = [s for s in spans if s.name == "chat scripted-demo"]
    assert sorted(parent(c) for c in chats) == sorted(
        ["node plan"] + ["node research"] * 3 + ["node write", "node review"] * 2)
    # The researcher whose search source is down made no model call.
    assert sum(1 for r in researchers if not any(c.parent_span_id == r.span_id
                                                  for c in chats)) == 1
    for chat in chats:
        attrs = chat.attributes
        assert chat.kind == 3  # CLIENT
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.request.model"] == "scripted-demo"
        tokens_in, tokens_out = (attrs["gen_ai.usage.input_tokens"],
                                 attrs["gen_ai.usage.output_tokens"])
        assert tokens_in > 0 and tokens_out > 0
        if priced:
            expected = (tokens_in * PRICE[0] + tokens_out * PRICE[1]) / 1e6
            assert attrs["waypoint.cost_usd"] == pytest.approx(expected)
        else:  # docs/observability.md: left out when the price is unknown, never 0
            assert "waypoint.cost_usd" not in attrs
    assert len(spans) == 22  # session, 2 runs, 10 node spans, 8 chats, the approval


# -- one graph with every kind of span, traced in process ----------------------------------


class Combo(TypedDict, total=False):
    messages: Annotated[list, add_messages]
    log: Annotated[list, operator.add]
    note: str


class Inner(TypedDict, total=False):
    note: str


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny in {city}"


def _combo_graph(calls: list[int]) -> Any:
    priced = PriceBook({"planner": (1.0, 2.0), "expert": (1.0, 2.0)})
    planner = ScriptedModel([{"tool_calls": [{"name": "get_weather", "args": {"city": "Oslo"},
                                              "id": "call_1"}]}], model="planner",
                            prices=priced)
    expert = ScriptedModel(["a fine note"], model="expert", prices=priced)

    def plan(state: Combo) -> dict:
        return {"messages": [planner.invoke("what should I look up?")]}

    def flaky(state: Combo) -> dict:
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("the service blinked")
        return {"log": ["flaky"]}

    def first(state: Inner) -> dict:
        return {"note": expert.invoke("write a note").content}

    inner = StateGraph(Inner)
    inner.add_node("first", first)
    inner.add_node("second", lambda s: {"note": s["note"].upper()})
    inner.add_edge(START, "first")
    inner.add_edge("first", "second")
    inner.add_edge("second", END)

    outer = StateGraph(Combo)
    outer.add_node("plan", plan)
    outer.add_node("tools", ToolNode([get_weather]))
    outer.add_node("flaky", flaky, retry_policy=RetryPolicy(initial_interval=0.01,
                                                            jitter=False))
    outer.add_node("inner", inner.compile(name="inner"))
    outer.add_node("finish", lambda s: {"log": ["finish"]})
    outer.add_edge(START, "plan")
    for branch in ("tools", "flaky", "inner"):  # three parallel branches, then a join
        outer.add_edge("plan", branch)
    outer.add_edge(["tools", "flaky", "inner"], "finish")
    outer.add_edge("finish", END)
    return outer.compile(checkpointer=MemorySaver(), name="combo")


@pytest.fixture
def exporter():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(tracer_provider=provider, capture_content=False)
    yield exporter
    uninstrument()
    provider.shutdown()


async def test_every_span_of_a_combined_graph_has_the_right_parent(exporter, run):
    calls: list[int] = []
    result = await run(_combo_graph(calls), {"log": []},
                       {"configurable": {"thread_id": str(uuid.uuid4())}})
    assert result["note"] == "A FINE NOTE" and sorted(result["log"]) == ["finish", "flaky"]
    assert result["messages"][-1].content == "sunny in Oslo" and len(calls) == 2

    spans = list(exporter.get_finished_spans())
    by_id = {s.context.span_id: s for s in spans}
    assert len({s.context.trace_id for s in spans}) == 1

    def parent(span: Any) -> str | None:
        return by_id[span.parent.span_id].name if span.parent is not None else None

    tree = sorted((s.name, parent(s)) for s in spans)
    assert tree == sorted([
        ("invoke_agent combo", None),
        ("node plan", "invoke_agent combo"),
        ("chat planner", "node plan"),
        ("node tools", "invoke_agent combo"),
        ("execute_tool get_weather", "node tools"),
        ("node flaky", "invoke_agent combo"),  # attempt 1, failed and retried
        ("node flaky", "invoke_agent combo"),  # attempt 2
        ("node inner", "invoke_agent combo"),
        ("invoke_agent inner", "node inner"),
        ("node first", "invoke_agent inner"),
        ("chat expert", "node first"),
        ("node second", "invoke_agent inner"),
        ("node finish", "invoke_agent combo"),
    ])
    steps = {s.name: s.attributes["waypoint.step"] for s in spans
             if s.name in ("node tools", "node flaky", "node inner")}
    assert set(steps.values()) == {2}  # the three branches ran in the same step
    flaky = sorted((s for s in spans if s.name == "node flaky"),
                   key=lambda s: s.attributes["waypoint.attempt"])
    assert [s.attributes["waypoint.outcome"] for s in flaky] == ["retry", "ok"]
    for chat in (s for s in spans if s.name.startswith("chat ")):
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
        assert chat.attributes["waypoint.cost_usd"] > 0
