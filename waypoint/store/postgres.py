"""`PostgresStore`: the store in PostgreSQL (psycopg 3), shared by many processes.

Values are jsonb and filters run in SQL (a GIN index serves exact matches on scalars), with
the memory store's meaning: JSON equality, ordered operators only between numbers or
between strings (compared by code point). Namespaces are stored joined by "." under the
"C" collation, so a namespace prefix is a range scan of the primary key. Every operation is
one parameterised statement (a read that refreshes TTLs updates in the same statement), so
sync and async calls share the SQL and differ only in their pool. The store reads the time
from its clock and sends it, never `now()`, so every backend expires items alike. An
embeddings index keeps vectors beside the items (pgvector where the server has it; see
pg_vectors.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ..checkpoint.pg_pools import pool_options
from . import pg_vectors
from .base import BaseStore, Item, SearchItem, TTLConfig, expiry
from .checks import NS_SEP, Condition, dumps
from .index import IndexConfig, Vector, Vectors
from .pg_vectors import Plan, adrive, drive

_POOL_MAX = 10
_TABLE = "waypoint_store_items"
_LOCK_KEY = int.from_bytes(hashlib.blake2b(b"waypoint.store.setup", digest_size=8).digest(),
                           "big", signed=True)

# Applied once each, in order, in the setup transaction (under an advisory lock).
_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (
        f"""CREATE TABLE {_TABLE} (
            scope text COLLATE "C" NOT NULL,
            ns text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            value jsonb NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            ttl_minutes double precision,
            expires_at timestamptz,
            PRIMARY KEY (scope, ns, key))""",
        f"CREATE INDEX {_TABLE}_recent_idx ON {_TABLE} (scope, updated_at DESC)",
        f"CREATE INDEX {_TABLE}_expiry_idx ON {_TABLE} (expires_at) "
        "WHERE expires_at IS NOT NULL",
        f"CREATE INDEX {_TABLE}_value_idx ON {_TABLE} USING gin (value jsonb_path_ops)",
    )),
    (2, pg_vectors.MIGRATION),
)

_LIVE = "(expires_at IS NULL OR expires_at > %s)"
_PREFIX = "(ns = %s OR (ns >= %s AND ns < %s))"  # "/" sorts right after "."
_COLUMNS = "ns, key, value, created_at, updated_at"
_ORDER = "ORDER BY updated_at DESC, ns, key"
_PUT = f"""
INSERT INTO {_TABLE} AS t
    (scope, ns, key, value, created_at, updated_at, ttl_minutes, expires_at)
VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s::float8, %s::timestamptz)
ON CONFLICT (scope, ns, key) DO UPDATE SET
    value = EXCLUDED.value,
    created_at = CASE WHEN t.expires_at IS NOT NULL AND t.expires_at <= EXCLUDED.updated_at
                      THEN EXCLUDED.created_at ELSE t.created_at END,
    updated_at = EXCLUDED.updated_at,
    ttl_minutes = EXCLUDED.ttl_minutes,
    expires_at = EXCLUDED.expires_at
"""
# Wraps a SELECT of live rows (as `hit`) so the rows it returns get their TTL extended.
_REFRESHING = f"""
WITH hit AS ({{select}}),
touched AS (
    UPDATE {_TABLE} AS t SET expires_at = %s::timestamptz + t.ttl_minutes * interval '1 minute'
    FROM hit WHERE hit.expires_at IS NOT NULL
      AND t.scope = %s AND t.ns = hit.ns AND t.key = hit.key)
SELECT {_COLUMNS} FROM hit {_ORDER}
"""
_CMP = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _joined(ns: tuple[str, ...]) -> str:
    return NS_SEP.join(ns)


def _prefix_params(prefix: tuple[str, ...]) -> list[str]:
    joined = _joined(prefix)
    return [joined, joined + ".", joined + "/"]


def _utc(when: datetime) -> datetime:
    return when.astimezone(UTC)


def _filter_sql(conditions: tuple[Condition, ...]) -> tuple[list[str], list[Any]]:
    """WHERE fragments and their parameters for a checked filter."""
    parts: list[str] = []
    params: list[Any] = []
    for field, op, operand in conditions:
        if op == "$eq" and not isinstance(operand, (dict, list, tuple)):
            parts.append("value @> %s::jsonb")  # a scalar: containment is equality, indexed
            params.append(dumps({field: operand}))
        elif op == "$eq":
            parts.append("value -> %s = %s::jsonb")
            params += [field, dumps(operand)]
        elif op == "$ne":
            parts.append("(value -> %s) IS DISTINCT FROM %s::jsonb")
            params += [field, dumps(operand)]
        elif isinstance(operand, str):
            parts.append("CASE WHEN jsonb_typeof(value -> %s) = 'string' THEN "
                         f"(value ->> %s) COLLATE \"C\" {_CMP[op]} %s ELSE false END")
            params += [field, field, operand]
        else:
            parts.append("CASE WHEN jsonb_typeof(value -> %s) = 'number' THEN "
                         f"(value -> %s)::numeric {_CMP[op]} %s::numeric ELSE false END")
            params += [field, field, dumps(operand)]
    return parts, params


class _Pools:
    """Connection pools shared by a store and its scoped views: one for sync calls, and one
    per event loop for async calls (an async pool belongs to the loop that opened it)."""

    def __init__(self, target: str | ConnectionPool[Any] | AsyncConnectionPool[Any]) -> None:
        self.sync_pool: ConnectionPool[Any] | None = None
        self.owns_sync = True
        self.given_async: AsyncConnectionPool[Any] | None = None
        self.async_pools: dict[asyncio.AbstractEventLoop, AsyncConnectionPool[Any]] = {}
        self.guards: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        if isinstance(target, ConnectionPool):
            self.sync_pool, self.owns_sync = target, False
        elif isinstance(target, AsyncConnectionPool):
            self.given_async = target
        elif not isinstance(target, str):
            raise TypeError("PostgresStore needs a conninfo string, a ConnectionPool or an "
                            f"AsyncConnectionPool, not {type(target).__name__}")
        given = self.sync_pool or self.given_async
        self.conninfo: Any = given.conninfo if given is not None else target
        self.kwargs: Any = given.kwargs if given is not None else {"autocommit": True}
        self.lock = threading.Lock()  # guards creating pools only, never I/O
        self.closed = False
        self.ready = False
        self.vectors: str | None = None  # pg_vectors.PGVECTOR or PYTHON once set up

    def sync(self) -> ConnectionPool[Any]:
        if self.sync_pool is None:
            with self.lock:
                if self.closed:
                    raise RuntimeError("this PostgresStore is closed")
                if self.sync_pool is None:
                    pool: ConnectionPool[Any] = ConnectionPool(
                        self.conninfo, kwargs=self.kwargs, min_size=1, max_size=_POOL_MAX,
                        open=False, name="waypoint-store", **pool_options())
                    pool.open()
                    self.sync_pool = pool
        return self.sync_pool

    async def for_loop(self) -> AsyncConnectionPool[Any]:
        pool = self.given_async
        if pool is None:
            loop = asyncio.get_running_loop()
            pool = self.async_pools.get(loop)
            if pool is None:
                with self.lock:  # no await inside: atomic for this loop's tasks
                    if self.closed:
                        raise RuntimeError("this PostgresStore is closed")
                    pool = self.async_pools.get(loop)
                    if pool is None:
                        for dead in [lp for lp in self.async_pools if lp.is_closed()]:
                            del self.async_pools[dead]
                            self.guards.pop(dead, None)
                        # min_size 0: no background connect that a short-lived loop would
                        # leave half done.
                        pool = self.async_pools[loop] = AsyncConnectionPool(
                            self.conninfo, kwargs=self.kwargs, min_size=0,
                            max_size=_POOL_MAX, open=False, name="waypoint-store-async",
                            **pool_options(asynchronous=True))
                        self.guards[loop] = loop.create_task(
                            self._close_with(loop, pool), name="waypoint-store-pool-guard")
        await pool.open()  # idempotent
        return pool

    async def _close_with(self, loop: asyncio.AbstractEventLoop,
                          pool: AsyncConnectionPool[Any]) -> None:
        """Close a loop's pool when that loop shuts down (asyncio.run cancels every task)."""
        try:
            await asyncio.Event().wait()
        finally:
            with self.lock:
                if self.async_pools.get(loop) is pool:
                    del self.async_pools[loop]
                    self.guards.pop(loop, None)
            await pool.close()

    def _take_async(self) -> list[tuple[asyncio.AbstractEventLoop, AsyncConnectionPool[Any]]]:
        with self.lock:
            self.closed = True
            taken, self.async_pools = list(self.async_pools.items()), {}
            self.guards = {}
        return [(loop, pool) for loop, pool in taken if not loop.is_closed()]

    def close(self) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, pool in self._take_async():
            if loop is running or loop.is_running():  # cannot block on it from here
                asyncio.run_coroutine_threadsafe(pool.close(), loop)
            else:
                loop.run_until_complete(pool.close())
        pool, self.sync_pool = self.sync_pool, None
        if pool is not None and self.owns_sync:
            pool.close()

    async def aclose(self) -> None:
        running = asyncio.get_running_loop()
        for loop, pool in self._take_async():
            if loop is running:
                await pool.close()
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(pool.close(), loop)
        pool, self.sync_pool = self.sync_pool, None
        if pool is not None and self.owns_sync:
            await asyncio.to_thread(pool.close)


class _Opened:
    """`from_conn_string`'s result: `with` or `async with` it to get a set-up store."""

    def __init__(self, conninfo: str, options: dict[str, Any]) -> None:
        self._conninfo, self._options = conninfo, options
        self._store: PostgresStore | None = None

    def __enter__(self) -> PostgresStore:
        store = PostgresStore(self._conninfo, **self._options)
        try:
            store.setup()
        except BaseException:
            store.close()
            raise
        self._store = store
        return store

    def __exit__(self, *exc: object) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    async def __aenter__(self) -> PostgresStore:
        store = PostgresStore(self._conninfo, **self._options)
        try:
            await store.asetup()
        except BaseException:
            await store.aclose()
            raise
        self._store = store
        return store

    async def __aexit__(self, *exc: object) -> None:
        if self._store is not None:
            await self._store.aclose()
            self._store = None


class PostgresStore(BaseStore):
    """Items in PostgreSQL: durable, shared by processes, sync and async.

    Give it a conninfo string (pools made here are closed by close()/aclose()), or a
    ConnectionPool / AsyncConnectionPool of yours (yours to close).
    """

    def __init__(self, conn: str | ConnectionPool[Any] | AsyncConnectionPool[Any], *,
                 ttl: TTLConfig | None = None, clock: Callable[[], datetime] | None = None,
                 index: IndexConfig | None = None) -> None:
        super().__init__(ttl=ttl, clock=clock, index=index)
        self._pools = _Pools(conn)

    @classmethod
    def from_conn_string(cls, conn_string: str, *, ttl: TTLConfig | None = None,
                         clock: Callable[[], datetime] | None = None,
                         index: IndexConfig | None = None) -> _Opened:
        """`with`/`async with` this: opens the pools, runs setup(), closes on exit."""
        return _Opened(conn_string, {"ttl": ttl, "clock": clock, "index": index})

    def _release(self) -> None:
        self._pools.close()

    async def aclose(self) -> None:
        """The async twin of close()."""
        if self._view:
            return
        self.stop_ttl_sweeper()
        await self._pools.aclose()

    # -- schema ----------------------------------------------------------------------------

    def _setup_plan(self) -> Plan[str | None]:
        """Migrations under an advisory lock, then the vectors' storage if indexed."""
        yield "SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY]
        yield ("CREATE TABLE IF NOT EXISTS waypoint_store_migrations ("
               "version integer PRIMARY KEY, applied_at double precision NOT NULL)"), []
        done = {row[0] for row in (yield "SELECT version FROM waypoint_store_migrations", [])}
        for version, statements in _MIGRATIONS:
            if version in done:
                continue
            for statement in statements:
                yield statement, []
            yield "INSERT INTO waypoint_store_migrations VALUES (%s, %s)", [version, time.time()]
        if self._index is None:
            return None
        return (yield from pg_vectors.setup_plan(self._index))

    def setup(self) -> None:
        """Create or migrate the tables: idempotent, and safe from many processes at once."""
        with self._pools.sync().connection() as conn, conn.transaction():
            self._pools.vectors = drive(conn, self._setup_plan())
        self._pools.ready = True

    async def asetup(self) -> None:
        """The async twin of setup()."""
        pool = await self._pools.for_loop()
        async with pool.connection() as conn, conn.transaction():
            self._pools.vectors = await adrive(conn, self._setup_plan())
        self._pools.ready = True

    # -- running statements ----------------------------------------------------------------

    def _run(self, query: str, params: list[Any], fetch: bool = True) -> Any:
        if not self._pools.ready:
            self.setup()
        with self._pools.sync().connection() as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if fetch else cur.rowcount

    async def _arun(self, query: str, params: list[Any], fetch: bool = True) -> Any:
        if not self._pools.ready:
            await self.asetup()
        pool = await self._pools.for_loop()
        async with pool.connection() as conn:
            cur = await conn.execute(query, params)  # type: ignore[arg-type]
            return await cur.fetchall() if fetch else cur.rowcount

    def _run_plan(self, plan: Plan[Any]) -> Any:
        """A plan's statements on one connection, in one transaction."""
        with self._pools.sync().connection() as conn, conn.transaction():
            return drive(conn, plan)

    async def _arun_plan(self, plan: Plan[Any]) -> Any:
        pool = await self._pools.for_loop()
        async with pool.connection() as conn, conn.transaction():
            return await adrive(conn, plan)

    # -- statements ------------------------------------------------------------------------

    def _put_stmt(self, ns: tuple[str, ...], key: str, doc: str, ttl: float | None,
                  now: datetime, vectors: Vectors) -> tuple[str, list[Any]]:
        params = [self.scope, _joined(ns), key, doc, now, now, ttl, expiry(now, ttl)]
        return pg_vectors.put_stmt(_PUT, params, self.scope, _joined(ns), key, vectors,
                                   self._pools.vectors)

    def _delete_stmt(self, ns: tuple[str, ...], key: str) -> tuple[str, list[Any]]:
        return (f"DELETE FROM {_TABLE} WHERE scope = %s AND ns = %s AND key = %s",
                [self.scope, _joined(ns), key])

    def _get_stmt(self, ns: tuple[str, ...], key: str, now: datetime, refresh: bool
                  ) -> tuple[str, list[Any]]:
        select = (f"SELECT {_COLUMNS}, expires_at FROM {_TABLE} "
                  f"WHERE scope = %s AND ns = %s AND key = %s AND {_LIVE}")
        params = [self.scope, _joined(ns), key, now]
        if not refresh:
            return select, params
        return _REFRESHING.format(select=select), [*params, now, self.scope]

    def _where(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...],
               now: datetime) -> tuple[str, list[Any]]:
        """This scope's live items under `prefix` that pass the filter (columns unqualified)."""
        where = [f"scope = %s AND {_LIVE}"]
        params: list[Any] = [self.scope, now]
        if prefix:
            where.append(_PREFIX)
            params += _prefix_params(prefix)
        parts, values = _filter_sql(conditions)
        return " AND ".join(where + parts), params + values

    def _search_stmt(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...],
                     limit: int, offset: int, now: datetime, refresh: bool
                     ) -> tuple[str, list[Any]]:
        where, params = self._where(prefix, conditions, now)
        select = (f"SELECT {_COLUMNS}, expires_at FROM {_TABLE} WHERE {where} "
                  f"{_ORDER} LIMIT %s OFFSET %s")
        params += [limit, offset]
        if not refresh:
            return select, params
        return _REFRESHING.format(select=select), [*params, now, self.scope]

    def _namespaces_stmt(self, prefix: tuple[str, ...], now: datetime
                         ) -> tuple[str, list[Any]]:
        query = f"SELECT DISTINCT ns FROM {_TABLE} WHERE scope = %s AND {_LIVE}"
        params: list[Any] = [self.scope, now]
        if prefix:
            query += f" AND {_PREFIX}"
            params += _prefix_params(prefix)
        return query, params

    def _vector_plan(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...],
                     vector: Vector, limit: int, offset: int, now: datetime, refresh: bool
                     ) -> Plan[list[SearchItem]]:
        where, params = self._where(prefix, conditions, now)
        ann = self._index.ann if self._index is not None else "flat"
        hits = yield from pg_vectors.search_plan(
            self.scope, where, params, _PREFIX if prefix else "",
            _prefix_params(prefix) if prefix else [], vector, limit, offset,
            self._pools.vectors or pg_vectors.PYTHON, ann)
        if not hits:
            return []
        select, args = pg_vectors.page_stmt(_COLUMNS, self.scope, hits)
        if refresh:
            select, args = _REFRESHING.format(select=select), [*args, now, self.scope]
        rows = yield select, args
        return [SearchItem(tuple(r[0].split(NS_SEP)), r[1], r[2], _utc(r[3]), _utc(r[4]),
                           score) for r, score in pg_vectors.in_order(rows, hits)]

    @staticmethod
    def _sweep_stmt(now: datetime) -> tuple[str, list[Any]]:
        return f"DELETE FROM {_TABLE} WHERE expires_at <= %s", [now]

    @staticmethod
    def _item(row: Any, ns: tuple[str, ...], key: str) -> Item:
        return Item(value=row[2], key=key, namespace=ns, created_at=_utc(row[3]),
                    updated_at=_utc(row[4]))

    @staticmethod
    def _found(rows: list[Any]) -> list[SearchItem]:
        return [SearchItem(tuple(r[0].split(NS_SEP)), r[1], r[2], _utc(r[3]), _utc(r[4]))
                for r in rows]

    # -- operations (sync) -----------------------------------------------------------------

    def _put(self, ns: tuple[str, ...], key: str, doc: str, ttl: float | None,
             now: datetime, vectors: Vectors = ()) -> None:
        if not self._pools.ready:
            self.setup()  # the statement depends on how vectors are kept
        self._run(*self._put_stmt(ns, key, doc, ttl, now, vectors), fetch=False)

    def _delete(self, ns: tuple[str, ...], key: str) -> None:
        self._run(*self._delete_stmt(ns, key), fetch=False)

    def _get(self, ns: tuple[str, ...], key: str, now: datetime, refresh: bool
             ) -> Item | None:
        rows = self._run(*self._get_stmt(ns, key, now, refresh))
        return self._item(rows[0], ns, key) if rows else None

    def _search(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...], limit: int,
                offset: int, now: datetime, refresh: bool) -> list[SearchItem]:
        return self._found(self._run(*self._search_stmt(prefix, conditions, limit, offset,
                                                        now, refresh)))

    def _vector_search(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...],
                       vector: Vector, limit: int, offset: int, now: datetime, refresh: bool
                       ) -> list[SearchItem]:
        if not self._pools.ready:
            self.setup()
        return self._run_plan(self._vector_plan(prefix, conditions, vector, limit, offset,
                                                now, refresh))

    def _namespaces(self, prefix: tuple[str, ...], now: datetime) -> list[tuple[str, ...]]:
        rows = self._run(*self._namespaces_stmt(prefix, now))
        return [tuple(row[0].split(NS_SEP)) for row in rows]

    def _sweep(self, now: datetime) -> int:
        return int(self._run(*self._sweep_stmt(now), fetch=False))

    # -- operations (async) ----------------------------------------------------------------

    async def _aput(self, ns: tuple[str, ...], key: str, doc: str, ttl: float | None,
                    now: datetime, vectors: Vectors = ()) -> None:
        if not self._pools.ready:
            await self.asetup()
        await self._arun(*self._put_stmt(ns, key, doc, ttl, now, vectors), fetch=False)

    async def _adelete(self, ns: tuple[str, ...], key: str) -> None:
        await self._arun(*self._delete_stmt(ns, key), fetch=False)

    async def _aget(self, ns: tuple[str, ...], key: str, now: datetime, refresh: bool
                    ) -> Item | None:
        rows = await self._arun(*self._get_stmt(ns, key, now, refresh))
        return self._item(rows[0], ns, key) if rows else None

    async def _asearch(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...],
                       limit: int, offset: int, now: datetime, refresh: bool
                       ) -> list[SearchItem]:
        return self._found(await self._arun(*self._search_stmt(prefix, conditions, limit,
                                                               offset, now, refresh)))

    async def _avector_search(self, prefix: tuple[str, ...],
                              conditions: tuple[Condition, ...], vector: Vector, limit: int,
                              offset: int, now: datetime, refresh: bool) -> list[SearchItem]:
        if not self._pools.ready:
            await self.asetup()
        return await self._arun_plan(self._vector_plan(prefix, conditions, vector, limit,
                                                       offset, now, refresh))

    async def _anamespaces(self, prefix: tuple[str, ...], now: datetime
                           ) -> list[tuple[str, ...]]:
        rows = await self._arun(*self._namespaces_stmt(prefix, now))
        return [tuple(row[0].split(NS_SEP)) for row in rows]

    async def _asweep(self, now: datetime) -> int:
        return int(await self._arun(*self._sweep_stmt(now), fetch=False))
