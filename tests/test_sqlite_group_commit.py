"""SQLite group commit: writes that arrive together share a transaction, and each still
succeeds or fails alone."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from waypoint.checkpoint.sqlite import SqliteSaver


@pytest.fixture
def saver(tmp_path):
    with SqliteSaver.from_conn_string(str(tmp_path / "group.db")) as opened:
        opened.conn.execute("CREATE TABLE items (k INTEGER PRIMARY KEY, v TEXT)")
        yield opened


def _insert(key: int, fail: bool = False):
    def write(conn):
        conn.execute("INSERT INTO items VALUES (?, ?)", (key, "x"))
        if fail:
            raise ValueError(f"write {key} refused")
        return key
    return write


def _rows(saver: SqliteSaver) -> list[int]:
    return [r[0] for r in saver.conn.execute("SELECT k FROM items ORDER BY k")]


def test_writers_waiting_together_share_one_transaction(saver):
    group = saver._group
    results: dict[int, object] = {}

    def write(key: int) -> None:
        try:
            results[key] = saver.run_write(_insert(key, fail=key == 3))
        except ValueError as exc:
            results[key] = exc

    with saver._lock:  # the first writer leads, and waits here with its own write only
        threads = [threading.Thread(target=write, args=(k,)) for k in range(5)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(group._queue) < 4 and time.monotonic() < deadline:
            time.sleep(0.001)
        before = group.transactions
    for thread in threads:
        thread.join(10)
    assert group.transactions - before == 2  # the leader's own, then the four queued
    assert isinstance(results[3], ValueError)  # the failing write failed alone
    assert {k: v for k, v in results.items() if k != 3} == {0: 0, 1: 1, 2: 2, 4: 4}
    assert _rows(saver) == [0, 1, 2, 4]


def test_many_threads_every_write_answered_once(saver):
    answered: list[int] = []
    refused: list[int] = []

    def worker(n: int) -> None:
        for i in range(60):
            key = n * 1000 + i
            try:
                answered.append(saver.run_write(_insert(key, fail=key % 7 == 0)))
            except ValueError:
                refused.append(key)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(t.is_alive() for t in threads)
    assert sorted(answered) == _rows(saver)
    assert len(answered) + len(refused) == 480 and all(k % 7 == 0 for k in refused)
    assert saver._group.transactions <= saver._group.writes == 480


async def test_coroutines_and_threads_mixed(saver):
    async def write(key: int) -> int | str:
        try:
            return await saver.arun_write(_insert(key, fail=key % 5 == 0))
        except ValueError:
            return "refused"

    thread_keys = list(range(1000, 1050))
    worker = threading.Thread(target=lambda: [saver.run_write(_insert(k))
                                              for k in thread_keys])
    worker.start()
    results = await asyncio.gather(*(write(k) for k in range(1, 101)))
    await asyncio.to_thread(worker.join, 30)
    assert results == [("refused" if k % 5 == 0 else k) for k in range(1, 101)]
    assert _rows(saver) == [k for k in range(1, 101) if k % 5] + thread_keys


async def test_a_cancelled_caller_does_not_undo_its_write(saver):
    task = asyncio.ensure_future(saver.arun_write(_insert(7)))
    await asyncio.sleep(0)
    task.cancel()
    for _ in range(200):
        if _rows(saver):
            break
        await asyncio.sleep(0.01)
    assert _rows(saver) == [7]
