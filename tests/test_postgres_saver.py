"""PostgresSaver behaviour only PostgreSQL has: migrations, pools, races between writers.

Store semantics shared with MemorySaver are the conformance suite's job. Each test works in
its own schema, dropped afterwards. Without a server the tests skip, except under CI=true,
where they fail.
"""

from __future__ import annotations

import asyncio
import operator
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Annotated, Any, TypedDict

import pytest

from waypoint import END, START, Command, StateGraph, interrupt
from waypoint.checkpoint import MemorySaver
from waypoint.checkpoint.base import Checkpoint, make_config
from waypoint.checkpoint.ids import new_checkpoint_id
from waypoint.errors import CheckpointConflict, SerializationError

PG_URL = os.environ.get("WAYPOINT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
    pytest.skip(reason)


try:
    import psycopg
    from psycopg_pool import ConnectionPool

    from waypoint.checkpoint.postgres import _MIGRATIONS, PostgresSaver
except ImportError as exc:  # the driver is an optional extra
    psycopg = None  # type: ignore[assignment]
    _IMPORT_ERROR: str | None = f"psycopg is not installed: {exc}"
else:
    _IMPORT_ERROR = None

_reachable: str | None = None  # None: not checked yet; "": reachable; else why not


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema name; the schema is dropped when the test ends."""
    global _reachable
    if _IMPORT_ERROR:
        _unavailable(_IMPORT_ERROR)
    if _reachable is None:
        try:
            psycopg.connect(PG_URL, connect_timeout=3).close()
            _reachable = ""
        except psycopg.OperationalError as exc:
            _reachable = f"PostgreSQL at {PG_URL} is unreachable: {exc}"
    if _reachable:
        _unavailable(_reachable)
    name = f"wp_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def saver(schema: str) -> Iterator[Any]:
    with PostgresSaver.from_conn_string(PG_URL, schema=schema) as store:
        yield store


def _migrations(schema: str) -> list[int]:
    with psycopg.connect(PG_URL) as conn:
        rows = conn.execute(f'SELECT version FROM "{schema}".waypoint_migrations').fetchall()
    return [r[0] for r in rows]


def _checkpoint(step: int, **values: Any) -> Checkpoint:
    return Checkpoint(new_checkpoint_id(), step, f"ts{step}", values, updated=tuple(values))


# ------------------------------------------------ setup


def test_setup_twice_is_a_no_op(saver: Any, schema: str) -> None:
    config = make_config("t", "", None)
    saver.put(config, _checkpoint(0, a=1), {}, parent_id=None, expected_head=None)
    saver.setup()
    saver.setup()
    assert _migrations(schema) == [v for v, _ in _MIGRATIONS]
    assert saver.get_tuple(config).checkpoint.values == {"a": 1}


def test_setup_from_several_threads_at_once(schema: str) -> None:
    """Separate processes racing setup() on an empty database: one migrates, all succeed."""
    savers = [PostgresSaver(PG_URL, schema=schema) for _ in range(4)]
    barrier, errors = threading.Barrier(len(savers)), []

    def run(store: Any) -> None:
        try:
            barrier.wait()
            store.setup()
        except Exception as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(s,)) for s in savers]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        assert _migrations(schema) == [v for v, _ in _MIGRATIONS]
        savers[0].put(make_config("t", "", None), _checkpoint(0, a=1), {}, parent_id=None,
                      expected_head=None)
        assert savers[-1].head_id("t") is not None
    finally:
        for store in savers:
            store.close()


# ------------------------------------------------ a graph, end to end


class State(TypedDict):
    log: Annotated[list, operator.add]


def _graph(checkpointer: Any) -> Any:
    def plan(state: State) -> dict[str, Any]:
        return {"log": ["plan"]}

    def ask(state: State) -> dict[str, Any]:
        return {"log": [f"answer:{interrupt('approve?')}"]}

    def act(state: State) -> dict[str, Any]:
        return {"log": ["act"]}

    g = StateGraph(State)
    g.add_node("plan", plan)
    g.add_node("ask", ask)
    g.add_node("act", act)
    g.add_edge(START, "plan")
    g.add_edge("plan", "ask")
    g.add_edge("ask", "act")
    g.add_edge("act", END)
    return g.compile(checkpointer=checkpointer)


def _history(graph: Any, config: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(s.values, s.next, s.metadata["step"]) for s in graph.get_state_history(config)]


def _reference_history() -> list[tuple[Any, ...]]:
    graph, config = _graph(MemorySaver()), {"configurable": {"thread_id": "ref"}}
    graph.invoke({"log": ["start"]}, config)
    graph.invoke(Command(resume="yes"), config)
    return _history(graph, config)


def test_graph_run_interrupt_resume_history(saver: Any) -> None:
    graph, config = _graph(saver), {"configurable": {"thread_id": "run"}}
    first = graph.invoke({"log": ["start"]}, config)
    assert first["__interrupt__"][0].value == "approve?"
    assert graph.get_state(config).next == ("ask",)
    final = graph.invoke(Command(resume="yes"), config)
    assert final["log"] == ["start", "plan", "answer:yes", "act"]
    history = _history(graph, config)
    assert history == _reference_history()
    assert history[0][0]["log"] == final["log"] and history[-1][0] == {"log": []}


async def test_graph_run_interrupt_resume_history_async(schema: str) -> None:
    async with PostgresSaver.from_conn_string(PG_URL, schema=schema) as saver:
        graph, config = _graph(saver), {"configurable": {"thread_id": "run"}}
        first = await graph.ainvoke({"log": ["start"]}, config)
        assert first["__interrupt__"][0].value == "approve?"
        final = await graph.ainvoke(Command(resume="yes"), config)
        assert final["log"] == ["start", "plan", "answer:yes", "act"]
        listed = [t.checkpoint.values async for t in saver.alist(make_config("run", "", None))]
        assert listed == [values for values, _, _ in _reference_history()]
        assert _history(graph, config) == _reference_history()  # sync reads, same saver


# ------------------------------------------------ racing writers


def _race(saver: Any, thread_id: str, expected: str | None, rounds: int = 2
          ) -> tuple[list[str], list[CheckpointConflict]]:
    """Two threads commit a child of `expected` at the same moment."""
    config = make_config(thread_id, "", None)
    candidates = [_checkpoint(1, who=i) for i in range(rounds)]
    barrier, won, lost = threading.Barrier(rounds), [], []

    def write(checkpoint: Checkpoint) -> None:
        barrier.wait()
        try:
            saver.put(config, checkpoint, {}, parent_id=expected, expected_head=expected)
            won.append(checkpoint.id)
        except CheckpointConflict as exc:
            lost.append(exc)

    workers = [threading.Thread(target=write, args=(c,)) for c in candidates]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return won, lost


@pytest.mark.parametrize("new_thread", [True, False], ids=["new-thread", "existing-head"])
def test_two_writers_on_one_head_exactly_one_wins(saver: Any, new_thread: bool) -> None:
    for attempt in range(10):
        thread_id = f"race-{attempt}"
        head = None
        if not new_thread:
            root = _checkpoint(0, who=-1)
            saver.put(make_config(thread_id, "", None), root, {}, parent_id=None,
                      expected_head=None)
            head = root.id
        won, lost = _race(saver, thread_id, head)
        assert len(won) == 1 and len(lost) == 1
        assert lost[0].expected == head and lost[0].actual == won[0]
        assert saver.head_id(thread_id) == won[0]
        listed = [t.checkpoint.id for t in saver.list(make_config(thread_id, "", None))]
        assert listed == [won[0]] + ([head] if head else [])  # the loser wrote nothing


async def test_async_writers_use_their_own_connections(saver: Any) -> None:
    """Tasks racing through the async pool: no instance lock, still exactly one winner."""
    root = _checkpoint(0, n=0)
    config = make_config("async-race", "", None)
    await saver.aput(config, root, {}, parent_id=None, expected_head=None)
    results = await asyncio.gather(*(
        saver.aput(config, _checkpoint(1, n=i), {}, parent_id=root.id, expected_head=root.id)
        for i in range(5)), return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, CheckpointConflict) for r in results if isinstance(r, Exception))
    assert len([t async for t in saver.alist(config)]) == 2


def test_a_fork_takes_the_locked_path_and_reads_back(saver: Any) -> None:
    """A put whose parent is not the head: head locked first, then the parent read."""
    config = make_config("fork", "", None)
    root, child = _checkpoint(0, log=[0]), _checkpoint(1, log=[0, 1])
    saver.put(config, root, {}, parent_id=None, expected_head=None)
    saver.put(config, child, {}, parent_id=root.id, expected_head=root.id)
    fork = _checkpoint(2, log=[0, 2])
    saver.put(config, fork, {}, parent_id=root.id, expected_head=child.id)
    saved = saver.get_tuple(config)
    assert saved.checkpoint.values == {"log": [0, 2]}
    assert saved.parent_config["configurable"]["checkpoint_id"] == root.id
    with pytest.raises(CheckpointConflict):
        saver.put(config, _checkpoint(3, log=[]), {}, parent_id=root.id, expected_head=child.id)


# ------------------------------------------------ encryption at rest


def test_encrypted_rows_hide_the_data_and_need_the_key(schema: str, monkeypatch: Any) -> None:
    pytest.importorskip("cryptography")
    from waypoint.checkpoint.crypto import new_key

    monkeypatch.setenv("WAYPOINT_ENCRYPTION_KEY", new_key())
    config = make_config("secret", "", None)
    with PostgresSaver.from_conn_string(PG_URL, schema=schema) as saver:
        root = _checkpoint(0, note="top secret finding")
        saver.put(config, root, {"source": "top secret"}, parent_id=None, expected_head=None)
        saver.put_writes(make_config("secret", "", root.id), [("t", "note", "top secret")])
        assert saver.get_tuple(config).checkpoint.values == {"note": "top secret finding"}
    with psycopg.connect(PG_URL) as conn:
        raw = conn.execute(f'SELECT body || metadata || writes FROM "{schema}".'
                           "waypoint_checkpoints").fetchone()[0]
    assert b"top secret" not in raw
    monkeypatch.delenv("WAYPOINT_ENCRYPTION_KEY")
    with PostgresSaver.from_conn_string(PG_URL, schema=schema) as saver:
        with pytest.raises(SerializationError, match="encrypted"):
            saver.get_tuple(config)
    monkeypatch.setenv("WAYPOINT_ENCRYPTION_KEY", new_key())
    with PostgresSaver.from_conn_string(PG_URL, schema=schema) as saver:
        with pytest.raises(SerializationError, match="wrong key"):
            saver.get_tuple(config)


# ------------------------------------------------ reopening, pools, event loops


def test_a_new_saver_sees_the_data(schema: str) -> None:
    config = make_config("kept", "", None)
    with PostgresSaver.from_conn_string(PG_URL, schema=schema, snapshot_every=2) as first:
        head = None
        for step in range(5):  # snapshots and deltas
            checkpoint = _checkpoint(step, log=list(range(step + 1)))
            first.put(config, checkpoint, {"step": step}, parent_id=head, expected_head=head)
            head = checkpoint.id
        first.put_writes(make_config("kept", "", head), [("task", "log", [9])])
    with PostgresSaver.from_conn_string(PG_URL, schema=schema) as second:
        assert second.head_id("kept") == head
        saved = second.get_tuple(config)
        assert saved.checkpoint.values == {"log": [0, 1, 2, 3, 4]}
        assert saved.pending_writes == [("task", "log", [9])]
        assert [t.metadata["step"] for t in second.list(config)] == [4, 3, 2, 1, 0]


def test_a_pool_passed_in_is_used_and_left_open(schema: str) -> None:
    """A caller's pool (connections not in autocommit) works and stays the caller's."""
    with ConnectionPool(PG_URL, min_size=1, max_size=2, open=True) as pool:
        saver = PostgresSaver(pool, schema=schema)
        config = make_config("pooled", "", None)
        root = _checkpoint(0, a=1)
        saver.put(config, root, {}, parent_id=None, expected_head=None)
        with pytest.raises(CheckpointConflict):
            saver.put(config, _checkpoint(1, a=2), {}, parent_id=None, expected_head=None)
        saver.close()
        assert not pool.closed
        with pool.connection() as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert PostgresSaver(pool, schema=schema).head_id("pooled") == root.id


def test_one_saver_across_event_loops(saver: Any) -> None:
    """Each asyncio.run() gets its own loop; the async pool follows it."""
    config = make_config("loops", "", None)
    root = _checkpoint(0, a=1)
    asyncio.run(saver.aput(config, root, {}, parent_id=None, expected_head=None))
    assert asyncio.run(saver.ahead_id("loops")) == root.id
    assert saver.get_tuple(config).checkpoint.values == {"a": 1}
