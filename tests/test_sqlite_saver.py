"""SqliteSaver behaviour only SQLite has: upgrading a file made by an older schema."""

from __future__ import annotations

import sqlite3

from waypoint.checkpoint import SqliteSaver
from waypoint.checkpoint.base import Checkpoint
from waypoint.checkpoint.ids import new_checkpoint_id
from waypoint.checkpoint.records import encode, seal
from waypoint.checkpoint.sqlite import _MIGRATIONS


def _config(thread: str) -> dict:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


def _version_1_file(path: str, threads: list[str]) -> None:
    """A database as schema version 1 left it: one checkpoint per thread, no creation order."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE waypoint_migrations (version INTEGER PRIMARY KEY, "
                 "applied_at REAL NOT NULL)")
    for statement in filter(str.strip, _MIGRATIONS[0][1].split(";")):
        conn.execute(statement)
    conn.execute("INSERT INTO waypoint_migrations VALUES (1, 0)")
    for touched, thread in enumerate(threads):
        cid = new_checkpoint_id()
        kind, depth, body = encode(Checkpoint(cid, 0, "ts", {"who": thread}), None)
        conn.execute("INSERT INTO waypoint_threads VALUES (?, '', ?, ?)", (thread, cid, touched))
        conn.execute("INSERT INTO waypoint_checkpoints (thread_id, ns, id, parent_id, step, ts, "
                     "kind, depth, body, metadata) VALUES (?, '', ?, NULL, 0, 'ts', ?, ?, ?, ?)",
                     (thread, cid, kind, depth, body, seal({"source": "input"})))
    conn.close()


def test_setup_upgrades_an_empty_version_1_file(tmp_path):
    path = str(tmp_path / "empty.db")
    _version_1_file(path, [])
    with SqliteSaver.from_conn_string(path) as saver:
        assert list(saver.list(None)) == []
        versions = [r[0] for r in saver.conn.execute("SELECT version FROM waypoint_migrations")]
        assert sorted(versions) == [v for v, _ in _MIGRATIONS]


def test_setup_upgrades_a_version_1_file_and_keeps_its_threads_in_order(tmp_path):
    path = str(tmp_path / "old.db")
    old = ["b-thread", "a-thread"]  # made in this order: not alphabetical
    _version_1_file(path, old)
    with SqliteSaver.from_conn_string(path) as saver:
        assert [t.checkpoint.values["who"] for t in saver.list(None)] == old
        saver.put(_config("c-thread"), Checkpoint(new_checkpoint_id(), 0, "ts", {"who": "c"}),
                  {}, parent_id=None, expected_head=None)
        listed = [t.config["configurable"]["thread_id"] for t in saver.list(None)]
        assert listed == [*old, "c-thread"]
    with SqliteSaver.from_conn_string(path) as saver:  # set up again: nothing left to do
        assert saver.get_tuple(_config("a-thread")).checkpoint.values == {"who": "a-thread"}
        saver.copy_thread("b-thread", "d-thread")
        listed = [t.config["configurable"]["thread_id"] for t in saver.list(None)]
        assert listed == [*old, "c-thread", "d-thread"]
