"""Runs and threads over HTTP, beyond the quickstart: joining a thread's stream, a thread
seen busy, the `events` stream mode, cancelling with rollback and in bulk, crons patched and
counted. Driven by the official SDK, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk.errors import NotFoundError
from server_harness import running_server


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp(request.param), request.param) as running:
        yield running


async def _collect(stream) -> list[Any]:
    return [part async for part in stream]


async def _wait_started(side_file: Path) -> None:
    """Until the slow graph's first step has begun (it writes a line when it does)."""
    for _ in range(800):
        if side_file.exists() and "started" in side_file.read_text():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the step never began")


async def _until_run_done(stream, into: list[Any], count: int = 1) -> None:
    """Read the thread stream into `into` until `count` more runs have ended."""
    seen = 0
    async for part in stream:
        into.append(part)
        if part.event == "run_done":
            seen += 1
            if seen == count:
                return
    raise AssertionError("the thread stream ended early")


# -- GET /threads/{id}/stream --------------------------------------------------------------


async def test_join_thread_stream_follows_the_current_run_then_the_next(server, tmp_path):
    client = server.client()
    tid = (await client.threads.create())["thread_id"]
    side = tmp_path / "charges.txt"  # the payment graph holds until side.release exists
    first = await client.runs.create(tid, "payment", input={"items": [],
                                                            "side_file": str(side)},
                                     stream_mode=["values", "updates"])
    stream = await client.threads.join_stream(tid)
    parts: list[Any] = [await anext(stream)]  # joined while the run is held mid-way
    (tmp_path / "charges.txt.release").touch()
    await _until_run_done(stream, parts)
    second = await client.runs.create(tid, "three", input={"items": ["next"]})
    await _until_run_done(stream, parts)  # the next run, as it starts
    await stream.aclose()

    names = [p.event for p in parts]
    assert names[0] == "metadata" and parts[0].data["run_id"] == first["run_id"]
    assert names.count("metadata") == 2 and names.count("run_done") == 2
    done = [p.data for p in parts if p.event == "run_done"]
    assert done == [{"run_id": first["run_id"], "thread_id": tid, "status": "success"},
                    {"run_id": second["run_id"], "thread_id": tid, "status": "success"}]
    cut = names.index("run_done")
    assert {"values", "updates"} <= set(names[1:cut])
    assert parts[cut - 1].data["items"][-1] == "released"
    assert parts[cut + 1].data["run_id"] == second["run_id"]
    assert parts[-2].data["items"][-4:] == ["next", "a", "b", "c"]
    ids = [p.id for p in parts]
    assert all(ids) and len(set(ids)) == len(ids)
    assert ids[0].startswith(first["run_id"] + ":") and ids[-1] == second["run_id"] + ":done"

    # a client that lost the connection resumes after the last event it saw: the rest of
    # that run, then the runs after it (here finished already), nothing twice
    resumed_at = 2
    again = await client.threads.join_stream(tid, last_event_id=parts[resumed_at].id)
    rest: list[Any] = []
    await _until_run_done(again, rest, count=2)
    await again.aclose()
    assert [p.id for p in parts[:resumed_at + 1] + rest] == ids
    after_first = await client.threads.join_stream(tid, last_event_id=f"{first['run_id']}:done")
    tail: list[Any] = []
    await _until_run_done(after_first, tail)
    await after_first.aclose()
    assert [p.id for p in tail] == ids[cut + 1:]


async def test_join_thread_stream_lifecycle_mode_and_bad_requests(server, tmp_path):
    client = server.client()
    tid = (await client.threads.create())["thread_id"]
    side = tmp_path / "charges.txt"
    run = await client.runs.create(tid, "payment", input={"items": [], "side_file": str(side)},
                                   stream_mode=["values", "updates"])
    stream = await client.threads.join_stream(tid, stream_mode="lifecycle")
    parts: list[Any] = [await anext(stream)]
    (tmp_path / "charges.txt.release").touch()
    await _until_run_done(stream, parts)
    await stream.aclose()
    assert [p.event for p in parts] == ["metadata", "run_done"]
    assert parts[0].data["run_id"] == run["run_id"] and parts[1].data["status"] == "success"

    http = server.http()
    bad = http.get(f"/threads/{tid}/stream", params={"stream_mode": "bogus"})
    assert bad.status_code == 422 and "bogus" in bad.json()["detail"]
    later = http.get(f"/threads/{tid}/stream", params={"stream_mode": "state_update"})
    assert later.status_code == 422 and "not supported yet" in later.json()["detail"]
    assert http.get("/threads/no-such-thread/stream").status_code == 404


# -- status, stream modes ------------------------------------------------------------------


async def test_thread_is_busy_while_its_run_runs(server, tmp_path):
    client = server.client()
    tid = (await client.threads.create(metadata={"probe": tmp_path.name}))["thread_id"]
    side = tmp_path / "started.txt"
    run = await client.runs.create(tid, "slow", input={"items": [], "delay": 0.3,
                                                       "side_file": str(side)})
    await _wait_started(side)
    assert (await client.threads.get(tid))["status"] == "busy"
    busy = await client.threads.search(status="busy", metadata={"probe": tmp_path.name})
    assert [t["thread_id"] for t in busy] == [tid]
    await client.runs.join(tid, run["run_id"])
    assert (await client.threads.get(tid))["status"] == "idle"
    assert await client.threads.search(status="busy", metadata={"probe": tmp_path.name}) == []


async def test_stream_mode_events(server):
    client = server.client()
    parts = await _collect(client.runs.stream(None, "three", input={"items": []},
                                              stream_mode="events"))
    events = [p.data for p in parts if p.event == "events"]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "on_chain_start" and kinds[-1] == "on_chain_end"
    started = {e["name"] for e in events if e["event"] == "on_chain_start"}
    assert {"a", "b", "c"} <= started
    ends = {e["name"]: e["data"]["output"] for e in events if e["event"] == "on_chain_end"}
    assert ends["a"] == {"items": ["a"], "count": 1} and ends["c"] == {"items": ["c"]}
    root, last = events[0], events[-1]
    assert root["name"] == last["name"] and root["run_id"] == last["run_id"]
    assert root["parent_ids"] == [] and root["data"]["input"] == {"items": []}
    assert last["data"]["output"] == {"items": ["a", "b", "c"], "count": 1}
    nodes = events[1:-1]
    assert all(e["metadata"]["langgraph_node"] == e["name"] for e in nodes)
    assert all(e["parent_ids"][0] == root["run_id"] for e in nodes)


async def test_stream_mode_events_reports_a_failed_graph(server):
    client = server.client()
    parts = await _collect(client.runs.stream(None, "boom", input={"items": []},
                                              stream_mode="events"))
    events = [p.data for p in parts if p.event == "events"]
    assert events[0]["event"] == "on_chain_start"
    assert events[-1]["event"] == "on_chain_error"
    assert events[-1]["data"]["error"]["error"]
    assert parts[-1].event == "error"


# -- cancelling ----------------------------------------------------------------------------


async def test_cancel_with_rollback_removes_the_run_and_its_steps(server, tmp_path):
    client = server.client()
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "three", input={"items": ["kept"]})
    before = await client.threads.get_state(tid)
    side = tmp_path / "started.txt"
    run = await client.runs.create(tid, "slow", input={"items": ["gone"], "delay": 0.3,
                                                       "side_file": str(side)})
    await _wait_started(side)
    await client.runs.cancel(tid, run["run_id"], wait=True, action="rollback")
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, run["run_id"])
    after = await client.threads.get_state(tid)
    assert after["values"] == before["values"]
    assert after["checkpoint"]["checkpoint_id"] == before["checkpoint"]["checkpoint_id"]
    assert (await client.threads.get(tid))["status"] == "idle"


async def test_cancel_many_by_ids_and_by_status(server, tmp_path):
    client = server.client()
    first_tid, second_tid = [(await client.threads.create())["thread_id"] for _ in range(2)]
    side = tmp_path / "started.txt"
    running = await client.runs.create(first_tid, "slow", input={
        "items": [], "delay": 0.3, "side_file": str(side)})
    queued = await client.runs.create(first_tid, "three", input={"items": []})
    await _wait_started(side)
    await client.runs.cancel_many(thread_id=first_tid, status="pending")
    await client.runs.join(first_tid, running["run_id"])
    statuses = {r["run_id"]: r["status"] for r in await client.runs.list(first_tid)}
    assert statuses == {running["run_id"]: "success", queued["run_id"]: "interrupted"}

    other = await client.runs.create(second_tid, "slow", input={"items": [], "delay": 0.3})
    await client.runs.cancel_many(run_ids=[other["run_id"]])
    await client.runs.join(second_tid, other["run_id"])
    assert (await client.runs.get(second_tid, other["run_id"]))["status"] == "interrupted"
    http = server.http()
    missing = http.post("/runs/cancel", json={"run_ids": ["no-such-run"]})
    assert missing.status_code == 404 and "no-such-run" in missing.json()["detail"]


# -- crons ---------------------------------------------------------------------------------


async def test_cron_patch_and_count(server, tmp_path):
    client = server.client()
    tid = (await client.threads.create())["thread_id"]
    cron = await client.crons.create_for_thread(tid, "three", schedule="0 0 1 1 *",
                                                input={"items": ["yearly"]},
                                                metadata={"probe": tmp_path.name})
    assert await client.crons.count(thread_id=tid) == 1
    assert await client.crons.count(metadata={"probe": tmp_path.name}) == 1
    assert await client.crons.count(metadata={"probe": "someone-else"}) == 0
    changed = await client.crons.update(cron["cron_id"], schedule="0 12 * * *",
                                        enabled=False, metadata={"more": 1},
                                        input={"items": ["daily"]})
    assert changed["schedule"] == "0 12 * * *" and changed["enabled"] is False
    assert changed["metadata"] == {"probe": tmp_path.name, "more": 1}
    assert changed["next_run_date"] != cron["next_run_date"]
    assert changed["payload"]["input"] == {"items": ["daily"]}
    [found] = await client.crons.search(thread_id=tid)
    assert found["enabled"] is False and found["schedule"] == "0 12 * * *"
    http = server.http()
    bad = http.patch(f"/runs/crons/{cron['cron_id']}", json={"schedule": "every day"})
    assert bad.status_code == 422 and "every day" in bad.json()["detail"]
    await client.crons.delete(cron["cron_id"])
    assert await client.crons.count(thread_id=tid) == 0
