"""Property: delta records replay to the full state, exactly, on every store.

A random history of steps (appends, replacements, truncations, whole-value sets, a
reducer that changes a list in place, forks from older checkpoints) is put the way the
engine puts it: the checkpoint's changes come from `channel_changes(before, values)`, the
store encodes a delta or, every `snapshot_every` records, a snapshot. Reading any
checkpoint back (get_tuple, list) must give that step's state, equal and type for type,
whatever chain it replays and whatever the read memo (read_cache.py) already holds.

Outside the contract, so not drawn: a list changed in place and then replaced by a copy
in the same step (a node mutating its input state, then returning an update for that key):
the engine's `before` is then the changed list, and the delta records no change. The
stored state lacks the in-place change while the running one has it.

Items are drawn so that equal-looking ones store differently (1, 1.0 and True; messages
that differ only in metadata), and some are large enough to be compressed and memoized.

Budgets: tests/property_support.py (HYPOTHESIS_PROFILE=long for a longer search).
"""

from __future__ import annotations

import copy
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from property_support import budget, same, waypoint_messages
from store_backends import PG_URL, require

from waypoint.checkpoint import MemorySaver
from waypoint.checkpoint.base import Checkpoint
from waypoint.checkpoint.ids import new_checkpoint_id
from waypoint.checkpoint.records import channel_changes
from waypoint.messages import AIMessage, HumanMessage

_MISSING = object()
LISTS = ("log", "messages")
KEYS = (*LISTS, "note")

ids = st.sampled_from(["m1", "m2", "m3"])
messages = st.one_of(
    st.builds(HumanMessage, st.sampled_from(["hi", "yes"]), id=ids),
    st.builds(AIMessage, st.sampled_from(["ok", "hi"]), id=ids,
              response_metadata=st.sampled_from([{}, {"model": "a"}, {"model": "b"}])),
)
items = st.one_of(
    st.sampled_from([0, 1, 1.0, True, False, 0.0, -0.0, "1", None]),
    st.binary(min_size=0, max_size=900),  # above 2 KB a body is compressed; memo above 1 KB
    messages,
)
ops = st.one_of(
    st.tuples(st.just("append"), st.sampled_from(LISTS), st.lists(items, max_size=3)),
    st.tuples(st.just("set"), st.sampled_from(KEYS), st.lists(items, max_size=3)),
    st.tuples(st.just("replace"), st.sampled_from(LISTS), st.integers(0, 40), items),
    st.tuples(st.just("truncate"), st.sampled_from(LISTS), st.integers(0, 3)),
    st.tuples(st.just("in_place"), st.sampled_from(LISTS), st.lists(items, max_size=2)),
)
# Each step: which checkpoint it grows from (None: the head; an int: a fork) and its writes.
steps = st.lists(st.tuples(st.none() | st.integers(0, 1000), st.lists(ops, min_size=1,
                                                                      max_size=3)),
                 min_size=1, max_size=24)


def apply(values: dict[str, Any], op: tuple[Any, ...]) -> None:
    """One write, as a reducer would make it (a new list, or the same one changed)."""
    kind, key, *args = op
    current = values.get(key)
    listed = current if isinstance(current, list) else []
    if kind == "append":
        values[key] = [*listed, *args[0]]
    elif kind == "set":
        values[key] = list(args[0]) if key in LISTS else args[0]
    elif kind == "replace":
        index = args[0] % max(1, len(listed))
        values[key] = [*listed[:index], args[1], *listed[index + 1:]]
    elif kind == "truncate":
        values[key] = listed[:max(0, len(listed) - args[0])]
    elif kind == "in_place":
        if isinstance(current, list):
            current.extend(args[0])  # a reducer returning the list it was given
        else:
            values[key] = list(args[0])


def play(saver: Any, thread_id: str, history: list[tuple[Any, list[Any]]],
         start: tuple[str, dict[str, Any]] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Put `history` as the engine would (after `start`, the thread's head and its state,
    if it has one); return each new checkpoint's id and expected state."""
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    made: list[tuple[str, dict[str, Any]]] = [start] if start else []
    live: dict[str, dict[str, Any]] = {}  # the head's state, as the running engine holds it
    head: str | None = None
    if start is not None:
        head = start[0]
        live[head] = copy.deepcopy(start[1])
    for step, (fork, writes) in enumerate(history):
        if fork is None or not made:  # grow the head: the run's own objects, shared
            parent = head
            values = dict(live[head]) if head is not None else {}
        else:  # a fork starts from what the store holds for an older checkpoint
            parent, state = made[fork % len(made)]
            values = copy.deepcopy(state)
        before: dict[str, Any] = {}
        in_place: set[str] = set()
        for op in writes:
            # A reducer that changes its list in place is the only writer of that key in
            # its step (one key, one reducer); the engine cannot tell a list changed in
            # place before a copying write from the one it stored (see the module doc).
            if op[1] in in_place or (op[0] == "in_place" and op[1] in before):
                continue
            if op[0] == "in_place":
                in_place.add(op[1])
            before.setdefault(op[1], values.get(op[1], _MISSING))
            apply(values, op)
        updated = tuple(before)
        checkpoint = Checkpoint(
            id=new_checkpoint_id(), step=step, ts=f"t{step}", values=values,
            updated=updated, changes=channel_changes(
                {k: v for k, v in before.items() if v is not _MISSING}, values, updated))
        saver.put(config, checkpoint, {"step": step}, parent_id=parent, expected_head=head)
        head = checkpoint.id
        live[head] = values
        made.append((head, copy.deepcopy(values)))  # later in-place writes must not reach it
    return made[1:] if start else made


def check(saver: Any, thread_id: str, made: list[tuple[str, dict[str, Any]]]) -> None:
    for checkpoint_id, expected in reversed(made):  # newest first, as history is read
        config = {"configurable": {"thread_id": thread_id, "checkpoint_id": checkpoint_id}}
        found = saver.get_tuple(config)
        assert found is not None, checkpoint_id
        same(expected, found.checkpoint.values, f"checkpoint {checkpoint_id}")
    listed = {t.checkpoint.id: t.checkpoint.values
              for t in saver.list({"configurable": {"thread_id": thread_id}})}
    assert set(listed) == {cid for cid, _ in made}
    for checkpoint_id, expected in made:
        same(expected, listed[checkpoint_id], f"listed {checkpoint_id}")
    head = saver.get_tuple({"configurable": {"thread_id": thread_id}})
    same(made[-1][1], head.checkpoint.values, "head")


@pytest.fixture(autouse=True, scope="module")
def pinned_messages() -> Iterator[None]:
    with waypoint_messages():
        yield


@budget(80)
@given(steps, st.integers(1, 6))
@example(  # a replaced message equal to the old one but for its metadata was dropped
    [(None, [("set", "messages", [AIMessage("ok", id="m1")])]),
     (None, [("replace", "messages", 0, AIMessage("ok", id="m1",
                                                  response_metadata={"model": "a"}))])], 4)
@example([(None, [("set", "log", [1])]), (None, [("append", "log", [2]),
                                                 ("replace", "log", 0, 1.0)])], 4)
def test_memory_replays_every_checkpoint(history: list[Any], snapshot_every: int) -> None:
    saver = MemorySaver(snapshot_every=snapshot_every)
    check(saver, "t", play(saver, "t", history))


@budget(25)
@given(steps, st.integers(1, 6))
def test_sqlite_replays_every_checkpoint(history: list[Any], snapshot_every: int) -> None:
    from waypoint.checkpoint import SqliteSaver

    with tempfile.TemporaryDirectory() as tmp, SqliteSaver.from_conn_string(
            f"{tmp}/records.db", snapshot_every=snapshot_every) as saver:
        check(saver, "t", play(saver, "t", history))


@pytest.fixture(scope="module")
def pg_saver() -> Iterator[Any]:
    cls = require("postgres")
    with cls.from_conn_string(PG_URL, snapshot_every=3) as saver:
        yield saver


@budget(10)
@given(steps)
def test_postgres_replays_every_checkpoint(pg_saver: Any, history: list[Any]) -> None:
    thread_id = f"prop-records-{uuid.uuid4().hex[:12]}"
    try:
        check(pg_saver, thread_id, play(pg_saver, thread_id, history))
    finally:
        pg_saver.delete_thread(thread_id)
