"""Property: retention operations keep every remaining read exact.

After a random history of delta records (tests/test_properties_records.py: appends,
replacements, forks, snapshots every few records): `copy_thread` gives a thread that reads
exactly as the original, checkpoint by checkpoint; `prune(keep_last=k)` keeps the newest k
checkpoints, each reading as before (a kept delta whose ancestors went is rewritten as a
snapshot), removes the others, and the thread grows on from its head as if nothing
happened; `rewind` to a checkpoint makes it the head again with its state intact. Checked
on memory, SQLite and PostgreSQL, with the read memo on (as in production).

Budgets: tests/property_support.py (HYPOTHESIS_PROFILE=long for a longer search).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from property_support import budget, same, waypoint_messages
from store_backends import PG_URL, require
from test_properties_records import play, steps

from waypoint.checkpoint import MemorySaver, SqliteSaver


def config(thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "checkpoint_id": checkpoint_id}}


def reads(saver: Any, thread_id: str) -> dict[str, dict[str, Any]]:
    """Every checkpoint of the thread, as get_tuple reads it (newest first)."""
    out = {}
    for item in saver.list(config(thread_id)):
        found = saver.get_tuple(config(thread_id, item.checkpoint.id))
        out[item.checkpoint.id] = found.checkpoint.values
        same(found.checkpoint.values, item.checkpoint.values, "list vs get_tuple")
    return out


def check_retention(saver: Any, history: list[Any], more: list[Any], keep: int,
                    rewind_pick: int) -> None:
    source, copy = f"src-{uuid.uuid4().hex[:10]}", f"dst-{uuid.uuid4().hex[:10]}"
    try:
        made = play(saver, source, history)
        before = reads(saver, source)
        assert list(before) == sorted(before, reverse=True)
        saver.copy_thread(source, copy)
        copied = reads(saver, copy)
        assert list(copied) == list(before)
        for checkpoint_id, values in before.items():
            same(values, copied[checkpoint_id], f"copy of {checkpoint_id}")

        removed = saver.prune(source, keep_last=keep)
        kept = list(before)[:keep]
        assert removed == len(before) - len(kept)
        after = reads(saver, source)
        assert list(after) == kept
        for checkpoint_id in kept:
            same(before[checkpoint_id], after[checkpoint_id], f"kept {checkpoint_id}")
        for checkpoint_id in list(before)[keep:]:
            assert saver.get_tuple(config(source, checkpoint_id)) is None
        head = saver.get_tuple(config(source))
        assert head.checkpoint.id == made[-1][0]
        grown = play(saver, source, more, start=made[-1])  # on from the pruned head
        for checkpoint_id, values in grown:
            same(values, saver.get_tuple(config(source, checkpoint_id)).checkpoint.values,
                 f"grown {checkpoint_id}")
        for checkpoint_id in kept:
            same(before[checkpoint_id], reads(saver, source)[checkpoint_id], "kept, later")

        # The copy did not change with the original; rewinding it restores an older head.
        target = list(copied)[rewind_pick % len(copied)]
        saver.rewind(copy, target)
        assert saver.get_tuple(config(copy)).checkpoint.id == target
        rewound = reads(saver, copy)
        assert list(rewound) == [c for c in copied if c <= target]
        for checkpoint_id, values in rewound.items():
            same(copied[checkpoint_id], values, f"rewound {checkpoint_id}")
    finally:
        saver.delete_threads([source, copy])


@pytest.fixture(autouse=True, scope="module")
def pinned_messages() -> Iterator[None]:
    with waypoint_messages():
        yield


retention = (steps, st.lists(st.tuples(st.none() | st.integers(0, 1000), st.lists(
    st.tuples(st.just("append"), st.sampled_from(["log", "messages"]),
              st.lists(st.integers(0, 3), max_size=2)), min_size=1, max_size=2)),
    max_size=6), st.integers(1, 5), st.integers(0, 1000))


@budget(40)
@given(*retention, st.integers(1, 5))
def test_memory_retention_keeps_reads_exact(history: list[Any], more: list[Any], keep: int,
                                            rewind_pick: int, snapshot_every: int) -> None:
    check_retention(MemorySaver(snapshot_every=snapshot_every), history, more, keep,
                    rewind_pick)


@budget(15)
@given(*retention, st.integers(1, 5))
def test_sqlite_retention_keeps_reads_exact(history: list[Any], more: list[Any], keep: int,
                                            rewind_pick: int, snapshot_every: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, SqliteSaver.from_conn_string(
            f"{tmp}/retention.db", snapshot_every=snapshot_every) as saver:
        check_retention(saver, history, more, keep, rewind_pick)


@pytest.fixture(scope="module")
def pg_saver() -> Iterator[Any]:
    cls = require("postgres")
    with cls.from_conn_string(PG_URL, snapshot_every=3) as saver:
        yield saver


@budget(6)
@given(*retention)
def test_postgres_retention_keeps_reads_exact(pg_saver: Any, history: list[Any],
                                              more: list[Any], keep: int,
                                              rewind_pick: int) -> None:
    check_retention(pg_saver, history, more, keep, rewind_pick)
