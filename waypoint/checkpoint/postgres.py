"""`PostgresSaver`: the shared durable store, for many processes writing to one database.

Every operation is a small "plan" (a generator of SQL batches) run by one sync and one async
driver, so both APIs share the logic and each batch is a single pipelined round trip. A put
on the head is one statement and one round trip (plus a depth read if this process did not
write the parent); a fork is two (lock the head, read the parent; insert and commit). The
head check is a conditional UPDATE (INSERT ... ON CONFLICT DO NOTHING for a new thread), so
two writers racing on one head can never both commit. Locks are always taken thread rows
first, then checkpoint rows, so concurrent writers cannot deadlock.

The saver is split by job: plans and drivers (pg_driver.py), SQL and migrations
(pg_sql.py), group commit (pg_group.py), reads (pg_reading.py), retention
(pg_retention.py), plus effects/approvals/timers (postgres_records.py), the usage ledger
(postgres_usage.py) and rewind (postgres_rewind.py). This module keeps the pools, the
schema setup and the writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ..errors import CheckpointConflict, FencedOut
from .base import (
    IDLE,
    BaseCheckpointSaver,
    Checkpoint,
    PendingWrite,
    make_config,
    state_of_head,
    state_of_writes,
    thread_of,
)
from .crypto import Cipher
from .pg_driver import (
    _adrive,
    _drive,
    _fence_checks,
    _fence_clause,
    _holds,
    _is_fork,
    _Last,
    _Plan,
    _Stmt,
    with_fence,
)
from .pg_group import GroupCommitStats, PostgresGroupCommit, _Group, _LoopPool
from .pg_pools import pool_options
from .pg_reading import PostgresReading
from .pg_retention import PostgresRetention
from .pg_sql import _INSERT, _INSERT_VALUES, _MIGRATIONS, _ON_CONFLICT
from .postgres_records import PostgresRecords
from .postgres_rewind import PostgresRewind
from .postgres_usage import PostgresUsage
from .records import DEFAULT_SNAPSHOT_EVERY, encode, seal

_POOL_MIN, _POOL_MAX = 1, 10
_DEPTHS_KEPT = 4096  # depth hints of the newest records this process wrote
_GROUP_LEADERS = 2  # group-commit batches in flight at once (per saver, or per event loop)


class _Opened:
    """`from_conn_string`'s result: `with` or `async with` it to get a set-up saver."""

    def __init__(self, conninfo: str, options: dict[str, Any]) -> None:
        self._conninfo, self._options = conninfo, options
        self._saver: PostgresSaver | None = None

    def __enter__(self) -> PostgresSaver:
        saver = PostgresSaver(self._conninfo, **self._options)
        try:
            saver.setup()
        except BaseException:
            saver.close()
            raise
        self._saver = saver
        return saver

    def __exit__(self, *exc: object) -> None:
        if self._saver is not None:
            self._saver.close()
            self._saver = None

    async def __aenter__(self) -> PostgresSaver:
        saver = PostgresSaver(self._conninfo, **self._options)
        try:
            await saver.asetup()
        except BaseException:
            await saver.aclose()
            raise
        self._saver = saver
        return saver

    async def __aexit__(self, *exc: object) -> None:
        if self._saver is not None:
            await self._saver.aclose()
            self._saver = None


class PostgresSaver(PostgresGroupCommit, PostgresRetention, PostgresReading, PostgresUsage,
                    PostgresRewind, PostgresRecords, BaseCheckpointSaver):
    """Checkpoints in PostgreSQL (psycopg 3): durable, shared by processes, safe under races.

    Sync methods use a ConnectionPool, async ones an AsyncConnectionPool opened on first use
    in the running loop; no lock serializes calls, each borrows its own connection. Pools
    made here from a conninfo string are closed by close()/aclose(); pools passed in are
    the caller's to close.

    `group_commit` (on by default): puts on the head made at the same time by this
    process's threads (or by one event loop's tasks) share one transaction and one round
    trip; each still gets its own result, and returns only once that transaction is
    committed. A lone put does not wait for company.
    """

    def __init__(
        self,
        pool_or_conninfo: str | ConnectionPool[Any] | AsyncConnectionPool[Any],
        *,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        schema: str | None = None,
        cipher: Cipher | bool | None = True,
        group_commit: bool = True,
    ) -> None:
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1, got {snapshot_every}")
        self.snapshot_every = snapshot_every
        self.schema = schema
        # True: encrypt if WAYPOINT_ENCRYPTION_KEY is set; False/None: never; or a Cipher.
        self.cipher = Cipher.from_env() if cipher is True else (cipher or None)
        # Depths of records this process wrote: a put on the head then reads nothing first.
        # Only a hint: prune may since have made such a record a snapshot (depth 0), and a
        # deeper guess only makes the next snapshot come a little early.
        self._depths: dict[tuple[str, str, str], int] = {}
        self._pool: ConnectionPool[Any] | None = None
        self._owns_pool = True
        self._given_apool: _LoopPool | None = None
        # Pools this saver makes for async use, one per event loop (a pool is bound to the
        # loop that opened it), each closed by its guard task when that loop shuts down.
        self._apools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}
        if isinstance(pool_or_conninfo, ConnectionPool):
            self._pool, self._owns_pool = pool_or_conninfo, False
        elif isinstance(pool_or_conninfo, AsyncConnectionPool):
            self._given_apool = _LoopPool(pool_or_conninfo)
        elif not isinstance(pool_or_conninfo, str):
            raise TypeError("PostgresSaver needs a conninfo string, a ConnectionPool or an "
                            f"AsyncConnectionPool, not {type(pool_or_conninfo).__name__}")
        given = self._pool or (self._given_apool.pool if self._given_apool else None)
        # The other flavour of pool is made from the given one's settings.
        self._conninfo: Any = given.conninfo if given is not None else pool_or_conninfo
        self._kwargs: Any = given.kwargs if given is not None else {"autocommit": True}
        self._creating = threading.Lock()  # guards creating a pool only, never I/O
        self._ready = False
        self._closed = False
        names = {"threads": "waypoint_threads", "checkpoints": "waypoint_checkpoints",
                 "migrations": "waypoint_migrations", "effects": "waypoint_effects",
                 "approvals": "waypoint_approvals", "timers": "waypoint_timers",
                 "usage": "waypoint_usage"}
        self._names = {
            key: (sql.Identifier(schema, name) if schema else sql.Identifier(name)).as_string()
            for key, name in names.items()
        }
        key = hashlib.blake2b(f"waypoint.setup:{schema or ''}".encode(), digest_size=8)
        self._lock_key = int.from_bytes(key.digest(), "big", signed=True)
        self._sql_cache: dict[str, str] = {}
        self.group_commit = group_commit
        self._group = _Group()  # the sync API's; each event loop's is on its _LoopPool
        self._stats_lock = threading.Lock()
        self._stats = GroupCommitStats()
        # Test hook: called (awaited, if it returns an awaitable) by a leader before it
        # takes its batch, so a test can hold it until the puts it wants are queued.
        self._before_batch: Callable[[], Any] | None = None

    @classmethod
    def from_conn_string(
        cls,
        conn_string: str,
        *,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        schema: str | None = None,
        cipher: Cipher | bool | None = True,
        group_commit: bool = True,
    ) -> _Opened:
        """`with`/`async with` this: opens the pools, runs setup(), closes on exit."""
        return _Opened(conn_string, {"snapshot_every": snapshot_every, "schema": schema,
                                     "cipher": cipher, "group_commit": group_commit})

    @property
    def _leaders_allowed(self) -> int:
        """How many group-commit batches may be in flight (read per put: tests tune it)."""
        return _GROUP_LEADERS

    def _sql(self, template: str) -> str:
        """`template` with this saver's (schema-qualified, quoted) table names filled in."""
        text = self._sql_cache.get(template)
        if text is None:
            text = self._sql_cache[template] = template.format(**self._names)
        return text

    # -- pools and drivers -------------------------------------------------------------

    def _sync_pool(self) -> ConnectionPool[Any]:
        if self._pool is None:
            with self._creating:
                if self._closed:
                    raise RuntimeError("this PostgresSaver is closed")
                if self._pool is None:
                    pool: ConnectionPool[Any] = ConnectionPool(
                        self._conninfo, kwargs=self._kwargs, min_size=_POOL_MIN,
                        max_size=_POOL_MAX, open=False, name="waypoint", **pool_options())
                    pool.open()
                    self._pool = pool
        return self._pool

    async def _async_pool(self) -> AsyncConnectionPool[Any]:
        return (await self._async_entry()).pool

    async def _async_entry(self) -> _LoopPool:
        entry = self._given_apool
        if entry is None:
            loop = asyncio.get_running_loop()
            entry = self._apools.get(loop)
            if entry is None:
                with self._creating:  # no await inside: atomic for this loop's tasks
                    if self._closed:
                        raise RuntimeError("this PostgresSaver is closed")
                    entry = self._apools.get(loop)
                    if entry is None:
                        for dead in [lp for lp in self._apools if lp.is_closed()]:
                            del self._apools[dead]  # loops closed without cancelling tasks
                        # min_size 0: no background connect racing the first caller's,
                        # which a short-lived loop (asyncio.run) would end half done.
                        entry = self._apools[loop] = _LoopPool(AsyncConnectionPool(
                            self._conninfo, kwargs=self._kwargs, min_size=0,
                            max_size=_POOL_MAX, open=False, name="waypoint-async",
                            **pool_options(asynchronous=True)))
                        entry.guard = loop.create_task(self._guard(loop, entry),
                                                       name="waypoint-async-pool-guard")
        if not entry.opened:
            await entry.pool.open()  # idempotent; concurrent first users all wait for it
            entry.opened = True
        return entry

    async def _guard(self, loop: asyncio.AbstractEventLoop, entry: _LoopPool) -> None:
        """Close a loop's pool when the loop shuts down (asyncio.run cancels every task).

        A pool left open there can hang that shutdown: a pool worker cancelled while it
        connects swallows the cancellation and waits on its queue until the pool stops it.
        """
        try:
            await asyncio.Event().wait()
        finally:
            with self._creating:
                if self._apools.get(loop) is entry:
                    del self._apools[loop]
            await entry.pool.close()

    def _run(self, plan: _Plan, *, tx: bool = False) -> Any:
        if not self._ready:
            self.setup()
        with self._sync_pool().connection() as conn:
            return _drive(conn, plan, tx)

    async def _arun(self, plan: _Plan, *, tx: bool = False) -> Any:
        if not self._ready:
            await self.asetup()
        async with (await self._async_pool()).connection() as conn:
            return await _adrive(conn, plan, tx)

    def _take_async_pools(self) -> list[tuple[asyncio.AbstractEventLoop, _LoopPool]]:
        with self._creating:
            self._closed = True
            entries, self._apools = list(self._apools.items()), {}
        return [(loop, entry) for loop, entry in entries if not loop.is_closed()]

    def close(self) -> None:
        """Close the pools this saver made (async ones on their own loops)."""
        entries = self._take_async_pools()
        pool, self._pool = self._pool, None
        if pool is not None and self._owns_pool:
            pool.close()
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, entry in entries:
            if loop is running or loop.is_running():  # cannot block on it from here
                asyncio.run_coroutine_threadsafe(entry.close(), loop)
            else:
                loop.run_until_complete(entry.close())

    async def aclose(self) -> None:
        """Close the pools this saver made."""
        entries = self._take_async_pools()
        running = asyncio.get_running_loop()
        for loop, entry in entries:
            if loop is running:
                await entry.close()
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(entry.close(), loop)
        pool, self._pool = self._pool, None
        if pool is not None and self._owns_pool:
            pool.close()

    # -- schema ------------------------------------------------------------------------

    def _setup_plan(self) -> _Plan:
        # Serialize concurrent setups (other processes too), then create only what is
        # missing: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the
        # schema exists, which a least-privileged role may lack.
        _, ((has_schema, has_table),) = yield [
            _Stmt("SELECT 1 FROM pg_advisory_xact_lock(%s)", [self._lock_key]),
            _Stmt("SELECT %(s)s::text IS NULL OR EXISTS (SELECT 1 FROM pg_namespace "
                  "WHERE nspname = %(s)s), to_regclass(%(m)s) IS NOT NULL",
                  {"s": self.schema, "m": self._names["migrations"]}),
        ]
        batch = []
        if not has_schema:
            schema = sql.Identifier(self.schema).as_string()  # type: ignore[arg-type]
            batch.append(_Stmt(f"CREATE SCHEMA IF NOT EXISTS {schema}", prepare=False))
        if not has_table:
            batch.append(_Stmt(self._sql(
                "CREATE TABLE IF NOT EXISTS {migrations} (version integer PRIMARY KEY, "
                "applied_at double precision NOT NULL)"), prepare=False))
        results = yield [*batch, _Stmt(self._sql("SELECT version FROM {migrations}"))]
        done = {row[0] for row in results[-1]}
        last = _Last()
        for version, steps in _MIGRATIONS:
            if version in done:
                continue
            for step in steps:
                if callable(step):  # runs after (and sends) the statements before it
                    yield from step(self, list(last))
                    last = _Last()
                else:
                    last.append(_Stmt(self._sql(step), prepare=False))
            last.append(_Stmt(self._sql("INSERT INTO {migrations} VALUES (%s, %s)"),
                              [version, time.time()]))
        if last:
            yield last

    def setup(self) -> None:
        """Create or migrate the schema: idempotent, and safe from many processes at once."""
        with self._sync_pool().connection() as conn:
            _drive(conn, self._setup_plan(), True)
        self._ready = True

    async def asetup(self) -> None:
        """The async twin of setup()."""
        async with (await self._async_pool()).connection() as conn:
            await _adrive(conn, self._setup_plan(), True)
        self._ready = True

    # -- writing -----------------------------------------------------------------------

    def _put_args(self, config: dict[str, Any], checkpoint: Checkpoint, metadata: dict[str, Any],
                  parent_id: str | None, expected_head: str | None) -> dict[str, Any]:
        thread_id, ns, _ = thread_of(config)
        return with_fence({"t": thread_id, "ns": ns, "id": checkpoint.id, "exp": expected_head,
                           "parent": parent_id, "step": checkpoint.step, "ts": checkpoint.ts,
                           "meta": seal(metadata, self.cipher),
                           "state": state_of_head(checkpoint.next_tasks)})

    def _hinted_depth(self, args: dict[str, Any]) -> tuple[bool, int | None]:
        """(whether a put on the head knows its parent's depth without a read, that depth).

        If the head check passes, the parent (the expected head) still exists, so its depth
        may be read outside the transaction or remembered from when this process wrote it.
        """
        if args["parent"] is None or args["exp"] is None:
            return True, None
        depth = self._depths.get((args["t"], args["ns"], args["parent"]))
        return depth is not None, depth

    def _depth_stmt(self, args: dict[str, Any]) -> _Stmt:
        return _Stmt(self._sql("SELECT depth FROM {checkpoints} WHERE thread_id = %(t)s "
                               "AND ns = %(ns)s AND id = %(parent)s"), args)

    def _depth_plan(self, args: dict[str, Any]) -> _Plan:
        (found,) = yield _Last([self._depth_stmt(args)])
        return found[0][0] if found else None

    def _encode_into(self, args: dict[str, Any], checkpoint: Checkpoint,
                     parent_depth: int | None) -> None:
        """Encode before any write, so an unstorable value fails before the transaction."""
        kind, depth, body = encode(checkpoint, parent_depth, self.snapshot_every, self.cipher)
        args.update(kind=kind, depth=depth, body=body, now=time.time(),
                    parent=args["parent"] if parent_depth is not None else None)

    def _claim_sql(self, args: dict[str, Any]) -> str:
        """One statement: move the head (or claim a new thread) and insert the record only
        if that worked (and, when fenced, only while the writer holds its lease). A stale
        head inserts nothing and is no error, so it cannot abort a transaction shared with
        other puts."""
        fence = _fence_clause(args)
        claim = (
            "INSERT INTO {threads} (thread_id, ns, head, touched_at, state) SELECT %(t)s, "
            f"%(ns)s, %(id)s, %(now)s, %(state)s WHERE TRUE{fence} ON CONFLICT DO NOTHING "
            "RETURNING 1"
            if args["exp"] is None else
            "UPDATE {threads} SET head = %(id)s, touched_at = %(now)s, state = %(state)s "
            f"WHERE thread_id = %(t)s AND ns = %(ns)s AND head = %(exp)s{fence} RETURNING 1")
        return self._sql(f"WITH moved AS ({claim}) {_INSERT} SELECT {_INSERT_VALUES} "
                         f"FROM moved{_ON_CONFLICT} RETURNING 1")

    def _refusal(self, args: dict[str, Any], head: str | None, holds: bool) -> Exception:
        """Why a put wrote nothing: its writer lost its lease, or the head moved."""
        if not holds:
            return FencedOut(args["t"], args["fence"])
        return CheckpointConflict(args["t"], args["exp"], head)

    def _claim_plan(self, args: dict[str, Any]) -> _Plan:
        """Commit one encoded put on the head; the head read after it names a race's winner."""
        inserted, head, *holds = yield _Last([
            _Stmt(self._claim_sql(args), args),
            _Stmt(self._sql("SELECT head FROM {threads} WHERE thread_id = %(t)s "
                            "AND ns = %(ns)s"), args),
            *_fence_checks(args),
        ])
        if not inserted:
            raise self._refusal(args, head[0][0] if head else None, _holds(holds))
        self._remember_depth(args["t"], args["ns"], args["id"], args["depth"])
        return make_config(args["t"], args["ns"], args["id"])

    def _put_plan(self, config: dict[str, Any], checkpoint: Checkpoint, metadata: dict[str, Any],
                  parent_id: str | None, expected_head: str | None) -> _Plan:
        args = self._put_args(config, checkpoint, metadata, parent_id, expected_head)
        thread_id, ns = args["t"], args["ns"]
        if _is_fork(parent_id, expected_head):
            # Lock the head first (conditional UPDATE), then read the parent with a fresh
            # snapshot, so a concurrent prune cannot remove it between read and insert.
            args["now"] = time.time()
            moved, found, *holds = yield [
                _Stmt(self._sql("UPDATE {threads} SET head = %(id)s, touched_at = %(now)s, "
                                "state = %(state)s WHERE thread_id = %(t)s AND ns = %(ns)s "
                                f"AND head = %(exp)s{_fence_clause(args)} RETURNING 1"), args),
                _Stmt(self._sql("SELECT (SELECT head FROM {threads} WHERE thread_id = %(t)s "
                                "AND ns = %(ns)s), (SELECT depth FROM {checkpoints} "
                                "WHERE thread_id = %(t)s AND ns = %(ns)s AND id = %(parent)s)"),
                      args),
                *_fence_checks(args),
            ]
            head, parent_depth = found[0]
            if not moved:
                raise self._refusal(args, head, _holds(holds))
            kind, depth, body = encode(checkpoint, parent_depth, self.snapshot_every,
                                       self.cipher)
            args.update(kind=kind, depth=depth, body=body,
                        parent=parent_id if parent_depth is not None else None)
            yield _Last([_Stmt(self._sql(
                f"{_INSERT} VALUES ({_INSERT_VALUES}){_ON_CONFLICT}"), args)])
            self._remember_depth(thread_id, ns, checkpoint.id, depth)
            return make_config(thread_id, ns, checkpoint.id)
        # The parent is the expected head (or there is none): one statement moves the head
        # (or claims a new thread) and inserts the record only if that worked.
        known, parent_depth = self._hinted_depth(args)
        if not known:
            (found,) = yield [self._depth_stmt(args)]
            parent_depth = found[0][0] if found else None
        self._encode_into(args, checkpoint, parent_depth)
        return (yield from self._claim_plan(args))

    def _remember_depth(self, thread_id: str, ns: str, checkpoint_id: str, depth: int) -> None:
        depths = self._depths
        depths[(thread_id, ns, checkpoint_id)] = depth
        if len(depths) > _DEPTHS_KEPT:
            for key in list(depths)[: _DEPTHS_KEPT // 2]:
                depths.pop(key, None)

    def put(
        self,
        config: dict[str, Any],
        checkpoint: Checkpoint,
        metadata: dict[str, Any],
        *,
        parent_id: str | None,
        expected_head: str | None,
    ) -> dict[str, Any]:
        fork = _is_fork(parent_id, expected_head)
        if fork or not self.group_commit:
            plan = self._put_plan(config, checkpoint, metadata, parent_id, expected_head)
            return self._run(plan, tx=fork)
        return self._group_put(self._prepare(config, checkpoint, metadata, parent_id,
                                             expected_head))

    async def aput(
        self,
        config: dict[str, Any],
        checkpoint: Checkpoint,
        metadata: dict[str, Any],
        *,
        parent_id: str | None,
        expected_head: str | None,
    ) -> dict[str, Any]:
        fork = _is_fork(parent_id, expected_head)
        if fork or not self.group_commit:
            plan = self._put_plan(config, checkpoint, metadata, parent_id, expected_head)
            return await self._arun(plan, tx=fork)
        return await self._agroup_put(await self._aprepare(config, checkpoint, metadata,
                                                           parent_id, expected_head))

    def _put_writes_plan(self, config: dict[str, Any], writes: Sequence[PendingWrite]) -> _Plan:
        thread_id, ns, checkpoint_id = thread_of(config)
        writes = list(writes)
        args = with_fence({"t": thread_id, "ns": ns, "id": checkpoint_id,
                           "w": seal(writes, self.cipher), "now": time.time(),
                           "state": state_of_writes(writes), "idle": IDLE})
        fence = _fence_clause(args)  # the fence's row, then the thread row: the lock order
        _, touched, *holds = yield _Last([
            _Stmt(self._sql("SELECT 1 FROM {threads} WHERE thread_id = %(t)s AND ns = %(ns)s"
                            f"{fence} FOR NO KEY UPDATE"), args),
            _Stmt(self._sql(
                "WITH c AS (UPDATE {checkpoints} SET writes = %(w)s WHERE thread_id = %(t)s "
                f"AND ns = %(ns)s AND id = %(id)s{fence} RETURNING 1) UPDATE {{threads}} SET "
                "touched_at = %(now)s, state = CASE WHEN head = %(id)s AND state <> %(idle)s "
                "THEN %(state)s ELSE state END WHERE thread_id = %(t)s AND ns = %(ns)s "
                "AND EXISTS (SELECT 1 FROM c) RETURNING 1"), args),
            *_fence_checks(args),
        ])
        if not touched:
            if not _holds(holds):
                raise FencedOut(thread_id, args["fence"])
            raise KeyError(f"no checkpoint {checkpoint_id!r} in thread {thread_id!r}")

    def put_writes(self, config: dict[str, Any], writes: Sequence[PendingWrite]) -> None:
        self._run(self._put_writes_plan(config, writes), tx=True)

    async def aput_writes(self, config: dict[str, Any], writes: Sequence[PendingWrite]) -> None:
        await self._arun(self._put_writes_plan(config, writes), tx=True)


# Kept importable from here: other modules and tests name them by this module.
__all__ = [
    "_MIGRATIONS",
    "GroupCommitStats",
    "PostgresSaver",
    "_Last",
    "_Plan",
    "_Stmt",
    "with_fence",
]
