"""Auth and tenants: API keys on every endpoint, one tenant never sees another's data.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest
from langgraph_sdk.errors import NotFoundError
from server_harness import HERE, running_server

from waypoint.service.auth import Authenticator, Identity, keys_from_env
from waypoint.service.errors import Unauthorized

KEY_A, KEY_B, KEY_ADMIN = "key-tenant-a-0001", "key-tenant-b-0002", "key-admin-0003"
SETTINGS = {"api_keys": [{"key": KEY_A, "tenant": "a"}, {"key": KEY_B, "tenant": "b"},
                         {"key": KEY_ADMIN, "tenant": "ops", "role": "admin"}],
            "tenant_max_active_runs": 3}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    with running_server(tmp_path_factory.mktemp(f"auth-{request.param}"), request.param,
                        settings=SETTINGS) as running:
        yield running


def test_every_endpoint_but_the_probes_needs_a_key(server):
    """Enumerated from the OpenAPI document, not a hand-written list; only the liveness and
    readiness probes answer without a key (they say nothing but up / ready)."""
    http = server.http(KEY_A)
    spec = http.get("/openapi.json").json()
    anonymous = server.http()
    checked = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            url = re.sub(r"\{[^}]+\}", "x", path)
            response = anonymous.request(method.upper(), url, json={} if method in (
                "post", "put", "patch") else None)
            if path in ("/ok", "/ready"):
                assert response.status_code == 200
                assert set(response.json()) <= {"ok", "ready", "draining"}
                continue
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["detail"]
            checked += 1
    assert checked > 40
    assert anonymous.get("/info", headers={"x-api-key": "wrong-key-000"}).status_code == 401
    assert server.http().get("/info", headers={"authorization": f"Bearer {KEY_A}"}
                             ).status_code == 200
    assert KEY_A not in server.output() and KEY_B not in server.output()


async def test_tenants_never_see_each_other(server):
    a, b, admin = server.client(KEY_A), server.client(KEY_B), server.client(KEY_ADMIN)
    thread = await a.threads.create(metadata={"owner": "a"})
    tid = thread["thread_id"]
    run = await a.runs.create(tid, "three", input={"items": []})
    await a.runs.join(tid, run["run_id"])
    await a.store.put_item(["secrets"], "k", {"v": 1})
    assistant = await a.assistants.create("three", name="a-only")
    cron = await a.crons.create_for_thread(tid, "three", schedule="0 0 1 1 *")

    calls = (lambda: b.threads.get(tid), lambda: b.threads.get_state(tid),
             lambda: b.threads.get_history(tid), lambda: b.runs.get(tid, run["run_id"]),
             lambda: b.runs.list(tid), lambda: b.runs.join(tid, run["run_id"]),
             lambda: b.store.get_item(["secrets"], "k"),
             lambda: b.assistants.get(assistant["assistant_id"]),
             lambda: b.threads.update(tid, metadata={"x": 1}),
             lambda: b.runs.create(tid, "three", input={"items": []}),
             lambda: b.crons.delete(cron["cron_id"]), lambda: b.threads.delete(tid))
    for call in calls:
        with pytest.raises((NotFoundError, httpx.HTTPStatusError)) as refused:
            await call()
        assert refused.value.response.status_code == 404
    assert await b.threads.search(metadata={"owner": "a"}) == []
    assert (await b.store.search_items(["secrets"]))["items"] == []
    assert await b.crons.search(thread_id=tid) == []
    assert all(x["assistant_id"] != assistant["assistant_id"]
               for x in await b.assistants.search(limit=100))
    # the system assistants are everyone's; the admin sees every tenant
    assert (await b.assistants.get("three"))["graph_id"] == "three"
    assert [t["thread_id"] for t in await admin.threads.search(metadata={"owner": "a"})] == [tid]
    # tenant a still has everything, untouched
    assert (await a.threads.get(tid))["metadata"] == {"owner": "a", "graph_id": "three",
                                                      "assistant_id": run["assistant_id"]}
    assert (await a.store.get_item(["secrets"], "k"))["value"] == {"v": 1}
    await a.crons.delete(cron["cron_id"])


def test_another_tenants_approval_is_a_404(server):
    a, b = server.http(KEY_A), server.http(KEY_B)
    tid = a.post("/threads", json={}).json()["thread_id"]
    paused = a.post(f"/threads/{tid}/runs/wait", json={"assistant_id": "approval",
                                                       "input": {"items": ["draft"]}})
    assert paused.json()["__interrupt__"][0]["value"]["kind"] == "approval"
    [approval] = a.get("/approvals", params={"thread_id": tid}).json()
    approval_id = approval["approval_id"]
    assert b.get(f"/approvals/{approval_id}").status_code == 404
    refused = b.post(f"/approvals/{approval_id}/decide", json={"action": "approve"})
    assert refused.status_code == 404 and refused.json()["detail"]
    assert b.get("/approvals", params={"thread_id": tid}).json() == []
    everything = b.get("/approvals", params={"status": "all"}).json()
    assert all(x["approval_id"] != approval_id for x in everything)
    # untouched: tenant a still decides it
    assert a.get(f"/approvals/{approval_id}").json()["status"] == "pending"
    decided = a.post(f"/approvals/{approval_id}/decide", json={"action": "approve"})
    assert decided.status_code == 200, decided.text
    run = decided.json()["run"]
    assert a.get(f"/threads/{tid}/runs/{run['run_id']}/join").json()["items"][-1] == \
        "decision:approve"


async def test_system_assistants_change_only_by_an_admin(server):
    http = server.http(KEY_B)
    response = http.patch("/assistants/three", json={"metadata": {"x": 1}})
    assert response.status_code == 403 and "admin" in response.json()["detail"]


def test_tenant_limit_on_active_runs(server):
    http = server.http(KEY_B)
    made = []
    for _ in range(3):
        made.append(http.post("/runs", json={"assistant_id": "slow",
                                             "input": {"items": [], "delay": 0.3}}))
    assert all(r.status_code == 200 for r in made)
    refused = http.post("/runs", json={"assistant_id": "slow", "input": {"items": []}})
    assert refused.status_code == 429 and refused.headers["retry-after"]
    other = server.http(KEY_A).post("/runs/wait", json={"assistant_id": "three",
                                                        "input": {"items": []}})
    assert other.status_code == 200  # another tenant is not held back
    for response in made:
        run = response.json()
        http.get(f"/threads/{run['thread_id']}/runs/{run['run_id']}/join")


async def test_auth_function_and_env_keys():
    def from_header(headers):
        token = headers.get("authorization", "")
        if token == "Bearer jwt-for-carol":
            return {"tenant": "c", "user_id": "carol"}
        return None

    auth = Authenticator([], from_header)
    carol = await auth.identify({"authorization": "Bearer jwt-for-carol"}, "jwt-for-carol")
    assert carol == Identity("c", "member", "carol")
    with pytest.raises(Unauthorized):
        await auth.identify({}, None)
    keys = keys_from_env("k1:t1, k2:t2:admin")
    assert [(k.tenant, k.role) for k in keys] == [("t1", "member"), ("t2", "admin")]
    with pytest.raises(ValueError, match="entry 1"):
        keys_from_env("just-a-key")


def test_refuses_a_public_host_without_keys(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "waypoint.cli", "serve", "--host", "0.0.0.0", "--graph",
         f"three={HERE / 'server_graphs.py'}:three", "--db", str(tmp_path / "x.db")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{HERE}:{HERE.parent}"})
    assert done.returncode == 2
    assert "without API keys" in done.stderr


def test_metrics_need_an_admin_key(server):
    assert server.http(KEY_A).get("/metrics").status_code == 403
    assert "admin" in server.http(KEY_A).get("/metrics").json()["detail"]
    admin = server.http().get("/metrics", headers={"authorization": f"Bearer {KEY_ADMIN}"})
    assert admin.status_code == 200 and "waypoint_queue_depth" in admin.text
