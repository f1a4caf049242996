"""Time and retention over HTTP, on SQLite and PostgreSQL: the TTL sweep (which never
deletes a thread waiting for a person), a thread's own `ttl` on create and patch, pruning
threads, and store items with a TTL.

The server sweeps every 0.3 s and threads expire after 1.2 s idle by default, so these
tests wait for things to happen (never for an amount of time).
"""

from __future__ import annotations

import asyncio

import pytest
from langgraph_sdk.errors import NotFoundError
from server_harness import running_server, wait_until

SETTINGS = {"thread_ttl_minutes": 0.02, "sweep_interval_minutes": 0.005}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp(request.param), request.param,
                        settings=SETTINGS) as running:
        yield running


def _gone(http, tid: str) -> bool:
    return http.get(f"/threads/{tid}").status_code == 404


def test_ttl_sweep_keeps_threads_waiting_for_a_person(server):
    http = server.http()

    def thread_ran(assistant: str) -> str:
        tid = http.post("/threads", json={}).json()["thread_id"]
        http.post(f"/threads/{tid}/runs/wait", json={"assistant_id": assistant,
                                                      "input": {"items": []}})
        return tid

    idle = thread_ran("three")
    paused = thread_ran("hitl")  # at interrupt()
    approving = thread_ran("approval")  # at a pending approval
    at_breakpoint = http.post("/threads", json={}).json()["thread_id"]
    http.post(f"/threads/{at_breakpoint}/runs/wait", json={
        "assistant_id": "three", "input": {"items": []}, "interrupt_before": ["b"]})
    wait_until(lambda: _gone(http, idle))
    later = thread_ran("three")  # a full TTL and sweep more, with the others waiting
    wait_until(lambda: _gone(http, later))
    for tid in (paused, approving, at_breakpoint):
        assert http.get(f"/threads/{tid}").json()["status"] == "interrupted"
    http.post(f"/threads/{paused}/runs/wait", json={"assistant_id": "hitl",
                                                     "command": {"resume": "ok"}})
    wait_until(lambda: _gone(http, paused))  # finished: now it is idle, and swept
    assert not _gone(http, approving)


async def test_a_threads_own_ttl_on_create_and_patch(server):
    client, http = server.client(), server.http()
    kept = await client.threads.create(ttl=600)  # ten hours, not the server's 1.2 s
    assert kept["ttl"] == {"strategy": "delete", "ttl": 600}
    default = await client.threads.create()
    wait_until(lambda: _gone(http, default["thread_id"]))
    assert not _gone(http, kept["thread_id"])  # swept since, and still here
    patched = await client.threads.update(kept["thread_id"], metadata={},
                                          ttl={"ttl": 0.01, "strategy": "delete"})
    assert patched["ttl"]["ttl"] == 0.01
    wait_until(lambda: _gone(http, kept["thread_id"]))
    bad = http.post("/threads", json={"ttl": {"ttl": -1}})
    assert bad.status_code == 422 and "ttl" in bad.json()["detail"]


async def test_prune_threads_delete_or_keep_latest(server):
    client, http = server.client(), server.http()
    doomed = await client.threads.create(ttl=600)
    trimmed = await client.threads.create(ttl=600)
    for thread in (doomed, trimmed):
        await client.runs.wait(thread["thread_id"], "three", input={"items": []})
    assert len(await client.threads.get_history(trimmed["thread_id"], limit=50)) == 5
    deleted = http.post("/threads/prune", json={"thread_ids": [doomed["thread_id"],
                                                               "no-such-thread"]})
    assert deleted.status_code == 200 and deleted.json() == {"pruned_count": 1}
    assert _gone(http, doomed["thread_id"])
    kept = http.post("/threads/prune", json={"thread_ids": [trimmed["thread_id"]],
                                             "strategy": "keep_latest"})
    assert kept.json() == {"pruned_count": 1}
    history = await client.threads.get_history(trimmed["thread_id"], limit=50)
    assert len(history) == 1 and history[0]["values"]["items"] == ["a", "b", "c"]
    state = await client.threads.get_state(trimmed["thread_id"])
    assert state["values"]["count"] == 1
    bad = http.post("/threads/prune", json={"thread_ids": [], "strategy": "everything"})
    assert bad.status_code == 422


async def test_store_item_ttl(server):
    client = server.client()
    namespace = ["ttl", server.url.rsplit(":", 1)[1]]
    await client.store.put_item(namespace, "brief", {"v": 1}, ttl=0.01)  # 0.6 s
    await client.store.put_item(namespace, "lasting", {"v": 2})
    assert (await client.store.get_item(namespace, "brief"))["value"] == {"v": 1}

    async def expired() -> bool:
        try:
            await client.store.get_item(namespace, "brief", refresh_ttl=False)
        except NotFoundError:
            return True
        return False

    for _ in range(400):
        if await expired():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the item never expired")
    found = await client.store.search_items(namespace)
    assert [i["key"] for i in found["items"]] == ["lasting"]
    assert (await client.store.get_item(namespace, "lasting"))["value"] == {"v": 2}
