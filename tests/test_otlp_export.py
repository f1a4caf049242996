"""Tracing with no code change: a process whose environment names an OTLP endpoint exports
its runs' spans there (OTLP over HTTP, decoded by a receiver in this test), flushed when
it exits; the console exporter, OTEL_SDK_DISABLED and an application's own provider are
respected too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.proto")

from otlp_receiver import OtlpReceiver

ROOT = Path(__file__).resolve().parent.parent

# A small agent with a model call and no tracing code: only the environment asks for it.
SCRIPT = r"""
from typing import TypedDict
from waypoint import END, START, StateGraph
from waypoint.models import ScriptedModel
from waypoint.models.pricing import PriceBook

model = ScriptedModel(["Paris is the capital."], model="gpt-test",
                      prices=PriceBook({"gpt-test": (1.0, 2.0)}))

class S(TypedDict, total=False):
    question: str
    answer: str

def ask(state):
    return {"answer": model.invoke(state["question"]).content}

def check(state):
    return {"answer": state["answer"].upper()}

builder = StateGraph(S)
builder.add_node("ask", ask)
builder.add_node("check", check)
builder.add_edge(START, "ask")
builder.add_edge("ask", "check")
builder.add_edge("check", END)
graph = builder.compile(name="geography")
print(graph.invoke({"question": "What is the capital of France?"},
                   {"configurable": {"thread_id": "thread-otlp"}})["answer"])
"""


def _run(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    clean.update(env)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=60)


def test_a_process_exports_its_runs_to_the_endpoint_in_its_environment():
    with OtlpReceiver() as receiver:
        done = _run(SCRIPT, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                    OTEL_SERVICE_NAME="waypoint-otlp-test",
                    OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "PARIS IS THE CAPITAL."
        # Exported at exit (the batch processor is flushed by the atexit shutdown).
        receiver.wait_for(lambda: receiver.named("invoke_agent geography"), timeout=10)
        spans = list(receiver.spans)
    (run,) = [s for s in spans if s.name == "invoke_agent geography"]
    assert run.parent_span_id == ""
    assert run.resource["service.name"] == "waypoint-otlp-test"
    assert run.resource["deployment.environment"] == "test"
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["gen_ai.conversation.id"] == "thread-otlp"
    assert run.attributes["waypoint.status"] == "success"
    nodes = {s.name: s for s in spans if s.name.startswith("node ")}
    assert set(nodes) == {"node ask", "node check"}
    assert all(n.parent_span_id == run.span_id and n.trace_id == run.trace_id
               for n in nodes.values())
    (chat,) = [s for s in spans if s.name == "chat gpt-test"]
    assert chat.parent_span_id == nodes["node ask"].span_id
    assert chat.kind == 3  # SPAN_KIND_CLIENT
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.request.model"] == "gpt-test"
    assert chat.attributes["gen_ai.provider.name"] == "waypoint.scripted"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 6
    assert chat.attributes["gen_ai.usage.output_tokens"] == 4
    assert chat.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert "gen_ai.input.messages" not in chat.attributes
    assert chat.resource["service.name"] == "waypoint-otlp-test"


def test_console_exporter_none_and_disabled():
    shown = _run(SCRIPT, OTEL_TRACES_EXPORTER="console")
    assert shown.returncode == 0, shown.stderr
    assert '"name": "invoke_agent geography"' in shown.stdout
    assert '"service.name": "waypoint"' in shown.stdout  # the default service name
    probe = SCRIPT + "\nfrom waypoint.engine import observers\nprint(len(observers.OBSERVERS))\n"
    for env in ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:1"},
                {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}):
        off = _run(probe, **env)
        assert off.returncode == 0, off.stderr
        assert off.stdout.split() == ["PARIS", "IS", "THE", "CAPITAL.", "0"]


def test_an_application_provider_is_used_as_it_is():
    script = r"""
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
""" + SCRIPT + r"""
print(sorted(s.name for s in exporter.get_finished_spans()))
"""
    with OtlpReceiver() as receiver:
        done = _run(script, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        assert done.returncode == 0, done.stderr
        assert "'invoke_agent geography'" in done.stdout and "'chat gpt-test'" in done.stdout
        assert receiver.spans == []  # the application's provider has no OTLP exporter


def test_the_protocol_variable_picks_the_exporter(monkeypatch):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    from waypoint.observe import otel_setup

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    grpc = otel_setup._exporter("otlp")
    assert isinstance(grpc, GrpcExporter)
    grpc.shutdown()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    http = otel_setup._exporter("otlp")
    assert isinstance(http, HttpExporter)
    http.shutdown()
    assert otel_setup.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1"})
    assert otel_setup.wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not otel_setup.wanted({"OTEL_TRACES_EXPORTER": "none",
                                  "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1"})
    assert not otel_setup.wanted({"OTEL_SDK_DISABLED": "true",
                                  "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1"})
    assert not otel_setup.wanted({})
