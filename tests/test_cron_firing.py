"""A cron's due time is fired once, even by several schedulers at once: the time moves on
in the same transaction that queues its run, so either both happen or neither does. And a
time missed while the server was down fires once when it is back, not once per missed
time. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import pytest
from server_harness import ServerProcess, postgres_schema, wait_until

from waypoint.service.config import load_settings
from waypoint.service.context import open_service
from waypoint.service.crons import fire_due_crons
from waypoint.service.tables import crons as cron_table
from waypoint.service.tables import runs as run_table
from waypoint.service.tables.common import epoch, graph_assistant_id
from waypoint.service.tables.crons import Cron

GRAPHS = Path(__file__).parent / "server_graphs.py"
BACKENDS = ["sqlite", "postgres"]


@contextlib.contextmanager
def _database(backend: str):
    """None for SQLite (a file in the test's directory), else a fresh PostgreSQL schema."""
    if backend == "postgres":
        with postgres_schema() as url:
            yield url
    else:
        yield None


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_schedulers_fire_a_due_time_once(backend, tmp_path):
    with _database(backend) as url:
        settings = load_settings(None, graphs={"three": f"{GRAPHS}:three"},
                                 db=tmp_path / "server.db", postgres=url, workers=0)

        async def go() -> tuple[int, float | None]:
            async with open_service(settings, start_workers=False) as service:
                due = time.time() - 5
                cron = Cron("c1", "default", graph_assistant_id("three"), None, "0 0 * * *",
                            None, None, {"input": {"items": []}}, {}, None, True, "keep", due,
                            due, due)
                await service.db.arun(lambda tx: cron_table.insert(tx, cron))
                await asyncio.gather(*(fire_due_crons(service) for _ in range(4)))
                await fire_due_crons(service)  # not due any more
                runs = await service.db.aread(lambda tx: run_table.ids_by_status(
                    tx, None, run_table.STATUSES))
                after = await service.db.aread(lambda tx: cron_table.get(tx, "c1", None))
                return len(runs), after.next_run_date

        created, following = asyncio.run(go())
    assert created == 1
    assert following is not None and following > time.time()


def _move_due_time(url: str | None, db: Path, cron_id: str, when: float) -> None:
    """What a server that was down for hours leaves behind: a due time long past."""
    query = "UPDATE waypoint_crons SET next_run_date = {p} WHERE cron_id = {p}"
    if url:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(query.format(p="%s"), (when, cron_id))
        return
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(query.format(p="?"), (when, cron_id))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cron_missed_while_the_server_was_down_fires_once_after_restart(backend, tmp_path):
    with _database(backend) as url, contextlib.ExitStack() as stack:
        first = ServerProcess(tmp_path, postgres=url).start()
        stack.callback(first.stop)
        http = first.http()
        tid = http.post("/threads", json={}).json()["thread_id"]
        cron = http.post(f"/threads/{tid}/runs/crons", json={
            "assistant_id": "three", "schedule": "0 * * * *",  # hourly
            "input": {"items": ["tick"]}}).json()
        assert http.get(f"/threads/{tid}/runs").json() == []
        first.stop()

        # down across three due times (hourly): moved back as the clock would have
        _move_due_time(url, tmp_path / "server.db", cron["cron_id"], time.time() - 3 * 3600)

        second = ServerProcess(tmp_path, postgres=url).start()
        stack.callback(second.stop)
        http = second.http()
        runs = wait_until(lambda: http.get(f"/threads/{tid}/runs").json())
        [found] = http.post("/runs/crons/search", json={"thread_id": tid}).json()
        # the due time moved past now in the transaction that queued the run, so the
        # other missed times can no longer fire
        assert epoch(found["next_run_date"]) > time.time()
        assert len(http.get(f"/threads/{tid}/runs").json()) == 1
        done = http.get(f"/threads/{tid}/runs/{runs[0]['run_id']}/join").json()
        assert done["items"] == ["tick", "a", "b", "c"]
        assert runs[0]["metadata"]["cron_id"] == cron["cron_id"]
