"""The server's observability: `GET /usage` from the durable ledger (tenant-scoped, kept
across a restart, on SQLite and PostgreSQL), usage in a finished run's metadata, engine
metrics on `/metrics`, and a client's `traceparent` continued by the worker's trace."""

from __future__ import annotations

import contextlib

import pytest
from otlp_receiver import OtlpReceiver
from prometheus_client.parser import text_string_to_metric_families
from server_harness import ServerProcess, postgres_schema, wait_until

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
        server = ServerProcess(tmp_path, env=env).start()
        try:
            http = server.http()
            response = http.post("/runs/wait", headers={
                "traceparent": f"00-{trace_id}-{parent_id}-01"}, json={
                "assistant_id": "agent",
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
        finally:
            server.stop()


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
