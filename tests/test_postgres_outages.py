"""A database restart kills every pooled connection: the next use must not fail on them.

Connections idle for a while are checked (an empty query) before a pool hands them out;
the test makes every connection count as idle and cuts them all, as a restart does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, TypedDict

import pytest
from store_backends import PG_URL, require

from waypoint import END, START, StateGraph
from waypoint.checkpoint import pg_pools


class State(TypedDict, total=False):
    n: int


def _graph(saver: Any) -> Any:
    builder = StateGraph(State)
    builder.add_node("bump", lambda s: {"n": s.get("n", 0) + 1})
    builder.add_edge(START, "bump")
    builder.add_edge("bump", END)
    return builder.compile(checkpointer=saver)


def _cut(application: str) -> None:
    """Terminate this test's connections (what a restart does to them) and wait."""
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = %s", [application])
        deadline = time.monotonic() + 10
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                            "application_name = %s", [application]).fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_pooled_connections_cut_while_idle_are_replaced_not_used(monkeypatch, mode):
    require("postgres")
    from waypoint.checkpoint.postgres import PostgresSaver

    monkeypatch.setattr(pg_pools, "IDLE_SECONDS", 0.0)  # every connection counts as idle
    application = f"wp_outage_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in PG_URL else "?"
    config = {"configurable": {"thread_id": f"outage-{uuid.uuid4().hex[:8]}"}}
    with PostgresSaver.from_conn_string(f"{PG_URL}{sep}application_name={application}"
                                        ) as saver:
        graph = _graph(saver)
        try:
            if mode == "sync":
                assert graph.invoke({"n": 0}, config)["n"] == 1
                _cut(application)
                assert graph.invoke({"n": 5}, config)["n"] == 6
            else:
                async def go() -> list[int]:
                    first = await graph.ainvoke({"n": 0}, config)
                    _cut(application)
                    second = await graph.ainvoke({"n": 5}, config)
                    return [first["n"], second["n"]]

                assert asyncio.run(go()) == [1, 6]
        finally:
            saver.delete_thread(config["configurable"]["thread_id"])
