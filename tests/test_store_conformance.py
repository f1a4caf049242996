"""Store conformance: every checkpointer behaves like MemorySaver, the reference store.

Every test runs on every backend (memory, sqlite, postgres; see store_backends.py), through
direct store calls with hand-made checkpoints and through graph runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import itertools
import json
import operator
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pydantic
import pytest
import store_backends
from crash_child import ASK_STAMP, ask_graph
from store_backends import Backend, open_store, private_postgres_database

from waypoint import END, START, Command, Send, StateGraph, add_messages, interrupt
from waypoint.checkpoint import Checkpoint
from waypoint.checkpoint.base import make_config
from waypoint.checkpoint.ids import new_checkpoint_id
from waypoint.checkpoint.records import channel_changes
from waypoint.constants import ERROR, INTERRUPT, RESULT, RESUME
from waypoint.errors import CheckpointConflict
from waypoint.messages import AIMessage, HumanMessage

CHILD = str(Path(__file__).with_name("crash_child.py"))

# the fixtures (pytest puts tests/ on sys.path): `backend` and the fresh store `saver`
backend = store_backends.backend
saver = store_backends.saver


# ---------------------------------------------------------------- helpers


def cfg(thread_id: str, checkpoint_id: str | None = None, ns: str = "") -> dict[str, Any]:
    return make_config(thread_id, ns, checkpoint_id)


def cid(config: dict[str, Any] | None) -> str | None:
    return None if config is None else config["configurable"]["checkpoint_id"]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class Chain:
    """Hand-made checkpoints of one thread namespace, put the way the engine puts them."""

    def __init__(self, store: Any, thread_id: str, ns: str = "") -> None:
        self.store = store
        self.thread_id = thread_id
        self.ns = ns
        self.values: dict[str, Any] = {}
        self.head: str | None = None
        self.made: list[Checkpoint] = []
        self.metadata: dict[str, dict[str, Any]] = {}
        self.parents: dict[str, str | None] = {}

    def make(self, updates: dict[str, Any], *, parent: Checkpoint | None = None,
             next_tasks: list[tuple[Any, ...]] | None = None) -> Checkpoint:
        before = dict(parent.values) if parent is not None else dict(self.values)
        values = {**before, **updates}
        step = (parent.step if parent is not None else len(self.made) - 1) + 1
        return Checkpoint(
            id=new_checkpoint_id(), step=step, ts=now_iso(), values=values,
            next_tasks=next_tasks if next_tasks is not None else [("node", {"k": step})],
            barriers={"join": ["a"]} if step % 2 else {},
            ran=("node",) if step >= 0 else (), updated=tuple(updates),
            changes=channel_changes(before, values, tuple(updates)),
        )

    def put(self, updates: dict[str, Any], *, source: str = "loop",
            parent: Checkpoint | None = None, next_tasks: list[tuple[Any, ...]] | None = None,
            **extra_meta: Any) -> Checkpoint:
        checkpoint = self.make(updates, parent=parent, next_tasks=next_tasks)
        parent_id = parent.id if parent is not None else self.head
        metadata = {"source": source, "step": checkpoint.step, "parents": {}, **extra_meta}
        self.store.put(cfg(self.thread_id, ns=self.ns), checkpoint, metadata,
                       parent_id=parent_id, expected_head=self.head)
        self.head = checkpoint.id
        self.values = checkpoint.values
        self.made.append(checkpoint)
        self.metadata[checkpoint.id] = metadata
        self.parents[checkpoint.id] = parent_id
        return checkpoint


def assert_same_checkpoint(got: Checkpoint, want: Checkpoint) -> None:
    assert got.id == want.id
    assert got.step == want.step
    assert got.ts == want.ts
    assert got.values == want.values
    assert [tuple(t) for t in got.next_tasks] == [tuple(t) for t in want.next_tasks]
    assert got.barriers == want.barriers
    assert tuple(got.ran) == tuple(want.ran)
    assert tuple(got.updated) == tuple(want.updated)


def tuple_ids(items: Any) -> list[str]:
    return [t.checkpoint.id for t in items]


def history_ids(app: Any, config: dict[str, Any], **kwargs: Any) -> list[str]:
    return [cid(s.config) for s in app.get_state_history(config, **kwargs)]


@contextlib.contextmanager
def isolated_store(backend: Backend) -> Iterator[Any]:
    """A store nobody else uses, for calls that touch every thread (sweep, list(None)):
    on PostgreSQL a throw-away database, never the shared one."""
    if backend.kind == "postgres":
        with private_postgres_database() as url, open_store("postgres", url) as store:
            yield store
    else:
        with backend.open() as store:
            yield store


@contextlib.contextmanager
def reader(backend: Backend, store: Any) -> Iterator[Any]:
    """A second store on the same data (persistent backends), else the same store."""
    if backend.persistent:
        with backend.open() as other:
            yield other
    else:
        yield store


# ---------------------------------------------------------------- graphs


class LogState(TypedDict):
    log: Annotated[list, operator.add]


def chain_app(store: Any, names: tuple[str, ...] = ("a", "b", "c"), calls: dict | None = None,
              **compile_kwargs: Any) -> Any:
    calls = {} if calls is None else calls

    def make(name: str):
        def node(state: LogState) -> dict[str, Any]:
            calls[name] = calls.get(name, 0) + 1
            return {"log": [name]}

        return node

    graph = StateGraph(LogState)
    for name in names:
        graph.add_node(name, make(name))
    graph.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        graph.add_edge(a, b)
    graph.add_edge(names[-1], END)
    return graph.compile(checkpointer=store, **compile_kwargs)


def failing_sibling_app(store: Any, calls: dict, broken: dict) -> Any:
    """START -> good, bad (parallel) -> join; bad raises (after good finished) while broken."""
    good_done = threading.Event()

    def good(state: LogState) -> dict[str, Any]:
        calls["good"] = calls.get("good", 0) + 1
        good_done.set()
        return {"log": ["good"]}

    def bad(state: LogState) -> dict[str, Any]:
        calls["bad"] = calls.get("bad", 0) + 1
        if broken["on"]:
            good_done.wait(timeout=10)
            raise ValueError("boom in bad")
        return {"log": ["bad"]}

    def join(state: LogState) -> dict[str, Any]:
        calls["join"] = calls.get("join", 0) + 1
        return {"log": ["join"]}

    graph = StateGraph(LogState)
    graph.add_node("good", good)
    graph.add_node("bad", bad)
    graph.add_node("join", join)
    graph.add_edge(START, "good")
    graph.add_edge(START, "bad")
    graph.add_edge(["good", "bad"], "join")
    graph.add_edge("join", END)
    return graph.compile(checkpointer=store)


# ================================================================ direct store calls


def test_put_then_get_tuple_round_trips_every_field(saver, backend):
    thread = backend.thread()
    chain = Chain(saver, thread)
    first = chain.put({"log": [], "n": 0}, source="input", user="ünïcode", tags=["x", 1])
    second = chain.put({"log": ["a"], "n": 1})

    assert saver.head_id(thread) == second.id
    got = saver.get_tuple(cfg(thread))
    assert_same_checkpoint(got.checkpoint, second)
    assert got.config["configurable"]["thread_id"] == thread
    assert got.config["configurable"]["checkpoint_ns"] == ""
    assert cid(got.config) == second.id
    assert cid(got.parent_config) == first.id
    assert got.metadata == chain.metadata[second.id]
    assert got.pending_writes == []

    old = saver.get_tuple(cfg(thread, first.id))
    assert_same_checkpoint(old.checkpoint, first)
    assert old.parent_config is None
    assert old.metadata == {"source": "input", "step": 0, "parents": {}, "user": "ünïcode",
                            "tags": ["x", 1]}


def test_get_tuple_of_missing_thread_or_checkpoint_is_none(saver, backend):
    thread = backend.thread()
    assert saver.get_tuple(cfg(thread)) is None
    assert saver.head_id(thread) is None
    assert list(saver.list(cfg(thread))) == []
    Chain(saver, thread).put({"x": 1})
    assert saver.get_tuple(cfg(thread, new_checkpoint_id())) is None
    assert saver.get_tuple(cfg(thread, ns="other")) is None
    assert saver.head_id(thread, "other") is None


def test_thread_id_is_required(saver):
    with pytest.raises(ValueError, match="thread"):
        saver.get_tuple({"configurable": {}})


def test_stale_put_raises_conflict_and_writes_nothing(saver, backend):
    thread = backend.thread()
    chain = Chain(saver, thread)
    root = chain.put({"n": 0}, source="input")
    winner = chain.make({"n": 1}, parent=root)
    loser = chain.make({"n": 2}, parent=root)
    saver.put(cfg(thread), winner, {"source": "loop", "step": 1}, parent_id=root.id,
              expected_head=root.id)
    with pytest.raises(CheckpointConflict) as caught:
        saver.put(cfg(thread), loser, {"source": "loop", "step": 1}, parent_id=root.id,
                  expected_head=root.id)
    assert caught.value.thread_id == thread
    assert caught.value.expected == root.id
    assert caught.value.actual == winner.id
    assert saver.head_id(thread) == winner.id
    assert saver.get_tuple(cfg(thread, loser.id)) is None
    assert tuple_ids(saver.list(cfg(thread))) == [winner.id, root.id]
    assert saver.get_tuple(cfg(thread)).checkpoint.values == {"n": 1}

    # expecting a new thread (None) when it has a head
    fresh = chain.make({"n": 9}, parent=root)
    with pytest.raises(CheckpointConflict) as caught:
        saver.put(cfg(thread), fresh, {}, parent_id=None, expected_head=None)
    assert (caught.value.expected, caught.value.actual) == (None, winner.id)
    # expecting a head on a thread that does not exist
    empty = backend.thread("empty")
    with pytest.raises(CheckpointConflict) as caught:
        saver.put(cfg(empty), fresh, {}, parent_id=None, expected_head=root.id)
    assert caught.value.thread_id == empty
    assert (caught.value.expected, caught.value.actual) == (root.id, None)
    assert saver.head_id(empty) is None
    assert saver.get_tuple(cfg(empty)) is None
    assert list(saver.list(cfg(empty))) == []
    assert tuple_ids(saver.list(cfg(thread))) == [winner.id, root.id]


@pytest.mark.parametrize("writers", [2, 8])
def test_racing_puts_exactly_one_wins(saver, backend, writers):
    """Writers on two store instances (two connections where the store has them) commit on
    the same expected head at once: one wins, the others get CheckpointConflict."""
    with reader(backend, saver) as other:
        stores = [saver, other]
        for _ in range(10):
            thread = backend.thread("race")
            root = Chain(saver, thread).put({"n": 0}, source="input")
            barrier = threading.Barrier(writers)
            candidates = [Chain(saver, thread).make({"n": i + 1}, parent=root)
                          for i in range(writers)]

            def write(i: int, candidates=candidates, barrier=barrier, thread=thread,
                      root=root) -> tuple[str, Any]:
                barrier.wait(timeout=30)
                try:
                    stores[i % 2].put(cfg(thread), candidates[i], {"source": "loop", "step": 1},
                                      parent_id=root.id, expected_head=root.id)
                except CheckpointConflict as conflict:
                    return "conflict", conflict
                return "ok", candidates[i].id

            with ThreadPoolExecutor(writers) as pool:
                results = list(pool.map(write, range(writers)))
            winners = [value for kind, value in results if kind == "ok"]
            assert len(winners) == 1, results
            (winner,) = winners
            for kind, exc in results:
                if kind == "conflict":
                    assert exc.thread_id == thread
                    assert exc.expected == root.id
                    assert exc.actual == winner
            for store in stores:
                assert store.head_id(thread) == winner
                assert tuple_ids(store.list(cfg(thread))) == [winner, root.id]


def test_fork_put_on_an_older_parent(saver, backend):
    thread = backend.thread()
    chain = Chain(saver, thread)
    a = chain.put({"log": ["a"], "n": 1}, source="input")
    b = chain.put({"log": ["a", "b"], "n": 2})
    c = chain.put({"log": ["a", "b", "c"], "n": 3})
    fork = chain.put({"log": ["a", "x"]}, parent=a, source="update")
    got = saver.get_tuple(cfg(thread))
    assert got.checkpoint.id == fork.id
    assert got.checkpoint.values == {"log": ["a", "x"], "n": 1}
    assert cid(got.parent_config) == a.id
    assert tuple_ids(saver.list(cfg(thread))) == [fork.id, c.id, b.id, a.id]
    assert saver.get_tuple(cfg(thread, c.id)).checkpoint.values == {"log": ["a", "b", "c"],
                                                                    "n": 3}


def test_put_with_unknown_parent_stores_a_root(saver, backend):
    """As MemorySaver: a parent id the namespace does not hold is stored as no parent."""
    thread = backend.thread()
    checkpoint = Chain(saver, thread).make({"v": 1})
    saver.put(cfg(thread), checkpoint, {"source": "input"}, parent_id=new_checkpoint_id(),
              expected_head=None)
    got = saver.get_tuple(cfg(thread))
    assert got.parent_config is None
    assert got.checkpoint.values == {"v": 1}


def test_fork_onto_a_checkpoint_another_store_pruned(saver, backend):
    """Another store instance (process) pruned the parent away: as with an unknown
    parent, the new checkpoint is stored whole, with no parent, and reads back."""
    thread = backend.thread()
    chain = Chain(saver, thread)
    chain.put({"log": [], "n": 0}, source="input")
    for i in range(1, 6):
        chain.put({"log": [*chain.values["log"], i], "n": i})
    old = chain.made[2]
    with reader(backend, saver) as other:
        assert other.prune(thread, keep_last=1) == 5
    fork = chain.make({"log": [*old.values["log"], "fork"]}, parent=old)
    saver.put(cfg(thread), fork, {"source": "fork"}, parent_id=old.id,
              expected_head=chain.head)
    got = saver.get_tuple(cfg(thread))
    assert got.checkpoint.id == fork.id
    assert got.checkpoint.values == {"log": [1, 2, "fork"], "n": 2}
    assert got.parent_config is None
    # and a child of the (re-based) head written from the first instance still reads back
    with reader(backend, saver) as other:
        assert other.get_tuple(cfg(thread, fork.id)).checkpoint.values == got.checkpoint.values


def test_large_values_round_trip(saver, backend):
    thread = backend.thread()
    chain = Chain(saver, thread)
    blob = bytes(range(256)) * 12_000  # ~3 MB
    items = [{"i": i, "s": "x" * 20} for i in range(20_000)]
    first = chain.put({"blob": blob, "items": items, "text": "é" * 500_000}, source="input")
    second = chain.put({"items": [*items, {"i": -1}]})
    with reader(backend, saver) as other:
        assert_same_checkpoint(other.get_tuple(cfg(thread, first.id)).checkpoint, first)
        assert_same_checkpoint(other.get_tuple(cfg(thread)).checkpoint, second)


def test_setup_is_idempotent(saver, backend):
    saver.setup()
    saver.setup()
    thread = backend.thread()
    Chain(saver, thread).put({"x": 1})
    saver.setup()
    with backend.open() as other:
        other.setup()
        if backend.persistent:
            assert other.get_tuple(cfg(thread)).checkpoint.values == {"x": 1}


def test_sqlite_in_memory_database():
    store_backends.require("sqlite")
    with open_store("sqlite", ":memory:") as store:
        app = chain_app(store)
        assert app.invoke({"log": []}, cfg("mem")) == {"log": ["a", "b", "c"]}
        assert len(list(app.get_state_history(cfg("mem")))) == 5


def test_put_writes_replace_and_need_the_checkpoint(saver, backend):
    thread = backend.thread()
    chain = Chain(saver, thread)
    first = chain.put({"n": 0}, source="input")
    second = chain.put({"n": 1})
    writes = [("task-1", "__result__", [["log", ["x"]], []]),
              ("task-2", "__interrupt__", {"question": ("why", 1), "when": dt.date(2024, 1, 2)}),
              ("task-2", "__error__", None)]
    saver.put_writes(cfg(thread, first.id), writes)
    assert saver.get_tuple(cfg(thread, first.id)).pending_writes == writes
    assert saver.get_tuple(cfg(thread)).pending_writes == []
    assert all(isinstance(w, tuple) for w in saver.get_tuple(cfg(thread, first.id)).pending_writes)

    saver.put_writes(cfg(thread, first.id), [("task-3", "__resume__", ["yes"])])
    assert saver.get_tuple(cfg(thread, first.id)).pending_writes == [
        ("task-3", "__resume__", ["yes"])]
    saver.put_writes(cfg(thread, first.id), [])
    assert saver.get_tuple(cfg(thread, first.id)).pending_writes == []

    saver.put_writes(cfg(thread, second.id), writes[:1])
    listed = {t.checkpoint.id: t.pending_writes for t in saver.list(cfg(thread))}
    assert listed == {second.id: writes[:1], first.id: []}

    with pytest.raises(KeyError):
        saver.put_writes(cfg(thread, new_checkpoint_id()), writes)
    with pytest.raises(KeyError):
        saver.put_writes(cfg(backend.thread("none"), first.id), writes)
    with pytest.raises(KeyError):
        saver.put_writes(cfg(thread, first.id, ns="elsewhere"), writes)


def test_list_newest_first_with_filter_before_limit(saver, backend):
    thread = backend.thread()
    chain = Chain(saver, thread)
    made = [chain.put({"n": 0}, source="input")]
    made += [chain.put({"n": i}, source="update" if i % 3 == 0 else "loop", kind=f"k{i % 2}")
             for i in range(1, 10)]
    newest_first = [c.id for c in reversed(made)]
    assert newest_first == sorted(newest_first, reverse=True)
    assert tuple_ids(saver.list(cfg(thread))) == newest_first

    assert tuple_ids(saver.list(cfg(thread), limit=3)) == newest_first[:3]
    assert tuple_ids(saver.list(cfg(thread), limit=1)) == newest_first[:1]
    assert tuple_ids(saver.list(cfg(thread), before=cfg(thread, made[5].id))) == [
        c.id for c in reversed(made[:5])]
    assert tuple_ids(saver.list(cfg(thread), before=cfg(thread, made[5].id), limit=2)) == [
        made[4].id, made[3].id]

    updates = [c.id for c in reversed(made) if chain.metadata[c.id]["source"] == "update"]
    assert tuple_ids(saver.list(cfg(thread), filter={"source": "update"})) == updates
    assert tuple_ids(saver.list(cfg(thread), filter={"source": "loop", "kind": "k1"})) == [
        c.id for c in reversed(made[1:]) if chain.metadata[c.id]["source"] == "loop"
        and chain.metadata[c.id]["kind"] == "k1"]
    assert tuple_ids(saver.list(cfg(thread), filter={"step": 4})) == [made[4].id]
    # filter values compare by equality, also nested ones (not by containment)
    assert tuple_ids(saver.list(cfg(thread), filter={"parents": {}})) == newest_first
    assert tuple_ids(saver.list(cfg(thread), filter={"source": "loop", "step": 4,
                                                     "kind": "k0", "parents": {}})) == [
        made[4].id]
    assert tuple_ids(saver.list(cfg(thread), filter={"source": "nope"})) == []
    assert tuple_ids(saver.list(cfg(thread), filter={"source": "update"}, limit=1)) == [
        updates[0]]
    assert tuple_ids(saver.list(cfg(thread), filter={"source": "update"},
                                before=cfg(thread, updates[0]))) == updates[1:]
    # a config naming a checkpoint lists just that one
    assert tuple_ids(saver.list(cfg(thread, made[2].id))) == [made[2].id]
    # each listed tuple reads back like get_tuple
    for item in saver.list(cfg(thread)):
        single = saver.get_tuple(item.config)
        assert_same_checkpoint(item.checkpoint, single.checkpoint)
        assert item.metadata == single.metadata == chain.metadata[item.checkpoint.id]
        assert cid(item.parent_config) == chain.parents[item.checkpoint.id]


def test_list_filter_compares_nested_values_by_equality(saver, backend):
    thread = backend.thread()
    chain = Chain(saver, thread)
    a = chain.put({"n": 0}, source="input", tags=["x", "y"], parents={"": "p1"})
    b = chain.put({"n": 1}, tags=["x"], parents={})
    c = chain.put({"n": 2}, tags=["x", "y"], parents={"": "p1", "sub": "p2"}, score=1.5)
    assert tuple_ids(saver.list(cfg(thread), filter={"tags": ["x"]})) == [b.id]
    assert tuple_ids(saver.list(cfg(thread), filter={"tags": ["x", "y"]})) == [c.id, a.id]
    assert tuple_ids(saver.list(cfg(thread), filter={"tags": ["y", "x"]})) == []
    assert tuple_ids(saver.list(cfg(thread), filter={"parents": {}})) == [b.id]
    assert tuple_ids(saver.list(cfg(thread), filter={"parents": {"": "p1"}})) == [a.id]
    assert tuple_ids(saver.list(cfg(thread), filter={"score": 1.5})) == [c.id]
    assert tuple_ids(saver.list(cfg(thread), filter={"score": 2})) == []


def test_list_filter_and_limit_find_matches_deep_in_a_long_history(saver, backend):
    thread = backend.thread()
    chain = Chain(saver, thread)
    made = [chain.put({"n": i}, source="input" if i == 0 else "loop",
                      mark=(i % 300 == 7) or i < 3) for i in range(1030)]
    marked = [c.id for c in reversed(made) if chain.metadata[c.id]["mark"]]
    assert len(marked) == 7  # 907, 607, 307, 7, 2, 1, 0
    assert tuple_ids(saver.list(cfg(thread), filter={"mark": True})) == marked
    assert tuple_ids(saver.list(cfg(thread), filter={"mark": True}, limit=4)) == marked[:4]
    assert tuple_ids(saver.list(cfg(thread), filter={"mark": True}, limit=6)) == marked[:6]
    assert tuple_ids(saver.list(cfg(thread), filter={"mark": True}, limit=99)) == marked
    assert tuple_ids(saver.list(cfg(thread), filter={"source": "input"}, limit=1)) == [
        made[0].id]
    assert tuple_ids(saver.list(cfg(thread), filter={"mark": True},
                                before=cfg(thread, made[600].id), limit=2)) == [
        made[307].id, made[7].id]
    assert len(list(saver.list(cfg(thread), limit=1000))) == 1000
    assert len(list(saver.list(cfg(thread)))) == 1030


def test_list_all_threads_with_config_none(backend):
    with isolated_store(backend) as store:
        threads = [backend.thread(f"all{i}") for i in range(3)]
        made = {t: [Chain(store, t).put({"i": i})] for i, t in enumerate(threads)}
        for t in threads[:2]:
            chain = Chain(store, t)
            chain.head = made[t][0].id
            chain.values = made[t][0].values
            made[t].append(chain.put({"j": 1}))
        listed = list(store.list(None))
        assert sorted(tuple_ids(listed)) == sorted(c.id for cs in made.values() for c in cs)
        by_thread: dict[str, list[str]] = {}
        for item in listed:
            by_thread.setdefault(item.config["configurable"]["thread_id"], []).append(
                item.checkpoint.id)
        for t in threads:  # newest first within each thread
            assert by_thread[t] == [c.id for c in reversed(made[t])]
        assert list(by_thread) == threads  # threads in the order they were created


def test_list_all_threads_honours_limit(backend):
    with isolated_store(backend) as store:
        for i in range(3):
            chain = Chain(store, backend.thread(f"lim{i}"))
            chain.put({"i": i})
            chain.put({"i": -i})
        assert len(list(store.list(None, limit=2))) == 2
        assert len(list(store.list(None, limit=5))) == 5
        assert len(list(store.list(None, filter={"source": "loop"}, limit=4))) == 4


def test_namespaces_have_their_own_heads_and_histories(saver, backend):
    thread = backend.thread()
    root = Chain(saver, thread)
    sub = Chain(saver, thread, ns="child:1")
    r1 = root.put({"n": 1}, source="input")
    s1 = sub.put({"m": 1}, source="input")
    r2 = root.put({"n": 2})
    s2 = sub.put({"m": 2})
    assert saver.head_id(thread) == r2.id
    assert saver.head_id(thread, "child:1") == s2.id
    assert tuple_ids(saver.list(cfg(thread))) == [r2.id, r1.id]
    assert tuple_ids(saver.list(cfg(thread, ns="child:1"))) == [s2.id, s1.id]
    got = saver.get_tuple(cfg(thread, ns="child:1"))
    assert got.checkpoint.values == {"m": 2}
    assert got.config["configurable"]["checkpoint_ns"] == "child:1"
    assert got.parent_config["configurable"]["checkpoint_ns"] == "child:1"
    saver.delete_thread(thread)
    assert saver.head_id(thread) is None
    assert saver.head_id(thread, "child:1") is None
    assert saver.get_tuple(cfg(thread, ns="child:1")) is None


@pytest.mark.parametrize("snapshot_every", [1, 4, None])
def test_delta_chain_reads_every_checkpoint_exactly(backend, snapshot_every):
    if snapshot_every is not None and not backend.takes("snapshot_every"):
        pytest.skip(f"{backend.kind} store does not take snapshot_every")
    options = {} if snapshot_every is None else {"snapshot_every": snapshot_every}
    with backend.open(**options) as store:
        thread = backend.thread()
        chain = Chain(store, thread)
        chain.put({"log": [], "window": [], "n": 0, "blob": b"\x00" * 10, "gone": 1},
                  source="input")
        for i in range(1, 71):
            updates: dict[str, Any] = {"log": [*chain.values["log"], i, str(i)], "n": i}
            if i % 3 == 0:
                updates["window"] = updates["log"][-3:]  # replaced, not grown
            if i % 7 == 0:
                updates["log"] = [i]  # shrinks: stored as a replacement
            if i % 11 == 0:
                updates["blob"] = bytes(range(i % 256)) * 3
            if i == 50:
                updates["tuple"] = (i, "x", None)
            chain.put(updates)
        for checkpoint in chain.made:
            got = store.get_tuple(cfg(thread, checkpoint.id))
            assert_same_checkpoint(got.checkpoint, checkpoint)
        with reader(backend, store) as other:
            for checkpoint in chain.made[::7] + chain.made[-1:]:
                assert_same_checkpoint(other.get_tuple(cfg(thread, checkpoint.id)).checkpoint,
                                       checkpoint)
            listed = list(other.list(cfg(thread)))
        assert len(listed) == len(chain.made)
        for item, checkpoint in zip(listed, reversed(chain.made), strict=True):
            assert_same_checkpoint(item.checkpoint, checkpoint)


@pytest.mark.parametrize("keep_last", [1, 3])
def test_prune_keeps_newest_checkpoints_readable(backend, keep_last):
    options = {"snapshot_every": 4} if backend.takes("snapshot_every") else {}
    with backend.open(**options) as store:
        thread = backend.thread()
        other_thread = backend.thread("other")
        chain = Chain(store, thread)
        sub = Chain(store, thread, ns="sub:1")
        chain.put({"log": [], "n": 0}, source="input")
        for i in range(1, 10):
            chain.put({"log": [*chain.values["log"], i], "n": i})
        for i in range(2):
            sub.put({"m": i})
        store.put_writes(cfg(thread, chain.head), [("t", "__interrupt__", "why?")])
        Chain(store, other_thread).put({"x": 1})
        before = {t.checkpoint.id: t for t in store.list(cfg(thread))}

        removed = store.prune(thread, keep_last=keep_last)
        assert removed == (10 - keep_last) + max(0, 2 - keep_last)
        kept = list(store.list(cfg(thread)))
        assert tuple_ids(kept) == [c.id for c in reversed(chain.made)][:keep_last]
        assert len(list(store.list(cfg(thread, ns="sub:1")))) == min(2, keep_last)
        for item in kept:
            old = before[item.checkpoint.id]
            assert_same_checkpoint(item.checkpoint, old.checkpoint)
            assert item.metadata == old.metadata
            assert item.pending_writes == old.pending_writes
            again = store.get_tuple(item.config)
            assert_same_checkpoint(again.checkpoint, old.checkpoint)
        oldest = kept[-1]
        assert oldest.parent_config is None
        for newer, older in itertools.pairwise(kept):
            assert cid(newer.parent_config) == older.checkpoint.id
        assert store.head_id(thread) == chain.head
        assert store.get_tuple(cfg(thread)).pending_writes == [("t", "__interrupt__", "why?")]
        assert store.prune(thread, keep_last=keep_last) == 0
        assert len(list(store.list(cfg(other_thread)))) == 1
        assert store.prune(backend.thread("missing"), keep_last=1) == 0
        with pytest.raises(ValueError):
            store.prune(thread, keep_last=0)

        # the pruned thread goes on: deltas on top of the re-based snapshot read back
        for i in range(10, 16):
            chain.put({"log": [*chain.values["log"], i], "n": i})
        for checkpoint in chain.made[-6:]:
            assert_same_checkpoint(store.get_tuple(cfg(thread, checkpoint.id)).checkpoint,
                                   checkpoint)
        with reader(backend, store) as other:
            assert_same_checkpoint(other.get_tuple(cfg(thread)).checkpoint, chain.made[-1])
            assert len(list(other.list(cfg(thread)))) == keep_last + 6


@pytest.mark.parametrize("keep_last", [1, 3])
def test_prune_a_graph_thread_then_run_on(saver, backend, keep_last):
    app = chain_app(saver, ("a", "b", "c", "d"))
    config = cfg(backend.thread())
    app.invoke({"log": []}, config)
    history = list(app.get_state_history(config))
    assert len(history) == 6
    removed = saver.prune(config["configurable"]["thread_id"], keep_last=keep_last)
    assert removed == 6 - keep_last
    kept = list(app.get_state_history(config))
    assert len(kept) == keep_last
    for snapshot, old in zip(kept, history, strict=False):
        assert snapshot.values == old.values
        assert snapshot.next == old.next
        assert snapshot.metadata == old.metadata
        assert cid(snapshot.config) == cid(old.config)
    assert app.invoke({"log": ["again"]}, config) == {
        "log": ["a", "b", "c", "d", "again", "a", "b", "c", "d"]}
    assert len(list(app.get_state_history(config))) == keep_last + 6


def test_copy_thread_then_run_the_copy_on(saver, backend):
    calls: dict = {}
    app = ask_graph(saver)
    source = cfg(backend.thread("src"))
    target = cfg(backend.thread("dst"))
    result = app.invoke({"log": []}, source)
    assert [i.value["question"] for i in result["__interrupt__"]] == ["approve?"]
    source_history = [(cid(s.config), s.values, s.next) for s in app.get_state_history(source)]

    saver.copy_thread(source["configurable"]["thread_id"], target["configurable"]["thread_id"])
    copied = app.get_state(target)
    original = app.get_state(source)
    assert copied.values == original.values
    assert copied.next == original.next == ("ask",)
    assert [i.value for i in copied.interrupts] == [i.value for i in original.interrupts]
    assert [(cid(s.config), s.values, s.next) for s in app.get_state_history(target)] == \
        source_history
    assert saver.head_id(target["configurable"]["thread_id"]) == cid(original.config)

    assert app.invoke(Command(resume="copy"), target)["log"] == ["pre", "answer:copy", "post"]
    assert app.get_state(target).next == ()
    # the original is untouched, and can go its own way
    assert [(cid(s.config), s.values, s.next) for s in app.get_state_history(source)] == \
        source_history
    assert app.get_state(source).next == ("ask",)
    assert app.invoke(Command(resume="orig"), source)["log"] == ["pre", "answer:orig", "post"]
    assert app.get_state(target).values["log"] == ["pre", "answer:copy", "post"]
    assert not calls


def test_copy_thread_errors(saver, backend):
    a, b = backend.thread("a"), backend.thread("b")
    Chain(saver, a).put({"x": 1})
    Chain(saver, b).put({"y": 1})
    with pytest.raises(ValueError):
        saver.copy_thread(a, b)
    assert saver.get_tuple(cfg(b)).checkpoint.values == {"y": 1}
    with pytest.raises(KeyError):
        saver.copy_thread(backend.thread("missing"), backend.thread("c"))


def test_copy_thread_keeps_namespaces_and_pending_writes(saver, backend):
    src, dst = backend.thread("src"), backend.thread("dst")
    root = Chain(saver, src)
    sub = Chain(saver, src, ns="sub:2")
    root.put({"n": 0}, source="input")
    for i in range(1, 6):
        root.put({"n": i, "log": list(range(i))})
    sub.put({"m": 1})
    saver.put_writes(cfg(src, root.head), [("task", "__resume__", "ok")])
    saver.copy_thread(src, dst)
    assert tuple_ids(saver.list(cfg(dst))) == tuple_ids(saver.list(cfg(src)))
    assert saver.head_id(dst) == root.head
    assert saver.head_id(dst, "sub:2") == sub.head
    assert saver.get_tuple(cfg(dst)).pending_writes == [("task", "__resume__", "ok")]
    for checkpoint in root.made:
        assert_same_checkpoint(saver.get_tuple(cfg(dst, checkpoint.id)).checkpoint, checkpoint)
    # writing to the copy leaves the source alone
    copy = Chain(saver, dst)
    copy.head, copy.values = root.head, root.values
    copy.put({"n": 99})
    assert saver.head_id(src) == root.head
    assert len(list(saver.list(cfg(src)))) == 6
    saver.delete_thread(src)
    assert saver.get_tuple(cfg(dst)).checkpoint.values["n"] == 99
    assert_same_checkpoint(saver.get_tuple(cfg(dst, root.made[2].id)).checkpoint, root.made[2])


def test_prune_a_copied_thread_keeps_the_copy_newest(saver, backend):
    src, dst = backend.thread("src"), backend.thread("dst")
    chain = Chain(saver, src)
    for i in range(8):
        chain.put({"n": i, "log": list(range(i))})
    saver.copy_thread(src, dst)
    assert saver.prune(dst, keep_last=2) == 6
    assert tuple_ids(saver.list(cfg(dst))) == [chain.made[-1].id, chain.made[-2].id]
    assert_same_checkpoint(saver.get_tuple(cfg(dst, chain.made[-2].id)).checkpoint,
                           chain.made[-2])
    assert len(list(saver.list(cfg(src)))) == 8


def test_delete_thread(saver, backend):
    doomed, kept = backend.thread("doomed"), backend.thread("kept")
    app = ask_graph(saver)
    app.invoke({"log": []}, cfg(doomed))
    app.invoke({"log": []}, cfg(kept))
    saver.delete_thread(doomed)
    assert saver.get_tuple(cfg(doomed)) is None
    assert saver.head_id(doomed) is None
    assert list(saver.list(cfg(doomed))) == []
    assert app.get_state(cfg(doomed)).values == {}
    assert app.get_state(cfg(kept)).next == ("ask",)
    saver.delete_thread(doomed)  # again: no error
    saver.delete_thread(backend.thread("never"))
    # the thread id can be used again from scratch
    result = app.invoke({"log": ["new"]}, cfg(doomed))
    assert result["log"] == ["new", "pre"]
    assert len(list(saver.list(cfg(doomed)))) == 3


def test_sweep_deletes_threads_idle_longer_than_ttl(backend):
    with isolated_store(backend) as store:
        first, second = backend.thread("first"), backend.thread("second")
        start = time.time()
        # finished heads (no next tasks): a head with next tasks waits, and is never swept
        a = Chain(store, first).put({"x": 1}, source="input", next_tasks=[])
        b = Chain(store, second).put({"y": 1}, source="input", next_tasks=[])
        assert store.sweep(3600, now=start - 10) == []
        assert store.sweep(0, now=start - 1) == []
        assert store.sweep(3600) == []
        assert store.get_tuple(cfg(first)) is not None

        time.sleep(0.3)
        middle = time.time()
        time.sleep(0.3)
        store.put_writes(cfg(second, b.id), [("t", "__resume__", 1)])  # put_writes touches
        assert store.sweep(0, now=middle) == [first]
        assert store.get_tuple(cfg(first)) is None
        assert store.get_tuple(cfg(second)).checkpoint.id == b.id
        assert store.head_id(first) is None
        assert a.id not in tuple_ids(store.list(None))

        assert store.sweep(60, now=time.time() + 3600) == [second]
        assert store.get_tuple(cfg(second)) is None
        assert list(store.list(None)) == []
        assert store.sweep(0, now=time.time() + 3600) == []


# ---------------------------------------------------------------- sweep keeps waiting threads

LATER = 3600.0  # sweeps below run this far in the future (now=), with a TTL of a minute


def test_sweep_reads_the_root_head_and_its_pending_writes(backend):
    """Direct store calls: a head with next tasks waits (a crash mid-step too) unless its
    pending writes hold an error and no interrupt; put_writes on an older checkpoint does not
    count; only the root namespace decides; copy_thread copies what the head means."""
    with isolated_store(backend) as store:
        ask = [("ask-task", INTERRUPT, {"question": "ok?"})]
        boom = [("done-task", RESULT, [[["log", ["x"]]], []]),
                ("bad-task", ERROR, {"type": "ValueError", "message": "boom"})]
        made: dict[str, Chain] = {}

        def thread(label: str, next_tasks: list | None = None, writes: list | None = None,
                   ns: str = "") -> Chain:
            chain = made.get(label) or Chain(store, backend.thread(label), ns)
            made.setdefault(label, chain)
            head = chain.put({"n": len(chain.made)}, next_tasks=next_tasks)
            if writes is not None:
                store.put_writes(cfg(chain.thread_id, head.id, ns), writes)
            return chain

        crashed = thread("crashed")  # next tasks, no writes: resumable
        asked = thread("asked", writes=ask)
        asked_and_failed = thread("asked-and-failed", writes=boom + ask)
        failed = thread("failed", writes=boom)
        finished = thread("finished", next_tasks=[], writes=[("t", RESUME, ["late"])])
        answered = thread("answered", writes=boom)  # failed, then a resume asked again
        store.put_writes(cfg(answered.thread_id, answered.head), ask)
        old_error = thread("old-error")  # an error recorded on an older checkpoint
        older = old_error.head
        thread("old-error")
        store.put_writes(cfg(old_error.thread_id, older), boom)
        sub_waits = thread("sub-waits", next_tasks=[])  # root finished, a subgraph waits
        Chain(store, sub_waits.thread_id, "child:1").put({"s": 1})
        root_waits = thread("root-waits")  # root waits, its subgraph finished
        Chain(store, root_waits.thread_id, "child:1").put({"s": 1}, next_tasks=[])
        crashed_copy, failed_copy = backend.thread("crashed-copy"), backend.thread("failed-copy")
        store.copy_thread(crashed.thread_id, crashed_copy)
        store.copy_thread(failed.thread_id, failed_copy)

        later = time.time() + LATER
        swept = store.sweep(60, now=later)
        assert sorted(swept) == sorted([failed.thread_id, finished.thread_id,
                                        sub_waits.thread_id, failed_copy])
        for kept in (crashed, asked, asked_and_failed, answered, old_error, root_waits):
            assert store.get_tuple(cfg(kept.thread_id)).checkpoint.id == kept.head
        assert store.head_id(crashed_copy) == crashed.head
        assert store.sweep(60, now=later) == []

        # The state follows the head: a finished head is idle, a new step waits again.
        thread("asked", next_tasks=[])
        thread("crashed", next_tasks=[])
        thread("crashed")
        assert store.sweep(60, now=later) == [asked.thread_id]


def paused_and_ended_threads(store: Any, backend: Backend) -> dict[str, str]:
    """Graph runs leaving a thread in each state that matters to sweep: label -> thread id.
    Waiting: at interrupt() (in the graph and in a subgraph), at interrupt_before and
    interrupt_after breakpoints (compiled in, or passed to invoke). Ended: finished, failed,
    and interrupted then resumed to the end."""
    made = {label: backend.thread(label) for label in (*WAITING_LABELS, *ENDED_LABELS)}
    assert "__interrupt__" in ask_graph(store).invoke({"log": []}, cfg(made["interrupt"]))
    parent_with_interrupting_child(store).invoke({"log": []}, cfg(made["subgraph"]))
    chain_app(store, interrupt_before=["b"]).invoke({"log": []}, cfg(made["before"]))
    chain_app(store, interrupt_after=["a"]).invoke({"log": []}, cfg(made["after"]))
    chain_app(store).invoke({"log": []}, cfg(made["before-invoke"]), interrupt_before=["c"])
    chain_app(store).invoke({"log": []}, cfg(made["after-invoke"]), interrupt_after=["b"])
    chain_app(store).invoke({"log": []}, cfg(made["done"]))
    with pytest.raises(ValueError, match="boom in bad"):
        failing_sibling_app(store, {}, {"on": True}).invoke({"log": []}, cfg(made["failed"]))
    ask_graph(store).invoke({"log": []}, cfg(made["resumed"]))
    ask_graph(store).invoke(Command(resume="yes"), cfg(made["resumed"]))
    return made


WAITING_LABELS = ("interrupt", "subgraph", "before", "after", "before-invoke", "after-invoke")
ENDED_LABELS = ("done", "failed", "resumed")
WAITING_NEXT = {"interrupt": ("ask",), "subgraph": ("child",), "before": ("b",),
                "after": ("b",), "before-invoke": ("c",), "after-invoke": ("c",)}


def resume_to_the_end(store: Any, made: dict[str, str]) -> None:
    """Answer or continue every waiting thread of paused_and_ended_threads until it ends."""
    ask_graph(store).invoke(Command(resume="yes"), cfg(made["interrupt"]))
    parent_with_interrupting_child(store).invoke(Command(resume="ok"), cfg(made["subgraph"]))
    chain_app(store, interrupt_before=["b"]).invoke(None, cfg(made["before"]))
    chain_app(store, interrupt_after=["a"]).invoke(None, cfg(made["after"]))
    chain_app(store).invoke(None, cfg(made["before-invoke"]))
    chain_app(store).invoke(None, cfg(made["after-invoke"]))
    for label in WAITING_LABELS:
        assert store.get_tuple(cfg(made[label])).checkpoint.next_tasks == [], label


def check_sweeps(store: Any, made: dict[str, str]) -> None:
    """Past the TTL, sweep takes the ended threads and keeps the waiting ones; once those
    are resumed to the end, it takes them too."""
    later = time.time() + LATER
    ended = [made[label] for label in ENDED_LABELS]
    assert sorted(store.sweep(60, now=later)) == sorted(ended)
    for label in WAITING_LABELS:
        assert store.get_tuple(cfg(made[label])) is not None, label
    apps = {"interrupt": ask_graph(store), "subgraph": parent_with_interrupting_child(store)}
    for label, next_nodes in WAITING_NEXT.items():
        assert apps.get(label, chain_app(store)).get_state(cfg(made[label])).next == next_nodes
    assert store.sweep(60, now=later) == []

    resume_to_the_end(store, made)
    waiting = [made[label] for label in WAITING_LABELS]
    assert sorted(store.sweep(60, now=later)) == sorted(waiting)
    assert all(store.head_id(thread_id) is None for thread_id in made.values())


def test_sweep_keeps_threads_paused_for_a_person(backend):
    with isolated_store(backend) as store:
        check_sweeps(store, paused_and_ended_threads(store, backend))


def old_schema_copy(backend: Backend, source: str, monkeypatch: Any, tmp_path: Path
                    ) -> contextlib.AbstractContextManager[Any]:
    """A store of the schema version before the thread state (SQLite 3, PostgreSQL 2), made
    by applying only the earlier migrations, holding a copy of `source`'s checkpoints; opened
    with the current code, it migrates."""
    if backend.kind == "sqlite":
        from waypoint.checkpoint import sqlite as module

        old, options = str(tmp_path / "old.db"), {}
    else:
        from waypoint.checkpoint import postgres as module
        from waypoint.checkpoint import postgres_records

        monkeypatch.setattr(postgres_records, "_STATE_PAGE", 2)  # several pages to fill
        old, options = source, {"schema": f"old_{uuid.uuid4().hex[:8]}"}
    state_version = 4 if backend.kind == "sqlite" else 3  # the migration adding thread state
    before = tuple(m for m in module._MIGRATIONS if m[0] < state_version)
    assert [v for v, _ in before] == list(range(1, state_version))
    with monkeypatch.context() as patch:
        patch.setattr(module, "_MIGRATIONS", before)
        with open_store(backend.kind, old, **options):
            pass
    threads = "thread_id, ns, head, touched_at, seq"
    if backend.kind == "sqlite":
        conn = sqlite3.connect(old, isolation_level=None)
        conn.execute("ATTACH DATABASE ? AS src", (source,))
        conn.execute(f"INSERT INTO waypoint_threads ({threads}) SELECT {threads} "
                     "FROM src.waypoint_threads")
        conn.execute("INSERT INTO waypoint_checkpoints SELECT * FROM src.waypoint_checkpoints")
        columns = [r[1] for r in conn.execute("PRAGMA table_info(waypoint_threads)")]
        versions = [r[0] for r in conn.execute("SELECT version FROM waypoint_migrations")]
        conn.close()
    else:
        import psycopg

        schema = options["schema"]
        with psycopg.connect(source, autocommit=True) as conn:
            conn.execute(f'INSERT INTO "{schema}".waypoint_threads ({threads}) SELECT {threads} '
                         "FROM public.waypoint_threads")
            conn.execute(f'INSERT INTO "{schema}".waypoint_checkpoints SELECT * '
                         "FROM public.waypoint_checkpoints")
            columns = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = 'waypoint_threads'", (schema,))]
            versions = [r[0] for r in conn.execute(
                f'SELECT version FROM "{schema}".waypoint_migrations')]
    assert "state" not in columns
    assert sorted(versions) == [v for v, _ in before]
    return open_store(backend.kind, old, **options)


def test_an_older_schema_migrates_with_each_thread_state(backend, monkeypatch, tmp_path):
    """A store made by the schema before the thread state (its threads written by graph
    runs) migrates: waiting threads are kept, ended ones swept, and the state is kept up to
    date afterwards. A head this process cannot read (encrypted, no key) counts as waiting."""
    if not backend.persistent:
        pytest.skip("the memory store has no schema to migrate")
    pytest.importorskip("cryptography")
    from waypoint.checkpoint.crypto import Cipher

    with contextlib.ExitStack() as stack:
        if backend.kind == "postgres":
            source = stack.enter_context(private_postgres_database())
        else:
            source = str(tmp_path / "source.db")
        with open_store(backend.kind, source) as store:
            made = paused_and_ended_threads(store, backend)
        sealed = backend.thread("sealed")  # finished, but nobody here can read it
        with open_store(backend.kind, source, cipher=Cipher(bytes(range(32)))) as store:
            Chain(store, sealed).put({"secret": 1}, next_tasks=[])
        with old_schema_copy(backend, source, monkeypatch, tmp_path) as store:
            check_sweeps(store, made)
            assert store.head_id(sealed) is not None
            assert store.sweep(60, now=time.time() + LATER) == []


async def test_async_methods(backend):
    async with backend.aopen() as store:
        thread = backend.thread()
        chain = Chain(store, thread)
        first = chain.make({"n": 0, "log": []})
        config = await store.aput(cfg(thread), first, {"source": "input", "step": 0},
                                  parent_id=None, expected_head=None)
        assert cid(config) == first.id
        assert await store.ahead_id(thread) == first.id
        second = chain.make({"n": 1, "log": ["a"]}, parent=first)
        await store.aput(cfg(thread), second, {"source": "loop", "step": 1}, parent_id=first.id,
                         expected_head=first.id)
        with pytest.raises(CheckpointConflict) as caught:
            await store.aput(cfg(thread), chain.make({"n": 5}, parent=first), {},
                             parent_id=first.id, expected_head=first.id)
        assert caught.value.actual == second.id
        got = await store.aget_tuple(cfg(thread))
        assert_same_checkpoint(got.checkpoint, second)
        assert cid(got.parent_config) == first.id
        await store.aput_writes(cfg(thread, second.id), [("t", "__resume__", "yes")])
        assert (await store.aget_tuple(cfg(thread))).pending_writes == [("t", "__resume__", "yes")]
        with pytest.raises(KeyError):
            await store.aput_writes(cfg(thread, new_checkpoint_id()), [])
        assert [t.checkpoint.id async for t in store.alist(cfg(thread))] == [second.id, first.id]
        assert [t.checkpoint.id async for t in store.alist(cfg(thread), limit=1)] == [second.id]
        assert [t.checkpoint.id async for t in store.alist(
            cfg(thread), filter={"source": "input"})] == [first.id]
        assert [t.checkpoint.id async for t in store.alist(
            cfg(thread), before=cfg(thread, second.id))] == [first.id]
        await store.adelete_thread(thread)
        assert await store.aget_tuple(cfg(thread)) is None
        assert await store.ahead_id(thread) is None


# ================================================================ graph runs


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass
class Point:
    x: int
    y: float
    tags: list


class Profile(pydantic.BaseModel):
    name: str
    when: dt.datetime
    scores: list[int]
    extra: dict[str, Any]


class TypesState(TypedDict, total=False):
    s: str
    i: int
    f: float
    none: Any
    b: bytes
    nested: dict
    tup: tuple
    st: set
    fs: frozenset
    when: dt.datetime
    naive: dt.datetime
    day: dt.date
    span: dt.timedelta
    ident: uuid.UUID
    dec: decimal.Decimal
    color: Color
    point: Point
    profile: Profile
    big: int
    messages: Annotated[list, add_messages]
    items: Annotated[list, operator.add]


WHEN = dt.datetime(2024, 2, 29, 23, 59, 58, 999999, tzinfo=dt.timezone(dt.timedelta(hours=5,
                                                                                      minutes=30)))
VALUES: dict[str, Any] = {
    "s": "héllo \U0001f600 nul\x00byte",
    "i": -(2**63),
    "f": 0.1 + 0.2,
    "none": None,
    "b": bytes(range(256)),
    "nested": {"a": [1, {"b": (2, 3)}, [None, True, False]], 7: "int key", "e": {}, "l": []},
    "tup": (1, "two", (3.0, None)),
    "st": {3, 1, 2},
    "fs": frozenset({"x", "y"}),
    "when": WHEN,
    "naive": dt.datetime(1999, 12, 31, 23, 59, 59),
    "day": dt.date(2000, 1, 1),
    "span": dt.timedelta(days=-1, seconds=5, microseconds=7),
    "ident": uuid.UUID("a8098c1a-f86e-11da-bd1a-00112444be1e"),
    "dec": decimal.Decimal("3.14159265358979323846264338327950288"),
    "color": Color.BLUE,
    "point": Point(1, 2.5, ["t", (1, 2)]),
    "profile": Profile(name="ann", when=WHEN, scores=[1, 2], extra={"k": Color.RED}),
    "big": 2**100,
}


def types_app(store: Any) -> Any:
    def produce(state: TypesState) -> dict[str, Any]:
        return dict(VALUES)

    def extend(state: TypesState) -> dict[str, Any]:
        return {
            "messages": [AIMessage("answer", id="ai-1",
                                   tool_calls=[{"name": "f", "args": {"x": 1}, "id": "c1"}],
                                   additional_kwargs={"k": [1, 2]})],
            "items": [Color.RED, Point(0, 0.0, []), {"nested": (1,)}],
        }

    graph = StateGraph(TypesState)
    graph.add_node("produce", produce)
    graph.add_node("extend", extend)
    graph.add_edge(START, "produce")
    graph.add_edge("produce", "extend")
    graph.add_edge("extend", END)
    return graph.compile(checkpointer=store)


def check_types(values: dict[str, Any]) -> None:
    for key, want in VALUES.items():
        assert values[key] == want, key
        assert type(values[key]) is type(want), key
    assert values["when"].utcoffset() == WHEN.utcoffset()
    assert values["naive"].tzinfo is None
    assert str(values["dec"]) == str(VALUES["dec"])
    assert type(values["nested"]["a"][1]["b"]) is tuple
    assert 7 in values["nested"]
    assert type(values["point"].tags[1]) is tuple
    assert values["profile"].extra["k"] is Color.RED
    assert values["messages"] == [
        HumanMessage("hi", id="h-1", name="ann"),
        AIMessage("answer", id="ai-1", tool_calls=[{"name": "f", "args": {"x": 1}, "id": "c1"}],
                  additional_kwargs={"k": [1, 2]}),
    ]
    assert [type(m) for m in values["messages"]] == [HumanMessage, AIMessage]
    assert values["items"] == [1, Color.RED, Point(0, 0.0, []), {"nested": (1,)}]


async def test_values_of_many_types_round_trip(saver, backend, run):
    app = types_app(saver)
    config = cfg(backend.thread())
    result = await run(app, {"messages": [HumanMessage("hi", id="h-1", name="ann")],
                             "items": [1]}, config)
    check_types(result)
    state = app.get_state(config)
    check_types(state.values)
    assert state.values == result
    history = list(app.get_state_history(config))
    assert history[1].values["s"] == VALUES["s"]
    assert "items" not in history[1].values or history[1].values["items"] == [1]
    with reader(backend, saver) as other:
        check_types(types_app(other).get_state(config).values)


@pytest.mark.parametrize("snapshot_every", [4, None])
def test_hundred_step_loop_reads_back_at_head_and_in_history(backend, snapshot_every):
    if snapshot_every is not None and not backend.takes("snapshot_every"):
        pytest.skip(f"{backend.kind} store does not take snapshot_every")

    class LoopState(TypedDict):
        log: Annotated[list, operator.add]
        n: int
        window: list

    def step(state: LoopState) -> dict[str, Any]:
        n = state["n"] + 1
        return {"log": [n], "n": n, "window": [*state["log"][-2:], n]}

    graph = StateGraph(LoopState)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", lambda s: "step" if s["n"] < 100 else END)

    def expect(n: int) -> dict[str, Any]:
        log = list(range(1, n + 1))
        return {"log": log, "n": n, "window": log[-3:]}

    options = {} if snapshot_every is None else {"snapshot_every": snapshot_every}
    with backend.open(**options) as store:
        app = graph.compile(checkpointer=store)
        config = {**cfg(backend.thread()), "recursion_limit": 500}
        assert app.invoke({"log": [], "n": 0, "window": []}, config) == expect(100)
        assert app.get_state(config).values == expect(100)
        history = list(app.get_state_history(config))
        assert len(history) == 102  # input, __start__, 100 x step
        for snapshot in history[:-1]:
            assert snapshot.values == expect(snapshot.values["n"])
        assert [s.values["n"] for s in history[:-2]] == list(range(100, 0, -1))
        by_n = {s.values["n"]: s for s in history[:-2]}
        for n in (1, 2, 3, 4, 5, 31, 32, 33, 34, 63, 64, 65, 97, 99, 100):
            assert app.get_state(by_n[n].config).values == expect(n)
            assert app.get_state(by_n[n].config).next == ((("step",)) if n < 100 else ())

        # replay from a historical checkpoint runs the remaining steps again
        assert app.invoke(None, {**by_n[37].config, "recursion_limit": 500}) == expect(100)
        replayed = list(app.get_state_history(config))
        assert len(replayed) == 102 + 1 + 63  # the fork, then steps 38..100
        assert replayed[0].values == expect(100)
        assert app.get_state(by_n[64].config).values == expect(64)
        with reader(backend, store) as other:
            reopened = graph.compile(checkpointer=other)
            assert reopened.get_state(config).values == expect(100)
            assert reopened.get_state(by_n[50].config).values == expect(50)


async def test_history_order_filter_before_limit(saver, backend, run):
    app = chain_app(saver, ("a", "b", "c"))
    config = cfg(backend.thread())
    await run(app, {"log": ["x"]}, config)
    await run(app, {"log": ["y"]}, config)
    history = list(app.get_state_history(config))
    ids = [cid(s.config) for s in history]
    assert ids == sorted(ids, reverse=True)
    assert [s.metadata["step"] for s in history] == [8, 7, 6, 5, 4, 3, 2, 1, 0, -1]
    assert [s.metadata["source"] for s in history] == (["loop"] * 4 + ["input"]) * 2
    for newer, older in itertools.pairwise(history):
        assert cid(newer.parent_config) == cid(older.config)
    assert history[0].values == {"log": ["x", "a", "b", "c", "y", "a", "b", "c"]}
    assert history[0].next == ()
    assert [s.next for s in history[:5]] == [(), ("c",), ("b",), ("a",), ("__start__",)]

    assert history_ids(app, config, limit=4) == ids[:4]
    assert history_ids(app, config, before=history[3].config) == ids[4:]
    assert history_ids(app, config, before=history[3].config, limit=2) == ids[4:6]
    assert [s.metadata["step"] for s in app.get_state_history(
        config, filter={"source": "input"})] == [4, -1]
    assert history_ids(app, config, filter={"source": "loop"}) == [
        cid(s.config) for s in history if s.metadata["source"] == "loop"]
    assert history_ids(app, config, filter={"source": "loop"}, limit=2) == ids[:2]
    assert history_ids(app, config, filter={"source": "input"}, before=history[0].config,
                       limit=1) == [ids[4]]
    assert history_ids(app, config, filter={"step": 3}) == [ids[5]]
    assert history_ids(app, config, filter={"source": "update"}) == []
    async_ids = [cid(s.config) async for s in app.aget_state_history(config, limit=3)]
    assert async_ids == ids[:3]
    with reader(backend, saver) as other:
        assert history_ids(chain_app(other), config) == ids


async def test_failed_step_keeps_finished_sibling_write(saver, backend, run):
    calls: dict = {}
    broken = {"on": True}
    app = failing_sibling_app(saver, calls, broken)
    config = cfg(backend.thread())
    with pytest.raises(ValueError, match="boom in bad"):
        await run(app, {"log": []}, config)
    assert calls == {"good": 1, "bad": 1}
    stored = saver.get_tuple(config)
    assert stored.pending_writes  # the finished sibling's write and the error
    snapshot = app.get_state(config)
    assert snapshot.next == ("bad",)
    assert snapshot.values == {"log": ["good"]}
    by_name = {t.name: t for t in snapshot.tasks}
    assert "boom in bad" in str(by_name["bad"].error)
    assert by_name["good"].error is None

    broken["on"] = False
    with reader(backend, saver) as other:  # resume from what was stored
        resumed = failing_sibling_app(other, calls, broken)
        result = await run(resumed, None, config)
    assert sorted(result["log"][:2]) == ["bad", "good"]
    assert result["log"][2:] == ["join"]
    assert calls == {"good": 1, "bad": 2, "join": 1}
    assert app.get_state(config).next == ()


async def test_interrupt_then_resume(saver, backend, run):
    app = ask_graph(saver)
    config = cfg(backend.thread())
    result = await run(app, {"log": []}, config)
    (pending,) = result["__interrupt__"]
    assert pending.value == {"question": "approve?", "seen": ["pre"]}
    assert saver.get_tuple(config).pending_writes
    with reader(backend, saver) as other:
        reopened = ask_graph(other)
        snapshot = reopened.get_state(config)
        assert snapshot.next == ("ask",)
        assert [i.id for i in snapshot.interrupts] == [pending.id]
        assert snapshot.values["stamp"] == ASK_STAMP
        final = await run(reopened, Command(resume="yes"), config)
    assert final == {"log": ["pre", "answer:yes", "post"], "stamp": ASK_STAMP}
    assert app.get_state(config).next == ()
    paused = [s for s in app.get_state_history(config) if s.next == ("ask",)]
    assert len(paused) == 1
    assert [i.value for i in paused[0].interrupts] == [pending.value]


def test_send_fan_out_and_command_goto(saver, backend):
    class FanState(TypedDict):
        log: Annotated[list, operator.add]

    def plan(state: FanState) -> Command:
        return Command(update={"log": ["plan"]},
                       goto=[Send("work", {"item": i}) for i in range(5)])

    def work(arg: dict) -> dict[str, Any]:
        return {"log": [("work", arg["item"])]}

    graph = StateGraph(FanState)
    graph.add_node("plan", plan)
    graph.add_node("work", work)
    graph.add_edge(START, "plan")
    graph.add_edge("work", END)
    app = graph.compile(checkpointer=saver)
    config = cfg(backend.thread())
    result = app.invoke({"log": []}, config)
    assert result == {"log": ["plan", *[("work", i) for i in range(5)]]}
    with reader(backend, saver) as other:
        history = list(graph.compile(checkpointer=other).get_state_history(config))
    fan = next(s for s in history if s.next and s.next[0] == "work")
    assert fan.next == ("work",) * 5
    assert [t.path for t in fan.tasks] == [("__pregel_push", i) for i in range(5)]
    assert history[0].values == result


def _paused_run(saver, backend, disturb):
    """Run a -> b on a fresh thread, call `disturb(app, config)` while b is running, then
    let b finish; returns (app, config, the run's outcome, what disturb returned)."""
    entered, release = threading.Event(), threading.Event()

    def a(state: LogState) -> dict[str, Any]:
        return {"log": ["a"]}

    def b(state: LogState) -> dict[str, Any]:
        entered.set()
        release.wait(timeout=30)
        return {"log": ["b"]}

    graph = StateGraph(LogState)
    graph.add_node("a", a)
    graph.add_node("b", b)
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", END)
    app = graph.compile(checkpointer=saver)
    config = cfg(backend.thread())
    outcome: dict[str, Any] = {}

    def run_it() -> None:
        try:
            outcome["result"] = app.invoke({"log": []}, config)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run_it)
    worker.start()
    assert entered.wait(timeout=30)
    try:
        disturbed = disturb(app, config)
    finally:
        release.set()
        worker.join(timeout=30)
    return app, config, outcome, disturbed


def test_stale_run_gets_conflict_and_loses(saver, backend):
    """A run whose thread moved on under it (update_state while a node ran) fails its
    commit with CheckpointConflict; nothing of it is stored."""
    app, config, outcome, moved = _paused_run(
        saver, backend, lambda app, config: app.update_state(config, {"log": ["manual"]})
    )
    error = outcome.get("error")
    assert isinstance(error, CheckpointConflict), outcome
    assert error.actual == cid(moved)
    assert error.thread_id == config["configurable"]["thread_id"]
    head = app.get_state(config)
    assert cid(head.config) == cid(moved)
    assert head.values == {"log": ["a", "manual"]}
    assert all("b" not in s.values.get("log", []) for s in app.get_state_history(config))


def test_thread_deleted_under_a_running_graph(saver, backend):
    """delete_thread while a run is in a node: the run's next commit is refused with
    CheckpointConflict (actual None) instead of writing a thread without its history."""

    def delete(app, config):
        with reader(backend, saver) as other:
            other.delete_thread(config["configurable"]["thread_id"])

    _, config, outcome, _ = _paused_run(saver, backend, delete)
    error = outcome.get("error")
    assert isinstance(error, CheckpointConflict), outcome
    assert error.actual is None
    assert saver.get_tuple(config) is None
    assert list(saver.list(config)) == []


def parent_with_interrupting_child(store: Any) -> Any:
    def sub_pre(state: LogState) -> dict[str, Any]:
        return {"log": ["sub_pre"]}

    def sub_ask(state: LogState) -> dict[str, Any]:
        return {"log": [f"sub:{interrupt('sub-question')}"]}

    child = StateGraph(LogState)
    child.add_node("sub_pre", sub_pre)
    child.add_node("sub_ask", sub_ask)
    child.add_edge(START, "sub_pre")
    child.add_edge("sub_pre", "sub_ask")
    child.add_edge("sub_ask", END)

    def first(state: LogState) -> dict[str, Any]:
        return {"log": ["first"]}

    def last(state: LogState) -> dict[str, Any]:
        return {"log": ["last"]}

    parent = StateGraph(LogState)
    parent.add_node("first", first)
    parent.add_node("child", child.compile())
    parent.add_node("last", last)
    parent.add_edge(START, "first")
    parent.add_edge("first", "child")
    parent.add_edge("child", "last")
    parent.add_edge("last", END)
    return parent.compile(checkpointer=store)


async def test_interrupt_inside_a_subgraph_resumes_from_the_store(saver, backend, run):
    app = parent_with_interrupting_child(saver)
    thread = backend.thread("sub ünï'\"; --")
    config = cfg(thread)
    (pending,) = (await run(app, {"log": []}, config))["__interrupt__"]
    assert pending.value == "sub-question"
    with reader(backend, saver) as other:
        reopened = parent_with_interrupting_child(other)
        snapshot = reopened.get_state(config, subgraphs=True)
        assert snapshot.next == ("child",)
        (task,) = snapshot.tasks
        assert [i.id for i in task.interrupts] == [pending.id]
        assert task.state.values == {"log": ["first", "sub_pre"]}
        assert task.state.next == ("sub_ask",)
        child_ns = task.state.config["configurable"]["checkpoint_ns"]
        assert child_ns.startswith("child:")
        assert other.head_id(thread, child_ns) == cid(task.state.config)
        result = await run(reopened, Command(resume="ok"), config)
    assert result == {"log": ["first", "first", "sub_pre", "sub:ok", "last"]}
    assert app.get_state(config).next == ()
    saver.delete_thread(thread)
    assert saver.head_id(thread, child_ns) is None


def test_thread_ids_are_data_not_sql(saver, backend):
    app = chain_app(saver, ("a",))
    odd = [backend.thread("quote'\"; DROP TABLE waypoint_threads; --"),
           backend.thread("ünïcødé ☃ \\ % _ *"), backend.thread("x" * 300)]
    for thread in odd:
        assert app.invoke({"log": [thread]}, cfg(thread)) == {"log": [thread, "a"]}
    for thread in odd:
        assert app.get_state(cfg(thread)).values == {"log": [thread, "a"]}
        assert len(list(saver.list(cfg(thread)))) == 3
    # "%" and "_" are not patterns: the thread "ünïcødé ☃ \ % _ *" is not its prefix
    assert saver.get_tuple(cfg(odd[1][:-3])) is None
    saver.delete_thread(odd[0])
    assert app.get_state(cfg(odd[1])).values["log"][-1] == "a"


def test_an_int_thread_id_is_its_string(saver, backend):
    app = chain_app(saver, ("a",))
    number = int(uuid.uuid4().int % 10**12)
    backend.threads.append(str(number))
    assert app.invoke({"log": []}, {"configurable": {"thread_id": number}}) == {"log": ["a"]}
    assert app.get_state(cfg(str(number))).values == {"log": ["a"]}
    assert saver.head_id(str(number)) is not None


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_reopen_after_the_process_ends(backend, mode):
    backend.require_reopen()
    thread = backend.thread("reopen")
    child = subprocess.run(
        [sys.executable, CHILD, "interrupt", backend.kind, backend.url, thread, mode],
        capture_output=True, text=True, timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout.strip().splitlines()[-1]) == [
        {"question": "approve?", "seen": ["pre"]}]
    config = cfg(thread)
    with backend.open() as store:
        app = ask_graph(store)
        snapshot = app.get_state(config)
        assert snapshot.next == ("ask",)
        assert snapshot.values == {"log": ["pre"], "stamp": ASK_STAMP}
        assert [i.value for i in snapshot.interrupts] == [
            {"question": "approve?", "seen": ["pre"]}]
        result = app.invoke(Command(resume="later"), config)
    assert result == {"log": ["pre", "answer:later", "post"], "stamp": ASK_STAMP}
    with backend.open() as store:
        history = list(ask_graph(store).get_state_history(config))
    assert history[0].values == result
    assert history[0].next == ()
    assert [s.metadata["source"] for s in history] == ["loop"] * 4 + ["input"]


def test_twenty_threads_in_parallel_on_one_store(saver, backend):
    app = chain_app(saver, ("a", "b", "c", "d", "e"))
    threads = [backend.thread(f"par{i}") for i in range(20)]

    def work(thread: str) -> tuple[dict[str, Any], dict[str, Any], int]:
        config = cfg(thread)
        first = app.invoke({"log": [thread]}, config)
        second = app.invoke({"log": ["again"]}, config)
        return first, second, len(list(app.get_state_history(config)))

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(work, threads))
    for thread, (first, second, length) in zip(threads, results, strict=True):
        steps = ["a", "b", "c", "d", "e"]
        assert first == {"log": [thread, *steps]}
        assert second == {"log": [thread, *steps, "again", *steps]}
        assert length == 14
        assert app.get_state(cfg(thread)).values == second


def test_one_store_serves_several_event_loops(saver, backend):
    """asyncio.run twice (each a new loop) and sync calls in between, on one store."""
    app = chain_app(saver)
    first, second = cfg(backend.thread("one")), cfg(backend.thread("two"))
    assert asyncio.run(app.ainvoke({"log": []}, first)) == {"log": ["a", "b", "c"]}
    assert app.invoke({"log": ["x"]}, second) == {"log": ["x", "a", "b", "c"]}
    assert asyncio.run(app.ainvoke({"log": ["y"]}, first)) == {
        "log": ["a", "b", "c", "y", "a", "b", "c"]}

    async def read() -> list[str]:
        return [t.checkpoint.id async for t in saver.alist(first)]

    assert asyncio.run(read()) == tuple_ids(saver.list(first))


async def test_ten_async_runs_at_once(backend):
    class State(TypedDict):
        log: Annotated[list, operator.add]

    def make(name: str):
        async def node(state: State) -> dict[str, Any]:
            await asyncio.sleep(0.001)
            return {"log": [name]}

        return node

    graph = StateGraph(State)
    for name in ("a", "b", "c"):
        graph.add_node(name, make(name))
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    async with backend.aopen() as store:
        app = graph.compile(checkpointer=store)
        threads = [backend.thread(f"async{i}") for i in range(10)]
        results = await asyncio.gather(*(app.ainvoke({"log": [t]}, cfg(t)) for t in threads))
        for thread, result in zip(threads, results, strict=True):
            assert result == {"log": [thread, "a", "b", "c"]}
            state = await app.aget_state(cfg(thread))
            assert state.values == result
            assert len([s async for s in app.aget_state_history(cfg(thread))]) == 5


def test_rewind_forgets_what_came_after_a_checkpoint(saver):
    """Rollback of a run: later checkpoints of every namespace go, the head moves back."""
    class S(TypedDict, total=False):
        log: Annotated[list[str], operator.add]

    inner = StateGraph(S)
    inner.add_node("deep", lambda s: {"log": ["deep"]})
    inner.add_edge(START, "deep")
    outer = StateGraph(S)
    outer.add_node("one", lambda s: {"log": ["one"]})
    outer.add_node("sub", inner.compile())
    outer.add_edge(START, "one")
    outer.add_edge("one", "sub")
    graph = outer.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": f"rewind-{uuid.uuid4().hex[:8]}"}}
    try:
        graph.invoke({"log": ["first"]}, config)
        before = graph.get_state(config)
        mark = before.config["configurable"]["checkpoint_id"]
        count = len(list(graph.get_state_history(config)))
        graph.invoke({"log": ["second"]}, config)
        assert graph.get_state(config).values["log"][-1] == "deep"
        removed = saver.rewind(config["configurable"]["thread_id"], mark)
        assert removed >= 5  # root steps and the subgraph's own checkpoints
        state = graph.get_state(config)
        assert state.config["configurable"]["checkpoint_id"] == mark
        assert state.values == before.values and state.next == ()
        assert len(list(graph.get_state_history(config))) == count
        graph.invoke({"log": ["third"]}, config)  # the thread goes on from there
        log = graph.get_state(config).values["log"]
        assert log[:len(before.values["log"]) + 1] == [*before.values["log"], "third"]
        assert "second" not in log
        with pytest.raises(KeyError):
            saver.rewind(config["configurable"]["thread_id"], "no-such-checkpoint")
    finally:
        saver.delete_thread(config["configurable"]["thread_id"])
