"""`waypoint serve` driven by the official langgraph-sdk, on SQLite and on PostgreSQL.

One real server process per backend serves every test here; tests use their own threads,
so they do not see each other.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
from langgraph_sdk.errors import ConflictError, NotFoundError
from server_harness import running_server


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp(request.param), request.param) as running:
        yield running


async def _collect(stream) -> list[Any]:
    return [part async for part in stream]


# -- the SDK quickstart ---------------------------------------------------------------


async def test_quickstart_thread_stream_interrupt_resume(server):
    client = server.client()
    thread = await client.threads.create(metadata={"user": "ada"})
    parts = await _collect(client.runs.stream(thread["thread_id"], "hitl",
                                              input={"items": ["x"]},
                                              stream_mode=["values", "updates"]))
    assert parts[0].event == "metadata" and parts[0].data["attempt"] == 1
    assert [p.event for p in parts[1:]] == ["values", "updates", "values", "updates",
                                            "values"]
    paused = parts[-1].data
    assert paused["items"] == ["x", "a"]
    question = paused["__interrupt__"][0]
    assert question["value"] == {"question": "ok?"}
    assert all(p.id for p in parts)  # every event carries an id

    state = await client.threads.get_state(thread["thread_id"])
    assert state["next"] == ["ask"] and state["interrupts"][0]["id"] == question["id"]
    stored = await client.threads.get(thread["thread_id"])
    assert stored["status"] == "interrupted"
    assert stored["metadata"]["graph_id"] == "hitl" and stored["metadata"]["user"] == "ada"
    assert stored["metadata"]["assistant_id"]  # UIs search threads by these

    resumed = await _collect(client.runs.stream(thread["thread_id"], "hitl",
                                                command={"resume": "yes"}))
    assert resumed[-1].data["items"] == ["x", "a", "answer:yes"]
    final = await client.threads.get(thread["thread_id"])
    assert final["status"] == "idle" and final["interrupts"] == {}
    assert final["values"]["items"] == ["x", "a", "answer:yes"]


async def test_wait_join_list_get_delete(server):
    client = server.client()
    thread = await client.threads.create()
    tid = thread["thread_id"]
    assert await client.runs.wait(tid, "three", input={"items": []}) == {
        "items": ["a", "b", "c"], "count": 1}
    run = await client.runs.create(tid, "three", input={"items": ["again"]})
    assert run["status"] in ("pending", "running") and run["thread_id"] == tid
    joined = await client.runs.join(tid, run["run_id"])
    assert joined["count"] == 2 and joined["items"][-4:] == ["again", "a", "b", "c"]
    runs = await client.runs.list(tid)
    assert [r["status"] for r in runs] == ["success", "success"]
    assert runs[0]["run_id"] == run["run_id"]  # newest first
    got = await client.runs.get(tid, run["run_id"])
    assert got["kwargs"]["input"] == {"items": ["again"]}
    await client.runs.delete(tid, run["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, run["run_id"])


async def test_stateless_runs_and_errors(server):
    client = server.client()
    assert await client.runs.wait(None, "three", input={"items": []}) == {
        "items": ["a", "b", "c"], "count": 1}
    with pytest.raises(Exception, match="ValueError: kaboom"):
        await client.runs.wait(None, "boom", input={"items": []})
    failed = await client.runs.wait(None, "boom", input={"items": []}, raise_error=False)
    assert failed == {"__error__": {"error": "ValueError", "message": "kaboom"}}
    parts = await _collect(client.runs.stream(None, "boom", input={"items": []}))
    assert parts[-1].event == "error"
    assert parts[-1].data == {"error": "ValueError", "message": "kaboom"}
    kept = await client.runs.create(None, "three", input={"items": []}, on_completion="keep")
    await client.runs.join(kept["thread_id"], kept["run_id"])
    assert (await client.threads.get(kept["thread_id"]))["values"]["count"] == 1


async def test_failed_run_marks_thread_and_run(server):
    client = server.client()
    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], "boom", input={"items": []})
    await client.runs.join(thread["thread_id"], run["run_id"])
    assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "error"
    assert (await client.threads.get(thread["thread_id"]))["status"] == "error"


# -- streaming modes ----------------------------------------------------------------------


async def test_stream_modes(server):
    client = server.client()
    parts = await _collect(client.runs.stream(
        None, "chat", input={"messages": [{"role": "user", "content": "hi"}]},
        stream_mode=["messages-tuple", "custom", "values"]))
    events = [p.event for p in parts]
    assert "custom" in events and parts[events.index("custom")].data == {"progress": "thinking"}
    tokens = [p.data for p in parts if p.event == "messages"]
    assert "".join(chunk["content"] for chunk, _ in tokens) == "hello there friend"
    chunk, metadata = tokens[0]
    assert chunk["type"] == "AIMessageChunk" and chunk["id"]
    assert metadata["langgraph_node"] == "chat"
    final = [p.data for p in parts if p.event == "values"][-1]["messages"]
    assert [m["type"] for m in final] == ["human", "ai"]
    assert final[1]["content"] == "hello there friend"

    old = await _collect(client.runs.stream(
        None, "chat", input={"messages": [{"role": "user", "content": "hi"}]},
        stream_mode="messages"))
    names = [p.event for p in old]
    assert names[1] == "messages/metadata" and "messages/partial" in names
    assert "messages/complete" in names
    partial = [p.data for p in old if p.event == "messages/partial"][-1][0]
    assert partial["content"] == "hello there friend" and partial["type"] == "ai"

    debug = await _collect(client.runs.stream(None, "three", input={"items": []},
                                              stream_mode=["debug", "tasks", "checkpoints"]))
    kinds = {p.event for p in debug}
    assert {"debug", "tasks", "checkpoints"} <= kinds
    assert {p.data["type"] for p in debug if p.event == "debug"} >= {"task", "task_result",
                                                                     "checkpoint"}


async def test_stream_subgraphs_names_events_by_namespace(server):
    client = server.client()
    parts = await _collect(client.runs.stream(None, "nested", input={"items": []},
                                              stream_mode="updates", stream_subgraphs=True))
    names = [p.event for p in parts[1:]]
    assert "updates" in names
    inner = [n for n in names if n.startswith("updates|inner:")]
    assert len(inner) == 3  # a, b, c inside the subgraph


async def test_resumable_stream_replays_after_last_event_id(server):
    client = server.client()
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "slow", input={"items": [], "delay": 0.3},
                                   stream_mode=["values", "updates"], stream_resumable=True)
    first = []
    async for part in client.runs.join_stream(tid, run["run_id"]):
        first.append(part)
        if len(first) == 2:
            break  # the client drops the connection here
    rest = await _collect(client.runs.join_stream(tid, run["run_id"],
                                                  last_event_id=first[-1].id))
    everything = await _collect(client.runs.join_stream(tid, run["run_id"]))
    assert [p.id for p in first + rest] == [p.id for p in everything]
    assert [p.event for p in everything][-1] == "values"
    assert everything[-1].data["items"] == ["slow", "slow"]


# -- double texting -----------------------------------------------------------------------


async def _wait_running(client: Any, tid: str, run_id: str) -> None:
    for _ in range(400):
        if (await client.runs.get(tid, run_id))["status"] == "running":
            return
        await asyncio.sleep(0.025)
    raise AssertionError("run never started")


async def _wait_started(side_file: Any) -> None:
    """Until the slow graph's first step has begun (it writes a line when it does): a run
    that is "running" may not have begun its first step yet."""
    for _ in range(800):
        if side_file.exists() and "started" in side_file.read_text():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the step never began")



async def test_multitask_reject(server):
    client = server.client()
    thread = await client.threads.create()
    tid = thread["thread_id"]
    first = await client.runs.create(tid, "slow", input={"items": [], "delay": 0.4})
    await _wait_running(client, tid, first["run_id"])
    with pytest.raises(ConflictError):
        await client.runs.create(tid, "three", input={"items": []},
                                 multitask_strategy="reject")
    await client.runs.join(tid, first["run_id"])


async def test_multitask_enqueue_keeps_order(server):
    client = server.client()
    thread = await client.threads.create()
    tid = thread["thread_id"]
    first = await client.runs.create(tid, "slow", input={"items": ["1"], "delay": 0.2})
    second = await client.runs.create(tid, "three", input={"items": ["2"]},
                                      multitask_strategy="enqueue")
    third = await client.runs.create(tid, "three", input={"items": ["3"]})
    result = await client.runs.join(tid, third["run_id"])
    assert result["items"] == ["1", "slow", "slow", "2", "a", "b", "c", "3", "a", "b", "c"]
    statuses = {r["run_id"]: r["status"] for r in await client.runs.list(tid)}
    assert statuses == {first["run_id"]: "success", second["run_id"]: "success",
                        third["run_id"]: "success"}


async def test_multitask_interrupt_stops_the_active_run(server, tmp_path):
    client = server.client()
    thread = await client.threads.create()
    tid = thread["thread_id"]
    side = tmp_path / "started.txt"
    first = await client.runs.create(tid, "slow", input={"items": ["1"], "delay": 0.5,
                                                         "side_file": str(side)})
    await _wait_started(side)
    second = await client.runs.create(tid, "three", input={"items": ["2"]},
                                      multitask_strategy="interrupt")
    result = await client.runs.join(tid, second["run_id"])
    assert (await client.runs.get(tid, first["run_id"]))["status"] == "interrupted"
    # the interrupted run stopped after the step it was in, which stays in the thread
    assert result["items"][:2] == ["1", "slow"] and "2" in result["items"]
    assert result["items"].count("slow") == 1


async def test_multitask_rollback_removes_the_active_run(server):
    client = server.client()
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await client.runs.wait(tid, "three", input={"items": ["before"]})
    first = await client.runs.create(tid, "slow", input={"items": ["1"], "delay": 0.5})
    await _wait_running(client, tid, first["run_id"])
    second = await client.runs.create(tid, "three", input={"items": ["2"]},
                                      multitask_strategy="rollback")
    result = await client.runs.join(tid, second["run_id"])
    assert result["items"] == ["before", "a", "b", "c", "2", "a", "b", "c"]
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, first["run_id"])
    history = await client.threads.get_history(tid, limit=50)
    assert all(h["metadata"].get("run_id") != first["run_id"] for h in history)


async def test_cancel_interrupt_and_wait(server, tmp_path):
    client = server.client()
    thread = await client.threads.create()
    tid = thread["thread_id"]
    side = tmp_path / "started.txt"
    run = await client.runs.create(tid, "slow", input={"items": [], "delay": 0.5,
                                                       "side_file": str(side)})
    await _wait_started(side)
    await client.runs.cancel(tid, run["run_id"], wait=True)
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
    state = await client.threads.get_state(tid)
    assert state["next"] == ["second"]  # stopped at a step boundary, resumable
    assert (await client.runs.wait(tid, "slow", input=None))["items"] == ["slow", "slow"]


# -- threads ------------------------------------------------------------------------------


async def test_threads_crud_search_count_copy(server):
    client = server.client()
    tid = "t-" + server.url.rsplit(":", 1)[1] + "-crud"
    made = await client.threads.create(thread_id=tid, metadata={"team": "red"})
    assert made["thread_id"] == tid and made["status"] == "idle"
    with pytest.raises(ConflictError):
        await client.threads.create(thread_id=tid)
    same = await client.threads.create(thread_id=tid, if_exists="do_nothing")
    assert same["metadata"] == {"team": "red"}
    patched = await client.threads.update(tid, metadata={"size": 3})
    assert patched["metadata"] == {"team": "red", "size": 3}
    await client.runs.wait(tid, "three", input={"items": ["s"]})
    found = await client.threads.search(metadata={"team": "red", "size": 3})
    assert [t["thread_id"] for t in found] == [tid]
    assert await client.threads.count(metadata={"team": "red"}) == 1
    by_values = await client.threads.search(values={"count": 1}, metadata={"team": "red"})
    assert [t["thread_id"] for t in by_values] == [tid]
    assert await client.threads.search(status="busy", metadata={"team": "red"}) == []
    copy = await client.threads.copy(tid)
    assert copy["thread_id"] != tid and copy["values"]["items"] == ["s", "a", "b", "c"]
    copied_state = await client.threads.get_state(copy["thread_id"])
    assert copied_state["values"]["items"] == ["s", "a", "b", "c"]
    await client.threads.delete(tid)
    with pytest.raises(NotFoundError):
        await client.threads.get(tid)
    with pytest.raises(NotFoundError):
        await client.threads.get_state(tid)


async def test_state_history_update_and_fork(server):
    client = server.client()
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await client.runs.wait(tid, "three", input={"items": ["x"]})
    history = await client.threads.get_history(tid, limit=10)
    assert len(history) == 5  # input, start, a, b, c
    for entry in history:
        assert entry["checkpoint"]["checkpoint_id"]
        assert "parent_checkpoint" in entry
    assert history[0]["parent_checkpoint"]["checkpoint_id"] == \
        history[1]["checkpoint"]["checkpoint_id"]
    assert history[-1]["parent_checkpoint"] is None
    ids = [h["checkpoint"]["checkpoint_id"] for h in history]
    assert ids == sorted(ids, reverse=True)  # newest first, ids sort by time
    older = await client.threads.get_history(tid, limit=2, before=history[1]["checkpoint"])
    assert [h["checkpoint"]["checkpoint_id"] for h in older] == ids[2:4]
    by_meta = await client.threads.get_history(tid, limit=10, metadata={"source": "input"})
    assert len(by_meta) == 1

    after_a = next(h for h in history if h["next"] == ["b"])
    at = await client.threads.get_state(tid, checkpoint_id=after_a["checkpoint"][
        "checkpoint_id"])
    assert at["values"]["items"] == ["x", "a"]

    updated = await client.threads.update_state(tid, {"items": ["edited"]}, as_node="c")
    assert updated["checkpoint"]["checkpoint_id"] != ids[0]
    assert (await client.threads.get_state(tid))["values"]["items"][-1] == "edited"

    # a run from an older checkpoint forks the thread from there
    fork = await client.runs.wait(tid, "three", input=None, checkpoint=after_a["checkpoint"])
    assert fork["items"] == ["x", "a", "b", "c"]


# -- assistants ---------------------------------------------------------------------------


async def test_assistants(server):
    client = server.client()
    listed = await client.assistants.search(graph_id="three")
    system = listed[0]
    assert system["name"] == "three" and system["metadata"]["created_by"] == "system"
    assert (await client.assistants.get("three"))["assistant_id"] == system["assistant_id"]
    graph = await client.assistants.get_graph("three")
    assert [n["id"] for n in graph["nodes"]] == ["__start__", "a", "b", "c", "__end__"]
    schemas = await client.assistants.get_schemas("three")
    assert set(schemas["state_schema"]["properties"]) >= {"items", "count"}
    assert "inner" in await client.assistants.get_subgraphs("nested")

    mine = await client.assistants.create("three", name="mine", config={"recursion_limit": 5},
                                          metadata={"owner": "me"})
    assert mine["version"] == 1
    changed = await client.assistants.update(mine["assistant_id"], metadata={"v": 2})
    assert changed["version"] == 2 and changed["metadata"] == {"owner": "me", "v": 2}
    versions = await client.assistants.get_versions(mine["assistant_id"])
    assert [v["version"] for v in versions] == [2, 1]
    back = await client.assistants.set_latest(mine["assistant_id"], 1)
    assert back["version"] == 1 and back["metadata"] == {"owner": "me"}
    assert await client.assistants.count(metadata={"owner": "me"}) >= 1
    result = await client.runs.wait(None, mine["assistant_id"], input={"items": []})
    assert result["count"] == 1
    await client.assistants.delete(mine["assistant_id"])
    with pytest.raises(NotFoundError):
        await client.assistants.get(mine["assistant_id"])


# -- bad input ----------------------------------------------------------------------------


def test_bad_input_gets_a_clear_4xx(server):
    http = server.http()
    tid = http.post("/threads", json={}).json()["thread_id"]

    def detail(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        body = response.json()
        assert isinstance(body["detail"], str) and body["detail"]
        return body["detail"]

    assert "JSON" in detail(http.post("/runs/wait", content=b"{bad json",
                                      headers={"content-type": "application/json"}), 422)
    assert "nope" in detail(http.post("/runs/wait", json={"assistant_id": "nope"}), 404)
    assert "missing" in detail(http.get("/threads/missing"), 404)
    assert "stream_mode" in detail(http.post(f"/threads/{tid}/runs/wait", json={
        "assistant_id": "three", "stream_mode": "bogus"}), 422)
    assert "unknown field" in detail(http.post(f"/threads/{tid}/runs", json={
        "assistant_id": "three", "inptu": {}}), 422)
    assert "not waiting" in detail(http.post(f"/threads/{tid}/runs/wait", json={
        "assistant_id": "hitl", "command": {"resume": "x"}}), 409)
    assert "not_a_key" in detail(http.post(f"/threads/{tid}/runs", json={
        "assistant_id": "three", "input": {"not_a_key": 1}}), 422)
    assert "not nodes" in detail(http.post(f"/threads/{tid}/runs", json={
        "assistant_id": "three", "input": {}, "interrupt_before": ["zzz"]}), 422)
    assert "over the limit" in detail(http.post("/threads", content=b"x" * (11 * 1024 * 1024),
                                                headers={"content-type": "application/json"}),
                                      413)
    http.post(f"/threads/{tid}/runs/wait", json={"assistant_id": "three", "input": {}})
    assert detail(http.post(f"/threads/{tid}/state", json={"values": {"count": "x"},
                                                             "as_node": "zzz"}), 422)
    assert detail(http.post(f"/threads/{tid}/state", json={"values": {"nope": 1}}), 422)
    # nothing was written by the refused requests
    runs = http.get(f"/threads/{tid}/runs").json()
    assert len(runs) == 1
    # a body sent as text/plain (browser proxies drop the content type) is still JSON
    plain = http.post("/threads", content=b'{"metadata": {"plain": true}}',
                      headers={"content-type": "text/plain"})
    assert plain.status_code == 200 and plain.json()["metadata"] == {"plain": True}
    form = http.post("/threads/count", content=b"{}",  # what `curl -d` sends
                     headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 200


# -- crons, webhooks ----------------------------------------------------------------------


async def test_crons_fire_on_schedule(server):
    client = server.client()
    thread = await client.threads.create()
    tid = thread["thread_id"]
    cron = await client.crons.create_for_thread(tid, "three", schedule="* * * * * *",
                                                input={"items": ["tick"]})
    assert cron["next_run_date"]
    found = await client.crons.search(thread_id=tid)
    assert [c["cron_id"] for c in found] == [cron["cron_id"]]
    for _ in range(200):
        runs = await client.runs.list(tid)
        if any(r["status"] == "success" for r in runs):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the cron never ran")
    await client.crons.delete(cron["cron_id"])
    assert await client.crons.search(thread_id=tid) == []
    assert runs[0]["metadata"]["cron_id"] == cron["cron_id"]


async def test_webhook_receives_the_finished_run(server):
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        client = server.client()
        url = f"http://127.0.0.1:{hook.server_address[1]}/done"
        await client.runs.wait(None, "three", input={"items": []}, webhook=url)
        for _ in range(200):
            if received:
                break
            await asyncio.sleep(0.05)
        assert received and received[0]["status"] == "success"
        assert received[0]["values"]["count"] == 1
    finally:
        hook.shutdown()


# -- approvals inbox ----------------------------------------------------------------------


def test_approvals_inbox_decides_and_resumes(server):
    http = server.http()
    tid = http.post("/threads", json={}).json()["thread_id"]
    paused = http.post(f"/threads/{tid}/runs/wait", json={"assistant_id": "approval",
                                                          "input": {"items": ["draft"]}})
    assert paused.json()["__interrupt__"][0]["value"]["kind"] == "approval"
    inbox = http.get("/approvals", params={"assignee": "editor", "thread_id": tid}).json()
    assert len(inbox) == 1 and inbox[0]["status"] == "pending"
    approval_id = inbox[0]["approval_id"]
    assert inbox[0]["request"] == {"publish": ["draft", "a"]}
    assert inbox[0]["graph_id"] == "approval"  # the name it is served under
    assert http.get("/approvals", params={"graph_id": "approval", "thread_id": tid}).json()
    bad = http.post(f"/approvals/{approval_id}/decide", json={"action": "edit",
                                                              "edits": {"title": 3}})
    assert bad.status_code == 422 and "title" in bad.json()["detail"]
    assert http.post(f"/approvals/{approval_id}/decide",
                     json={"action": "publish"}).status_code == 422
    decided = http.post(f"/approvals/{approval_id}/decide",
                        json={"action": "edit", "edits": {"title": "Final"}, "comment": "fine",
                              "by": "lee", "stream_mode": ["values", "updates"]})
    assert decided.status_code == 200, decided.text
    run = decided.json()["run"]
    joined = http.get(f"/threads/{tid}/runs/{run['run_id']}/join").json()
    assert joined["items"][-1] == "decision:edit"
    assert run["kwargs"]["stream_mode"] == ["values", "updates"]
    record = http.get(f"/approvals/{approval_id}").json()
    assert record["status"] == "decided" and record["decision"]["by"] == "lee"
    assert record["decision"]["edits"] == {"title": "Final"}
    again = http.post(f"/approvals/{approval_id}/decide", json={"action": "approve"})
    assert again.status_code == 409


def test_meta_endpoints(server):
    http = server.http()
    assert http.get("/ok").json() == {"ok": True}
    info = http.get("/info").json()
    assert info["server"] == "waypoint" and "three" in info["graphs"]
    spec = http.get("/openapi.json").json()
    assert "/threads/{thread_id}/runs/stream" in spec["paths"]
    assert http.get("/docs").status_code == 200


async def test_store_endpoints_and_get_store_in_nodes(server):
    client = server.client()
    await client.store.put_item(["prefs", "user-1"], "colour", {"name": "teal"})
    await client.store.put_item(["prefs", "user-2"], "colour", {"name": "red"})
    item = await client.store.get_item(["prefs", "user-1"], "colour")
    assert item["value"] == {"name": "teal"} and item["namespace"] == ["prefs", "user-1"]
    found = await client.store.search_items(["prefs"], filter={"name": "red"})
    assert [i["key"] for i in found["items"]] == ["colour"]
    assert found["items"][0]["namespace"] == ["prefs", "user-2"]
    spaces = await client.store.list_namespaces(prefix=["prefs"])
    assert sorted(spaces["namespaces"]) == [["prefs", "user-1"], ["prefs", "user-2"]]
    result = await client.runs.wait(None, "memory", input={"items": ["x"]})
    assert result["items"] == ["x", "colour:teal"]
    note = await client.store.get_item(["notes"], "last-run")
    assert note["value"] == {"items": 1}
    await client.store.delete_item(["prefs", "user-2"], "colour")
    with pytest.raises(NotFoundError):
        await client.store.get_item(["prefs", "user-2"], "colour")
    http = server.http()
    bad = http.put("/store/items", json={"namespace": ["a.b"], "key": "k", "value": {}})
    assert bad.status_code == 422 and bad.json()["detail"]


def test_budget_from_the_api_and_spent_in_run_metadata(server):
    http = server.http()
    run = http.post("/runs", json={"assistant_id": "three", "input": {"items": []},
                                   "on_completion": "keep",
                                   "config": {"budget": {"max_steps": 10}}}).json()
    http.get(f"/threads/{run['thread_id']}/runs/{run['run_id']}/join")
    done = http.get(f"/threads/{run['thread_id']}/runs/{run['run_id']}").json()
    assert done["metadata"]["budget"]["run"]["steps"] == 3
    over = http.post("/runs/wait", json={"assistant_id": "three", "input": {"items": []},
                                         "config": {"budget": {"max_steps": 1,
                                                               "on_exceed": "fail"}}})
    assert over.json()["__error__"]["error"] == "BudgetExceeded"
    bad = http.post("/runs", json={"assistant_id": "three", "input": {},
                                   "config": {"budget": {"max_stepz": 1}}})
    assert bad.status_code == 422 and "max_stepz" in bad.json()["detail"]


def test_compensating_cancel_of_a_paused_thread(server, tmp_path):
    http = server.http()
    side = tmp_path / "undo.txt"
    tid = http.post("/threads", json={}).json()["thread_id"]
    paused = http.post(f"/threads/{tid}/runs/wait", json={
        "assistant_id": "trip", "input": {"items": [], "side_file": str(side)}}).json()
    assert paused["__interrupt__"]
    done = http.post(f"/threads/{tid}/cancel", params={"reason": "customer left"})
    assert done.status_code == 200, done.text
    assert done.json()["compensation"]["compensated"] == ["book"]
    assert side.read_text() == "unbooked\n"
    assert http.get(f"/threads/{tid}").json()["status"] == "idle"
    again = http.post(f"/threads/{tid}/cancel")
    assert again.status_code == 409 and "nothing to cancel" in again.json()["detail"]


def test_durable_timers_fire_from_the_server(server):
    http = server.http()
    tid = http.post("/threads", json={}).json()["thread_id"]
    paused = http.post(f"/threads/{tid}/runs/wait", json={
        "assistant_id": "napper", "input": {"items": [], "delay": 0.5}}).json()
    assert paused["__interrupt__"][0]["value"]["kind"] == "timer"
    for _ in range(400):
        thread = http.get(f"/threads/{tid}").json()
        if thread["status"] == "idle":
            break
        time.sleep(0.05)
    assert thread["values"]["items"] == ["woke"]
    runs = http.get(f"/threads/{tid}/runs").json()
    assert len(runs) == 2 and runs[0]["metadata"]["timer_kind"] == "sleep"


def test_graph_targets_builder_and_per_run_factory_and_context(server):
    http = server.http()
    greeted = http.post("/runs/wait", json={"assistant_id": "greeter", "input": {"items": []},
                                            "context": {"user": "ada"}}).json()
    assert greeted["items"] == ["hello ada"]
    made = http.post("/runs/wait", json={"assistant_id": "per_user", "input": {"items": []},
                                         "config": {"configurable": {"suffix": "bo"}}}).json()
    assert made["items"] == ["built for bo"]


def test_batch_after_seconds_and_if_not_exists(server):
    http = server.http()
    tid = "made-on-demand-" + server.url.rsplit(":", 1)[1]
    missing = http.post(f"/threads/{tid}/runs", json={"assistant_id": "three", "input": {}})
    assert missing.status_code == 404
    made = http.post(f"/threads/{tid}/runs/wait", json={
        "assistant_id": "three", "input": {"items": []}, "if_not_exists": "create"})
    assert made.status_code == 200 and made.json()["count"] == 1
    assert http.get(f"/threads/{tid}").json()["metadata"]["graph_id"] == "three"

    runs = http.post("/runs/batch", json=[
        {"assistant_id": "three", "input": {"items": ["one"]}},
        {"assistant_id": "three", "input": {"items": ["two"]}, "thread_id": tid}]).json()
    assert len(runs) == 2 and runs[1]["thread_id"] == tid
    joined = http.get(f"/threads/{tid}/runs/{runs[1]['run_id']}/join").json()
    assert joined["items"][-4:] == ["two", "a", "b", "c"]

    later = http.post(f"/threads/{tid}/runs", json={
        "assistant_id": "three", "input": {"items": ["later"]}, "after_seconds": 0.5}).json()
    assert http.get(f"/threads/{tid}/runs/{later['run_id']}").json()["status"] == "pending"
    done = http.get(f"/threads/{tid}/runs/{later['run_id']}/join").json()
    assert done["items"][-4:] == ["later", "a", "b", "c"]


async def test_on_disconnect_cancel_stops_the_run(server):
    client = server.client()
    thread = await client.threads.create()
    tid = thread["thread_id"]
    seen = []
    stream = client.runs.stream(tid, "slow", input={"items": [], "delay": 0.5},
                                on_disconnect="cancel")
    async for part in stream:
        seen.append(part)
        break
    await stream.aclose()  # the client goes away after the first event
    run_id = seen[0].data["run_id"]
    for _ in range(200):
        status = (await client.runs.get(tid, run_id))["status"]
        if status != "running" and status != "pending":
            break
        await asyncio.sleep(0.05)
    assert status == "interrupted"


def test_cors_preflight_from_a_local_ui(server):
    http = server.http()
    allowed = http.options("/threads/search", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    other = http.options("/threads/search", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in other.headers


async def test_stateless_cron_runs_on_new_threads(server):
    client = server.client()
    cron = await client.crons.create("three", schedule="* * * * * *",
                                     input={"items": ["tick"]}, on_run_completed="keep",
                                     metadata={"kind": "stateless-test"})
    try:
        for _ in range(200):
            found = await client.threads.search(metadata={"graph_id": "three"}, limit=1000,
                                                values={"items": ["tick", "a", "b", "c"]})
            if found:
                break
            await asyncio.sleep(0.05)
        assert found and found[0]["values"]["count"] == 1
    finally:
        await client.crons.delete(cron["cron_id"])


async def _gone(client, thread_id: str) -> bool:
    for _ in range(400):
        try:
            await client.threads.get(thread_id)
        except Exception as exc:  # not found once the reaper deleted it
            assert "not found" in str(exc)
            return True
        await asyncio.sleep(0.025)
    return False


async def test_stateless_run_waiting_for_a_person_keeps_its_thread_until_it_ends(server):
    client = server.client()
    waiting = await client.runs.create(None, "hitl", input={"items": []})
    await client.runs.join(waiting["thread_id"], waiting["run_id"])
    done = await client.runs.create(None, "three", input={"items": []})
    await client.runs.join(done["thread_id"], done["run_id"])
    assert await _gone(client, done["thread_id"])  # the reaper has run since the pause
    thread = await client.threads.get(waiting["thread_id"])
    assert thread["status"] == "interrupted" and thread["interrupts"]
    resumed = await client.runs.create(waiting["thread_id"], "hitl",
                                       command={"resume": "yes"})
    final = await client.runs.join(waiting["thread_id"], resumed["run_id"])
    assert final["items"][-1] == "answer:yes"
    assert await _gone(client, waiting["thread_id"])  # ended for good: deleted as asked
