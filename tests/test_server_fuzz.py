"""Schemathesis over the server's own OpenAPI document: no input makes it answer 5xx, and
every 4xx carries a JSON `detail` that says what was wrong.

Each operation of `/openapi.json` gets a small, deterministic set of generated requests
(positive and negative: values that fit the schema and values that do not), sent with an
API key to a real `waypoint serve` on a free port. Before each operation a tenant's state
is seeded (an assistant, a thread that has run, a run, a cron, a store item, a pending
approval) and the path's ids point at it, so generation gets past the 404s into the
handlers. A run body names the `three` graph; its `after_seconds` is zeroed and its
`webhook` dropped, so a `/wait` never waits for a day and nothing calls out.

The default is bounded for CI: 6 generated cases per operation, derandomised (the same
cases every run), about 30 s on two cores. The thorough run adds schemathesis' coverage
phase (every boundary value and wrong type of every parameter, ~75 requests an operation)
and draws more cases (about 5 minutes on two cores with 60):

    WAYPOINT_FUZZ_EXAMPLES=60 WAYPOINT_FUZZ_COVERAGE=1 .venv/bin/pytest tests/test_server_fuzz.py

`WAYPOINT_FUZZ_BACKEND=postgres` runs it against PostgreSQL (a fresh schema at the test
suite's PG URL) instead of a SQLite file.

Needs hypothesis < 6.170.10 until hypothesis-jsonschema (schemathesis' generator) follows
hypothesis' internal change of `many` (0.23.1 calls its removed `more()`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from server_harness import ServerProcess, running_server, wait_until

from waypoint.service.app import create_app
from waypoint.service.config import Settings

KEY = "fuzz-member-key-0001"
FUZZ_EXAMPLES = int(os.environ.get("WAYPOINT_FUZZ_EXAMPLES", "6"))
COVERAGE = os.environ.get("WAYPOINT_FUZZ_COVERAGE", "") not in ("", "0")
BACKEND = os.environ.get("WAYPOINT_FUZZ_BACKEND", "sqlite")  # or "postgres"


def _generator_works() -> bool:
    from hypothesis.internal.conjecture.utils import many

    return hasattr(many, "more")


if not _generator_works():
    message = ("hypothesis-jsonschema cannot generate with this hypothesis (pin "
               "hypothesis<6.170.10)")
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(message)
    pytest.skip(message, allow_module_level=True)

# The OpenAPI document `create_app` builds (routes only: no database is opened).
schema = schemathesis.openapi.from_dict(create_app(Settings(graphs={})).openapi())
# The coverage phase (every boundary and wrong type of every parameter, ~75 requests an
# operation) is the long run's; CI's bounded run draws FUZZ_EXAMPLES cases an operation.
schema.config.phases.coverage.enabled = COVERAGE
schema.config.generation.update(max_examples=FUZZ_EXAMPLES, deterministic=True,
                                with_security_parameters=False)


class Seeded:
    """The tenant's objects the generated requests are pointed at (made again when an
    operation has deleted them)."""

    def __init__(self, http: requests.Session, url: str) -> None:
        self.http, self.url = http, url
        self.ids: dict[str, str] = {}
        self.made_for = ""  # the operation they were made for

    def _post(self, path: str, body: Any) -> Any:
        response = self.http.post(self.url + path, json=body, timeout=30)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    def fresh(self) -> dict[str, str]:
        assistant = self._post("/assistants", {"graph_id": "three", "name": "fuzzed"})
        thread = self._post("/threads", {})["thread_id"]
        self._post(f"/threads/{thread}/runs/wait", {"assistant_id": "three",
                                                     "input": {"items": []}})
        runs = self.http.get(f"{self.url}/threads/{thread}/runs", timeout=30).json()
        state = self.http.get(f"{self.url}/threads/{thread}/state", timeout=30).json()
        cron = self._post(f"/threads/{thread}/runs/crons", {"assistant_id": "three",
                                                             "schedule": "0 0 1 1 *"})
        self.http.put(self.url + "/store/items", json={"namespace": ["fuzz"], "key": "k",
                                                       "value": {"v": 1}}, timeout=30)
        asking = self._post("/threads", {})["thread_id"]
        self._post(f"/threads/{asking}/runs/wait", {"assistant_id": "approval",
                                                     "input": {"items": ["draft"]}})
        approval = wait_until(lambda: self.http.get(
            f"{self.url}/approvals", params={"thread_id": asking}, timeout=30).json())[0]
        self.ids = {"assistant_id": assistant["assistant_id"], "thread_id": thread,
                    "run_id": runs[0]["run_id"], "cron_id": cron["cron_id"],
                    "approval_id": approval["approval_id"],
                    "checkpoint_id": state["checkpoint"]["checkpoint_id"]}
        return self.ids


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("fuzz"), BACKEND, workers=4,
                        settings={"api_keys": [{"key": KEY, "tenant": "fuzz"}]}) as running:
        yield running


@pytest.fixture(scope="module")
def session(server) -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.headers["x-api-key"] = KEY
        yield http


@pytest.fixture(scope="module")
def seeded(server, session) -> Seeded:
    return Seeded(session, server.url)


def _point_at_seeds(case: Any, ids: dict[str, str]) -> None:
    """Ids in the path name the seeded objects; a run's body names a real graph."""
    for name in list(case.path_parameters or {}):
        if name in ids:
            case.path_parameters[name] = ids[name]
    body = case.body
    items = body if isinstance(body, list) else [body]
    for item in items:
        if not isinstance(item, dict):
            continue
        if "/runs" in case.path and isinstance(item.get("assistant_id"), str):
            item["assistant_id"] = "three"
        if case.path == "/assistants" and isinstance(item.get("graph_id"), str):
            item["graph_id"] = "three"
        after = item.get("after_seconds")
        if isinstance(after, int | float) and not isinstance(after, bool) and after > 0:
            item["after_seconds"] = 0
        if isinstance(item.get("webhook"), str):
            item.pop("webhook")


def _problem(case: Any, response: requests.Response, server: ServerProcess) -> str | None:
    """What is wrong with the answer, or None."""
    status = response.status_code
    if status >= 500 and not (case.path == "/ready" and status == 503):
        return f"server error {status}: {response.text[:500]}\n{server.output()[-3000:]}"
    if 400 <= status < 500:
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            return f"{status} without a JSON body: {response.text[:300]!r}"
        if not detail:
            return f"{status} without a detail: {response.text[:300]!r}"
    return None


@schema.parametrize()
@settings(deadline=None, derandomize=True, database=None, print_blob=True,
          suppress_health_check=list(HealthCheck))
def test_no_input_makes_a_server_error(case, server, session, seeded) -> None:
    if seeded.made_for != case.operation.label:  # fresh for each operation
        seeded.fresh()
        seeded.made_for = case.operation.label
    _point_at_seeds(case, seeded.ids)
    kwargs = case.as_transport_kwargs(base_url=server.url)
    try:
        response = session.request(**kwargs, stream=True, timeout=60)
    except requests.ConnectionError as exc:
        raise AssertionError(f"{case.operation.label}: no answer ({exc})\n"
                             f"{case.as_curl_command()}\n{server.output()[-3000:]}") from None
    try:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            assert response.status_code == 200
            return  # a stream (maybe endless, as a thread's is): its start is the answer
        response.content  # noqa: B018 - read it whole
        problem = _problem(case, response, server)
        assert problem is None, f"{case.operation.label}: {problem}\n{case.as_curl_command()}"
    finally:
        response.close()
