"""`SqliteSaver`: the embedded durable store, one file, one fsync'd commit per super-step."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from ..errors import CheckpointConflict
from .base import (
    IDLE,
    WAITING,
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointTuple,
    PendingWrite,
    make_config,
    state_of_head,
    state_of_stored,
    state_of_writes,
    thread_of,
)
from .crypto import Cipher
from .fencing import check_sqlite, current_fence
from .records import DEFAULT_SNAPSHOT_EVERY, SNAPSHOT, decode, encode, seal, unseal
from .sqlite_group import GroupWriter
from .sqlite_records import RECORD_TABLES, SqliteRecords
from .sqlite_usage import USAGE_TABLE, SqliteUsage


def _add_thread_state(saver: SqliteSaver, conn: sqlite3.Connection) -> None:
    """Migration 4: what each namespace's head means for sweep (base.py: IDLE, WAITING,
    FAILED), kept up to date by put and put_writes from then on. Existing heads get theirs
    from their own record (body and pending writes; no chain is replayed). The default,
    WAITING, is what a row written without a state gets: unknown is never idle."""
    conn.execute(f"ALTER TABLE waypoint_threads ADD COLUMN state INTEGER NOT NULL "
                 f"DEFAULT {WAITING}")
    rows = conn.execute(
        "SELECT t.thread_id, t.ns, c.body, c.writes FROM waypoint_threads t "
        "LEFT JOIN waypoint_checkpoints c ON c.thread_id = t.thread_id AND c.ns = t.ns "
        "AND c.id = t.head")
    changed: list[tuple[int, str, str]] = []
    while batch := rows.fetchmany(256):  # bodies are read a page at a time
        for thread_id, ns, body, writes in batch:
            state = state_of_stored(body, writes, saver.cipher)
            if state != WAITING:
                changed.append((state, thread_id, ns))
    conn.executemany("UPDATE waypoint_threads SET state = ? WHERE thread_id = ? AND ns = ?",
                     changed)


# Each migration runs once, in order, inside one transaction; the applied versions are
# recorded so setup() is idempotent and safe from several processes at once. A migration is
# SQL (statements split on ";") or a function of the saver and the connection.
_Migration = str | Callable[["SqliteSaver", sqlite3.Connection], None]
_MIGRATIONS: tuple[tuple[int, _Migration], ...] = (
    (1, """
        CREATE TABLE waypoint_threads (
            thread_id TEXT NOT NULL,
            ns TEXT NOT NULL,
            head TEXT,
            touched_at REAL NOT NULL,
            PRIMARY KEY (thread_id, ns)
        ) WITHOUT ROWID;
        CREATE TABLE waypoint_checkpoints (
            thread_id TEXT NOT NULL,
            ns TEXT NOT NULL,
            id TEXT NOT NULL,
            parent_id TEXT,
            step INTEGER NOT NULL,
            ts TEXT NOT NULL,
            kind INTEGER NOT NULL,
            depth INTEGER NOT NULL,
            body BLOB NOT NULL,
            metadata BLOB NOT NULL,
            writes BLOB,
            UNIQUE (thread_id, ns, id)
        );
    """),
    # Thread creation order, so list(None) orders threads as every other store does.
    (2, """
        ALTER TABLE waypoint_threads ADD COLUMN seq INTEGER;
        UPDATE waypoint_threads SET seq = ranked.n FROM (
            SELECT thread_id, ns, row_number() OVER (ORDER BY touched_at, thread_id, ns) AS n
            FROM waypoint_threads) AS ranked
        WHERE waypoint_threads.thread_id = ranked.thread_id AND waypoint_threads.ns = ranked.ns;
        CREATE INDEX waypoint_threads_seq ON waypoint_threads (seq);
    """),
    # Effects, approvals and timers beside the checkpoints (sqlite_records.py).
    (3, RECORD_TABLES),
    # Whether a thread waits (paused, so sweep keeps it), finished or failed.
    (4, _add_thread_state),
    # The usage ledger: one row per model or tool call (sqlite_usage.py).
    (5, USAGE_TABLE),
)

T = TypeVar("T")

_NEXT_SEQ = "(SELECT coalesce(max(seq), 0) + 1 FROM waypoint_threads)"

_CHAIN = """
WITH RECURSIVE chain(id, parent_id, step, ts, kind, body, metadata, writes, lvl) AS (
    SELECT id, parent_id, step, ts, kind, body, metadata, writes, 0
    FROM waypoint_checkpoints WHERE thread_id = ? AND ns = ? AND id = ?
    UNION ALL
    SELECT c.id, c.parent_id, c.step, c.ts, c.kind, c.body, c.metadata, c.writes, chain.lvl + 1
    FROM waypoint_checkpoints c JOIN chain
      ON c.thread_id = ? AND c.ns = ? AND c.id = chain.parent_id
    WHERE chain.kind != 0
)
SELECT id, parent_id, step, ts, kind, body, metadata, writes FROM chain ORDER BY lvl DESC
"""


class SqliteSaver(SqliteUsage, SqliteRecords, BaseCheckpointSaver):
    """Checkpoints in a SQLite file (WAL, synchronous=FULL): durable across crashes."""

    def __init__(self, conn: sqlite3.Connection | str, *,
                 snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
                 synchronous: str = "FULL", cipher: Cipher | bool | None = True) -> None:
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1, got {snapshot_every}")
        if synchronous.upper() not in ("FULL", "NORMAL", "OFF", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL, EXTRA or OFF, not {synchronous!r}")
        self._path: str | None = None
        if isinstance(conn, str):
            self._path = conn if conn != ":memory:" and not conn.startswith("file:") else None
            conn = sqlite3.connect(conn, isolation_level=None, check_same_thread=False,
                                   timeout=30.0)
            self._owns = True
        else:
            self._owns = False
        self.conn = conn
        self.snapshot_every = snapshot_every
        # True: encrypt if WAYPOINT_ENCRYPTION_KEY is set; False/None: never; or a Cipher.
        self.cipher = Cipher.from_env() if cipher is True else (cipher or None)
        self._lock = threading.RLock()  # one connection: SQLite has one writer anyway
        self.conn.isolation_level = None
        self.conn.execute("PRAGMA busy_timeout = 30000")
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "memory":
            self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        self._ready = False
        # Depth of records this process wrote: saves a read per commit. Only a hint: a
        # record rewritten by prune() elsewhere is at most re-read as a deeper chain.
        self._depths: dict[tuple[str, str, str | None], int] = {}
        # Commits that arrive together share a transaction (sqlite_group.py).
        self._group = GroupWriter(self.conn, self._lock)
        # Reads use a connection per thread (a file in WAL mode: they never wait for the
        # writer's fsync); an in-memory or given connection is read under the lock.
        self._readers = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []

    @classmethod
    @contextmanager
    def from_conn_string(cls, path: str, **options: Any) -> Iterator[SqliteSaver]:
        """Open (creating if needed) the database at `path`, set it up, close it after."""
        saver = cls(path, **options)
        try:
            saver.setup()
            yield saver
        finally:
            saver.close()

    def close(self) -> None:
        self._group.stop()
        if self._owns:
            with self._lock:
                for reader in self._reader_conns:
                    reader.close()
                self._reader_conns.clear()
                self.conn.close()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A connection to read committed data from."""
        self._ensure()
        if self._path is None:
            with self._lock:
                yield self.conn
            return
        reader = getattr(self._readers, "conn", None)
        if reader is None:
            reader = sqlite3.connect(self._path, isolation_level=None,
                                     check_same_thread=False, timeout=30.0)
            reader.execute("PRAGMA query_only = ON")
            self._readers.conn = reader
            with self._lock:
                self._reader_conns.append(reader)
        yield reader

    def run_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(conn)` in a write transaction on this store's connection, grouped with the
        commits that arrive at the same time (for code that keeps its own tables in the
        same file, such as the server's)."""
        self._ensure()
        return self._group.run(fn)

    # -- schema ------------------------------------------------------------------------

    def setup(self) -> None:
        with self._lock:
            if self._ready:
                return
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS waypoint_migrations ("
                    " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
                )
                done = {row[0] for row in conn.execute("SELECT version FROM waypoint_migrations")}
                for version, script in _MIGRATIONS:
                    if version in done:
                        continue
                    if callable(script):
                        script(self, conn)
                    else:
                        for statement in filter(str.strip, script.split(";")):
                            conn.execute(statement)
                    conn.execute("INSERT INTO waypoint_migrations VALUES (?, ?)",
                                 (version, time.time()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._ready = True

    def _ensure(self) -> None:
        if not self._ready:
            self.setup()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: taken before reading what it checks."""
        self._ensure()
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------

    def _put_write(self, thread_id: str, ns: str, checkpoint: Checkpoint,
                   metadata: dict[str, Any], parent_id: str | None,
                   expected_head: str | None) -> Callable[[sqlite3.Connection], int]:
        """What `put` writes, as a function of the connection (run by the group writer)."""
        self._ensure()
        meta = seal(metadata, self.cipher)
        # Encode before the transaction (an unstorable value fails before anything is
        # written). A child of the head may use the cached depth: the head check below
        # proves that record still exists. A fork re-reads its parent inside the
        # transaction, since a concurrent prune may have removed it.
        parent_depth = None
        if parent_id is not None and parent_id == expected_head:
            parent_depth = self._depths.get((thread_id, ns, parent_id))
            if parent_depth is None:
                parent_depth = self._depth_of(thread_id, ns, parent_id)
        kind, depth, body = encode(checkpoint, parent_depth, self.snapshot_every, self.cipher)
        now, state = time.time(), state_of_head(checkpoint.next_tasks)
        fence = current_fence()

        def write(conn: sqlite3.Connection) -> int:
            nonlocal kind, depth, body, parent_depth
            check_sqlite(conn, fence, thread_id)
            if expected_head is None:
                moved = conn.execute(
                    "INSERT INTO waypoint_threads (thread_id, ns, head, touched_at, seq, state) "
                    f"VALUES (?, ?, ?, ?, {_NEXT_SEQ}, ?) ON CONFLICT (thread_id, ns) DO NOTHING",
                    (thread_id, ns, checkpoint.id, now, state),
                ).rowcount
            else:
                moved = conn.execute(
                    "UPDATE waypoint_threads SET head = ?, touched_at = ?, state = ? "
                    "WHERE thread_id = ? AND ns = ? AND head = ?",
                    (checkpoint.id, now, state, thread_id, ns, expected_head),
                ).rowcount
            if not moved:
                row = conn.execute(
                    "SELECT head FROM waypoint_threads WHERE thread_id = ? AND ns = ?",
                    (thread_id, ns),
                ).fetchone()
                raise CheckpointConflict(thread_id, expected_head, row[0] if row else None)
            if parent_id is not None and parent_id != expected_head:
                found = conn.execute(
                    "SELECT depth FROM waypoint_checkpoints WHERE thread_id = ? AND ns = ? "
                    "AND id = ?", (thread_id, ns, parent_id),
                ).fetchone()
                parent_depth = found[0] if found else None
                kind, depth, body = encode(checkpoint, parent_depth, self.snapshot_every,
                                           self.cipher)
            conn.execute(
                "INSERT INTO waypoint_checkpoints (thread_id, ns, id, parent_id, step, ts, kind, "
                "depth, body, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (thread_id, ns, checkpoint.id, parent_id if parent_depth is not None else None,
                 checkpoint.step, checkpoint.ts, kind, depth, body, meta),
            )
            return depth

        return write

    def put(
        self,
        config: dict[str, Any],
        checkpoint: Checkpoint,
        metadata: dict[str, Any],
        *,
        parent_id: str | None,
        expected_head: str | None,
    ) -> dict[str, Any]:
        thread_id, ns, _ = thread_of(config)
        write = self._put_write(thread_id, ns, checkpoint, metadata, parent_id, expected_head)
        self._remember_depth(thread_id, ns, checkpoint.id, self._group.run(write))
        return make_config(thread_id, ns, checkpoint.id)

    def _depth_of(self, thread_id: str, ns: str, checkpoint_id: str) -> int | None:
        with self._reading() as conn:
            found = conn.execute(
                "SELECT depth FROM waypoint_checkpoints WHERE thread_id = ? AND ns = ? AND id = ?",
                (thread_id, ns, checkpoint_id),
            ).fetchone()
        return found[0] if found else None

    def _remember_depth(self, thread_id: str, ns: str, checkpoint_id: str, depth: int) -> None:
        depths = self._depths
        depths[(thread_id, ns, checkpoint_id)] = depth
        if len(depths) > 4096:  # a small cache of the newest records is all puts need
            for key in list(depths)[:2048]:
                del depths[key]

    def put_writes(self, config: dict[str, Any], writes: Sequence[PendingWrite]) -> None:
        self._group.run(self._writes_write(config, writes))

    async def aput_writes(self, config: dict[str, Any], writes: Sequence[PendingWrite]) -> None:
        await self._group.arun(self._writes_write(config, writes))

    def _writes_write(self, config: dict[str, Any], writes: Sequence[PendingWrite]
                      ) -> Callable[[sqlite3.Connection], None]:
        self._ensure()
        thread_id, ns, checkpoint_id = thread_of(config)
        writes = list(writes)
        blob = seal(writes, self.cipher)
        fence = current_fence()

        def write(conn: sqlite3.Connection) -> None:
            check_sqlite(conn, fence, thread_id)
            changed = conn.execute(
                "UPDATE waypoint_checkpoints SET writes = ? WHERE thread_id = ? AND ns = ? "
                "AND id = ?", (blob, thread_id, ns, checkpoint_id),
            ).rowcount
            if not changed:
                raise KeyError(f"no checkpoint {checkpoint_id!r} in thread {thread_id!r}")
            # On the head of a thread that has next tasks, the writes say whether it waits.
            conn.execute(
                "UPDATE waypoint_threads SET touched_at = ?, state = CASE WHEN head = ? AND "
                "state <> ? THEN ? ELSE state END WHERE thread_id = ? AND ns = ?",
                (time.time(), checkpoint_id, IDLE, state_of_writes(writes), thread_id, ns),
            )

        return write

    # -- retention ---------------------------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        self.delete_threads([thread_id])

    def delete_threads(self, thread_ids: Sequence[str]) -> None:
        ids = [(str(t),) for t in thread_ids]
        if not ids:
            return
        with self._write() as conn:
            conn.executemany("DELETE FROM waypoint_checkpoints WHERE thread_id = ?", ids)
            conn.executemany("DELETE FROM waypoint_threads WHERE thread_id = ?", ids)
            self._delete_records(conn, [t for (t,) in ids])

    def prune(self, thread_id: str, keep_last: int = 1) -> int:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        thread_id = str(thread_id)
        removed = 0
        with self._write() as conn:
            spaces = [r[0] for r in conn.execute(
                "SELECT ns FROM waypoint_threads WHERE thread_id = ?", (thread_id,))]
            for ns in spaces:
                ids = [r[0] for r in conn.execute(
                    "SELECT id FROM waypoint_checkpoints WHERE thread_id = ? AND ns = ? "
                    "ORDER BY id DESC", (thread_id, ns))]
                kept, doomed = ids[:keep_last], set(ids[keep_last:])
                if not doomed:
                    continue
                for cid in reversed(kept):  # oldest first: a rebased parent reads fast
                    parent = conn.execute(
                        "SELECT parent_id FROM waypoint_checkpoints WHERE thread_id = ? AND "
                        "ns = ? AND id = ?", (thread_id, ns, cid)).fetchone()[0]
                    if parent is not None and parent in doomed:
                        self._rebase(conn, thread_id, ns, cid)
                conn.executemany(
                    "DELETE FROM waypoint_checkpoints WHERE thread_id = ? AND ns = ? AND id = ?",
                    [(thread_id, ns, cid) for cid in doomed],
                )
                removed += len(doomed)
        return removed

    def _rebase(self, conn: sqlite3.Connection, thread_id: str, ns: str, cid: str) -> None:
        full = self._read(conn, thread_id, ns, cid)
        assert full is not None
        _, _, body = encode(full.checkpoint, None, cipher=self.cipher)
        conn.execute(
            "UPDATE waypoint_checkpoints SET kind = ?, depth = 0, body = ?, parent_id = NULL "
            "WHERE thread_id = ? AND ns = ? AND id = ?", (SNAPSHOT, body, thread_id, ns, cid),
        )

    def rewind(self, thread_id: str, checkpoint_id: str) -> int:
        thread_id = str(thread_id)
        with self._write() as conn:
            found = conn.execute(
                "SELECT body, writes FROM waypoint_checkpoints WHERE thread_id = ? AND ns = '' "
                "AND id = ?", (thread_id, checkpoint_id)).fetchone()
            if found is None:
                raise KeyError(f"no checkpoint {checkpoint_id!r} in thread {thread_id!r}")
            removed = conn.execute("DELETE FROM waypoint_checkpoints WHERE thread_id = ? AND "
                                   "id > ?", (thread_id, checkpoint_id)).rowcount
            conn.execute("DELETE FROM waypoint_threads WHERE thread_id = ? AND NOT EXISTS ("
                         "SELECT 1 FROM waypoint_checkpoints c WHERE c.thread_id = "
                         "waypoint_threads.thread_id AND c.ns = waypoint_threads.ns)",
                         (thread_id,))
            conn.execute("UPDATE waypoint_threads SET touched_at = ?, state = ?, head = ("
                         "SELECT max(id) FROM waypoint_checkpoints c WHERE c.thread_id = "
                         "waypoint_threads.thread_id AND c.ns = waypoint_threads.ns) "
                         "WHERE thread_id = ?",
                         (time.time(), state_of_stored(found[0], found[1], self.cipher),
                          thread_id))
        self._depths.clear()
        return removed

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Fork a thread's checkpoints; its effects, approvals and timers are not copied."""
        source, target = str(source_thread_id), str(target_thread_id)
        with self._write() as conn:
            if not conn.execute("SELECT 1 FROM waypoint_threads WHERE thread_id = ?",
                                (source,)).fetchone():
                raise KeyError(f"thread {source_thread_id!r} does not exist")
            if conn.execute("SELECT 1 FROM waypoint_threads WHERE thread_id = ?",
                            (target,)).fetchone():
                raise ValueError(f"thread {target_thread_id!r} already exists")
            conn.execute(
                "INSERT INTO waypoint_checkpoints SELECT ?, ns, id, parent_id, step, ts, kind, "
                "depth, body, metadata, writes FROM waypoint_checkpoints WHERE thread_id = ?",
                (target, source),
            )
            conn.execute(
                "INSERT INTO waypoint_threads (thread_id, ns, head, touched_at, seq, state) "
                f"SELECT ?, ns, head, ?, {_NEXT_SEQ} + seq, state FROM waypoint_threads "
                "WHERE thread_id = ? ORDER BY seq", (target, time.time(), source),
            )

    def sweep(self, ttl_seconds: float, *, now: float | None = None) -> list[str]:
        cutoff = (time.time() if now is None else now) - ttl_seconds
        with self._write() as conn:
            # Threads paused (root head WAITING) or waiting for an approval or a timer are
            # waiting, not idle: kept.
            expired = [r[0] for r in conn.execute(
                "SELECT thread_id FROM waypoint_threads WHERE thread_id NOT IN "
                "(SELECT thread_id FROM waypoint_approvals WHERE status = 'pending') "
                "AND thread_id NOT IN (SELECT thread_id FROM waypoint_timers "
                "WHERE status IN ('pending', 'claimed')) GROUP BY thread_id "
                "HAVING MAX(touched_at) < ? AND SUM(ns = '' AND state = ?) = 0",
                (cutoff, WAITING))]
            for thread_id in expired:
                conn.execute("DELETE FROM waypoint_checkpoints WHERE thread_id = ?", (thread_id,))
                conn.execute("DELETE FROM waypoint_threads WHERE thread_id = ?", (thread_id,))
            self._delete_records(conn, expired)
        return expired

    # -- reading -----------------------------------------------------------------------

    def head_id(self, thread_id: str, ns: str = "") -> str | None:
        with self._reading() as conn:
            row = conn.execute(
                "SELECT head FROM waypoint_threads WHERE thread_id = ? AND ns = ?",
                (str(thread_id), ns),
            ).fetchone()
        return row[0] if row else None

    def _read(self, conn: sqlite3.Connection, thread_id: str, ns: str,
              checkpoint_id: str) -> CheckpointTuple | None:
        rows = conn.execute(_CHAIN, (thread_id, ns, checkpoint_id, thread_id, ns)).fetchall()
        if not rows:
            return None
        cid, parent_id, step, ts, _, _, metadata, writes = rows[-1]
        checkpoint = decode(cid, step, ts, [(r[4], r[5]) for r in rows], self.cipher)
        parent = make_config(thread_id, ns, parent_id) if parent_id else None
        pending = [tuple(w) for w in unseal(writes, self.cipher)] if writes else []
        return CheckpointTuple(make_config(thread_id, ns, cid), checkpoint,
                               unseal(metadata, self.cipher), parent,
                               pending)  # type: ignore[arg-type]

    def get_tuple(self, config: dict[str, Any]) -> CheckpointTuple | None:
        thread_id, ns, checkpoint_id = thread_of(config)
        with self._reading() as conn:
            if checkpoint_id is None:
                row = conn.execute(
                    "SELECT head FROM waypoint_threads WHERE thread_id = ? AND ns = ?",
                    (thread_id, ns),
                ).fetchone()
                if row is None or row[0] is None:
                    return None
                checkpoint_id = row[0]
            return self._read(conn, thread_id, ns, checkpoint_id)

    def list(
        self,
        config: dict[str, Any] | None,
        *,
        filter: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        self._ensure()
        before_id = ((before or {}).get("configurable") or {}).get("checkpoint_id")
        query = "SELECT c.thread_id, c.ns, c.id, c.metadata FROM waypoint_checkpoints c"
        params: list[Any] = []
        if config is None:  # threads, then their namespaces, in creation order (as memory)
            query += (" JOIN (SELECT thread_id, ns, seq, min(seq) OVER (PARTITION BY thread_id)"
                      " AS tseq FROM waypoint_threads) t"
                      " ON t.thread_id = c.thread_id AND t.ns = c.ns WHERE 1 = 1")
            order = " ORDER BY t.tseq, t.seq, c.id DESC"
        else:
            thread_id, ns, checkpoint_id = thread_of(config)
            query += " WHERE c.thread_id = ? AND c.ns = ?"
            params += [thread_id, ns]
            if checkpoint_id:
                query += " AND c.id = ?"
                params.append(checkpoint_id)
            order = " ORDER BY c.id DESC"
        if before_id is not None:
            query += " AND c.id < ?"
            params.append(before_id)
        query += order
        selected: list[CheckpointTuple] = []
        with self._reading() as conn:
            snapshot = not conn.in_transaction  # one read transaction: a consistent view
            if snapshot:
                conn.execute("BEGIN")
            try:
                for thread_id, ns, cid, metadata in conn.execute(query, params).fetchall():
                    if filter:
                        meta = unseal(metadata, self.cipher)
                        if any(meta.get(k) != v for k, v in filter.items()):
                            continue
                    item = self._read(conn, thread_id, ns, cid)
                    if item is not None:
                        selected.append(item)
                    if limit is not None and len(selected) >= limit:
                        break
            finally:
                if snapshot:
                    conn.execute("COMMIT")
        yield from selected

    # -- async: writes join the group writer's batches without a thread hand-off; reads of
    # a file run on the event loop's own connection (WAL: they never wait for a writer, and
    # a read is far cheaper than handing it to a thread); an in-memory database's calls run
    # in a worker thread (sqlite3 has no async driver) ---------------------------------

    async def aget_tuple(self, config: dict[str, Any]) -> CheckpointTuple | None:
        if self._path is not None:  # a file: read on the loop's own connection, no hand-off
            return self.get_tuple(config)
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: dict[str, Any] | None,
        *,
        filter: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        items = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in items:
            yield item

    async def aput(self, config: dict[str, Any], checkpoint: Checkpoint,
                   metadata: dict[str, Any], *, parent_id: str | None,
                   expected_head: str | None) -> dict[str, Any]:
        thread_id, ns, _ = thread_of(config)
        write = self._put_write(thread_id, ns, checkpoint, metadata, parent_id, expected_head)
        self._remember_depth(thread_id, ns, checkpoint.id, await self._group.arun(write))
        return make_config(thread_id, ns, checkpoint.id)

    async def arun_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`run_write` for a coroutine (no thread hand-off; see sqlite_group.py)."""
        self._ensure()
        return await self._group.arun(fn)


    async def ahead_id(self, thread_id: str, ns: str = "") -> str | None:
        if self._path is not None:
            return self.head_id(thread_id, ns)
        return await asyncio.to_thread(self.head_id, thread_id, ns)
