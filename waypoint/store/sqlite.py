"""`SqliteStore`: the store in a SQLite file, beside the checkpoints if you like.

Its tables are prefixed `waypoint_store_` and migrated through their own
`waypoint_store_migrations` table, so the store can share a database file with
`SqliteSaver` (open each with the path: two connections, one WAL file). Namespaces are
stored joined by "." (labels cannot contain one), so a namespace prefix is a range scan of
the primary key. Times are integer microseconds since the epoch (exact round trips). Filters
run in SQL through a registered function that applies the same matcher as the memory store.
Vectors of an embeddings index are float32 blobs in `waypoint_store_vectors`, replaced and
deleted with their item; semantic search compares them in Python (brute force: fine for the
thousands of items a SQLite store holds).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from .base import BaseStore, Item, SearchItem, TTLConfig
from .checks import NS_SEP, Condition
from .filters import matches
from .index import IndexConfig, Vector, Vectors, from_blob, rank, to_blob

_MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
        CREATE TABLE waypoint_store_items (
            scope TEXT NOT NULL,
            ns TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            ttl_minutes REAL,
            expires_at INTEGER,
            PRIMARY KEY (scope, ns, key)
        );
        CREATE INDEX waypoint_store_items_recent ON waypoint_store_items (scope, updated_at);
        CREATE INDEX waypoint_store_items_expiry ON waypoint_store_items (expires_at)
            WHERE expires_at IS NOT NULL
    """),
    (2, """
        CREATE TABLE waypoint_store_vectors (
            scope TEXT NOT NULL,
            ns TEXT NOT NULL,
            key TEXT NOT NULL,
            n INTEGER NOT NULL,
            field TEXT NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (scope, ns, key, n)
        )
    """),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_MINUTE_US = 60_000_000

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_PUT = """
INSERT INTO waypoint_store_items
    (scope, ns, key, value, created_at, updated_at, ttl_minutes, expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (scope, ns, key) DO UPDATE SET
    value = excluded.value,
    created_at = CASE WHEN expires_at IS NOT NULL AND expires_at <= excluded.updated_at
                      THEN excluded.created_at ELSE created_at END,
    updated_at = excluded.updated_at,
    ttl_minutes = excluded.ttl_minutes,
    expires_at = excluded.expires_at
"""
_DROP_VECTORS = "DELETE FROM waypoint_store_vectors WHERE scope = ? AND ns = ? AND key = ?"
_ADD_VECTOR = "INSERT INTO waypoint_store_vectors VALUES (?, ?, ?, ?, ?, ?)"
_ROW = ("SELECT ns, key, value, created_at, updated_at, expires_at FROM waypoint_store_items "
        "WHERE scope = ? AND ns = ? AND key = ?")
_REFRESH = ("UPDATE waypoint_store_items SET expires_at = ? + CAST(ttl_minutes * "
            f"{_MINUTE_US} AS INTEGER) WHERE scope = ? AND ns = ? AND key = ? "
            "AND expires_at IS NOT NULL")


def _micros(when: datetime) -> int:
    return (when - _EPOCH) // _MICRO


def _time(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _joined(ns: tuple[str, ...]) -> str:
    return NS_SEP.join(ns)


def _split(joined: str) -> tuple[str, ...]:
    return tuple(joined.split(NS_SEP))


@lru_cache(maxsize=64)
def _parsed_filter(text: str) -> tuple[Condition, ...]:
    return tuple((k, op, operand) for k, op, operand in json.loads(text))


def _match(value: str, filter_text: str) -> int:
    return int(matches(json.loads(value), _parsed_filter(filter_text)))


class _Db:
    """The connection and what goes with it, shared by a store and its scoped views."""

    def __init__(self, conn: sqlite3.Connection, owns: bool) -> None:
        self.conn = conn
        self.owns = owns
        self.lock = threading.RLock()  # one connection: SQLite has one writer anyway
        self.ready = False


class SqliteStore(BaseStore):
    """Items in a SQLite database (WAL, synchronous=FULL): durable across crashes."""

    def __init__(self, conn: sqlite3.Connection | str, *, ttl: TTLConfig | None = None,
                 clock: Callable[[], datetime] | None = None,
                 index: IndexConfig | None = None, synchronous: str = "FULL") -> None:
        super().__init__(ttl=ttl, clock=clock, index=index)
        if synchronous.upper() not in ("FULL", "NORMAL", "OFF", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL, EXTRA or OFF, not {synchronous!r}")
        if isinstance(conn, str):
            connection = sqlite3.connect(conn, isolation_level=None, check_same_thread=False,
                                         timeout=30.0)
            owns = True
        elif isinstance(conn, sqlite3.Connection):
            connection, owns = conn, False
        else:
            raise TypeError(f"SqliteStore needs a path or a sqlite3.Connection, got "
                            f"{type(conn).__name__}")
        connection.isolation_level = None
        connection.execute("PRAGMA busy_timeout = 30000")
        if connection.execute("PRAGMA journal_mode").fetchone()[0] != "memory":
            connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        connection.create_function("waypoint_store_match", 2, _match, deterministic=True)
        self._db = _Db(connection, owns)

    @classmethod
    @contextmanager
    def from_conn_string(cls, path: str, **options: Any) -> Iterator[SqliteStore]:
        """Open (creating if needed) the database at `path`, set it up, close it after."""
        store = cls(path, **options)
        try:
            store.setup()
            yield store
        finally:
            store.close()

    def _release(self) -> None:
        db = self._db
        if db.owns:
            with db.lock:
                db.conn.close()

    # -- schema ----------------------------------------------------------------------------

    def setup(self) -> None:
        """Create or migrate the store's tables: idempotent, safe from several processes."""
        db = self._db
        with db.lock:
            if db.ready:
                return
            conn = db.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS waypoint_store_migrations ("
                             " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
                done = {row[0] for row in
                        conn.execute("SELECT version FROM waypoint_store_migrations")}
                for version, script in _MIGRATIONS:
                    if version in done:
                        continue
                    for statement in filter(str.strip, script.split(";")):
                        conn.execute(statement)
                    conn.execute("INSERT INTO waypoint_store_migrations VALUES (?, ?)",
                                 (version, time.time()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            db.ready = True

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction (reads in it see what its writes will be based on)."""
        db = self._db
        if not db.ready:
            self.setup()
        with db.lock:
            db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield db.conn
            except BaseException:
                db.conn.execute("ROLLBACK")
                raise
            db.conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        if not db.ready:
            self.setup()
        with db.lock:
            yield db.conn

    async def _offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    # -- operations ------------------------------------------------------------------------

    def _put(self, ns: tuple[str, ...], key: str, doc: str, ttl: float | None,
             now: datetime, vectors: Vectors = ()) -> None:
        at = _micros(now)
        expires = None if ttl is None else at + int(ttl * _MINUTE_US)
        where = (self.scope, _joined(ns), key)
        with self._tx() as conn:
            conn.execute(_PUT, (*where, doc, at, at, ttl, expires))
            conn.execute(_DROP_VECTORS, where)
            conn.executemany(_ADD_VECTOR, [(*where, n, field, to_blob(vector))
                                           for n, (field, vector) in enumerate(vectors)])

    def _delete(self, ns: tuple[str, ...], key: str) -> None:
        where = (self.scope, _joined(ns), key)
        with self._tx() as conn:
            conn.execute("DELETE FROM waypoint_store_items WHERE scope = ? AND ns = ? AND key = ?",
                         where)
            conn.execute(_DROP_VECTORS, where)

    def _get(self, ns: tuple[str, ...], key: str, now: datetime, refresh: bool
             ) -> Item | None:
        at = _micros(now)
        args = (self.scope, _joined(ns), key)
        with self._read() as conn:
            row = conn.execute(
                "SELECT value, created_at, updated_at, expires_at FROM waypoint_store_items "
                f"WHERE scope = ? AND ns = ? AND key = ? AND {_LIVE}", (*args, at)).fetchone()
            if row is None:
                return None
            if refresh and row[3] is not None:
                with self._tx() as tx:
                    tx.execute(_REFRESH, (at, *args))
        return Item(value=json.loads(row[0]), key=key, namespace=ns,
                    created_at=_time(row[1]), updated_at=_time(row[2]))

    def _where(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...], at: int
               ) -> tuple[str, list[Any]]:
        """The WHERE clause (and its parameters) of this scope's live items that match."""
        where = [f"scope = ? AND {_LIVE}"]
        params: list[Any] = [self.scope, at]
        if prefix:
            joined = _joined(prefix)
            where.append("(ns = ? OR (ns >= ? AND ns < ?))")
            params += [joined, joined + ".", joined + "/"]  # "/" sorts right after "."
        if conditions:
            where.append("waypoint_store_match(value, ?)")
            params.append(json.dumps([list(c) for c in conditions]))
        return " AND ".join(where), params

    def _search(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...], limit: int,
                offset: int, now: datetime, refresh: bool) -> list[SearchItem]:
        at = _micros(now)
        where, params = self._where(prefix, conditions, at)
        sql = ("SELECT ns, key, value, created_at, updated_at, expires_at "
               f"FROM waypoint_store_items WHERE {where} "
               "ORDER BY updated_at DESC, ns, key LIMIT ? OFFSET ?")
        with self._read() as conn:
            rows = conn.execute(sql, (*params, limit, offset)).fetchall()
            stale = [(at, self.scope, r[0], r[1]) for r in rows if r[5] is not None]
            if refresh and stale:
                with self._tx() as tx:
                    tx.executemany(_REFRESH, stale)
        return [SearchItem(_split(r[0]), r[1], json.loads(r[2]), _time(r[3]), _time(r[4]))
                for r in rows]

    def _vector_search(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...],
                       vector: Vector, limit: int, offset: int, now: datetime, refresh: bool
                       ) -> list[SearchItem]:
        at = _micros(now)
        where, params = self._where(prefix, conditions, at)
        sql = ("SELECT i.ns, i.key, i.updated_at, v.vector FROM (SELECT scope, ns, key, "
               f"updated_at FROM waypoint_store_items WHERE {where}) AS i "
               "LEFT JOIN waypoint_store_vectors AS v ON v.scope = i.scope AND v.ns = i.ns "
               "AND v.key = i.key AND length(v.vector) = ?")  # another dims' vectors: absent
        with self._read() as conn:
            rows = ((_split(ns), key, _time(updated), None if blob is None else from_blob(blob))
                    for ns, key, updated, blob in conn.execute(sql, [*params, 4 * len(vector)]))
            hits = rank(rows, vector, limit, offset)
            found = [(row, score) for ns, key, score in hits
                     if (row := conn.execute(_ROW, (self.scope, _joined(ns), key)).fetchone())]
            stale = [(at, self.scope, r[0], r[1]) for r, _ in found if r[5] is not None]
            if refresh and stale:
                with self._tx() as tx:
                    tx.executemany(_REFRESH, stale)
        return [SearchItem(_split(r[0]), r[1], json.loads(r[2]), _time(r[3]), _time(r[4]),
                           score) for r, score in found]

    def _namespaces(self, prefix: tuple[str, ...], now: datetime) -> list[tuple[str, ...]]:
        sql = f"SELECT DISTINCT ns FROM waypoint_store_items WHERE scope = ? AND {_LIVE}"
        params: list[Any] = [self.scope, _micros(now)]
        if prefix:
            joined = _joined(prefix)
            sql += " AND (ns = ? OR (ns >= ? AND ns < ?))"
            params += [joined, joined + ".", joined + "/"]
        with self._read() as conn:
            return [_split(row[0]) for row in conn.execute(sql, params)]

    def _sweep(self, now: datetime) -> int:
        at = _micros(now)
        with self._tx() as conn:
            conn.execute("DELETE FROM waypoint_store_vectors WHERE (scope, ns, key) IN ("
                         "SELECT scope, ns, key FROM waypoint_store_items "
                         "WHERE expires_at <= ?)", (at,))
            return conn.execute("DELETE FROM waypoint_store_items WHERE expires_at <= ?",
                                (at,)).rowcount
