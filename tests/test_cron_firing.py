"""A cron's due time is fired once, even by several schedulers at once: the time moves on
in the same transaction that queues its run, so either both happen or neither does."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from waypoint.service.config import load_settings
from waypoint.service.context import open_service
from waypoint.service.crons import fire_due_crons
from waypoint.service.tables import crons as cron_table
from waypoint.service.tables import runs as run_table
from waypoint.service.tables.common import graph_assistant_id
from waypoint.service.tables.crons import Cron

GRAPHS = Path(__file__).parent / "server_graphs.py"


def test_concurrent_schedulers_fire_a_due_time_once(tmp_path):
    settings = load_settings(None, graphs={"three": f"{GRAPHS}:three"},
                             db=tmp_path / "server.db", workers=0)

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
