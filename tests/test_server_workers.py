"""API and worker processes on one PostgreSQL: `waypoint serve --workers 0` accepts and
streams runs that `waypoint worker` processes execute; a cancel crosses processes; a
SIGKILLed worker's run is taken over by another from its last checkpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path

from server_harness import ServerProcess, WorkerProcess, postgres_schema, wait_until


def _api(tmp: Path, url: str, **settings) -> ServerProcess:
    return ServerProcess(tmp, postgres=url, workers=0, settings=settings).start()


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
                done = wait_until(lambda: (r := http.get(path).json())["status"] not in (
                    "pending", "running") and r, timeout=30)
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
                run = http.post("/runs", json={"assistant_id": "payment",
                                               "on_completion": "keep",
                                               "input": {"side_file": str(side)}}).json()
                wait_until(lambda: side.exists() and "charged" in side.read_text())
                first.kill()  # mid-run: "hold" is waiting for its release file
                second = WorkerProcess(api).start()
                Path(str(side) + ".release").write_text("go")
                path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
                done = wait_until(lambda: (r := http.get(path).json())["status"] not in (
                    "pending", "running") and r, timeout=60)
                assert done["status"] == "success"
                assert side.read_text().count("charged") == 1
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
                run = http.post("/runs", json={"assistant_id": "crasher",
                                               "on_completion": "keep",
                                               "input": {"side_file": str(side)}}).json()
                path = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
                for crashes in (1, 2):  # each worker claims it and dies running it
                    workers.append(WorkerProcess(api).start())
                    wait_until(lambda n=crashes: side.exists()
                               and side.read_text().count("crashed") >= n, timeout=30)
                    wait_until(lambda w=workers[-1]: w.proc.poll() is not None)
                workers.append(WorkerProcess(api).start())  # takes it back: over the limit
                done = wait_until(lambda: (r := http.get(path).json())["status"] not in (
                    "pending", "running") and r, timeout=30)
                assert done["status"] == "error"
                assert side.read_text().count("crashed") == 2
                joined = http.get(path + "/join").json()
                assert joined["__error__"]["error"] == "PoisonRun"
                assert "limit 1" in joined["__error__"]["message"]
        finally:
            for worker in workers:
                worker.kill()
            api.stop()
