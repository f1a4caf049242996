"""Fenced commits: a writer whose lease was taken over cannot commit anything more.

The fence row lives in a table of the test's own (the service uses its runs table); each
test advances the epoch, as a takeover does, and checks that checkpoints, task writes and
effect claims of the stale writer are refused with FencedOut while nothing changes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any, TypedDict

import pytest
from store_backends import PG_URL, open_store, require

from waypoint import END, START, StateGraph, effect
from waypoint.checkpoint.base import Checkpoint
from waypoint.checkpoint.fencing import Fence, current_fence, fenced
from waypoint.errors import FencedOut


class State(TypedDict, total=False):
    n: int


def _graph(saver: Any, calls: list[str] | None = None, before_effect: Any = None) -> Any:
    def bump(state: State) -> dict[str, Any]:
        if calls is not None:
            if before_effect is not None:
                before_effect()
            effect("charge", lambda: calls.append("charged"))
        return {"n": state.get("n", 0) + 1}

    builder = StateGraph(State)
    builder.add_node("bump", bump)
    builder.add_edge(START, "bump")
    builder.add_edge("bump", END)
    return builder.compile(checkpointer=saver)


class Leases:
    """A leases table beside the store: one row per run, with its epoch and status."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind, self.url = kind, url
        self.table = f"wp_leases_{uuid.uuid4().hex[:10]}"
        self._sql(f'CREATE TABLE "{self.table}" (run_id TEXT PRIMARY KEY, epoch INTEGER, '
                  "status TEXT)")

    def _sql(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        if self.kind == "sqlite":
            with sqlite3.connect(self.url) as conn:
                conn.execute(sql, args)
        else:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(sql.replace("?", "%s"), args)

    def grant(self, run_id: str, epoch: int, status: str = "running") -> Fence:
        self._sql(f'DELETE FROM "{self.table}" WHERE run_id = ?', (run_id,))
        self._sql(f'INSERT INTO "{self.table}" VALUES (?, ?, ?)', (run_id, epoch, status))
        return Fence(self.table, "run_id", run_id, "epoch", epoch, "status", "running")

    def drop(self) -> None:
        self._sql(f'DROP TABLE IF EXISTS "{self.table}"')


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[Any, Leases]]:
    kind = request.param
    require(kind)
    url = str(tmp_path / "store.db") if kind == "sqlite" else PG_URL
    with open_store(kind, url) as saver:
        saver.setup()
        leases = Leases(kind, url)
        try:
            yield saver, leases
        finally:
            leases.drop()
            saver.delete_threads(_made)
            _made.clear()


_made: list[str] = []


def _thread() -> dict[str, Any]:
    thread_id = f"fence-{uuid.uuid4().hex[:10]}"
    _made.append(thread_id)
    return {"configurable": {"thread_id": thread_id}}


def test_a_writer_commits_while_it_holds_its_lease_and_not_after_a_takeover(store):
    saver, leases = store
    graph, config = _graph(saver), _thread()
    with fenced(leases.grant("run-1", 1)):
        assert graph.invoke({"n": 0}, config)["n"] == 1
    head = saver.get_tuple(config).checkpoint.id
    leases.grant("run-1", 2)  # another worker took the run over
    stale = Fence(leases.table, "run_id", "run-1", "epoch", 1, "status", "running")
    with fenced(stale), pytest.raises(FencedOut) as caught:
        graph.invoke({"n": 5}, config)
    assert "taken over" in str(caught.value)
    assert saver.get_tuple(config).checkpoint.id == head  # nothing was written
    assert graph.get_state(config).values["n"] == 1
    with fenced(leases.grant("run-1", 2)):  # the new holder carries on
        assert graph.invoke({"n": 5}, config)["n"] == 6


def test_a_requeued_run_refuses_its_old_writer_even_before_anyone_claims_it(store):
    saver, leases = store
    graph, config = _graph(saver), _thread()
    fence = leases.grant("run-2", 1, status="pending")  # requeued: status no longer running
    with fenced(fence), pytest.raises(FencedOut):
        graph.invoke({"n": 0}, config)
    assert saver.get_tuple(config) is None  # a new thread was not even created


def test_a_writer_that_loses_its_lease_mid_step_neither_starts_its_effect_nor_commits(store):
    saver, leases = store
    calls: list[str] = []
    taken = []
    graph, config = _graph(saver, calls, lambda: taken or taken.append(
        leases.grant("run-3", 2))), _thread()
    with fenced(leases.grant("run-3", 1)), pytest.raises(FencedOut):
        graph.invoke({"n": 0}, config)  # the takeover happens inside the step
    assert calls == []
    assert saver.list_effects(config["configurable"]["thread_id"]) == []
    assert graph.get_state(config).values == {"n": 0}  # only the input was committed
    with fenced(leases.grant("run-3", 2)):  # the new holder runs the step and its effect
        assert graph.invoke(None, config)["n"] == 1
    assert calls == ["charged"]


def test_task_writes_and_forks_are_fenced_too(store):
    saver, leases = store
    graph, config = _graph(saver), _thread()
    with fenced(leases.grant("run-4", 1)):
        graph.invoke({"n": 0}, config)
        first = list(saver.list(config))[-1]
    leases.grant("run-4", 2)
    stale = Fence(leases.table, "run_id", "run-4", "epoch", 1, "status", "running")
    with fenced(stale):
        with pytest.raises(FencedOut):
            saver.put_writes(first.config, [("task-x", "n", 9)])
        with pytest.raises(FencedOut):  # a fork: its parent is not the head
            graph.update_state(first.config, {"n": 42})
    assert graph.get_state(config).values["n"] == 1


def test_group_commit_refuses_only_the_stale_writer():
    require("postgres")
    with open_store("postgres", PG_URL) as saver:
        saver.setup()
        leases = Leases("postgres", PG_URL)
        try:
            good, bad = leases.grant("run-good", 1), leases.grant("run-bad", 1)
            leases.grant("run-bad", 2)
            graphs = [(_graph(saver), _thread(), fence) for fence in (good, bad) * 4]

            async def one(graph: Any, config: dict[str, Any], fence: Fence) -> Any:
                with fenced(fence):
                    assert current_fence() is fence
                    return await graph.ainvoke({"n": 0}, config)

            async def main() -> list[Any]:
                return await asyncio.gather(*(one(*g) for g in graphs),
                                            return_exceptions=True)

            outcomes = asyncio.run(main())
            for (_, config, fence), outcome in zip(graphs, outcomes, strict=True):
                if fence is good:
                    assert outcome == {"n": 1}
                else:
                    assert isinstance(outcome, FencedOut)
                    assert saver.get_tuple(config) is None
        finally:
            leases.drop()
            saver.delete_threads(_made)
            _made.clear()


def test_fences_name_plain_identifiers_only():
    with pytest.raises(ValueError, match="identifier"):
        Fence('runs"; DROP TABLE x; --', "run_id", "r", "attempt", 1)
    with pytest.raises(ValueError, match="together"):
        Fence("runs", "run_id", "r", "attempt", 1, "status")


def test_unfenced_commits_are_unchanged(store):
    saver, _ = store
    assert current_fence() is None
    graph, config = _graph(saver), _thread()
    assert graph.invoke({"n": 0}, config)["n"] == 1
    assert isinstance(saver.get_tuple(config).checkpoint, Checkpoint)
