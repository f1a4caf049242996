"""Pooled PostgreSQL connections checked before use when they sat idle.

After a database restart (or a failover, or an idle timeout in a proxy) every connection
in a pool is dead, and each would fail the first statement sent on it. A pool that checks
each connection it hands out costs a round trip per use, which a commit per step cannot
afford; so only connections idle for more than a couple of seconds are checked (an empty
query): the ones that can have died unnoticed. A connection that fails the check is
discarded and the pool hands out another.
"""

from __future__ import annotations

import time
from typing import Any
from weakref import WeakKeyDictionary

IDLE_SECONDS = 2.0
_returned: WeakKeyDictionary[Any, float] = WeakKeyDictionary()


def _fresh(conn: Any) -> bool:
    last = _returned.get(conn)
    return last is not None and time.monotonic() - last < IDLE_SECONDS


def check_idle(conn: Any) -> None:
    """A pool's `check`: raises (so the pool drops it) if an idle connection is dead."""
    if not _fresh(conn):
        from psycopg_pool import ConnectionPool

        ConnectionPool.check_connection(conn)  # an empty query, outside any transaction


async def acheck_idle(conn: Any) -> None:
    if not _fresh(conn):
        from psycopg_pool import AsyncConnectionPool

        await AsyncConnectionPool.check_connection(conn)


def stamp(conn: Any) -> None:
    """A pool's `reset`: note when the connection went back (it stays as it is)."""
    _returned[conn] = time.monotonic()


async def astamp(conn: Any) -> None:
    _returned[conn] = time.monotonic()


def pool_options(*, asynchronous: bool = False) -> dict[str, Any]:
    """Keyword arguments for ConnectionPool / AsyncConnectionPool."""
    if asynchronous:
        return {"check": acheck_idle, "reset": astamp}
    return {"check": check_idle, "reset": stamp}
