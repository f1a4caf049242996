"""Group commit on SQLite: writes that arrive together share one transaction and one fsync.

SQLite has one writer and every commit of a durable database waits for the disk. When many
runs commit at the same moment (a server's workers), each waiting its turn for its own
fsync makes the disk the limit. Here the first writer to arrive leads: it takes every
write queued so far, runs each inside its own savepoint (a write that fails is rolled
back alone and its caller gets its error, as if it had run alone), commits once, and hands
the lead to the next writer waiting. A lone write runs at once, with no savepoint and no
waiting for company. Coroutines queue their writes without a thread hand-off each: a
writer thread leads for them, and answers a whole batch on their event loop at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_NO_RESULT = object()


class _Job:
    __slots__ = ("done", "error", "fn", "future", "lead", "result")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any],
                 future: asyncio.Future[Any] | None = None) -> None:
        self.fn = fn
        self.result: Any = _NO_RESULT
        self.error: BaseException | None = None
        self.lead = False
        self.future = future  # an async caller's: answered on its event loop
        self.done = threading.Event() if future is None else None


def _settle(jobs: list[_Job]) -> None:
    """On an event loop: answer the futures of its jobs."""
    for job in jobs:
        future = job.future
        assert future is not None
        if future.done():  # the caller gave up (cancelled); the write stands
            continue
        if job.error is not None:
            future.set_exception(job.error)
        else:
            future.set_result(job.result)


class GroupWriter:
    """Runs write functions on one connection, batching those that arrive together."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self.conn = conn
        self.lock = lock  # the connection's lock: other users take it for their transactions
        self._queue: list[_Job] = []
        self._mutex = threading.Lock()
        self._leading = False
        self._local = threading.local()
        self.transactions = 0  # how many commits
        self.writes = 0  # how many write functions they carried
        # Async callers do not wait in a thread: a writer thread leads for them.
        self._writer: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = False

    async def arun(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`run` for a coroutine: queued without a thread hand-off; the batch it joins is
        committed by whoever leads, and its answer comes back on this event loop."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        job = _Job(fn, future)
        with self._mutex:
            self._queue.append(job)
            wake = not self._leading
            if wake:
                self._leading = True
        if wake:
            self._start_writer()
            self._wake.set()
        return await future

    def _start_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_forever, daemon=True,
                                            name="waypoint-sqlite-writer")
            self._writer.start()

    def _write_forever(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._mutex:
                idle = not self._queue
            if idle and self._stopping:
                return
            if not idle:
                self._lead(None)

    def stop(self) -> None:
        """Let the writer thread end (once nothing is queued); the store is closing."""
        self._stopping = True
        self._wake.set()
        if self._writer is not None:
            self._writer.join(5)

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(conn)` inside a write transaction; its result, or its exception."""
        if getattr(self._local, "inside", False):  # a write inside a write: same transaction
            return fn(self.conn)
        job = _Job(fn)
        with self._mutex:
            self._queue.append(job)
            lead = not self._leading
            if lead:
                self._leading = True
        if not lead:
            job.done.wait()  # type: ignore[union-attr]
            lead = job.lead  # handed the lead: our job is still queued
        if lead:
            self._lead(job)
        if job.error is not None:
            raise job.error
        return job.result

    def _lead(self, mine: _Job | None) -> None:
        """Commit the queued batch (ours is in it), then pass the lead on (or drop it).
        Whatever happens, every job of the batch is answered and the lead moves on: a
        writer never waits for a leader that is gone."""
        with self._mutex:
            batch, self._queue = self._queue, []
        try:
            self._commit(batch)
        except BaseException as exc:  # BEGIN itself failed: nothing ran
            for job in batch:
                if job.error is None and job.result is _NO_RESULT:
                    job.error = exc
        finally:
            by_loop: dict[Any, list[_Job]] = {}
            for job in batch:
                if job.future is not None:
                    by_loop.setdefault(job.future.get_loop(), []).append(job)
                elif job is not mine:
                    job.done.set()  # type: ignore[union-attr]
            for loop, jobs in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, jobs)
                except RuntimeError:  # that loop is closed: nobody waits any more
                    pass
            self._hand_over()

    def _hand_over(self) -> None:
        """The lead goes to the first writer waiting, or nowhere."""
        with self._mutex:
            if not self._queue:
                self._leading = False
                return
            heir = self._queue[0]
        if heir.future is not None:  # an async caller: the writer thread leads
            self._start_writer()
            self._wake.set()
        else:
            heir.lead = True
            heir.done.set()  # type: ignore[union-attr]

    def _commit(self, batch: list[_Job]) -> None:
        conn = self.conn
        with self.lock:
            self._local.inside = True
            try:
                conn.execute("BEGIN IMMEDIATE")
                if len(batch) == 1:
                    self._alone(conn, batch[0])
                else:
                    for job in batch:
                        self._in_savepoint(conn, job)
                try:
                    conn.execute("COMMIT")
                except BaseException as exc:  # nothing was kept: every caller learns it
                    conn.execute("ROLLBACK")
                    for job in batch:
                        if job.error is None:
                            job.error, job.result = exc, _NO_RESULT
                    return
                self.transactions += 1
                self.writes += len(batch)
            finally:
                self._local.inside = False

    @staticmethod
    def _alone(conn: sqlite3.Connection, job: _Job) -> None:
        try:
            job.result = job.fn(conn)
        except BaseException as exc:
            job.error = exc
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")  # the COMMIT that follows commits nothing

    @staticmethod
    def _in_savepoint(conn: sqlite3.Connection, job: _Job) -> None:
        conn.execute("SAVEPOINT waypoint_write")
        try:
            job.result = job.fn(conn)
        except BaseException as exc:
            job.error = exc
            conn.execute("ROLLBACK TO waypoint_write")
        conn.execute("RELEASE waypoint_write")
