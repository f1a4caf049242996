"""`GET /metrics`: Prometheus' text format, parsed; what runs, the queue and approvals
report, on a server process and on a worker's health port; and each counter of a rare
event (a retry, a timeout, an unpriced model call, a database outage, a fenced attempt, a
poison run, a waiting queue) moving when that event happens."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, TypedDict

from prometheus_client.parser import text_string_to_metric_families
from server_harness import ServerProcess, WorkerProcess, postgres_schema, wait_until

from waypoint import END, START, RetryPolicy, StateGraph, TransientError
from waypoint.models import ScriptedModel


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


# -- rare events, each counted: graphs served from this module ------------------------------


class Event(TypedDict, total=False):
    db: str
    done: list


def _one_node(name: str, fn: Any, **options: Any) -> Any:
    builder = StateGraph(Event)
    builder.add_node(name, fn, **options)
    builder.add_edge(START, name)
    builder.add_edge(name, END)
    return builder.compile()


_FLAKY_SEEN: set[str] = set()


def _flaky(state: Event, config: dict[str, Any]) -> dict[str, Any]:
    run_id = config["metadata"]["run_id"]
    if run_id not in _FLAKY_SEEN:  # the first attempt of each run fails, the next works
        _FLAKY_SEEN.add(run_id)
        raise TransientError("the service blinked")
    return {"done": ["flaky"]}


async def _sleepy(state: Event) -> dict[str, Any]:
    await asyncio.sleep(60)  # stopped by its time limit long before
    return {"done": ["never"]}


def _unpriced(state: Event) -> dict[str, Any]:
    model = ScriptedModel(["fine"], model="metrics-model-with-no-known-price")
    return {"done": [model.invoke("how are you?").content]}


def _db_drops(state: Event, config: dict[str, Any]) -> dict[str, Any]:
    import psycopg

    if config["metadata"]["run_attempt"] == 1:  # a lost connection: the run is requeued
        raise psycopg.OperationalError("server closed the connection unexpectedly")
    return {"done": ["stored"]}


def _taken_over(state: Event, config: dict[str, Any]) -> dict[str, Any]:
    """Another worker takes the run over while this step runs (its attempt moves on), so
    this attempt's commit is refused."""
    meta = config["metadata"]
    if meta["run_attempt"] == 1:
        with sqlite3.connect(state["db"], timeout=30) as conn:
            conn.execute("UPDATE waypoint_runs SET attempt = attempt + 1 WHERE run_id = ?",
                         (meta["run_id"],))
    return {"done": ["held"]}


def _crash(state: Event) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGKILL)  # every attempt kills its server: a poison run
    return {"done": ["never"]}


flaky = _one_node("flaky", _flaky, retry_policy=RetryPolicy(initial_interval=0.01,
                                                            jitter=False))
sleepy = _one_node("sleepy", _sleepy, timeout=0.2)
unpriced = _one_node("ask", _unpriced)
drops = _one_node("store", _db_drops)
taken_over = _one_node("hold", _taken_over)
crasher = _one_node("crash", _crash)
OWN_GRAPHS = ("flaky", "sleepy", "unpriced", "drops", "taken_over", "crasher")


class _Server(ServerProcess):
    """The harness's server, also serving this module's graphs."""

    def config_path(self) -> Path:
        path = super().config_path()
        config = json.loads(path.read_text())
        here = Path(__file__).resolve()
        config["graphs"].update({name: f"{here}:{name}" for name in OWN_GRAPHS})
        path.write_text(json.dumps(config))
        return path


def _serve_until_killed(server: ServerProcess) -> None:
    """`waypoint serve` until the run it takes kills it (maybe before it says it is ready,
    so not through `start()`)."""
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(here.parent)])}
    done = subprocess.run([sys.executable, "-m", "waypoint.cli", "serve", "--config",
                           str(server.config_path()), "--port", "0", "--log-level", "warning"],
                          cwd=server.workdir, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr


def _scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return _samples(server.http().get("/metrics").text)


def test_retries_timeouts_unpriced_calls_outages_and_fenced_attempts_are_counted(tmp_path):
    server = _Server(tmp_path, settings={"lease_seconds": 1}).start()
    try:
        http = server.http()
        before = _scrape(server)
        for name in ("flaky", "sleepy", "unpriced", "drops", "taken_over"):
            assert http.post("/runs", json={"assistant_id": name, "on_completion": "keep",
                                            "input": {"db": str(tmp_path / "server.db")}}
                             ).status_code == 200

        def counted() -> dict[Any, float] | None:
            got = _scrape(server)
            wanted = [("waypoint_node_retries_total", (("graph", "flaky"), ("node", "flaky"))),
                      ("waypoint_node_timeouts_total", (("graph", "sleepy"),
                                                        ("node", "sleepy"))),
                      ("waypoint_model_unpriced_calls_total",
                       (("model", "metrics-model-with-no-known-price"),)),
                      ("waypoint_run_outage_retries_total", ()),
                      ("waypoint_fenced_attempts_total", ())]
            return got if all(got.get(key, 0) >= 1 for key in wanted) else None

        got = wait_until(counted, timeout=30)
        assert before[("waypoint_run_outage_retries_total", ())] == 0
        assert before[("waypoint_fenced_attempts_total", ())] == 0
        assert got[("waypoint_node_retries_total", (("graph", "flaky"), ("node", "flaky")))] == 1
        assert got[("waypoint_node_attempts_total", (("graph", "flaky"), ("node", "flaky"),
                                                     ("outcome", "retry")))] == 1
        assert got[("waypoint_node_timeouts_total", (("graph", "sleepy"),
                                                     ("node", "sleepy")))] == 1
        # A priced call is not counted as unpriced, and an unpriced one adds no cost.
        model = (("model", "metrics-model-with-no-known-price"),)
        assert got[("waypoint_model_unpriced_calls_total", model)] == 1
        assert ("waypoint_model_cost_usd_total", model) not in got
        assert got[("waypoint_run_outage_retries_total", ())] == 1
        assert got[("waypoint_fenced_attempts_total", ())] == 1
        assert ("waypoint_node_timeouts_total", (("graph", "flaky"), ("node", "flaky"))) \
            not in got
    finally:
        server.stop()


def test_the_queue_wait_and_poison_runs_are_counted(tmp_path):
    idle = _Server(tmp_path, workers=0).start()  # accepts runs, runs none
    try:
        http = idle.http()
        run = http.post("/runs", json={"assistant_id": "crasher", "on_completion": "keep",
                                       "input": {}}).json()
        assert _scrape(idle)[("waypoint_queue_depth", ())] == 1
        wait_until(lambda: _scrape(idle)[("waypoint_queue_oldest_wait_seconds", ())] > 0)
    finally:
        idle.stop()
    for _ in range(2):  # claimed and killed, then taken back and killed again
        _serve_until_killed(_Server(tmp_path, settings={"max_takeovers": 1}))
    last = _Server(tmp_path, settings={"max_takeovers": 1}).start()  # over the limit
    try:
        http = last.http()
        path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
        wait_until(lambda: http.get(path).json()["status"] == "error")
        got = _scrape(last)
        assert got[("waypoint_poison_runs_total", ())] == 1
        assert got[("waypoint_queue_depth", ())] == 0
        assert got[("waypoint_queue_oldest_wait_seconds", ())] == 0
    finally:
        last.stop()
