"""The fleet on one PostgreSQL: API processes (`waypoint serve --workers 0`) and `waypoint
worker`s as real processes. NOTIFY carries new runs and cancels (a 30 s poll never gets the
chance), the poll finds a run nobody notified; a stream is resumed on another API process
with `Last-Event-ID`; crons and approval deadlines fire once across workers; a thread's
queued runs keep their order across workers; old stream events are pruned.

This module is also the graphs file of its servers (`FLEET_GRAPHS`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import pytest
from server_harness import (
    ServerProcess,
    WorkerProcess,
    postgres_schema,
    running_server,
    wait_until,
)

from waypoint import END, START, StateGraph, approve, get_stream_writer

# -- graphs the servers of these tests load (by this file's path) -------------------------


class Ticks(TypedDict, total=False):
    count: int
    side_file: str
    items: list[str]


def _tick(state: Ticks) -> dict[str, Any]:
    """Two custom events per tick; the fourth tick waits for `<side_file>.go`, so a test
    can cut a stream while the run is still going."""
    count = state.get("count", 0) + 1
    write = get_stream_writer()
    if count == 4:
        deadline = time.time() + 60
        while not os.path.exists(state["side_file"] + ".go") and time.time() < deadline:
            time.sleep(0.05)
    write({"tick": count, "part": 1})
    write({"tick": count, "part": 2})
    return {"count": count}


_ticker = StateGraph(Ticks)
_ticker.add_node("tick", _tick)
_ticker.add_edge(START, "tick")
_ticker.add_conditional_edges("tick", lambda s: END if s["count"] >= 6 else "tick")
ticker = _ticker.compile()


def _review(state: Ticks) -> dict[str, Any]:
    decision = approve({"publish": True}, deadline=0.3)  # nobody answers: it is rejected
    return {"items": [f"decision:{decision.action}"]}


_deadline = StateGraph(Ticks)
_deadline.add_node("review", _review)
_deadline.add_edge(START, "review")
_deadline.add_edge("review", END)
deadline = _deadline.compile()

FLEET_GRAPHS = {name: f"{Path(__file__).resolve()}:{name}" for name in ("ticker", "deadline")}

# -- helpers -------------------------------------------------------------------------------


@dataclass
class Fleet:
    url: str
    tmp: Path
    api_a: ServerProcess
    api_b: ServerProcess
    workers: list[WorkerProcess]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two API processes and two workers (poll 0.2 s) on one fresh schema, shared by the
    tests of this module that need no settings of their own (started side by side)."""
    tmp = tmp_path_factory.mktemp("fleet")
    with postgres_schema() as url:
        (tmp / "b").mkdir()
        api_a = ServerProcess(tmp, postgres=url, workers=0, graphs=FLEET_GRAPHS)
        api_b = ServerProcess(tmp / "b", postgres=url, workers=0, graphs=FLEET_GRAPHS)
        workers = [WorkerProcess(api_a) for _ in range(2)]
        processes: list[Any] = [api_a, api_b, *workers]
        try:
            api_a.start()  # writes the config the workers read
            with ThreadPoolExecutor(3) as pool:
                for started in [pool.submit(p.start) for p in processes[1:]]:
                    started.result()
            yield Fleet(url, tmp, api_a, api_b, workers)
        finally:
            for process in processes:
                process.stop()


def _api(tmp: Path, url: str, **settings: Any) -> ServerProcess:
    return ServerProcess(tmp, postgres=url, workers=0, settings=settings,
                         graphs=FLEET_GRAPHS).start()


def _ended(http: Any, path: str, timeout: float = 30) -> dict[str, Any]:
    return wait_until(lambda: (r := http.get(path).json())["status"] not in (
        "pending", "running") and r, timeout=timeout)


def _sql(url: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, args)
        return cur.fetchall() if cur.description else []


def _sse(http: Any, path: str, last_event_id: str | None = None,
         stop_after: Any = None) -> Iterator[tuple[str, str, str]]:
    """(id, event, data) of a stream, until it ends or `stop_after(event)` says stop (the
    connection is closed there: the client went away)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with http.stream("GET", path, headers=headers) as answer:
        assert answer.status_code == 200
        event: dict[str, str] = {}
        for line in answer.iter_lines():
            if line.startswith(":"):
                continue  # keep-alive ping
            if line:
                field, _, value = line.partition(":")
                event[field] = value[1:] if value.startswith(" ") else value
                continue
            if "event" in event:
                item = (event.get("id", ""), event["event"], event.get("data", ""))
                yield item
                if stop_after is not None and stop_after(item):
                    return
            event = {}


# -- NOTIFY and the poll -------------------------------------------------------------------


def test_with_a_30s_poll_new_runs_start_and_cancels_land_by_notify(tmp_path):
    """Every poll is 30 s away (the test gives up after 20): a run created by the API
    still starts on the idle worker, and a cancel still stops a run mid-way."""
    with postgres_schema() as url:
        api = _api(tmp_path, url, poll_interval=30)
        worker = WorkerProcess(api).start()
        side = tmp_path / "slow.log"
        try:
            with api.http() as http:
                for _ in range(2):  # the second surely finds the worker idle, polling
                    done = http.post("/runs/wait", json={"assistant_id": "three",
                                                         "input": {"items": []}})
                    assert done.json()["items"] == ["a", "b", "c"]
                thread = http.post("/threads", json={}).json()["thread_id"]
                run = http.post(f"/threads/{thread}/runs", json={
                    "assistant_id": "slow", "input": {"delay": 2, "side_file": str(side)}}
                ).json()
                wait_until(lambda: side.exists())
                http.post(f"/threads/{thread}/runs/{run['run_id']}/cancel")
                ended = _ended(http, f"/threads/{thread}/runs/{run['run_id']}", timeout=20)
                assert ended["status"] == "interrupted"
                state = http.get(f"/threads/{thread}/state").json()
                assert state["values"]["items"] == ["slow"]  # the second step never ran
        finally:
            worker.stop()
            api.stop()


# -- event retention -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_event_retention_prunes_old_stream_events_and_keeps_recent_ones(tmp_path, backend):
    """`event_retention_hours`: the sweep forgets the events of finished runs stored
    longer ago than that; younger ones stay (their stream can still be replayed)."""
    settings = {"event_retention_hours": 1, "sweep_interval_minutes": 0.01}
    with running_server(tmp_path, backend, settings=settings) as server:
        if backend == "postgres":
            def sql(q: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
                return _sql(server.postgres or "", q.replace("?", "%s"), args)
        else:
            def sql(q: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
                with sqlite3.connect(tmp_path / "server.db", timeout=30) as conn:
                    return conn.execute(q, args).fetchall()

        def stored(run_id: str) -> int:
            return sql("SELECT count(*) FROM waypoint_run_events WHERE run_id = ?",
                       (run_id,))[0][0]

        with server.http() as http:
            old, recent = (http.post("/runs/wait", json={
                "assistant_id": "three", "input": {"items": []}, "on_completion": "keep"})
                .headers["Content-Location"].rsplit("/", 1)[-1] for _ in range(2))
            wait_until(lambda: stored(old) and stored(recent))
            sql("UPDATE waypoint_run_events SET created_at = created_at - 7200 WHERE "
                "run_id = ?", (old,))
            wait_until(lambda: stored(old) == 0)
            assert stored(recent) > 0


# -- the poll: the fallback for a lost notification ----------------------------------------


def test_a_run_nobody_notified_is_claimed_by_the_poll(fleet):
    """A run row committed without NOTIFY (a lost notification) is found by the poll."""
    from waypoint.service.tables.runs import _COLUMNS

    with fleet.api_a.http() as http:
        thread = http.post("/threads", json={}).json()["thread_id"]
        first = http.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "three", "input": {"items": ["1"]}})
        assert first.json()["items"] == ["1", "a", "b", "c"]
        template = http.get(f"/threads/{thread}/runs").json()[0]["run_id"]
        silent = str(uuid.uuid4())
        copied = ", ".join(
            {"run_id": "%s", "status": "'pending'", "attempt": "0", "worker": "NULL",
             "lease_until": "NULL", "graph_version": "NULL", "created_at": "created_at + 1",
             "not_before": "created_at + 1"}.get(c, c) for c in _COLUMNS.split(", "))
        _sql(fleet.url, f"INSERT INTO waypoint_runs ({_COLUMNS}) SELECT {copied} "
                        f"FROM waypoint_runs WHERE run_id = %s", (silent, template))
        done = _ended(http, f"/threads/{thread}/runs/{silent}")
        assert done["status"] == "success"
        state = http.get(f"/threads/{thread}/state").json()
        assert state["values"]["items"] == ["1", "a", "b", "c"] * 2


# -- streams across API processes ----------------------------------------------------------


def test_a_stream_is_resumed_on_another_api_process_without_loss_or_repeat(fleet):
    """Created through API process A, streamed from B, cut mid-run and resumed on B with
    `Last-Event-ID`: the two parts are the whole stream, nothing lost or repeated."""
    side = fleet.tmp / f"ticks-{uuid.uuid4().hex[:6]}"
    with fleet.api_a.http() as http_a, fleet.api_b.http() as http_b:
        thread = http_a.post("/threads", json={}).json()["thread_id"]
        run = http_a.post(f"/threads/{thread}/runs", json={
            "assistant_id": "ticker", "input": {"side_file": str(side)},
            "stream_mode": ["custom", "updates"], "stream_resumable": True}).json()
        path = f"/threads/{thread}/runs/{run['run_id']}/stream"

        def third_tick_seen(item: tuple[str, str, str]) -> bool:
            return item[1] == "custom" and json.loads(item[2]) == {"tick": 3, "part": 2}

        first = list(_sse(http_b, path, stop_after=third_tick_seen))
        assert third_tick_seen(first[-1])  # cut while the run waits at tick 4
        assert http_a.get(f"/threads/{thread}/runs/{run['run_id']}").json()[
            "status"] == "running"
        Path(f"{side}.go").write_text("go")
        rest = list(_sse(http_b, path, last_event_id=first[-1][0]))
        assert _ended(http_a, f"/threads/{thread}/runs/{run['run_id']}")[
            "status"] == "success"
        everything = list(_sse(http_b, path))  # the whole stored stream, replayed
    assert first + rest == everything
    ids = [event_id for event_id, _, _ in everything]
    assert all(ids) and len(set(ids)) == len(ids)
    ticks = [data for _, name, data in everything if name == "custom"]
    assert len(ticks) == 12  # six ticks, two events each, every one exactly once
    assert any(name == "custom" for _, name, _ in rest)  # followed live after the cut


# -- once across workers, in order across workers --------------------------------------------


def test_a_cron_fires_once_per_due_time_across_workers(fleet):
    """Both workers scan for due crons every second; each due time (forced by moving the
    cron's next time into the past, five times) makes exactly one run."""
    with fleet.api_a.http() as http:
        thread = http.post("/threads", json={}).json()["thread_id"]
        cron = http.post(f"/threads/{thread}/runs/crons", json={
            "assistant_id": "three", "schedule": "0 0 1 1 *",  # yearly: never by itself
            "input": {"items": []}}).json()

        def runs() -> list[dict[str, Any]]:
            return http.get(f"/threads/{thread}/runs", params={"limit": 50}).json()

        for due in range(1, 6):
            _sql(fleet.url, "UPDATE waypoint_crons SET next_run_date = %s WHERE "
                            "cron_id = %s", (time.time() - 1, cron["cron_id"]))
            wait_until(lambda n=due: len(runs()) >= n
                       and all(r["status"] == "success" for r in runs()))
        time.sleep(1.5)  # every worker has scanned again since the last due time
        assert len(runs()) == 5


def test_approval_deadlines_fire_once_across_workers(fleet):
    """Eight threads wait for an approval nobody gives; both workers scan for due
    deadlines: each deadline rejects its approval once (one timer run per thread)."""
    with fleet.api_a.http() as http:
        threads = []
        for _ in range(8):
            thread = http.post("/threads", json={}).json()["thread_id"]
            http.post(f"/threads/{thread}/runs", json={"assistant_id": "deadline",
                                                       "input": {}})
            threads.append(thread)

        def decided(thread: str) -> bool:
            state = http.get(f"/threads/{thread}/state").json()
            return state["values"].get("items") == ["decision:reject"] and not state["next"]

        wait_until(lambda: all(decided(t) for t in threads), timeout=60)
        for thread in threads:
            runs = http.get(f"/threads/{thread}/runs").json()
            assert len(runs) == 2  # the run that asked, and one deadline run
            assert all(r["status"] == "success" for r in runs)


def test_enqueued_runs_of_a_thread_run_in_creation_order_across_two_workers(fleet):
    with fleet.api_a.http() as http:
        thread = http.post("/threads", json={}).json()["thread_id"]
        ids = [http.post(f"/threads/{thread}/runs", json={
            "assistant_id": "three", "input": {"items": [f"run{i}"]},
            "multitask_strategy": "enqueue"}).json()["run_id"] for i in range(6)]
        for run_id in ids:
            assert _ended(http, f"/threads/{thread}/runs/{run_id}")["status"] == "success"
        items = http.get(f"/threads/{thread}/state").json()["values"]["items"]
    assert items == [x for i in range(6) for x in (f"run{i}", "a", "b", "c")]
