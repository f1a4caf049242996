"""The server's observability: `GET /usage` from the durable ledger (tenant-scoped, kept
across a restart, on SQLite and PostgreSQL), usage in a finished run's metadata, engine
metrics on `/metrics`, a client's `traceparent` continued by the worker's trace (with the
tenant and user on its spans), and JSON logs that name the trace and keep secrets out."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, TypedDict

import pytest
from otlp_receiver import OtlpReceiver
from prometheus_client.parser import text_string_to_metric_families
from server_harness import ServerProcess, postgres_schema, wait_until

from waypoint import END, START, StateGraph

KEY_A, KEY_B, KEY_ADMIN = "usage-key-a-0001", "usage-key-b-0002", "usage-key-admin-0003"
KEYS = {"api_keys": [{"key": KEY_A, "tenant": "a"}, {"key": KEY_B, "tenant": "b"},
                     {"key": KEY_ADMIN, "tenant": "ops", "role": "admin"}]}
# The agent graph: two model calls ($1 per input token, $2 per output token; the scripted
# model counts words: 3 + 6 in, 0 + 5 out) and one tool call ($0.25 estimated) per run.
RUN_COST = 9 * 1.0 + 5 * 2.0 + 0.25


def _run_agent(http, user: str) -> dict:
    thread = http.post("/threads", json={}).json()["thread_id"]
    response = http.post(f"/threads/{thread}/runs/wait", json={
        "assistant_id": "agent", "metadata": {"user_id": user},
        "input": {"messages": [{"role": "user", "content": "weather in Oslo?"}]}})
    assert response.status_code == 200, response.text
    runs = http.get(f"/threads/{thread}/runs").json()
    return runs[0]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_usage_is_durable_scoped_by_tenant_and_in_run_metadata(tmp_path, backend):
    with postgres_schema() if backend == "postgres" else contextlib.nullcontext() as url:
        server = ServerProcess(tmp_path, postgres=url, settings=KEYS).start()
        try:
            a = server.http(KEY_A)
            run = _run_agent(a, "alice")
            _run_agent(a, "bob")
            _run_agent(server.http(KEY_B), "carol")
            usage = run["metadata"]["usage"]
            assert usage["calls"] == 3 and usage["input_tokens"] == 9
            assert usage["cost_usd"] == pytest.approx(RUN_COST)
        finally:
            server.stop()
        server = ServerProcess(tmp_path, postgres=url, settings=KEYS).start()  # a restart
        try:
            a, b = server.http(KEY_A), server.http(KEY_ADMIN)
            mine = a.get("/usage").json()["total"]
            assert mine["calls"] == 6 and mine["cost_usd"] == pytest.approx(2 * RUN_COST)
            by_kind = {g["kind"]: g for g in a.get(
                "/usage", params={"group_by": "kind"}).json()["groups"]}
            assert by_kind["model"]["calls"] == 4 and by_kind["tool"]["calls"] == 2
            assert by_kind["tool"]["cost_usd"] == pytest.approx(0.5)
            by_user = {g["user_id"]: g["cost_usd"] for g in a.get(
                "/usage", params={"group_by": ["user_id"]}).json()["groups"]}
            assert by_user == {"alice": pytest.approx(RUN_COST), "bob": pytest.approx(RUN_COST)}
            one = a.get("/usage", params={"run_id": run["run_id"], "group_by": "node"}).json()
            assert {g["node"] for g in one["groups"]} == {"agent", "tools"}
            assert a.get("/usage", params={"tenant": "b"}).json()["total"]["calls"] == 0
            everyone = b.get("/usage", params={"group_by": "tenant"}).json()["groups"]
            assert {g["tenant"]: g["calls"] for g in everyone} == {"a": 6, "b": 3}
            bad = a.get("/usage", params={"group_by": "colour"})
            assert bad.status_code == 422 and "colour" in bad.json()["detail"]
            assert a.get("/usage", params={"since": "yesterday"}).status_code == 422
            assert server.http().get("/usage").status_code == 401
        finally:
            server.stop()


def test_metrics_count_steps_model_tokens_cost_and_tool_calls(tmp_path):
    server = ServerProcess(tmp_path, settings=KEYS).start()
    try:
        _run_agent(server.http(KEY_A), "alice")
        text = server.http(KEY_ADMIN).get("/metrics").text
        got = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
        model = (("model", "scripted-priced"),)
        assert got[("waypoint_model_calls_total", (*model, ("outcome", "ok")))] == 2
        assert got[("waypoint_model_tokens_total", (("direction", "input"), *model))] == 9
        assert got[("waypoint_model_tokens_total", (("direction", "output"), *model))] == 5
        assert got[("waypoint_model_cost_usd_total", model)] == pytest.approx(19.0)
        assert got[("waypoint_tool_calls_total", (("outcome", "ok"), ("tool", "lookup")))] == 1
        ok_agent = (("graph", "agent"), ("node", "agent"), ("outcome", "ok"))
        assert got[("waypoint_node_attempts_total", ok_agent)] == 2
        assert got[("waypoint_node_duration_seconds_count",
                    (("graph", "agent"), ("node", "tools")))] == 1
    finally:
        server.stop()


def test_a_client_traceparent_parents_the_run_the_worker_executes(tmp_path):
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
               "OTEL_SERVICE_NAME": "waypoint-test-server", "OTEL_BSP_SCHEDULE_DELAY": "50"}
        server = ServerProcess(tmp_path, env=env, settings=KEYS).start()
        try:
            http = server.http(KEY_A)
            response = http.post("/runs/wait", headers={
                "traceparent": f"00-{trace_id}-{parent_id}-01"}, json={
                "assistant_id": "agent", "metadata": {"user_id": "alice"},
                "input": {"messages": [{"role": "user", "content": "weather?"}]}})
            assert response.status_code == 200, response.text
            runs = receiver.wait_for(lambda: [s for s in receiver.named("invoke_agent")
                                              if s.trace_id == trace_id])
            root = runs[0]
            assert root.parent_span_id == parent_id
            assert root.resource["service.name"] == "waypoint-test-server"
            chats = receiver.wait_for(lambda: [s for s in receiver.named("chat ")
                                               if s.trace_id == trace_id and
                                               len(receiver.named("chat ")) >= 2])
            assert all(c.attributes["gen_ai.usage.input_tokens"] >= 1 for c in chats)
            tools = receiver.wait_for(lambda: [s for s in receiver.named("execute_tool")
                                               if s.trace_id == trace_id])
            assert tools[0].attributes["gen_ai.tool.name"] == "lookup"
            assert tools[0].attributes["waypoint.cost_usd"] == pytest.approx(0.25)
            # Who the run is for, from the API key's tenant and the run's metadata.
            for span in (root, *chats, tools[0]):
                assert span.attributes["waypoint.tenant"] == "a", span.name
                assert span.attributes["waypoint.user_id"] == "alice", span.name
        finally:
            server.stop()


# -- JSON logs: trace ids on each line, secrets never ----------------------------------------

SECRET_KEY = "sk-proj-Q7w8E9r0T1y2U3i4O5p6A7s8"
SECRET_URL = "postgresql://app:hunter2-s3cret@db.internal:5432/prod"
log = logging.getLogger("observability_graphs")


class Leaky(TypedDict, total=False):
    items: list


def _leak(state: Leaky) -> dict[str, Any]:
    """Fails the way a provider client does: the key and the DSN in the error message."""
    try:
        raise RuntimeError(f"provider refused api_key={SECRET_KEY} (dsn {SECRET_URL})")
    except RuntimeError:
        log.exception("provider call failed")
        raise


_leaky = StateGraph(Leaky)
_leaky.add_node("leak", _leak)
_leaky.add_edge(START, "leak")
_leaky.add_edge("leak", END)
leaky = _leaky.compile()


class _Server(ServerProcess):
    """The harness's server, also serving this module's graphs."""

    def config_path(self) -> Path:
        path = super().config_path()
        config = json.loads(path.read_text())
        config["graphs"]["leaky"] = f"{Path(__file__).resolve()}:leaky"
        path.write_text(json.dumps(config))
        return path


def test_json_logs_carry_the_trace_and_never_a_secret(tmp_path):
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
        server = _Server(tmp_path, env=env, args=["--log-format", "json", "--log-level",
                                                  "info"]).start()
        try:
            http = server.http()
            run = http.post("/runs", json={"assistant_id": "leaky", "on_completion": "keep",
                                           "input": {}}).json()
            path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
            wait_until(lambda: http.get(path).json()["status"] == "error")
            node = receiver.wait_for(lambda: receiver.named("node leak"))[0]

            def lines() -> list[dict[str, Any]]:
                return [json.loads(raw) for raw in server.log if raw.startswith("{")]

            failed = wait_until(lambda: next((line for line in lines()
                                              if "provider call failed" in line["message"]),
                                             None))
            # The node's line names the trace and the span of the node attempt it came from.
            assert (failed["trace_id"], failed["span_id"]) == (node.trace_id, node.span_id)
            assert failed["run_id"] == run["run_id"] and failed["node"] == "leak"
            assert ("RuntimeError: provider refused api_key=[redacted] (dsn postgresql://"
                    "app:[redacted]@db.internal:5432/prod)") in failed["error"]
            wait_until(lambda: any(run["run_id"] in line["message"] and "failed" in
                                   line["message"] for line in lines()))
        finally:
            server.stop()
        everything = server.output()
        assert "provider refused" in everything  # the lines are there, the secrets are not
        assert SECRET_KEY not in everything and "hunter2" not in everything
        assert "app:[redacted]@db.internal" in everything
        spans = json.dumps([(s.name, s.attributes, s.events) for s in receiver.spans])
        assert "node leak" in spans
        assert SECRET_KEY not in spans and "hunter2" not in spans


def test_runs_without_usage_have_no_usage_metadata(tmp_path):
    server = ServerProcess(tmp_path).start()
    try:
        http = server.http()
        thread = http.post("/threads", json={}).json()["thread_id"]
        http.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "three",
                                                         "input": {"items": []}})
        run = wait_until(lambda: http.get(f"/threads/{thread}/runs").json())[0]
        assert "usage" not in run["metadata"]
    finally:
        server.stop()


def test_the_log_formatters_add_the_recording_span_and_redact():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from waypoint.observe.logs import JsonFormatter, TextFormatter

    def line(message: str) -> dict[str, Any]:
        record = logging.LogRecord("t", logging.WARNING, __file__, 1, message, None, None)
        return json.loads(JsonFormatter().format(record))

    assert "trace_id" not in line("outside any span")
    with TracerProvider().get_tracer("t").start_as_current_span("work") as span:
        ctx = span.get_span_context()
        inside = line(f"calling with {SECRET_KEY} on {SECRET_URL}")
    assert inside["trace_id"] == f"{ctx.trace_id:032x}" and len(inside["trace_id"]) == 32
    assert inside["span_id"] == f"{ctx.span_id:016x}" and len(inside["span_id"]) == 16
    assert inside["message"] == ("calling with [redacted] on "
                                 "postgresql://app:[redacted]@db.internal:5432/prod")
    with TracerProvider(sampler=ALWAYS_OFF).get_tracer("t").start_as_current_span("dropped"):
        assert "trace_id" not in line("a span that is not recording")
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "token=%s", ("abc123",), None)
    assert TextFormatter().format(record) == "ERROR t: token=[redacted]"
