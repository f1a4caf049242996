"""What the web UI asks of the server, without a browser, on SQLite and PostgreSQL: the
page and its assets (no key needed, nothing outside the assets served, client-side routes
answered with the page), and the API additions it uses (`/identity`, `/runs/search`,
`/threads/{id}/timeline`) with their tenant scoping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from server_harness import ServerProcess, running_server

HERE = Path(__file__).parent
GRAPHS = {name: f"{HERE / 'ui_graphs.py'}:{name}" for name in ("pipeline", "counter",
                                                                    "flaky")}
MEMBER_A, MEMBER_B, ADMIN = "ui-key-tenant-a", "ui-key-tenant-b", "ui-key-admin-01"
SETTINGS = {"api_keys": [{"key": MEMBER_A, "tenant": "a"}, {"key": MEMBER_B, "tenant": "b"},
                         {"key": ADMIN, "tenant": "ops", "role": "admin"}]}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_server(tmp_path_factory.mktemp(f"ui-api-{request.param}"), request.param,
                        settings=SETTINGS, graphs=GRAPHS) as running:
        yield running


def _run(server: ServerProcess, key: str, graph: str, values: dict[str, Any],
         metadata: dict[str, Any] | None = None) -> tuple[str, str]:
    with server.http(key) as http:
        thread = http.post("/threads", json={}).json()["thread_id"]
        run = http.post(f"/threads/{thread}/runs", json={
            "assistant_id": graph, "input": values, "metadata": metadata or {}}).json()
        http.get(f"/threads/{thread}/runs/{run['run_id']}/join").raise_for_status()
        return thread, run["run_id"]


def test_the_page_and_its_assets_need_no_key_and_nothing_else_is_served(
        server: ServerProcess) -> None:
    with server.http() as http:
        page = http.get("/ui")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert '<script type="module" src="/ui/js/app.js">' in page.text
        route = http.get("/ui/threads/some-thread")  # a client-side route: the page
        assert route.status_code == 200 and route.text == page.text
        script = http.get("/ui/js/views/thread.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert http.get("/ui/css/app.css").headers["content-type"].startswith("text/css")
        for probe in ("/ui/js/missing.js", "/ui/js/%2e%2e/%2e%2e/__init__.py",
                      "/ui/css/..%2f..%2f..%2fservice%2fconfig.py"):
            assert http.get(probe).status_code == 404, probe
        assert http.get("/", follow_redirects=False).headers["location"] == "/ui"
        assert http.get("/identity").status_code == 401  # the data still needs a key


def test_identity_names_the_tenant_and_role(server: ServerProcess) -> None:
    with server.http(MEMBER_A) as http:
        assert http.get("/identity").json() == {
            "tenant": "a", "role": "member", "user_id": None, "is_admin": False,
            "keys_required": True}
    with server.http(ADMIN) as http:
        assert http.get("/identity").json()["is_admin"] is True


def test_run_search_filters_and_keeps_to_the_callers_tenant(server: ServerProcess) -> None:
    a_thread, a_run = _run(server, MEMBER_A, "counter", {"count": 1}, {"team": "blue"})
    _, a_paused = _run(server, MEMBER_A, "pipeline", {"topic": "tides"})
    b_thread, b_run = _run(server, MEMBER_B, "counter", {"count": 2})

    def ids(key: str, **body: Any) -> list[str]:
        with server.http(key) as http:
            found = http.post("/runs/search", json=body)
            found.raise_for_status()
            return [r["run_id"] for r in found.json()]

    mine = ids(MEMBER_A)
    assert a_run in mine and a_paused in mine and b_run not in mine
    assert mine.index(a_paused) < mine.index(a_run)  # newest first
    assert ids(MEMBER_A, graph_id="counter") == [a_run]
    assert ids(MEMBER_A, metadata={"team": "blue"}) == [a_run]
    assert ids(MEMBER_A, query=a_run[:13]) == [a_run]
    assert ids(MEMBER_A, query=a_thread) == [a_run]
    assert ids(MEMBER_A, query="%") == []  # a pattern character is just a character
    assert ids(MEMBER_A, tenant="b") == []  # a member cannot look at another tenant
    assert ids(MEMBER_A, query=b_run) == []
    assert ids(ADMIN, tenant="b", graph_id="counter") == [b_run]
    assert {a_run, b_run} <= set(ids(ADMIN, status="success"))
    with server.http(MEMBER_A) as http:
        (paused,) = [r for r in http.post("/runs/search", json={"graph_id": "pipeline"}).json()]
        assert http.post("/runs/search", json={"status": "nope"}).status_code == 422
    assert paused["graph_id"] == "pipeline" and paused["tenant"] == "a"
    assert paused["cost_usd"] == 34.0 and paused["tokens"] == 10  # the writer's priced call
    assert paused["duration_s"] >= 0 and paused["ended_at"] is not None
    assert b_thread not in {paused["thread_id"]}


def test_a_timeline_has_each_checkpoints_nodes_cost_and_branch(server: ServerProcess) -> None:
    thread, _ = _run(server, MEMBER_A, "pipeline", {"topic": "tides", "count": 2})
    with server.http(MEMBER_A) as http:
        first = http.get(f"/threads/{thread}/timeline").json()
        assert [c["nodes"] for c in first["checkpoints"]] == [
            ["__input__"], ["__start__"], ["plan"], ["write"]]
        assert first["next"] == ["review"] and first["branches"] == 1
        write = first["checkpoints"][-1]
        assert write["usage"] == {"calls": 1, "tokens": 10, "cost_usd": 34.0}
        assert first["head_path"] == [c["checkpoint_id"] for c in first["checkpoints"]]

        after_plan = first["checkpoints"][2]["checkpoint_id"]
        fork = http.post(f"/threads/{thread}/state", json={
            "values": {"count": 5}, "checkpoint_id": after_plan}).json()
        run = http.post(f"/threads/{thread}/runs", json={
            "assistant_id": "pipeline", "input": None,
            "checkpoint_id": fork["checkpoint"]["checkpoint_id"]}).json()
        http.get(f"/threads/{thread}/runs/{run['run_id']}/join").raise_for_status()
        second = http.get(f"/threads/{thread}/timeline").json()
    assert second["branches"] == 2
    branch = [c for c in second["checkpoints"] if c["branch"] == 1]
    assert [c["nodes"] for c in branch] == [["__update__"], ["write"]]
    assert branch[0]["parent_checkpoint_id"] == after_plan
    assert second["head"] == branch[-1]["checkpoint_id"]
    assert second["head_path"][-2:] == [c["checkpoint_id"] for c in branch]
    assert write["checkpoint_id"] not in second["head_path"]  # the old line is off the path
    with server.http(MEMBER_B) as other:
        assert other.get(f"/threads/{thread}/timeline").status_code == 404


def test_a_timeline_shows_retries_and_errors(server: ServerProcess) -> None:
    thread, _ = _run(server, MEMBER_A, "flaky", {"topic": "x"})
    with server.http(MEMBER_A) as http:
        rows = http.get(f"/threads/{thread}/timeline").json()["checkpoints"]
    (fetched,) = [c for c in rows if c["nodes"] == ["fetch"]]
    assert len(fetched["retries"]) == 1
    assert "source unavailable" in str(fetched["retries"][0])
    assert fetched["errors"] == []
