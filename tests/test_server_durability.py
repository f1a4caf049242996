"""What the server survives: SIGKILL mid-run, SIGTERM (drain), and time (TTL sweep)."""

from __future__ import annotations

import contextlib
import signal

import pytest
from server_harness import ServerProcess, postgres_schema, wait_until


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_mid_run_the_run_finishes_after_restart_and_its_effect_ran_once(
        backend, tmp_path):
    side = tmp_path / "side.txt"
    settings = {"lease_seconds": 2}  # PostgreSQL: a dead worker's lease lapses this fast
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_schema()) if backend == "postgres" else None
        first = ServerProcess(tmp_path, postgres=url, settings=settings).start()
        stack.callback(first.kill)
        http = first.http()
        run = http.post("/runs", json={"assistant_id": "payment", "on_completion": "keep",
                                       "input": {"items": [], "side_file": str(side)}}).json()
        tid, rid = run["thread_id"], run["run_id"]
        # killed while the step after the effect runs (it waits for a file)
        wait_until(lambda: http.get(f"/threads/{tid}/state").json()["next"] == ["hold"])
        wait_until(lambda: _stored_events(url, tmp_path / "server.db", rid))  # (a busy
        first.kill()  # machine may not have written attempt 1's events yet: they are lost)
        assert side.read_text().count("charged") == 1
        (tmp_path / "side.txt.release").touch()

        second = ServerProcess(tmp_path, postgres=url, settings=settings).start()
        stack.callback(second.stop)
        http = second.http()
        result = http.get(f"/threads/{tid}/runs/{rid}/join").json()
        assert result["items"][-1] == "released" and result["items"][0].startswith("charged:")
        assert side.read_text().count("charged") == 1  # the effect did not run again
        assert http.get(f"/threads/{tid}/runs/{rid}").json()["status"] == "success"
        with http.stream("GET", f"/threads/{tid}/runs/{rid}/stream") as events:
            lines = [line for line in events.iter_lines() if line.startswith("data: {\"run_id")]
        assert len(lines) == 2 and '"attempt":2' in lines[1]  # two attempts, one stream


def test_sigterm_drains_at_a_step_boundary_and_a_restart_finishes(tmp_path):
    first = ServerProcess(tmp_path, settings={"drain_timeout": 30}).start()
    http = first.http()
    side = tmp_path / "steps.txt"
    run = http.post("/runs", json={"assistant_id": "slow", "on_completion": "keep", "input": {
        "items": [], "delay": 1.0, "side_file": str(side)}}).json()
    tid, rid = run["thread_id"], run["run_id"]
    wait_until(side.exists)  # the first step is under way
    # uvicorn re-raises the signal after its graceful shutdown: the process ends by SIGTERM
    assert first.stop() in (0, -15)
    assert "draining" in first.output()

    second = ServerProcess(tmp_path).start()
    try:
        http = second.http()
        result = http.get(f"/threads/{tid}/runs/{rid}/join").json()
        assert result["items"] == ["slow", "slow"]  # the first step was kept, not repeated
        history = http.post(f"/threads/{tid}/history", json={"limit": 10}).json()
        attempts = {h["metadata"]["step"]: h["metadata"].get("run_attempt") for h in history}
        assert attempts[1] == 1 and attempts[2] == 2  # step 1 before the drain, step 2 after
        assert side.read_text().count("started") == 2  # each step ran once
    finally:
        second.stop()


def test_readiness_reports_draining_until_the_step_in_flight_ends(tmp_path):
    server = ServerProcess(tmp_path, settings={"drain_timeout": 60}).start()
    try:
        http = server.http()
        assert http.get("/ready").json() == {"ready": True, "draining": False}
        side = tmp_path / "held.txt"
        http.post("/runs", json={"assistant_id": "fenced", "on_completion": "keep",
                                 "input": {"side_file": str(side)}})
        wait_until(lambda: side.exists() and "holding 1" in side.read_text())
        server.proc.send_signal(signal.SIGTERM)  # the step holds until its release file
        draining = wait_until(lambda: (r := http.get("/ready")).status_code == 503 and r)
        assert draining.json() == {"ready": False, "draining": True}
        assert http.get("/ok").json() == {"ok": True}  # alive: it is finishing work
        (tmp_path / "held.txt.release1").touch()
        assert server.proc.wait(30) in (0, -15)
    finally:
        server.kill()


def _stored_events(postgres: str | None, sqlite_file, run_id: str) -> int:
    """How many stream events of the run are in the database (not only in memory)."""
    query = "SELECT count(*) FROM waypoint_run_events WHERE run_id = "
    if postgres:
        import psycopg

        with psycopg.connect(postgres) as conn:
            return conn.execute(query + "%s", (run_id,)).fetchone()[0]
    import sqlite3

    with contextlib.closing(sqlite3.connect(sqlite_file)) as conn:
        return conn.execute(query + "?", (run_id,)).fetchone()[0]
