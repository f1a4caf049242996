"""One small database seam for the service's tables, over SQLite or PostgreSQL.

The service's queries are written once, in the SQL both databases speak, with `?` for a
parameter and `?j` for a JSON parameter (SQLite keeps JSON as text, PostgreSQL as jsonb).
A `Database` runs a function inside one transaction on a worker thread, so route handlers
never block the event loop and every operation is atomic.

On SQLite the service writes through the checkpointer's connection (one writer anyway; a
Python lock hands it over at once where two connections would wait on SQLite's sleeping
busy handler) and its group commit.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import orjson

T = TypeVar("T")


def to_json(value: Any) -> str:
    from ..encoding import dumps

    return dumps(value).decode()


def from_json(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (dict, list)):  # psycopg decodes jsonb itself
        return value
    return orjson.loads(value)


class Tx(Protocol):
    """What a query function receives: statements inside one open transaction."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class Database:
    """Runs query functions in transactions on a small thread pool."""

    dialect = "?"

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="waypoint-db")

    def run(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    async def arun(self, fn: Callable[[Tx], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.run, fn)

    async def aread(self, fn: Callable[[Tx], T]) -> T:
        """A read-only query function (no transaction held against writers)."""
        return await self.arun(fn)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# -- SQLite ---------------------------------------------------------------------------


class _SqliteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(_sqlite_sql(sql), params).rowcount

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(_sqlite_sql(sql), rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self._conn.execute(_sqlite_sql(sql), params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(_sqlite_sql(sql), params).fetchall()


_SQLITE_CACHE: dict[str, str] = {}


def _sqlite_sql(sql: str) -> str:
    done = _SQLITE_CACHE.get(sql)
    if done is None:
        done = _SQLITE_CACHE[sql] = sql.replace("?j", "?")
    return done


class SqliteDatabase(Database):
    """The service's tables in the checkpointer's SQLite file. Writes go through the
    checkpointer's group writer (one connection, one writer: a service write and a run's
    step that arrive together share a transaction and an fsync); reads use a connection of
    their own on the event loop's thread (in WAL mode they never wait for the writer)."""

    dialect = "sqlite"

    def __init__(self, write: Callable[[Callable[[sqlite3.Connection], Any]], Any],
                 path: str, awrite: Any = None) -> None:
        super().__init__(threads=4)
        self._write = write
        self._awrite = awrite
        self.reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.reader.execute("PRAGMA query_only = ON")
        self._read_lock = threading.Lock()

    def run(self, fn: Callable[[Tx], T]) -> T:
        return self._write(lambda conn: fn(_SqliteTx(conn)))

    async def arun(self, fn: Callable[[Tx], T]) -> T:
        if self._awrite is None:
            return await super().arun(fn)
        return await self._awrite(lambda conn: fn(_SqliteTx(conn)))

    async def aread(self, fn: Callable[[Tx], T]) -> T:
        with self._read_lock:
            return fn(_SqliteTx(self.reader))

    def close(self) -> None:
        super().close()
        self.reader.close()


# -- PostgreSQL -----------------------------------------------------------------------

_PARAM = re.compile(r"\?j|\?")
_PG_CACHE: dict[str, str] = {}


def _pg_sql(sql: str) -> str:
    done = _PG_CACHE.get(sql)
    if done is None:
        escaped = sql.replace("%", "%%")
        done = _PG_CACHE[sql] = _PARAM.sub(
            lambda m: "%s::jsonb" if m.group() == "?j" else "%s", escaped)
    return done


class _PostgresTx:
    dialect = "postgres"

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.notices: dict[tuple[str, str], None] = {}  # sent together before the commit

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self._conn.execute(_pg_sql(sql), params)
        return cur.rowcount

    def send_notices(self) -> None:
        """One statement for every notification of the transaction (each distinct once);
        PostgreSQL delivers them when it commits."""
        if self.notices:
            pairs = list(self.notices)
            self.notices.clear()
            self._conn.execute("SELECT " + ", ".join("pg_notify(%s, %s)" for _ in pairs),
                               [value for pair in pairs for value in pair])

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_pg_sql(sql), rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self._conn.execute(_pg_sql(sql), params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(_pg_sql(sql), params).fetchall()


class PostgresDatabase(Database):
    """The service's tables in PostgreSQL, through a psycopg connection pool."""

    dialect = "postgres"

    def __init__(self, url: str, *, max_size: int = 8) -> None:
        from psycopg_pool import ConnectionPool

        from ...checkpoint.pg_pools import pool_options

        super().__init__(threads=max_size)
        self.pool = ConnectionPool(url, min_size=1, max_size=max_size, open=True,
                                   kwargs={"autocommit": False}, **pool_options())

    def run(self, fn: Callable[[Tx], T]) -> T:
        with self.pool.connection() as conn, conn.transaction():
            tx = _PostgresTx(conn)
            result = fn(tx)
            tx.send_notices()
            return result

    @contextmanager
    def connection(self) -> Iterator[Any]:
        with self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        super().close()
        self.pool.close()


def notify(tx: Tx, channel: str, payload: str = "") -> None:
    """Wake listeners in other processes when this transaction commits (PostgreSQL only:
    an embedded SQLite server has no other process to wake)."""
    if tx.dialect == "postgres":
        tx.notices[(channel, payload)] = None  # type: ignore[attr-defined]


# -- JSON containment, the one place the dialects differ in a WHERE clause ----------------


def json_contains(tx_dialect: str, column: str, wanted: dict[str, Any]) -> tuple[str, list[Any]]:
    """SQL that is true when the JSON object in `column` has every key of `wanted` with
    an equal value (PostgreSQL's `@>` on the top level)."""
    if not wanted:
        return "1 = 1", []
    if tx_dialect == "postgres":
        return f"{column} @> ?j", [to_json(wanted)]
    parts: list[str] = []
    params: list[Any] = []
    for key, value in wanted.items():
        path = '$."' + str(key).replace('"', '""') + '"'
        if isinstance(value, (dict, list)):
            parts.append(f"json_extract({column}, ?) = json(?)")
            params += [path, to_json(value)]
        elif value is None:
            parts.append(f"json_type({column}, ?) = 'null'")
            params.append(path)
        elif isinstance(value, bool):
            parts.append(f"json_type({column}, ?) = ?")
            params += [path, "true" if value else "false"]
        else:
            parts.append(f"json_extract({column}, ?) = ?")
            params += [path, value]
    return " AND ".join(parts), params
