"""Security checks as tests: what answers without a key, what another tenant gets, where
secrets never go, how big a request may be, and what repeated wrong keys get.

The routes are enumerated from the application itself (`app.routes`, the OpenAPI document),
never hand-listed, so a route added later is checked without anyone remembering to.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
from otlp_receiver import OtlpReceiver
from server_harness import ServerProcess, wait_until

from waypoint import END, START, StateGraph
from waypoint.service.app import create_app
from waypoint.service.auth_limits import MAX_CLIENTS, AuthFailureLimiter
from waypoint.service.config import Settings
from waypoint.service.input_limits import MAX_DEPTH, MAX_FILTER_KEYS

KEY_A, KEY_B = "wp-tenant-a-4f0c9d2e71", "wp-tenant-b-8a3b5c6d02"
KEYS = {"api_keys": [{"key": KEY_A, "tenant": "a"}, {"key": KEY_B, "tenant": "b"}]}
MARKER = "tenant-a-private-marker"

# Answer without a key, by design: the probes (they say up / ready, nothing else), the API's
# own description (the same for everyone, no data: SDK generators and people read it), and
# the web UI's page and assets (every figure it shows comes from the API, with a key).
PUBLIC = {"/ok", "/ready", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
          "/ui", "/ui/{path:path}", "/"}


def app_routes() -> list[tuple[str, str]]:
    """(method, path) of every route the application serves, included routers walked."""
    app = create_app(Settings(graphs={}))  # built, not started: no database
    found: list[tuple[str, str]] = []

    def walk(routes: Any) -> None:
        for route in routes:
            contexts = getattr(route, "effective_route_contexts", None)
            if contexts is not None:  # FastAPI >= 0.16x keeps included routers nested
                for context in contexts():
                    inner = context.starlette_route or context.original_route
                    found.extend((m, context.path) for m in getattr(inner, "methods", ()) or ())
            elif getattr(route, "methods", None):
                found.extend((m, route.path) for m in route.methods)
            elif hasattr(route, "routes"):
                walk(route.routes)

    walk(app.routes)
    return sorted({(m, p) for m, p in found if m != "HEAD"})


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    running = ServerProcess(tmp_path_factory.mktemp("security"), settings={
        # wrong keys here are many and on purpose; the limit has its own test and server
        **KEYS, "max_body_bytes": 32768, "auth_failure_limit": 0}).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def owned(server) -> dict[str, str]:
    """Tenant a's objects, one of each kind."""
    a = server.http(KEY_A)
    thread = a.post("/threads", json={"metadata": {"note": MARKER}}).json()["thread_id"]
    done = a.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "three",
                                                        "input": {"items": [MARKER]}})
    assert done.status_code == 200, done.text
    run = a.get(f"/threads/{thread}/runs").json()[0]["run_id"]
    checkpoint = a.get(f"/threads/{thread}/state").json()["checkpoint"]["checkpoint_id"]
    assistant = a.post("/assistants", json={"graph_id": "three", "name": MARKER}
                       ).json()["assistant_id"]
    cron = a.post(f"/threads/{thread}/runs/crons", json={
        "assistant_id": "three", "schedule": "0 0 1 1 *", "metadata": {"note": MARKER}}
                  ).json()["cron_id"]
    assert a.put("/store/items", json={"namespace": ["private"], "key": "k",
                                       "value": {"note": MARKER}}).status_code == 204
    asking = a.post("/threads", json={}).json()["thread_id"]
    a.post(f"/threads/{asking}/runs/wait", json={"assistant_id": "approval",
                                                 "input": {"items": [MARKER]}})
    approval = wait_until(lambda: a.get("/approvals", params={"thread_id": asking}).json()
                          )[0]["approval_id"]
    return {"thread_id": thread, "run_id": run, "checkpoint_id": checkpoint,
            "assistant_id": assistant, "cron_id": cron, "approval_id": approval,
            "namespace": "x", "path": "threads/x"}


def _url(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: ids.get(m.group(1), "x"), path)


# -- (a) every route needs a key, but for the public ones --------------------------------


def test_the_route_enumeration_sees_every_router():
    routes = app_routes()
    paths = {p for _, p in routes}
    assert {"/threads/{thread_id}/runs/{run_id}/stream", "/runs/crons/{cron_id}",
            "/store/items", "/approvals/{approval_id}/decide", "/ok", "/docs"} <= paths
    assert len(routes) > 60


def test_every_route_but_the_public_ones_answers_401_without_a_key(server, owned):
    anonymous = server.http()
    checked = []
    for method, path in app_routes():
        response = anonymous.request(method, _url(path, owned),
                                     json={} if method in ("POST", "PUT", "PATCH") else None)
        if path in PUBLIC:
            assert response.status_code in (200, 307), (method, path, response.text)
            assert MARKER not in response.text and owned["thread_id"] not in response.text
            continue
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.json()["detail"], (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        checked.append(path)
    assert len(checked) > 55
    assert "/info" in checked and "/metrics" in checked  # described in docs/server.md


def test_a_wrong_key_is_a_401_everywhere_a_key_is_needed(server, owned):
    wrong = server.http("wp-not-a-key-0000000")
    for method, path in app_routes():
        if path in PUBLIC:
            continue
        response = wrong.request(method, _url(path, owned))
        assert response.status_code == 401 and "invalid API key" in response.json()["detail"]


# -- (a) another tenant's resource is a 404, never a 403, never data -----------------------

_BODIES = {"assistant_id": "three", "schedule": "0 0 1 1 *", "action": "approve",
           "version": 1, "checkpoint": {"checkpoint_id": None}}


def _body(spec: dict[str, Any], method: str, path: str, ids: dict[str, str]) -> Any:
    """The smallest valid body of an operation (its required fields), so the answer is
    about the resource and not about the body."""
    operation = spec["paths"][path][method.lower()]
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    schema = content["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if schema.get("type") == "array":
        return [{"assistant_id": "three", "thread_id": ids["thread_id"]}]
    body = {name: _BODIES[name] for name in schema.get("required", [])}
    if "checkpoint" in body:
        body["checkpoint"] = {"checkpoint_id": ids["checkpoint_id"]}
    return body


def test_another_tenants_resources_are_404_on_every_route_that_names_one(server, owned):
    spec = server.http(KEY_A).get("/openapi.json").json()
    b = server.http(KEY_B)
    seen_kinds = set()
    for method, path in app_routes():
        names = set(re.findall(r"\{([^}:]+)", path))
        kinds = names & {"assistant_id", "thread_id", "run_id", "cron_id", "approval_id"}
        if not kinds or path in PUBLIC:
            continue
        body = _body(spec, method, path, owned)
        response = b.request(method, _url(path, owned), json=body)
        assert response.status_code == 404, (method, path, response.status_code, response.text)
        assert MARKER not in response.text and response.json()["detail"]
        seen_kinds |= kinds
    assert seen_kinds == {"assistant_id", "thread_id", "run_id", "cron_id", "approval_id"}


def test_another_tenants_resources_stay_out_of_lists_ids_and_the_store(server, owned):
    b = server.http(KEY_B)
    own_thread = b.post("/threads", json={}).json()["thread_id"]
    # a run of a's, named through b's own thread
    assert b.get(f"/threads/{own_thread}/runs/{owned['run_id']}").status_code == 404
    assert b.post("/runs/cancel", json={"run_ids": [owned["run_id"]]}).status_code == 404
    assert b.post("/runs/batch", json=[{"assistant_id": "three",
                                        "thread_id": owned["thread_id"]}]).status_code == 404
    # the store is partitioned: a's item is not there for b (get 404, delete a no-op)
    item = b.get("/store/items", params={"namespace": "private", "key": "k"})
    assert item.status_code == 404 and MARKER not in item.text
    assert b.request("DELETE", "/store/items", json={"namespace": ["private"],
                                                     "key": "k"}).status_code == 204
    assert b.post("/threads/prune", json={"thread_ids": [owned["thread_id"]]}
                  ).json() == {"pruned_count": 0}
    lists = [b.post("/threads/search", json={"ids": [owned["thread_id"]]}),
             b.post("/threads/search", json={"metadata": {"note": MARKER}}),
             b.post("/assistants/search", json={"limit": 1000}),
             b.post("/runs/crons/search", json={"thread_id": owned["thread_id"]}),
             b.post("/store/items/search", json={"namespace_prefix": ["private"]}),
             b.post("/store/namespaces", json={}),
             b.get("/approvals", params={"status": "all"}),
             b.get("/approvals", params={"thread_id": owned["thread_id"]}),
             b.get("/usage", params={"tenant": "a", "group_by": "thread_id"})]
    for response in lists:
        assert response.status_code == 200, response.text
        assert MARKER not in response.text and owned["thread_id"] not in response.text
        assert owned["approval_id"] not in response.text
    # and a still has every one of them, untouched by b's attempts
    a = server.http(KEY_A)
    assert a.get(f"/threads/{owned['thread_id']}").json()["metadata"]["note"] == MARKER
    assert a.get(f"/threads/{owned['thread_id']}/runs/{owned['run_id']}").status_code == 200
    assert a.get(f"/assistants/{owned['assistant_id']}").json()["name"] == MARKER
    assert a.get(f"/runs/crons/{owned['cron_id']}").status_code == 200
    assert a.get("/store/items", params={"namespace": "private", "key": "k"}
                 ).json()["value"] == {"note": MARKER}
    assert a.get(f"/approvals/{owned['approval_id']}").json()["status"] == "pending"


# -- (c) request size and other unbounded inputs ------------------------------------------


def test_an_oversized_body_is_a_413_with_a_detail(server):
    http = server.http(KEY_A)
    big = {"metadata": {"note": "x" * 40000}}
    response = http.post("/threads", json=big)
    assert response.status_code == 413 and "32768 bytes" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no content-length: transfer-encoding chunked
        yield b'{"metadata": {"note": "'
        for _ in range(40):
            yield b"x" * 1000
        yield b'"}}'

    chunked = http.post("/threads", content=chunks(), headers={"content-type":
                                                               "application/json"})
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413 and "32768 bytes" in chunked.json()["detail"]
    small = http.post("/threads", content=iter([b'{"metadata": ', b'{"ok": 1}}']))
    assert small.status_code == 200 and small.json()["metadata"] == {"ok": 1}


@pytest.mark.parametrize(("method", "path", "body", "params", "named"), [
    ("POST", "/threads/search", {"metadata": {f"k{n}": n for n in range(MAX_FILTER_KEYS + 1)}},
     None, "metadata"),
    ("POST", "/store/items/search", {"filter": {f"k{n}": n for n in range(
        MAX_FILTER_KEYS + 1)}}, None, "filter"),
    ("POST", "/threads/search", {"ids": ["t"] * 1001}, None, "ids"),
    ("POST", "/threads/search", {"limit": 1001}, None, "limit"),
    ("POST", "/threads/search", {"offset": 2**70}, None, "offset"),
    ("POST", "/assistants/search", {"offset": 10**10}, None, "offset"),
    ("GET", "/threads/{thread_id}/runs", None, {"limit": 100000}, "limit"),
    ("GET", "/threads/{thread_id}/runs", None, {"offset": 2**64}, "offset"),
    ("GET", "/threads/{thread_id}/history", None, {"limit": 10**6}, "limit"),
    ("GET", "/approvals", None, {"limit": 10**6}, "limit"),
    ("POST", "/runs/batch", [{"assistant_id": "three"}] * 101, None, "body"),
    ("PATCH", "/threads/{thread_id}", {"metadata": {"n": 2**64}}, None, "metadata.n"),
    ("POST", "/runs/wait", {"assistant_id": "three", "input": {"items": [2**63]}}, None,
     "input.items[0]"),
    ("PUT", "/store/items", {"namespace": ["n"], "key": "k", "value": {}, "ttl": 1e12}, None,
     "ttl"),
    ("POST", "/threads", {"ttl": {"ttl": 1e15}}, None, "ttl"),
    ("POST", "/threads", {"metadata": {"a\x00b": 1}}, None, "NUL"),
    ("POST", "/threads", {"metadata": {"a": "\ud800"}}, None, "surrogate"),
])
def test_unbounded_inputs_are_refused_with_a_detail(server, owned, method, path, body, params,
                                                    named):
    http = server.http(KEY_A)
    content = json.dumps(body).encode() if body is not None else None
    response = http.request(method, _url(path, owned), content=content, params=params,
                            headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert named in response.json()["detail"]


def test_deep_nesting_and_non_json_numbers_are_refused(server):
    http = server.http(KEY_A)
    deep = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    for text in (f'{{"metadata": {{"a": {deep}}}}}', '{"metadata": {"a": NaN}}',
                 '{"metadata": {"a": Infinity}}'):
        response = http.post("/threads", content=text.encode())
        assert response.status_code == 422, response.text
        assert "metadata.a" in response.json()["detail"]
    hopeless = "[" * 15000 + "]" * 15000  # past the JSON parser's own recursion limit
    response = http.post("/threads/search", content=hopeless.encode())
    assert 400 <= response.status_code < 500 and response.json()["detail"]


def test_a_nul_in_a_path_or_query_value_is_refused(server):
    http = server.http(KEY_A)
    for response in (http.get("/threads/bad%00id"),
                     http.get("/approvals", params={"assignee": "x\x00"})):
        assert response.status_code == 422 and "NUL" in response.json()["detail"]


# -- (d) repeated wrong keys: 429 with Retry-After -----------------------------------------


def test_repeated_wrong_keys_are_refused_with_429_and_retry_after(tmp_path):
    server = ServerProcess(tmp_path, settings={**KEYS, "auth_failure_limit": 3,
                                               "auth_failure_window_seconds": 600}).start()
    try:
        good = server.http(KEY_A)
        assert good.get("/info").status_code == 200  # a's key, proven from this address
        guesser = server.http()
        for n in range(3):
            wrong = guesser.get("/info", headers={"x-api-key": f"wp-guess-{n:012d}"})
            assert wrong.status_code == 401
        blocked = guesser.get("/info", headers={"x-api-key": "wp-guess-000000000099"})
        assert blocked.status_code == 429 and "failed authentications" in blocked.json()[
            "detail"]
        assert 1 <= int(blocked.headers["retry-after"]) <= 600
        # b's correct key, never used from this address, is not even checked: a correct
        # guess looks exactly like a wrong one while the address is blocked
        assert server.http(KEY_B).get("/info").status_code == 429
        # a key this address has already used successfully still works
        assert good.get("/info").status_code == 200
        # no key at all is not a guess: still a plain 401, and never counted
        assert guesser.get("/info").status_code == 401
        assert guesser.get("/ok").status_code == 200  # probes never need a key
    finally:
        server.stop()
    assert "blocking authentication from 127.0.0.1" in server.output()
    assert "wp-guess" not in server.output() and KEY_A not in server.output()


def test_the_failure_limiter_forgets_after_its_window():
    now = [1000.0]
    limiter = AuthFailureLimiter(limit=3, window=60, clock=lambda: now[0])
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.1")
    now[0] += 61  # those two have left the window
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1", "digest") is None
    limiter.failed("10.0.0.1")  # three within the window
    assert limiter.retry_after("10.0.0.1", "digest") == 60
    assert limiter.retry_after("10.0.0.2", "digest") is None  # another address is free
    now[0] += 59.5
    assert limiter.retry_after("10.0.0.1", "digest") == 1
    now[0] += 1
    assert limiter.retry_after("10.0.0.1", "digest") is None
    limiter.succeeded("10.0.0.3", "good")
    for _ in range(3):
        limiter.failed("10.0.0.3")
    assert limiter.retry_after("10.0.0.3", "good") is None
    assert limiter.retry_after("10.0.0.3", "other") == 60
    for n in range(MAX_CLIENTS + 10):  # memory stays bounded, oldest forgotten first
        limiter.failed(f"spray-{n}")
    assert len(limiter._clients) == MAX_CLIENTS


# -- (b) secrets never reach logs, traces or error bodies ----------------------------------

SECRET_ENV = "tok_live_Q2w3E4r5T6y7U8i9O0pA"  # a value from the config's `env`
SECRET_SK = "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2"
SECRET_DSN = "postgresql://svc:pa55-w0rd-x7@db.internal:5432/prod"
KEY_S = "wp-secret-tenant-key-7e6d5c4b3a"
WRONG_KEY = "wp-wrong-key-1a2b3c4d5e6f"
SECRETS = (SECRET_ENV, SECRET_SK, "pa55-w0rd-x7", KEY_S, WRONG_KEY)


class Leaky(TypedDict, total=False):
    items: list


def _leak(state: Leaky) -> dict[str, Any]:
    """Fails as a client library does: its credentials in the exception message."""
    raise RuntimeError(f"upstream refused token={os.environ.get('UPSTREAM_TOKEN')} "
                       f"with api_key {SECRET_SK} via {SECRET_DSN}")


_leaky = StateGraph(Leaky)
_leaky.add_node("leak", _leak)
_leaky.add_edge(START, "leak")
_leaky.add_edge("leak", END)
leaky = _leaky.compile()


class _RawReceiver(OtlpReceiver):
    """Keeps every export request's bytes: attributes, events and status messages alike."""

    def _take(self, body: bytes) -> None:
        self.raw = [*getattr(self, "raw", []), body]
        super()._take(body)


class _LeakyServer(ServerProcess):
    def config_path(self) -> Path:
        path = super().config_path()
        config = json.loads(path.read_text())
        config["graphs"]["leaky"] = f"{Path(__file__).resolve()}:leaky"
        config["env"] = {"UPSTREAM_TOKEN": SECRET_ENV}
        path.write_text(json.dumps(config))
        return path


@pytest.fixture(scope="module")
def leaked() -> Iterator[dict[str, Any]]:
    """A server that ran a failing node and refused wrong keys: what it wrote out."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, _RawReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
        server = _LeakyServer(Path(tmp), env=env, settings={
            "api_keys": [{"key": KEY_S, "tenant": "s"}], "auth_failure_limit": 3},
            args=["--log-format", "json", "--log-level", "info"]).start()
        bodies: list[str] = []
        try:
            http = server.http(KEY_S)
            thread = http.post("/threads", json={}).json()["thread_id"]
            waited = http.post(f"/threads/{thread}/runs/wait", json={
                "assistant_id": "leaky", "input": {}})
            streamed = http.post(f"/threads/{thread}/runs/stream", json={
                "assistant_id": "leaky", "input": {}})
            runs = http.get(f"/threads/{thread}/runs")
            bodies += [waited.text, streamed.text, runs.text,
                       http.get(f"/threads/{thread}").text,
                       http.get(f"/threads/{thread}/state").text,
                       http.get(f"/threads/{thread}/history").text,
                       http.get("/info").text]
            for _ in range(4):  # wrong keys, up to the block
                response = server.http(WRONG_KEY).get("/info")
                bodies.append(response.text + json.dumps(dict(response.headers)))
            bodies.append(server.http(KEY_S).get("/nope").text)
            receiver.wait_for(lambda: receiver.named("node leak"))
        finally:
            server.stop()
        yield {"log": server.output(), "spans": b"".join(getattr(receiver, "raw", [])),
               "bodies": bodies, "waited": waited.json()}


def test_logs_and_traces_never_hold_a_secret(leaked):
    """The failing node's message reaches the log and its span, its secrets do not; nor
    do the server's key, the wrong keys tried, or the config's env value."""
    assert "upstream refused" in leaked["log"] and b"upstream refused" in leaked["spans"]
    assert "blocking authentication" in leaked["log"]
    for secret in SECRETS:
        assert secret not in leaked["log"], secret
        assert secret.encode() not in leaked["spans"], secret


def test_auth_error_bodies_never_echo_a_key(leaked):
    auth_answers = [b for b in leaked["bodies"] if "API key" in b or "authentications" in b]
    assert len(auth_answers) == 4
    for body in leaked["bodies"][-5:]:
        assert WRONG_KEY not in body and KEY_S not in body


def test_a_failed_runs_error_body_holds_no_secret(leaked):
    assert leaked["waited"]["__error__"]["error"] == "RuntimeError"
    assert "upstream refused" in leaked["waited"]["__error__"]["message"]
    for body in leaked["bodies"]:
        for secret in SECRETS:
            assert secret not in body, secret
