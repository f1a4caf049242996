"""Regression tests for the inputs schemathesis found answered with a 500 (see
tests/test_server_fuzz.py): each is now a 4xx whose JSON `detail` says what was wrong.

In process (the app over an ASGI transport, no workers: none of these needs a run).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import HERE

from waypoint.service.app import create_app
from waypoint.service.config import Settings

KEY = "wp-input-errors-key-01"


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(graphs={"three": f"{HERE / 'server_graphs.py'}:three"},
                        base_dir=HERE, db=tmp_path / "server.db",
                        api_keys=[{"key": KEY, "tenant": "t"}])
    app = create_app(settings, start_workers=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test",
                                     headers={"x-api-key": KEY}) as client:
            yield client


def _refused(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, detail
    return response.json()


async def test_a_cron_patch_with_a_null_schedule_keeps_the_schedule(http):
    """Was a 500: the null went to the schedule check (AttributeError)."""
    cron = (await http.post("/runs/crons", json={"assistant_id": "three",
                                                 "schedule": "0 0 1 1 *"})).json()
    patched = await http.patch(f"/runs/crons/{cron['cron_id']}",
                               json={"schedule": None, "timezone": None, "enabled": False})
    assert patched.status_code == 200, patched.text
    assert patched.json()["schedule"] == "0 0 1 1 *" and patched.json()["enabled"] is False


@pytest.mark.parametrize("timezone", ["America", "x" * 300])
async def test_a_timezone_the_zone_database_cannot_open_is_a_422(http, timezone):
    """Was a 500: a directory of the zone database (IsADirectoryError) or a name the file
    system refuses (OSError: file name too long)."""
    body = {"assistant_id": "three", "schedule": "0 0 1 1 *", "timezone": timezone}
    _refused(await http.post("/runs/crons", json=body), 422, "unknown timezone")
    cron = (await http.post("/runs/crons", json={"assistant_id": "three",
                                                 "schedule": "0 0 1 1 *"})).json()
    _refused(await http.patch(f"/runs/crons/{cron['cron_id']}",
                                    json={"timezone": timezone}), 422, "unknown timezone")


async def test_a_schedule_that_never_falls_due_is_a_422(http):
    """Was a 500: croniter's CroniterBadDateError ("0 0 31 2 *": February 31st)."""
    _refused(await http.post("/runs/crons", json={
        "assistant_id": "three", "schedule": "0 0 31 2 *"}), 422, "never falls due")


@pytest.mark.parametrize("path", ["/approvals", "/approvals/some-id"])
async def test_an_empty_thread_id_filter_on_approvals_is_a_422(http, path):
    """Was a 500: the records store's ValueError for an empty id."""
    _refused(await http.get(path, params={"thread_id": ""}), 422, "thread_id")
    _refused(await http.post("/approvals/some-id/decide", params={"thread_id": ""},
                                   json={"action": "approve"}), 422, "thread_id")


async def test_a_store_ttl_past_what_sqlite_holds_is_a_422(http):
    """Was a 500: OverflowError turning 1.5e11 minutes into microseconds for SQLite."""
    _refused(await http.put("/store/items", json={
        "namespace": ["n"], "key": "k", "value": {}, "ttl": 153692925363.0}), 422, "ttl")
    ok = await http.put("/store/items", json={"namespace": ["n"], "key": "k", "value": {},
                                              "ttl": 60 * 24 * 365})
    assert ok.status_code == 204


async def test_integers_beyond_64_bits_are_a_422_naming_the_key(http):
    """Was a 500: orjson's "Integer exceeds 64-bit range" writing metadata or config."""
    thread = (await http.post("/threads", json={})).json()["thread_id"]
    _refused(await http.patch(f"/threads/{thread}", json={"metadata": {"n": 2**64}}),
                   422, "metadata.n", "64-bit")
    cron = (await http.post("/runs/crons", json={"assistant_id": "three",
                                                 "schedule": "0 0 1 1 *"})).json()
    _refused(await http.patch(f"/runs/crons/{cron['cron_id']}", json={
        "config": {"": -(2**63) - 1}}), 422, "config", "64-bit")
    fine = await http.patch(f"/threads/{thread}", json={"metadata": {"n": 2**63 - 1}})
    assert fine.status_code == 200 and fine.json()["metadata"]["n"] == 2**63 - 1


async def test_floats_beyond_64_bits_are_a_422(http):
    """Was a 500 on PostgreSQL (the fuzzer's PATCH with `{}` after one with 1e19): jsonb
    keeps 1e19 as the integer 10000000000000000000, which orjson then cannot write back."""
    thread = (await http.post("/threads", json={})).json()["thread_id"]
    _refused(await http.patch(f"/threads/{thread}", json={"metadata": {"x": 1e19}}), 422,
             "metadata.x", "64-bit")
    _refused(await http.post("/assistants", json={"graph_id": "three", "config": {
        "configurable": {"x": -1.5e300}}}), 422, "config.configurable.x")
    fine = await http.patch(f"/threads/{thread}", json={"metadata": {"x": 1.5e18}})
    assert fine.status_code == 200 and fine.json()["metadata"]["x"] == 1.5e18


async def test_an_offset_past_sqlite_integers_is_a_422(http):
    """Was a 500: OverflowError binding the offset of a search."""
    thread = (await http.post("/threads", json={})).json()["thread_id"]
    _refused(await http.post("/threads/search", json={"offset": 2**63}), 422, "offset")
    _refused(await http.get(f"/threads/{thread}/runs", params={"offset": 2**63}), 422,
                   "offset")
    _refused(await http.post("/assistants/three/latest", json={"version": 2**63}),
                   422, "version")


async def test_a_nul_in_an_id_is_a_422_not_a_database_error(http):
    """PostgreSQL refuses NUL in text mid-query; refused up front on every backend."""
    _refused(await http.get("/threads/a%00b"), 422, "thread_id", "NUL")
    _refused(await http.post("/threads", json={"thread_id": "a\x00b"}), 422, "NUL")
