"""Store backends for the conformance and crash tests: memory, SQLite and PostgreSQL.

Test modules import the fixtures (`from store_backends import backend, saver  # noqa: F401`;
pytest puts this directory on sys.path). `saver` is a fresh store per test, parametrized over
"memory", "sqlite" and "postgres"; `backend` names the store so a test can open another store
on the same data (`backend.open()`), make thread ids that are cleaned up
(`backend.thread()`), and hand the store's location to a child process (`backend.url`).

A backend whose module is not written yet (`waypoint.checkpoint.sqlite` / `.postgres`) is
skipped with reason "not implemented yet". PostgreSQL lives on the shared database
postgresql://postgres@127.0.0.1:5432/test (override: WAYPOINT_TEST_PG_URL): tests only use
thread ids from `backend.thread()` and delete those threads afterwards. When the server is
unreachable the postgres tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from waypoint.checkpoint import MemorySaver

BACKENDS = ("memory", "sqlite", "postgres")
PG_URL = os.environ.get("WAYPOINT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
NOT_IMPLEMENTED = "not implemented yet"

_MODULES = {"sqlite": ("waypoint.checkpoint.sqlite", "SqliteSaver"),
            "postgres": ("waypoint.checkpoint.postgres", "PostgresSaver")}


class BackendUnavailable(Exception):
    """The backend cannot be used here; `.fatal` when that must fail the test (CI)."""

    def __init__(self, reason: str, *, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


def saver_class(kind: str) -> type:
    """The store class of `kind`; BackendUnavailable if its module is not written yet."""
    if kind == "memory":
        return MemorySaver
    module_name, class_name = _MODULES[kind]
    if importlib.util.find_spec(module_name) is None:
        raise BackendUnavailable(NOT_IMPLEMENTED)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("waypoint"):
            raise BackendUnavailable(NOT_IMPLEMENTED) from exc
        # the store is written but its driver is missing (e.g. psycopg)
        raise BackendUnavailable(f"{kind}: {exc}", fatal=IN_CI and kind == "postgres") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise BackendUnavailable(NOT_IMPLEMENTED)
    return cls


_pg_reachable: bool | None = None


def postgres_reachable(url: str = PG_URL) -> bool:
    global _pg_reachable
    if _pg_reachable is None:
        parts = urlsplit(url)
        try:
            with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432),
                                          timeout=3):
                _pg_reachable = True
        except OSError:
            _pg_reachable = False
    return _pg_reachable


def require(kind: str) -> type:
    """saver_class(kind), or skip / fail the calling test as the rules above say."""
    try:
        cls = saver_class(kind)
        if kind == "postgres" and not postgres_reachable():
            raise BackendUnavailable(f"PostgreSQL at {PG_URL} is unreachable", fatal=IN_CI)
    except BackendUnavailable as exc:
        if exc.fatal:
            pytest.fail(f"{exc.reason} (CI=true: PostgreSQL tests must run)")
        pytest.skip(exc.reason)
    return cls


def _takes(function: Any, name: str) -> bool:
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def _var_keyword(function: Any) -> bool:
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def accepts_option(cls: type, name: str) -> bool:
    """Whether `cls.from_conn_string` takes option `name` (itself, or passed on to __init__)."""
    opener = cls.from_conn_string
    return _takes(opener, name) or (_var_keyword(opener) and _takes(cls.__init__, name))


def store_options(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The options `cls.from_conn_string` accepts (snapshot_every only where it is taken)."""
    return {k: v for k, v in options.items() if accepts_option(cls, k)}


@contextlib.contextmanager
def open_store(kind: str, url: str | None = None, **options: Any) -> Iterator[Any]:
    """A store of `kind` on `url` (a SQLite file or a PostgreSQL URL); memory is always new."""
    cls = saver_class(kind)
    if kind == "memory":
        yield MemorySaver(**options)
        return
    with cls.from_conn_string(url, **store_options(cls, options)) as saver:
        yield saver


@contextlib.asynccontextmanager
async def aopen_store(kind: str, url: str | None = None, **options: Any) -> AsyncIterator[Any]:
    """Like open_store, entering the store with `async with` where it supports that."""
    cls = saver_class(kind)
    if kind == "memory":
        yield MemorySaver(**options)
        return
    manager = cls.from_conn_string(url, **store_options(cls, options))
    if hasattr(manager, "__aenter__"):
        async with manager as saver:
            yield saver
    else:
        with manager as saver:
            yield saver


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@contextlib.contextmanager
def private_postgres_database() -> Iterator[str]:
    """A throw-away database next to the shared one, for tests that touch every thread
    (sweep): they must not delete other people's threads in the shared database."""
    import psycopg  # the PostgresSaver's own driver

    name = f"waypoint_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(PG_URL, name)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Backend:
    """One kind of store for one test: where it lives, and which threads the test made."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind = kind
        self.url = url
        self.persistent = kind != "memory"
        self.threads: list[str] = []
        self.prefix = f"wp-{uuid.uuid4().hex[:10]}"

    def thread(self, label: str = "t") -> str:
        """A new thread id, deleted from the store when the test ends."""
        thread_id = f"{self.prefix}-{label}-{len(self.threads)}"
        self.threads.append(thread_id)
        return thread_id

    def open(self, **options: Any) -> contextlib.AbstractContextManager[Any]:
        """Another store on the same data (memory: a new, empty store)."""
        return open_store(self.kind, self.url, **options)

    def aopen(self, **options: Any) -> contextlib.AbstractAsyncContextManager[Any]:
        return aopen_store(self.kind, self.url, **options)

    def takes(self, option: str) -> bool:
        if self.kind == "memory":
            return True
        return accepts_option(saver_class(self.kind), option)

    def require_reopen(self) -> None:
        if not self.persistent:
            pytest.skip("memory store cannot be reopened after its process ends")

    def cleanup(self) -> None:
        if self.kind != "postgres" or not self.threads:
            return
        with self.open() as store:
            for thread_id in self.threads:
                store.delete_thread(thread_id)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    kind = request.param
    require(kind)
    url = {"memory": None, "sqlite": str(tmp_path / "store.db"), "postgres": PG_URL}[kind]
    store = Backend(kind, url)
    try:
        yield store
    finally:
        store.cleanup()


@pytest.fixture
def saver(backend: Backend) -> Iterator[Any]:
    """A fresh store of each kind (for postgres: fresh thread ids on the shared database)."""
    with backend.open() as store:
        yield store
