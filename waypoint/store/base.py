"""Long-term memory shared across threads: LangGraph's `BaseStore`, with tenant scopes.

A store holds JSON documents (dicts) under a namespace (a tuple of labels) and a key. Every
backend keeps a scope (the tenant) beside each item; `store.scoped("tenant-a")` is a view on
the same storage that only sees that scope's items. TTLs are in minutes, as LangGraph's:
per item, with a store-wide default, extended by reads when `refresh_ttl` (or the store's
`refresh_on_read`) says so. An expired item is never returned, even before a sweep removes
it. The public methods check their arguments here, once, and hand backends clean values.

With `index=` (LangGraph's IndexConfig: dims, embed, fields) the store embeds each document
as it is put and `search(query=...)` ranks by cosine similarity; the embedding happens here,
so backends only store and compare vectors (see index.py).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict

from . import checks
from .checks import Condition
from .filters import literal_prefix, select_namespaces
from .index import Index, IndexConfig, Vector, Vectors

NamespacePath = tuple[str | Literal["*"], ...]


class _NotGiven:
    """Marks an argument left out (ttl: use the store's default), as opposed to None."""

    _instance: _NotGiven | None = None

    def __new__(cls) -> _NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Any = _NotGiven()
NOT_PROVIDED = NOT_GIVEN  # LangGraph's name for it


class TTLConfig(TypedDict, total=False):
    """How a store treats expiry (all in minutes, as LangGraph's TTLConfig)."""

    refresh_on_read: bool  # reads extend an item's TTL unless they say refresh_ttl=False
    default_ttl: float | None  # TTL of items put without ttl=; None: they never expire
    sweep_interval_minutes: int | None  # start_ttl_sweeper()'s default interval


class SemanticSearchUnsupported(NotImplementedError):
    """search(query=...) on a store made without an embeddings index (index=...)."""


def _when(value: datetime | str, name: str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise TypeError(f"{name} must be an aware datetime, got {value!r}")
    return value


class Item:
    """A stored document with where it lives and when it was written."""

    __slots__ = ("created_at", "key", "namespace", "updated_at", "value")

    def __init__(self, *, value: dict[str, Any], key: str, namespace: tuple[str, ...],
                 created_at: datetime | str, updated_at: datetime | str) -> None:
        self.value = value
        self.key = key
        self.namespace = tuple(namespace)
        self.created_at = _when(created_at, "created_at")
        self.updated_at = _when(updated_at, "updated_at")

    def dict(self) -> dict[str, Any]:
        """A JSON-ready dict (namespace as a list, times in ISO 8601), as the API sends it."""
        return {"namespace": list(self.namespace), "key": self.key, "value": self.value,
                "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat()}

    def _fields(self) -> tuple[Any, ...]:
        return (self.namespace, self.key, self.value, self.created_at, self.updated_at)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item) or type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((self.namespace, self.key, self.created_at, self.updated_at))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(namespace={self.namespace!r}, key={self.key!r}, "
                f"value={self.value!r}, created_at={self.created_at.isoformat()!r}, "
                f"updated_at={self.updated_at.isoformat()!r})")


class SearchItem(Item):
    """An item found by search; `score` is the relevance of a semantic query (None without)."""

    __slots__ = ("score",)

    def __init__(self, namespace: tuple[str, ...], key: str, value: dict[str, Any],
                 created_at: datetime | str, updated_at: datetime | str,
                 score: float | None = None) -> None:
        super().__init__(value=value, key=key, namespace=namespace, created_at=created_at,
                         updated_at=updated_at)
        self.score = score

    def dict(self) -> dict[str, Any]:
        return {**super().dict(), "score": self.score}

    def _fields(self) -> tuple[Any, ...]:
        return (*super()._fields(), self.score)


def utc_now() -> datetime:
    return datetime.now(UTC)


def expiry(now: datetime, ttl: float | None) -> datetime | None:
    return None if ttl is None else now + timedelta(minutes=ttl)


class BaseStore(ABC):
    """Items in namespaces, shared by every thread and run (LangGraph's BaseStore API).

    Backends implement the underscore methods; the public ones check arguments, resolve the
    TTL rules and read the clock. `clock` (returning an aware datetime) is injectable so
    tests drive expiry without sleeping.
    """

    supports_ttl = True

    def __init__(self, *, ttl: TTLConfig | None = None,
                 clock: Callable[[], datetime] | None = None,
                 index: IndexConfig | None = None) -> None:
        self._index = None if index is None else Index(index)
        self.index_config: IndexConfig | None = None if self._index is None else \
            self._index.config
        self.ttl_config = _ttl_config(ttl)
        self._default_ttl = self.ttl_config.get("default_ttl")
        self._refresh_on_read = self.ttl_config.get("refresh_on_read", True)
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be a callable returning an aware datetime, got "
                            f"{type(clock).__name__}")
        self._clock = clock or utc_now
        self.scope = ""
        self._view = False  # a scoped view does not own (or close) the storage
        self._sweeper: Any = None

    # -- scopes ----------------------------------------------------------------------------

    def scoped(self, scope: str) -> BaseStore:
        """A view on the same storage that sees only `scope`'s items (a tenant's)."""
        if not isinstance(scope, str):
            raise TypeError(f"scope must be a str, got {type(scope).__name__}")
        if "\x00" in scope:
            raise ValueError("scope cannot contain NUL characters")
        view = copy.copy(self)
        view.scope = scope
        view._view = True
        return view

    # -- time ------------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if not isinstance(now, datetime) or now.tzinfo is None:
            raise TypeError(f"the store's clock must return an aware datetime, got {now!r}")
        return now

    def _ttl_of(self, ttl: Any) -> float | None:
        if ttl is NOT_GIVEN:
            return self._default_ttl
        return checks.minutes(ttl, "ttl")

    def _refresh(self, refresh_ttl: bool | None) -> bool:
        checks.optional_flag(refresh_ttl, "refresh_ttl")
        return self._refresh_on_read if refresh_ttl is None else refresh_ttl

    # -- checking arguments ----------------------------------------------------------------

    @staticmethod
    def _put_args(namespace: Any, key: Any, value: Any, index: Any
                  ) -> tuple[tuple[str, ...], str, str | None]:
        """(namespace, key, JSON text or None for a delete), checked."""
        ns = checks.namespace(namespace)
        name = checks.key(key)
        if value is None:
            return ns, name, None
        doc = checks.document(value)
        checks.index_fields(index)
        return ns, name, doc

    def _search_args(self, namespace_prefix: Any, query: Any, filter: Any, limit: Any,
                     offset: Any) -> tuple[tuple[str, ...], tuple[Condition, ...]]:
        if query is not None:
            if self._index is None:
                raise SemanticSearchUnsupported(
                    "search(query=...) needs semantic search, and this store has no "
                    "embeddings index: make it with index={'dims': ..., 'embed': ...} "
                    "(e.g. {'embed': 'local'}), or search with filter= instead")
            if not isinstance(query, str):
                raise TypeError(f"query must be a str, got {type(query).__name__}")
        prefix = checks.namespace(namespace_prefix, "namespace_prefix", empty=True)
        found = checks.conditions(filter)
        checks.count(limit, "limit")
        checks.count(offset, "offset")
        return prefix, found

    @staticmethod
    def _list_args(prefix: Any, suffix: Any, max_depth: Any, limit: Any, offset: Any
                   ) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
        pre = None if prefix is None else checks.namespace(prefix, "prefix", empty=True)
        suf = None if suffix is None else checks.namespace(suffix, "suffix", empty=True)
        if max_depth is not None:
            checks.count(max_depth, "max_depth", least=1)
        checks.count(limit, "limit")
        checks.count(offset, "offset")
        return pre, suf

    # -- the API (sync) --------------------------------------------------------------------

    def put(self, namespace: tuple[str, ...], key: str, value: dict[str, Any] | None,
            index: Literal[False] | list[str] | None = None, *, ttl: float | None = NOT_GIVEN
            ) -> None:
        """Store `value` at (namespace, key), replacing what was there; None deletes.

        `ttl`: minutes until it expires (None: never; left out: the store's default_ttl).
        `index`: with the store's embeddings index, which fields to embed (None: the index's
        fields; False: none, so semantic search ranks it last); ignored without one.
        """
        ns, name, doc = self._put_args(namespace, key, value, index)
        if doc is None:
            self._delete(ns, name)
            return
        vectors = () if self._index is None else self._index.embed(value, index)
        self._put(ns, name, doc, self._ttl_of(ttl), self._now(), vectors)

    def get(self, namespace: tuple[str, ...], key: str, *, refresh_ttl: bool | None = None
            ) -> Item | None:
        """The item at (namespace, key), or None (also when it has expired)."""
        ns = checks.namespace(namespace)
        name = checks.key(key)
        return self._get(ns, name, self._now(), self._refresh(refresh_ttl))

    def delete(self, namespace: tuple[str, ...], key: str) -> None:
        """Remove the item at (namespace, key); nothing happens if there is none."""
        self._delete(checks.namespace(namespace), checks.key(key))

    def search(self, namespace_prefix: tuple[str, ...], /, *, query: str | None = None,
               filter: dict[str, Any] | None = None, limit: int = 10, offset: int = 0,
               refresh_ttl: bool | None = None) -> list[SearchItem]:
        """Items under `namespace_prefix` (() for all) whose value passes `filter`.

        `filter` matches top-level keys exactly, or with $eq $ne $gt $gte $lt $lte. Results
        come newest update first, then by namespace and key. With `query` (a store with an
        embeddings index only) they come most similar first, `score` set to the cosine
        similarity; items with nothing embedded follow with score None.
        """
        prefix, found = self._search_args(namespace_prefix, query, filter, limit, offset)
        refresh = self._refresh(refresh_ttl)
        if query and self._index is not None:
            vector = self._index.query(query)
            return self._vector_search(prefix, found, vector, limit, offset, self._now(),
                                       refresh)
        return self._search(prefix, found, limit, offset, self._now(), refresh)

    def list_namespaces(self, *, prefix: NamespacePath | None = None,
                        suffix: NamespacePath | None = None, max_depth: int | None = None,
                        limit: int = 100, offset: int = 0) -> list[tuple[str, ...]]:
        """Namespaces that hold items, sorted; "*" in prefix/suffix matches any one label and
        `max_depth` cuts longer namespaces to that many labels (duplicates merged)."""
        pre, suf = self._list_args(prefix, suffix, max_depth, limit, offset)
        found = self._namespaces(literal_prefix(pre), self._now())
        return select_namespaces(found, pre, suf, max_depth, limit, offset)

    def sweep_expired(self) -> int:
        """Remove expired items of every scope; returns how many were removed.

        Expired items are already invisible, so this only reclaims space: call it from
        maintenance code (or start_ttl_sweeper()), not on one tenant's behalf.
        """
        return self._sweep(self._now())

    # -- the API (async) -------------------------------------------------------------------

    async def aput(self, namespace: tuple[str, ...], key: str, value: dict[str, Any] | None,
                   index: Literal[False] | list[str] | None = None, *,
                   ttl: float | None = NOT_GIVEN) -> None:
        ns, name, doc = self._put_args(namespace, key, value, index)
        if doc is None:
            await self._adelete(ns, name)
            return
        vectors = () if self._index is None else await self._index.aembed(value, index)
        await self._aput(ns, name, doc, self._ttl_of(ttl), self._now(), vectors)

    async def aget(self, namespace: tuple[str, ...], key: str, *,
                   refresh_ttl: bool | None = None) -> Item | None:
        ns = checks.namespace(namespace)
        name = checks.key(key)
        return await self._aget(ns, name, self._now(), self._refresh(refresh_ttl))

    async def adelete(self, namespace: tuple[str, ...], key: str) -> None:
        await self._adelete(checks.namespace(namespace), checks.key(key))

    async def asearch(self, namespace_prefix: tuple[str, ...], /, *, query: str | None = None,
                      filter: dict[str, Any] | None = None, limit: int = 10, offset: int = 0,
                      refresh_ttl: bool | None = None) -> list[SearchItem]:
        prefix, found = self._search_args(namespace_prefix, query, filter, limit, offset)
        refresh = self._refresh(refresh_ttl)
        if query and self._index is not None:
            vector = await self._index.aquery(query)
            return await self._avector_search(prefix, found, vector, limit, offset,
                                              self._now(), refresh)
        return await self._asearch(prefix, found, limit, offset, self._now(), refresh)

    async def alist_namespaces(self, *, prefix: NamespacePath | None = None,
                               suffix: NamespacePath | None = None,
                               max_depth: int | None = None, limit: int = 100,
                               offset: int = 0) -> list[tuple[str, ...]]:
        pre, suf = self._list_args(prefix, suffix, max_depth, limit, offset)
        found = await self._anamespaces(literal_prefix(pre), self._now())
        return select_namespaces(found, pre, suf, max_depth, limit, offset)

    async def asweep_expired(self) -> int:
        return await self._asweep(self._now())

    # -- background sweeping ---------------------------------------------------------------

    def start_ttl_sweeper(self, sweep_interval_minutes: float | None = None) -> Future[None]:
        """Sweep expired items every interval in a daemon thread, until stop_ttl_sweeper().

        The interval defaults to the TTL config's sweep_interval_minutes. The returned
        future completes when the sweeper stops.
        """
        from .sweeper import Sweeper

        interval = sweep_interval_minutes or self.ttl_config.get("sweep_interval_minutes")
        interval = checks.minutes(interval or None, "sweep_interval_minutes")
        if interval is None:
            raise ValueError("start_ttl_sweeper() needs an interval: pass "
                             "sweep_interval_minutes or set it in ttl=")
        if self._sweeper is not None and not self._sweeper.done.done():
            return self._sweeper.done
        self._sweeper = Sweeper(self.sweep_expired, interval * 60.0)
        return self._sweeper.done

    def stop_ttl_sweeper(self, timeout: float | None = None) -> bool:
        """Stop the background sweeper; True once it has stopped (or if none runs)."""
        if self._sweeper is None:
            return True
        return self._sweeper.stop(timeout)

    def close(self) -> None:
        """Stop the sweeper and release the storage (a scoped view leaves it to its owner)."""
        if self._view:
            return
        self.stop_ttl_sweeper()
        self._release()

    def _release(self) -> None:
        """Close connections this store opened (backends override)."""
        return None

    def __enter__(self) -> BaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what backends implement -----------------------------------------------------------

    @abstractmethod
    def _put(self, ns: tuple[str, ...], key: str, doc: str, ttl: float | None,
             now: datetime, vectors: Vectors = ()) -> None:
        """Write the item and replace its vectors with `vectors` (unit length)."""

    @abstractmethod
    def _delete(self, ns: tuple[str, ...], key: str) -> None: ...

    @abstractmethod
    def _get(self, ns: tuple[str, ...], key: str, now: datetime, refresh: bool
             ) -> Item | None: ...

    @abstractmethod
    def _search(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...], limit: int,
                offset: int, now: datetime, refresh: bool) -> list[SearchItem]: ...

    @abstractmethod
    def _vector_search(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...],
                       vector: Vector, limit: int, offset: int, now: datetime, refresh: bool
                       ) -> list[SearchItem]:
        """A page of live items ranked as index.rank() says, `score` set."""

    @abstractmethod
    def _namespaces(self, prefix: tuple[str, ...], now: datetime
                    ) -> Iterable[tuple[str, ...]]:
        """Distinct namespaces of this scope holding live items, starting with `prefix`."""

    @abstractmethod
    def _sweep(self, now: datetime) -> int: ...

    # Async twins: by default the sync method, run by `_offload` (inline for memory; a
    # worker thread for SQLite). PostgreSQL overrides them with native async I/O.

    async def _offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    async def _aput(self, ns: tuple[str, ...], key: str, doc: str, ttl: float | None,
                    now: datetime, vectors: Vectors = ()) -> None:
        await self._offload(self._put, ns, key, doc, ttl, now, vectors)

    async def _adelete(self, ns: tuple[str, ...], key: str) -> None:
        await self._offload(self._delete, ns, key)

    async def _aget(self, ns: tuple[str, ...], key: str, now: datetime, refresh: bool
                    ) -> Item | None:
        return await self._offload(self._get, ns, key, now, refresh)

    async def _asearch(self, prefix: tuple[str, ...], conditions: tuple[Condition, ...],
                       limit: int, offset: int, now: datetime, refresh: bool
                       ) -> list[SearchItem]:
        return await self._offload(self._search, prefix, conditions, limit, offset, now,
                                   refresh)

    async def _avector_search(self, prefix: tuple[str, ...],
                              conditions: tuple[Condition, ...], vector: Vector, limit: int,
                              offset: int, now: datetime, refresh: bool) -> list[SearchItem]:
        return await self._offload(self._vector_search, prefix, conditions, vector, limit,
                                   offset, now, refresh)

    async def _anamespaces(self, prefix: tuple[str, ...], now: datetime
                           ) -> Iterable[tuple[str, ...]]:
        return await self._offload(self._namespaces, prefix, now)

    async def _asweep(self, now: datetime) -> int:
        return await self._offload(self._sweep, now)


def _ttl_config(ttl: Any) -> TTLConfig:
    if ttl is None:
        return {}
    if not isinstance(ttl, dict):
        raise TypeError(f"ttl must be a TTLConfig dict, got {type(ttl).__name__}")
    unknown = set(ttl) - set(TTLConfig.__annotations__)
    if unknown:
        raise ValueError(f"ttl has unknown key(s) {sorted(unknown)} (known: "
                         f"{', '.join(TTLConfig.__annotations__)})")
    config: TTLConfig = {}
    if "default_ttl" in ttl:
        config["default_ttl"] = checks.minutes(ttl["default_ttl"], "ttl['default_ttl']")
    if "refresh_on_read" in ttl:
        flag = checks.optional_flag(ttl["refresh_on_read"], "ttl['refresh_on_read']")
        config["refresh_on_read"] = True if flag is None else flag
    if "sweep_interval_minutes" in ttl:
        interval = checks.minutes(ttl["sweep_interval_minutes"],
                                  "ttl['sweep_interval_minutes']")
        config["sweep_interval_minutes"] = interval  # type: ignore[typeddict-item]
    return config
