"""Thread state over HTTP: updates and inputs checked against the graph's state schema, state
at a checkpoint, subgraph state, commands, breakpoints after a node, thread search order.

One server per backend serves the usual test graphs plus `typed` (a pydantic state); every
test uses threads of its own.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import HERE, ServerProcess, postgres_schema


class ServerWithTyped(ServerProcess):
    """The harness's server, also serving `typed` and `nested_ask` of server_graphs.py."""

    def config_path(self) -> Path:
        path = super().config_path()
        data = json.loads(path.read_text())
        for name in ("typed", "nested_ask"):
            data["graphs"][name] = f"{HERE / 'server_graphs.py'}:{name}"
        path.write_text(json.dumps(data))
        return path


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_schema()) if request.param == "postgres" else None
        running = ServerWithTyped(tmp_path_factory.mktemp(request.param), postgres=url).start()
        stack.callback(running.stop)
        yield running


def _detail(response: httpx.Response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    return detail


def _thread_ran(http: httpx.Client, graph: str, values: dict[str, Any]) -> str:
    tid = http.post("/threads", json={}).json()["thread_id"]
    done = http.post(f"/threads/{tid}/runs/wait", json={"assistant_id": graph, "input": values})
    assert done.status_code == 200, done.text
    return tid


def _head(http: httpx.Client, tid: str) -> dict[str, Any]:
    return http.get(f"/threads/{tid}/state").json()


# -- state updates are checked against the state schema -----------------------------------


@pytest.mark.parametrize("graph", ["three", "typed"])  # a TypedDict state; a pydantic one
def test_a_state_update_of_the_wrong_type_is_refused_and_writes_nothing(server, graph):
    http = server.http()
    tid = _thread_ran(http, graph, {"items": []})
    before = _head(http, tid)
    detail = _detail(http.post(f"/threads/{tid}/state", json={"values": {"count": "x"},
                                                              "as_node": "c" if graph ==
                                                              "three" else "t"}))
    assert "'count'" in detail and "integer" in detail and "'x'" in detail
    # a reducer's key is checked against what it adds (operator.add: a list of str)
    detail = _detail(http.post(f"/threads/{tid}/state", json={"values": {"items": "x"}}))
    assert "'items'" in detail and "array" in detail
    detail = _detail(http.post(f"/threads/{tid}/state", json={"values": {"items": [1]}}))
    assert "'items'[0]" in detail and "string" in detail
    after = _head(http, tid)
    assert after["checkpoint"] == before["checkpoint"] and after["values"] == before["values"]
    # the same update with the right types is written
    good = http.post(f"/threads/{tid}/state", json={"values": {"count": 7, "items": ["u"]}})
    assert good.status_code == 200, good.text
    assert _head(http, tid)["values"]["count"] == 7


def test_pydantic_constraints_and_annotated_reducer_inputs_are_checked(server):
    http = server.http()
    tid = _thread_ran(http, "typed", {"items": []})
    assert "'score'" in _detail(http.post(f"/threads/{tid}/state",
                                          json={"values": {"score": -1}}))
    # `tags` folds with `_merge_tags(left, right: list[str] | str)`: a str or a list of str
    assert "'tags'" in _detail(http.post(f"/threads/{tid}/state", json={"values": {"tags": 3}}))
    ok = http.post(f"/threads/{tid}/state", json={"values": {"tags": "x"}})
    assert ok.status_code == 200, ok.text
    ok = http.post(f"/threads/{tid}/state", json={"values": {"tags": ["y"], "count": "4"}})
    assert ok.status_code == 200, ok.text  # pydantic's own (lax) rules: "4" reads as 4
    assert _head(http, tid)["values"]["tags"] == ["x", "y"]


def test_a_state_update_naming_a_missing_node_is_refused_on_its_own(server):
    http = server.http()
    tid = _thread_ran(http, "three", {"items": []})
    before = _head(http, tid)["checkpoint"]
    detail = _detail(http.post(f"/threads/{tid}/state", json={"values": {"count": 2},
                                                              "as_node": "zzz"}))
    assert "zzz" in detail and "not a node" in detail
    assert _head(http, tid)["checkpoint"] == before


def test_run_input_and_command_update_of_the_wrong_type_are_refused(server):
    http = server.http()
    tid = http.post("/threads", json={}).json()["thread_id"]
    for graph in ("three", "typed"):
        detail = _detail(http.post(f"/threads/{tid}/runs", json={
            "assistant_id": graph, "input": {"items": [], "count": "many"}}))
        assert "input" in detail and "'count'" in detail
    detail = _detail(http.post(f"/threads/{tid}/runs", json={
        "assistant_id": "three", "command": {"update": {"count": [1]}}}))
    assert "command.update" in detail and "'count'" in detail
    detail = _detail(http.post("/runs/wait", json={"assistant_id": "three",
                                                   "input": {"items": "abc"}}))
    assert "'items'" in detail
    assert http.get(f"/threads/{tid}/runs").json() == []  # nothing was queued
    assert _head(http, tid)["values"] == {}


def test_supersteps_on_thread_create_are_checked_before_the_thread_is_made(server):
    http = server.http()
    tid = "supersteps-" + server.url.rsplit(":", 1)[1]
    bad = http.post("/threads", json={"thread_id": tid, "metadata": {"graph_id": "three"},
                                      "supersteps": [{"updates": [
                                          {"values": {"count": "x"}, "as_node": "a"}]}]})
    assert "'count'" in _detail(bad)
    assert http.get(f"/threads/{tid}").status_code == 404
    good = http.post("/threads", json={"thread_id": tid, "metadata": {"graph_id": "three"},
                                       "supersteps": [{"updates": [
                                           {"values": {"count": 5, "items": ["p"]},
                                            "as_node": "a"}]}]})
    assert good.status_code == 200, good.text
    assert _head(http, tid)["values"] == {"count": 5, "items": ["p"]}


# -- state at a checkpoint, subgraph state -------------------------------------------------


async def test_state_at_a_checkpoint_by_post(server):
    client = server.client()
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "three", input={"items": ["x"]})
    history = await client.threads.get_history(tid, limit=10)
    after_a = next(h for h in history if h["next"] == ["b"])
    at = await client.threads.get_state(tid, checkpoint=after_a["checkpoint"])  # POST
    assert at["values"]["items"] == ["x", "a"] and at["next"] == ["b"]
    assert at["checkpoint"]["checkpoint_id"] == after_a["checkpoint"]["checkpoint_id"]
    http = server.http()
    missing = http.post(f"/threads/{tid}/state/checkpoint",
                        json={"checkpoint": {"checkpoint_id": "no-such-checkpoint"}})
    assert "no-such-checkpoint" in _detail(missing, 404)


async def test_state_with_subgraphs_shows_the_paused_subgraph(server):
    client = server.client()
    tid = (await client.threads.create())["thread_id"]
    paused = await client.runs.wait(tid, "nested_ask", input={"items": []})
    assert paused["__interrupt__"][0]["value"] == {"question": "ok?"}
    plain = await client.threads.get_state(tid)
    [task] = plain["tasks"]
    assert plain["next"] == ["inner"] and task["name"] == "inner"
    assert task["state"] is None and task["checkpoint"]["checkpoint_ns"].startswith("inner:")
    deep = await client.threads.get_state(tid, subgraphs=True)
    inner = deep["tasks"][0]["state"]
    assert inner["next"] == ["ask"] and inner["values"]["items"] == ["a", "a"]
    assert inner["interrupts"][0]["value"] == {"question": "ok?"}
    at = await client.threads.get_state(tid, checkpoint_id=deep["checkpoint"]["checkpoint_id"],
                                        subgraphs=True)
    assert at["tasks"][0]["state"]["next"] == ["ask"]
    done = await client.runs.wait(tid, "nested_ask", command={"resume": "yes"})
    assert done["items"] == ["a", "a", "a", "answer:yes"]  # the parent adds the subgraph's list


# -- commands, breakpoints -----------------------------------------------------------------


async def test_run_with_command_update_and_goto(server):
    client = server.client()
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "three", input={"items": ["x"]})
    result = await client.runs.wait(tid, "three",
                                    command={"update": {"items": ["u"]}, "goto": "c"})
    assert result["items"] == ["x", "a", "b", "c", "u", "c"]
    assert result["count"] == 1  # node a did not run again
    runs = await client.runs.list(tid)
    assert runs[0]["kwargs"]["command"] == {"update": {"items": ["u"]}, "goto": "c"}


async def test_interrupt_after_stops_after_the_node_and_resumes(server):
    client = server.client()
    tid = (await client.threads.create())["thread_id"]
    paused = await client.runs.wait(tid, "three", input={"items": []},
                                    interrupt_after=["a"])
    assert paused["items"] == ["a"]
    state = await client.threads.get_state(tid)
    assert state["next"] == ["b"]
    assert (await client.threads.get(tid))["status"] == "interrupted"
    done = await client.runs.wait(tid, "three", input=None)
    assert done["items"] == ["a", "b", "c"]
    assert (await client.threads.get(tid))["status"] == "idle"


# -- thread search order and paging --------------------------------------------------------


async def test_thread_search_sorts_and_pages(server):
    client = server.client()
    tag = "sort-" + server.url.rsplit(":", 1)[1]
    made = [(await client.threads.create(thread_id=f"{tag}-{n}", metadata={"tag": tag}))
            for n in (2, 0, 1)]
    assert len(made) == 3
    ids = [f"{tag}-{n}" for n in (0, 1, 2)]
    asc = await client.threads.search(metadata={"tag": tag}, sort_by="thread_id",
                                      sort_order="asc")
    assert [t["thread_id"] for t in asc] == ids
    desc = await client.threads.search(metadata={"tag": tag}, sort_by="thread_id",
                                       sort_order="desc", limit=2, offset=1)
    assert [t["thread_id"] for t in desc] == [ids[1], ids[0]]
    by_creation = await client.threads.search(metadata={"tag": tag}, sort_by="created_at",
                                              sort_order="asc")
    assert [t["thread_id"] for t in by_creation] == [f"{tag}-2", f"{tag}-0", f"{tag}-1"]
    await client.threads.update(f"{tag}-2", metadata={"touched": True})
    newest = await client.threads.search(metadata={"tag": tag}, sort_by="updated_at",
                                         sort_order="desc", limit=1)
    assert [t["thread_id"] for t in newest] == [f"{tag}-2"]
    assert await client.threads.search(metadata={"tag": tag}, offset=3) == []
