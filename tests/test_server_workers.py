"""API and worker processes on one PostgreSQL: `waypoint serve --workers 0` accepts and
streams runs that `waypoint worker` processes execute; a cancel crosses processes; a
SIGKILLed worker's run is taken over by another from its last checkpoint."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from server_harness import ServerProcess, WorkerProcess, postgres_schema, wait_until


def _api(tmp: Path, url: str, **settings) -> ServerProcess:
    return ServerProcess(tmp, postgres=url, workers=0, settings=settings).start()


def _start(http, assistant: str, side: Path) -> dict:
    """A background run (its thread kept) of a graph that writes to `side`."""
    return http.post("/runs", json={"assistant_id": assistant, "on_completion": "keep",
                                    "input": {"side_file": str(side)}}).json()


def _ended(http, path: str, timeout: float = 30) -> dict:
    """The run at `path` once it is no longer pending or running."""
    return wait_until(lambda: (r := http.get(path).json())["status"] not in (
        "pending", "running") and r, timeout=timeout)


def test_runs_accepted_by_the_api_run_on_a_worker(tmp_path):
    with postgres_schema() as url:
        api = _api(tmp_path, url)
        worker = WorkerProcess(api).start()
        try:
            client = api.client()

            async def go():
                thread = await client.threads.create()
                events = [part.event async for part in client.runs.stream(
                    thread["thread_id"], "three", input={"items": []},
                    stream_mode=["updates", "values"])]
                state = await client.threads.get_state(thread["thread_id"])
                runs = await client.runs.list(thread["thread_id"])
                return events, state, runs

            events, state, runs = asyncio.run(go())
            assert events[0] == "metadata" and "updates" in events and "values" in events
            assert state["values"]["items"] == ["a", "b", "c"]
            assert runs[0]["status"] == "success"
        finally:
            worker.stop()
            api.stop()


def test_a_cancel_marked_by_the_api_stops_the_run_on_its_worker(tmp_path):
    with postgres_schema() as url:
        api = _api(tmp_path, url)
        worker = WorkerProcess(api).start()
        side = tmp_path / "slow.log"
        try:
            with api.http() as http:
                thread = http.post("/threads", json={}).json()["thread_id"]
                run = http.post(f"/threads/{thread}/runs", json={
                    "assistant_id": "slow", "input": {"delay": 3, "side_file": str(side)}}
                ).json()
                wait_until(lambda: side.exists())  # the first step is running on the worker
                cancelled = http.post(f"/threads/{thread}/runs/{run['run_id']}/cancel")
                assert cancelled.status_code in (200, 202, 204)
                path = f"/threads/{thread}/runs/{run['run_id']}"
                done = _ended(http, path, timeout=30)
                assert done["status"] == "interrupted"
                state = http.get(f"/threads/{thread}/state").json()
                # the step in progress finished and was kept; the next one never ran
                assert state["values"]["items"] == ["slow"]
        finally:
            worker.stop()
            api.stop()


def test_a_killed_workers_run_is_taken_over_and_its_effect_runs_once(tmp_path):
    with postgres_schema() as url:
        api = _api(tmp_path, url, lease_seconds=2)
        first = WorkerProcess(api).start()
        side = tmp_path / "charges.log"
        second = None
        try:
            with api.http() as http:
                run = _start(http, "payment", side)
                wait_until(lambda: side.exists() and "charged" in side.read_text())
                first.kill()  # mid-run: "hold" is waiting for its release file
                second = WorkerProcess(api).start()
                Path(str(side) + ".release").write_text("go")
                path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
                done = _ended(http, path, timeout=60)
                assert done["status"] == "success"
                assert side.read_text().count("charged") == 1
        finally:
            if second is not None:
                second.stop()
            first.kill()
            api.stop()


def test_an_idle_workers_next_poll_takes_over_a_run_whose_lease_lapsed(tmp_path):
    """Leases are ten minutes here, so no renewer looks for lapsed ones during the test;
    the dead worker's lease is made to lapse by hand, with no NOTIFY. The other worker,
    idle, takes the run at its next claim (its poll) and resumes it from its checkpoint;
    the effect ran once."""
    import time

    import psycopg

    with postgres_schema() as url:
        api = _api(tmp_path, url, lease_seconds=600)
        first = WorkerProcess(api).start()
        side = tmp_path / "charges.log"
        second = None
        try:
            with api.http() as http:
                run = _start(http, "payment", side)
                wait_until(lambda: side.exists() and "charged" in side.read_text())
                first.kill()  # mid-run: "hold" waits for its release file
                second = WorkerProcess(api).start()  # its start finds no lapsed lease
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("UPDATE waypoint_runs SET lease_until = %s WHERE run_id = %s",
                                 (time.time() - 1, run["run_id"]))
                Path(str(side) + ".release").write_text("go")
                path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
                done = _ended(http, path, timeout=30)
                assert done["status"] == "success"
                assert side.read_text().count("charged") == 1
                assert "took over 1 run(s)" in second.output()
        finally:
            if second is not None:
                second.stop()
            first.kill()
            api.stop()


def test_a_run_that_keeps_killing_its_workers_stops_as_a_poison_run(tmp_path):
    with postgres_schema() as url:
        api = _api(tmp_path, url, lease_seconds=1, max_takeovers=1)
        side = tmp_path / "crashes.log"
        workers = []
        try:
            with api.http() as http:
                run = _start(http, "crasher", side)
                path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
                for crashes in (1, 2):  # each worker claims it and dies running it
                    workers.append(WorkerProcess(api).start())
                    wait_until(lambda n=crashes: side.exists()
                               and side.read_text().count("crashed") >= n, timeout=30)
                    wait_until(lambda w=workers[-1]: w.proc.poll() is not None)
                workers.append(WorkerProcess(api).start())  # takes it back: over the limit
                done = _ended(http, path, timeout=30)
                assert done["status"] == "error"
                assert side.read_text().count("crashed") == 2
                joined = http.get(path + "/join").json()
                assert joined["__error__"]["error"] == "PoisonRun"
                assert "limit 1" in joined["__error__"]["message"]
        finally:
            for worker in workers:
                worker.kill()
            api.stop()


def test_a_paused_worker_that_lost_its_lease_cannot_commit_over_the_new_holder(tmp_path):
    """A worker frozen (SIGSTOP: a GC pause, a partition) past its lease; another takes the
    run over; the frozen one wakes and finishes its step first. Its commit is refused (the
    lease epoch is checked in the commit), so the new holder's step is the one kept, the
    run succeeds, and the effect ran once."""
    with postgres_schema() as url:
        api = _api(tmp_path, url, lease_seconds=1.5)
        first = WorkerProcess(api).start()
        side = tmp_path / "fenced.log"
        second = None
        try:
            with api.http() as http:
                run = _start(http, "fenced", side)
                wait_until(lambda: side.exists() and "holding 1" in side.read_text())
                first.proc.send_signal(signal.SIGSTOP)
                second = WorkerProcess(api).start()
                wait_until(lambda: "holding 2" in side.read_text(), timeout=30)
                Path(f"{side}.release1").write_text("go")  # the stale attempt finishes first
                first.proc.send_signal(signal.SIGCONT)
                history_path = f"/threads/{run['thread_id']}/history"

                def stale_kept() -> bool:
                    history = http.post(history_path, json={"limit": 20}).json()
                    return any("held-by-1" in (h["values"].get("items") or [])
                               for h in history)

                # the stale attempt's commit is refused (or, unfenced, it would land)
                wait_until(lambda: "taken over" in first.output() or stale_kept(), timeout=30)
                assert not stale_kept()
                Path(f"{side}.release2").write_text("go")
                path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
                done = _ended(http, path, timeout=30)
                assert done["status"] == "success"
                state = http.get(f"/threads/{run['thread_id']}/state").json()
                assert state["values"]["items"][1:] == ["held-by-2"]
                assert not stale_kept()
                assert side.read_text().count("charged") == 1
        finally:
            if second is not None:
                second.stop()
            if first.proc is not None and first.proc.poll() is None:
                first.proc.send_signal(signal.SIGCONT)
            first.kill()
            api.stop()


def test_a_draining_worker_is_not_ready_and_its_run_resumes_on_another_at_once(tmp_path):
    """SIGTERM in a rolling deploy: the worker's /ready turns 503 (draining), the step in
    flight finishes and is kept, the run goes back to the queue (not after a lease) and
    the next worker finishes it; the effect ran once."""
    import httpx

    with postgres_schema() as url:
        api = _api(tmp_path, url, lease_seconds=60)  # a takeover would take a minute
        first = WorkerProcess(api, health=True).start()
        side = tmp_path / "drain.log"
        second = None
        try:
            assert httpx.get(first.health_url + "/ready").json()["ready"] is True
            with api.http() as http:
                run = _start(http, "fenced", side)
                wait_until(lambda: side.exists() and "holding 1" in side.read_text())
                first.proc.send_signal(signal.SIGTERM)
                ready = wait_until(lambda: (r := httpx.get(first.health_url + "/ready"))
                                   .status_code == 503 and r)
                assert ready.json() == {"ready": False, "draining": True}
                assert httpx.get(first.health_url + "/ok").status_code == 200
                Path(f"{side}.release1").write_text("go")
                assert first.proc.wait(30) == 0
                Path(f"{side}.release2").write_text("go")
                second = WorkerProcess(api).start()
                path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
                done = _ended(http, path, timeout=30)
                assert done["status"] == "success"
                state = http.get(f"/threads/{run['thread_id']}/state").json()
                # the drained attempt's step was kept; the next attempt ran nothing again
                assert state["values"]["items"][1:] == ["held-by-1"]
                assert "holding 2" not in side.read_text()
                assert side.read_text().count("charged") == 1
        finally:
            if second is not None:
                second.stop()
            first.kill()
            api.stop()


def test_durable_timers_fire_once_across_workers(tmp_path):
    """Ten threads sleep on durable timers; two workers both scan for due timers: each
    timer resumes its thread exactly once (one timer run per thread, one wake-up)."""
    with postgres_schema() as url:
        api = _api(tmp_path, url)
        workers = [WorkerProcess(api).start() for _ in range(2)]
        try:
            with api.http() as http:
                threads = []
                for _ in range(10):
                    thread = http.post("/threads", json={}).json()["thread_id"]
                    http.post(f"/threads/{thread}/runs", json={
                        "assistant_id": "napper", "input": {"items": [], "delay": 0.5}})
                    threads.append(thread)

                def woke(thread: str) -> bool:
                    state = http.get(f"/threads/{thread}/state").json()
                    return state["values"].get("items") == ["woke"] and not state["next"]

                wait_until(lambda: all(woke(t) for t in threads), timeout=60)
                for thread in threads:
                    runs = http.get(f"/threads/{thread}/runs").json()
                    assert len(runs) == 2  # the run that slept, and one timer run
                    assert all(r["status"] == "success" for r in runs)
                    assert http.get(f"/threads/{thread}/state").json()["values"][
                        "items"] == ["woke"]
        finally:
            for worker in workers:
                worker.stop()
            api.stop()


def test_a_run_that_loses_its_database_resumes_instead_of_failing(tmp_path):
    """A lost database connection mid-run (a restart, a failover) is not the graph's
    failure: the worker puts the run back and it resumes from its last checkpoint; one
    that keeps meeting it stops at the takeover limit with the database's error."""
    with postgres_schema() as url:
        api = _api(tmp_path, url, max_takeovers=2)
        worker = WorkerProcess(api).start()
        try:
            with api.http() as http:
                runs = [http.post("/runs", json={"assistant_id": "outage", "on_completion":
                                                 "keep", "input": {"delay": delay}}).json()
                        for delay in (1, 5)]
                resumed, hopeless = (_ended(http, f"/threads/{r['thread_id']}/runs/"
                                                  f"{r['run_id']}") for r in runs)
                assert resumed["status"] == "success"
                state = http.get(f"/threads/{resumed['thread_id']}/state").json()
                assert state["values"]["items"] == ["a", "stored-on-2"]  # "a" kept, not redone
                assert hopeless["status"] == "error"
                joined = http.get(f"/threads/{hopeless['thread_id']}/runs/"
                                  f"{hopeless['run_id']}/join").json()
                assert joined["__error__"]["error"] == "OperationalError"
                assert "lost its database" in worker.output()
        finally:
            worker.stop()
            api.stop()


def test_a_paused_thread_is_resumed_only_by_its_graph_version_until_migrated(tmp_path):
    """A rolling deploy: a thread paused under version 1 waits for a version-1 worker; a
    version-2 worker runs new threads but not it, until `waypoint runs migrate`."""
    import json
    import subprocess
    import sys

    with postgres_schema() as url:
        api = _api(tmp_path, url, graph_versions={"hitl": "v1"})
        old = WorkerProcess(api).start()
        new_config = tmp_path / "v2.json"
        config = json.loads((tmp_path / "langgraph.json").read_text())
        config["waypoint"]["graph_versions"] = {"hitl": "v2"}
        new_config.write_text(json.dumps(config))
        new = None
        try:
            with api.http() as http:
                paused = http.post("/threads", json={}).json()["thread_id"]
                http.post(f"/threads/{paused}/runs/wait", json={"assistant_id": "hitl",
                                                               "input": {"items": []}})
                assert http.get(f"/threads/{paused}").json()["status"] == "interrupted"
                old.stop()
                new = WorkerProcess(api, config=new_config).start()
                resume = http.post(f"/threads/{paused}/runs", json={
                    "assistant_id": "hitl", "command": {"resume": "yes"}}).json()
                fresh = http.post("/runs/wait", json={"assistant_id": "three",
                                                      "input": {"items": []}})
                assert fresh.json()["items"] == ["a", "b", "c"]  # the new worker claims
                for _ in range(3):  # and it has passed over the v1 run several times
                    http.post("/runs/wait", json={"assistant_id": "three", "input": {}})
                path = f"/threads/{paused}/runs/{resume['run_id']}"
                assert http.get(path).json()["status"] == "pending"
                cli = [sys.executable, "-m", "waypoint.cli", "runs"]
                listed = subprocess.run([*cli, "versions", "--postgres", url, "--config",
                                         str(new_config)], capture_output=True, text=True)
                assert "v1+" in listed.stderr and "pending" in listed.stderr
                moved = subprocess.run([*cli, "migrate", "--graph", "hitl", "--to", "current",
                                        "--postgres", url, "--config", str(new_config)],
                                       capture_output=True, text=True, cwd=tmp_path)
                assert moved.returncode == 0 and "now pinned to v2+" in moved.stderr
                done = _ended(http, path)
                assert done["status"] == "success"
                assert http.get(f"/threads/{paused}/state").json()["values"]["items"] == [
                    "a", "answer:yes"]
        finally:
            if new is not None:
                new.stop()
            old.kill()
            api.stop()
