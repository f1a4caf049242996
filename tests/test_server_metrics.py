"""`GET /metrics`: Prometheus' text format, parsed; what runs, the queue and approvals
report, on a server process and on a worker's health port."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from server_harness import ServerProcess, WorkerProcess, postgres_schema, wait_until


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_report_runs_the_queue_and_approvals(tmp_path):
    server = ServerProcess(tmp_path).start()
    try:
        http = server.http()
        for _ in range(3):
            assert http.post("/runs/wait", json={"assistant_id": "three",
                                                 "input": {"items": []}}).status_code == 200
        thread = http.post("/threads", json={}).json()["thread_id"]
        http.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "approval",
                                                         "input": {"items": []}})
        response = http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        got = _samples(response.text)
        ok = (("graph", "three"), ("status", "success"))
        assert got[("waypoint_runs_ended_total", ok)] == 3
        assert got[("waypoint_run_attempt_duration_seconds_count", ok)] == 3
        assert got[("waypoint_run_queue_wait_seconds_count", (("graph", "three"),))] == 3
        assert got[("waypoint_runs", (("status", "success"),))] >= 3
        assert got[("waypoint_approvals_pending", ())] == 1
        assert got[("waypoint_approvals_oldest_age_seconds", ())] >= 0
        assert got[("waypoint_queue_depth", ())] == 0
        assert got[("waypoint_worker_leases", ())] == 0
        assert got[("waypoint_run_takeovers_total", ())] == 0
    finally:
        server.stop()


def test_a_workers_health_port_reports_its_takeovers(tmp_path):
    with postgres_schema() as url:
        api = ServerProcess(tmp_path, postgres=url, workers=0,
                            settings={"lease_seconds": 1}).start()
        first = WorkerProcess(api).start()
        side = tmp_path / "charges.log"
        second = None
        try:
            with api.http() as http:
                run = http.post("/runs", json={"assistant_id": "payment", "on_completion":
                                               "keep", "input": {"side_file": str(side)}}).json()
                wait_until(lambda: side.exists() and "charged" in side.read_text())
                first.kill()
                second = WorkerProcess(api, health=True).start()
                import httpx

                def takeovers() -> float:
                    text = httpx.get(second.health_url + "/metrics").text
                    return _samples(text).get(("waypoint_run_takeovers_total", ()), 0)

                wait_until(lambda: takeovers() >= 1, timeout=30)
                (tmp_path / "charges.log.release").write_text("go")
                path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
                wait_until(lambda: http.get(path).json()["status"] == "success", timeout=30)
        finally:
            if second is not None:
                second.stop()
            first.kill()
            api.stop()


def test_json_logs_name_the_run_thread_and_node_of_each_line(tmp_path):
    import json

    server = ServerProcess(tmp_path, args=["--log-format", "json"]).start()
    try:
        http = server.http()
        run = http.post("/runs", json={"assistant_id": "boom", "on_completion": "keep",
                                       "input": {"items": []}}).json()
        line = wait_until(lambda: next((json.loads(raw) for raw in server.log
                                        if "about to fail" in raw), None))
        assert line["level"] == "warning" and line["logger"] == "server_graphs"
        assert line["run_id"] == run["run_id"] and line["thread_id"] == run["thread_id"]
        assert line["node"] == "boom" and line["graph_id"] == "boom" and line["attempt"] == 1
        assert line["tenant"] == "default" and line["ts"].endswith("Z")
    finally:
        server.stop()
