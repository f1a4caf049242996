"""Long-term memory (LangGraph's BaseStore): one conformance suite over the memory, SQLite
and PostgreSQL stores, plus what is specific to each backend.

Time is driven by an injected clock, never by sleeping. Each PostgreSQL test works in its
own scopes (a unique prefix) on the shared database and deletes them afterwards; tests that
count what a sweep removed (it sweeps every scope) use a private database. Under CI=true a
PostgreSQL test fails, instead of skipping, when the server cannot be reached.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

import pytest
from store_backends import IN_CI, PG_URL, postgres_reachable, private_postgres_database

from waypoint.store import (
    BaseStore,
    InMemoryStore,
    Item,
    SearchItem,
    SemanticSearchUnsupported,
    SqliteStore,
)

KINDS = ("memory", "sqlite", "postgres")
START_TIME = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A settable clock for the stores: `advance(minutes=...)` moves time forward."""

    def __init__(self) -> None:
        self.now = START_TIME

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def require_postgres() -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"psycopg is missing (CI=true: PostgreSQL tests must run): {exc}")
        pytest.skip(f"psycopg is missing: {exc}")
    if not postgres_reachable():
        if IN_CI:
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable (CI=true: PostgreSQL tests "
                        f"must run)")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable")


def _delete_scopes(url: str, prefix: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('waypoint_store_items')").fetchone()
        if exists and exists[0] is not None:
            conn.execute("DELETE FROM waypoint_store_items WHERE scope LIKE %s",
                         [prefix + "%"])


class Backend:
    """Opens stores of one kind on the same data, each seen through this test's scopes."""

    def __init__(self, kind: str, location: str | None, prefix: str) -> None:
        self.kind = kind
        self.location = location
        self.prefix = prefix  # every scope this test uses starts with it
        self.clock = Clock()
        self._opened: list[BaseStore] = []
        self._memory: InMemoryStore | None = None

    def raw(self, **options: Any) -> BaseStore:
        """A store on this backend's data, not yet scoped (closed after the test)."""
        options.setdefault("clock", self.clock)
        if self.kind == "memory":
            store: BaseStore = InMemoryStore(**options)
        elif self.kind == "sqlite":
            store = SqliteStore(self.location, **options)  # type: ignore[arg-type]
        else:
            from waypoint.store import PostgresStore

            store = PostgresStore(self.location, **options)  # type: ignore[arg-type]
        self._opened.append(store)
        return store

    def open(self, scope: str = "main", **options: Any) -> BaseStore:
        """A view of `scope`; without options, memory views share one store (one storage)."""
        if self.kind == "memory" and not options:
            if self._memory is None:
                self._memory = self.raw()  # type: ignore[assignment]
            return self._memory.scoped(self.prefix + scope)  # type: ignore[union-attr]
        return self.raw(**options).scoped(self.prefix + scope)

    def close(self) -> None:
        for store in self._opened:
            store.close()
        if self.kind == "postgres":
            _delete_scopes(self.location, self.prefix)  # type: ignore[arg-type]


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    kind = request.param
    if kind == "postgres":
        require_postgres()
    location = {"memory": None, "sqlite": str(tmp_path / "store.db"), "postgres": PG_URL}[kind]
    opened = Backend(kind, location, f"wpt-{uuid.uuid4().hex[:12]}-")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def store(backend: Backend) -> BaseStore:
    return backend.open()


@pytest.fixture
def sweepable(backend: Backend) -> Iterator[Backend]:
    """A backend whose whole storage belongs to this test (sweeps count every scope)."""
    if backend.kind != "postgres":
        yield backend
        return
    with private_postgres_database() as url:
        own = Backend("postgres", url, backend.prefix)
        try:
            yield own
        finally:
            for opened in own._opened:
                opened.close()


# -- put / get / update / delete ----------------------------------------------------------


def test_put_then_get_returns_the_item(store: BaseStore) -> None:
    store.put(("users", "alice"), "profile", {"name": "Alice", "age": 30, "tags": ["a", "b"]})
    item = store.get(("users", "alice"), "profile")
    assert isinstance(item, Item)
    assert item.namespace == ("users", "alice")
    assert item.key == "profile"
    assert item.value == {"name": "Alice", "age": 30, "tags": ["a", "b"]}
    assert item.created_at == START_TIME and item.updated_at == START_TIME
    assert item.created_at.tzinfo is not None
    assert item.dict() == {"namespace": ["users", "alice"], "key": "profile",
                           "value": {"name": "Alice", "age": 30, "tags": ["a", "b"]},
                           "created_at": START_TIME.isoformat(),
                           "updated_at": START_TIME.isoformat()}


def test_get_of_a_missing_item_is_none(store: BaseStore) -> None:
    assert store.get(("nobody",), "nothing") is None
    store.put(("somebody",), "k", {"v": 1})
    assert store.get(("somebody",), "other") is None
    assert store.get(("somebody", "deeper"), "k") is None


def test_update_replaces_the_value_and_keeps_created_at(backend: Backend) -> None:
    store = backend.open()
    store.put(("notes",), "n1", {"text": "first", "extra": True})
    backend.clock.advance(minutes=5)
    store.put(("notes",), "n1", {"text": "second"})
    item = store.get(("notes",), "n1")
    assert item is not None
    assert item.value == {"text": "second"}  # replaced, not merged
    assert item.created_at == START_TIME
    assert item.updated_at == START_TIME + timedelta(minutes=5)


def test_values_are_copies_on_the_way_in_and_out(store: BaseStore) -> None:
    value = {"list": [1, 2], "nested": {"a": 1}}
    store.put(("ns",), "k", value)
    value["list"].append(3)
    value["nested"]["a"] = 99
    got = store.get(("ns",), "k")
    assert got is not None and got.value == {"list": [1, 2], "nested": {"a": 1}}
    got.value["list"].append(4)
    again = store.get(("ns",), "k")
    assert again is not None and again.value == {"list": [1, 2], "nested": {"a": 1}}


def test_values_round_trip_as_json(store: BaseStore) -> None:
    value = {"unicode": "héllo ✓ 日本", "int": 2**53, "float": 0.1, "neg": -3.5, "t": True,
             "f": False, "none": None, "empty": {}, "list": [], "tuple": (1, 2),
             "deep": {"a": [{"b": [None, "x"]}]}}
    store.put(("json",), "doc", value)
    got = store.get(("json",), "doc")
    assert got is not None
    assert got.value == {**value, "tuple": [1, 2]}  # a tuple is a JSON array
    assert got.value["t"] is True and got.value["none"] is None


def test_delete_and_put_none_remove_the_item(store: BaseStore) -> None:
    store.put(("a",), "one", {"v": 1})
    store.put(("a",), "two", {"v": 2})
    store.delete(("a",), "one")
    store.put(("a",), "two", None)
    assert store.get(("a",), "one") is None
    assert store.get(("a",), "two") is None
    assert store.search(("a",)) == []
    store.delete(("a",), "never-existed")  # no error


def test_keys_and_labels_may_hold_any_text_but_dots(store: BaseStore) -> None:
    ns = ("user space", "ünïcode", "%_like_wildcards", "*")
    store.put(ns, "key with spaces/and.dots", {"v": 1})
    item = store.get(ns, "key with spaces/and.dots")
    assert item is not None and item.namespace == ns
    assert [i.key for i in store.search(("user space", "ünïcode"))] == [
        "key with spaces/and.dots"]
    assert store.search(("user space", "ünïcode", "%")) == []


# -- search -------------------------------------------------------------------------------


def _fill(backend: Backend, store: BaseStore, rows: list[tuple[tuple[str, ...], str, dict]]
          ) -> None:
    for ns, key, value in rows:
        store.put(ns, key, value)
        backend.clock.advance(seconds=1)  # a distinct updated_at for each


def test_search_by_namespace_prefix(backend: Backend) -> None:
    store = backend.open()
    _fill(backend, store, [(("docs", "a"), "1", {"n": 1}), (("docs", "b"), "2", {"n": 2}),
                           (("docs",), "3", {"n": 3}), (("docsx",), "4", {"n": 4}),
                           (("other", "docs"), "5", {"n": 5})])
    assert sorted(i.key for i in store.search(("docs",))) == ["1", "2", "3"]
    assert [i.key for i in store.search(("docs", "a"))] == ["1"]
    assert store.search(("doc",)) == []  # a prefix is whole labels, not characters
    assert sorted(i.key for i in store.search(())) == ["1", "2", "3", "4", "5"]
    found = store.search(("docs", "b"))
    assert isinstance(found[0], SearchItem) and found[0].score is None
    assert found[0].namespace == ("docs", "b")
    assert found[0].dict()["score"] is None


def test_search_orders_newest_first_and_pages(backend: Backend) -> None:
    store = backend.open()
    _fill(backend, store, [(("feed",), f"k{i}", {"i": i}) for i in range(7)])
    assert [i.key for i in store.search(("feed",))] == [f"k{i}" for i in range(6, -1, -1)]
    assert [i.key for i in store.search(("feed",), limit=3)] == ["k6", "k5", "k4"]
    assert [i.key for i in store.search(("feed",), limit=3, offset=3)] == ["k3", "k2", "k1"]
    assert [i.key for i in store.search(("feed",), limit=3, offset=6)] == ["k0"]
    assert store.search(("feed",), offset=10) == []
    assert store.search(("feed",), limit=0) == []
    assert len(store.search(("feed",))) == 7  # default limit is 10
    store.put(("feed",), "k0", {"i": 0, "edited": True})  # an update moves it to the front
    assert store.search(("feed",), limit=1)[0].key == "k0"


PRODUCTS = [
    ("p1", {"name": "apple", "price": 1.5, "stock": 0, "color": "red", "organic": True,
            "tags": ["fruit"], "meta": {"a": 1, "b": 2}}),
    ("p2", {"name": "banana", "price": 0.25, "stock": 12, "color": "yellow",
            "organic": False, "tags": ["fruit", "tropical"], "meta": {"a": 1}}),
    ("p3", {"name": "cherry", "price": 8, "stock": 3, "color": "red", "organic": None,
            "tags": []}),
    ("p4", {"name": "durian", "price": "unknown", "stock": 1}),
    ("p5", {"name": "Eggplant", "price": 3, "stock": 1, "color": "purple", "organic": 1}),
]


@pytest.fixture
def products(backend: Backend) -> BaseStore:
    store = backend.open()
    _fill(backend, store, [(("shop", "products"), key, value) for key, value in PRODUCTS])
    return store


def _keys(store: BaseStore, filter: dict[str, Any]) -> list[str]:
    return sorted(i.key for i in store.search(("shop",), filter=filter, limit=100))


@pytest.mark.parametrize(("filter", "expected"), [
    ({"color": "red"}, ["p1", "p3"]),
    ({"color": "red", "stock": 0}, ["p1"]),
    ({"color": {"$eq": "red"}}, ["p1", "p3"]),
    ({"color": {"$ne": "red"}}, ["p2", "p4", "p5"]),  # a missing key is "not red"
    ({"price": {"$gt": 1.5}}, ["p3", "p5"]),  # "unknown" is not a number: no match
    ({"price": {"$gte": 1.5}}, ["p1", "p3", "p5"]),
    ({"price": {"$lt": 1.5}}, ["p2"]),
    ({"price": {"$lte": 1.5}}, ["p1", "p2"]),
    ({"price": {"$gt": 1, "$lt": 5}}, ["p1", "p5"]),
    ({"price": 8.0}, ["p3"]),  # JSON equality: 8 == 8.0
    ({"price": {"$gte": "a"}}, ["p4"]),  # strings compare with strings only
    ({"name": {"$lt": "b"}}, ["p1", "p5"]),  # by code point: "E" < "a"
    ({"name": {"$gte": "banana", "$lte": "cherry"}}, ["p2", "p3"]),
    ({"organic": True}, ["p1"]),  # true is not 1
    ({"organic": 1}, ["p5"]),
    ({"organic": None}, ["p3"]),  # null matches a present null, not a missing key
    ({"tags": ["fruit"]}, ["p1"]),  # arrays match exactly, not by containment
    ({"tags": []}, ["p3"]),
    ({"tags": "fruit"}, []),
    ({"meta": {"b": 2, "a": 1}}, ["p1"]),  # objects: exact, key order does not matter
    ({"meta": {"a": 1}}, ["p2"]),
    ({"missing": {"$ne": 1}}, ["p1", "p2", "p3", "p4", "p5"]),
    ({"missing": {"$gt": 0}}, []),
    ({"stock": {"$ne": 1}, "color": {"$ne": "yellow"}}, ["p1", "p3"]),
])
def test_search_filters(products: BaseStore, filter: dict[str, Any], expected: list[str]
                        ) -> None:
    assert _keys(products, filter) == expected


def test_filter_with_limit_and_offset_pages_the_matches(products: BaseStore) -> None:
    everything = [i.key for i in products.search(("shop",), filter={"stock": {"$gte": 1}})]
    assert everything == ["p5", "p4", "p3", "p2"]
    assert [i.key for i in products.search(("shop",), filter={"stock": {"$gte": 1}},
                                           limit=2, offset=1)] == ["p4", "p3"]


# -- list_namespaces ----------------------------------------------------------------------


@pytest.fixture
def tree(backend: Backend) -> BaseStore:
    store = backend.open()
    for ns in [("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f"),
               ("a", "c", "f"), ("x", "v1"), ("y", "z", "v1")]:
        store.put(ns, "item", {"ns": list(ns)})
    return store


def test_list_namespaces_all_sorted(tree: BaseStore) -> None:
    assert tree.list_namespaces() == [("a", "b", "c"), ("a", "b", "d", "e"),
                                      ("a", "b", "d", "i"), ("a", "b", "f"), ("a", "c", "f"),
                                      ("x", "v1"), ("y", "z", "v1")]


def test_list_namespaces_prefix_suffix_and_wildcards(tree: BaseStore) -> None:
    assert tree.list_namespaces(prefix=("a", "b", "d")) == [("a", "b", "d", "e"),
                                                             ("a", "b", "d", "i")]
    assert tree.list_namespaces(prefix=("a", "b", "d", "e")) == [("a", "b", "d", "e")]
    assert tree.list_namespaces(prefix=("a", "b", "d", "e", "f")) == []
    assert tree.list_namespaces(prefix=("x",)) == [("x", "v1")]
    assert tree.list_namespaces(suffix=("v1",)) == [("x", "v1"), ("y", "z", "v1")]
    assert tree.list_namespaces(suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f")]
    assert tree.list_namespaces(prefix=("a", "*", "f")) == [("a", "b", "f"), ("a", "c", "f")]
    assert tree.list_namespaces(prefix=("*", "b")) == [("a", "b", "c"), ("a", "b", "d", "e"),
                                                       ("a", "b", "d", "i"), ("a", "b", "f")]
    assert tree.list_namespaces(suffix=("*", "v1")) == [("x", "v1"), ("y", "z", "v1")]
    assert tree.list_namespaces(prefix=("a",), suffix=("f",)) == [("a", "b", "f"),
                                                                  ("a", "c", "f")]


def test_list_namespaces_max_depth_and_paging(tree: BaseStore) -> None:
    assert tree.list_namespaces(prefix=("a", "b"), max_depth=3) == [
        ("a", "b", "c"), ("a", "b", "d"), ("a", "b", "f")]
    assert tree.list_namespaces(max_depth=1) == [("a",), ("x",), ("y",)]
    assert tree.list_namespaces(max_depth=2, limit=2) == [("a", "b"), ("a", "c")]
    assert tree.list_namespaces(max_depth=2, limit=2, offset=2) == [("x", "v1"), ("y", "z")]
    assert tree.list_namespaces(limit=0) == []


def test_a_namespace_without_items_is_not_listed(tree: BaseStore) -> None:
    tree.delete(("x", "v1"), "item")
    assert ("x", "v1") not in tree.list_namespaces()
    assert tree.list_namespaces(prefix=("x",)) == []


# -- TTL ----------------------------------------------------------------------------------


def test_an_item_expires_after_its_ttl(backend: Backend) -> None:
    store = backend.open()
    store.put(("cache",), "short", {"v": 1}, ttl=1)
    store.put(("cache",), "forever", {"v": 2})
    backend.clock.advance(seconds=59)
    assert store.get(("cache",), "short", refresh_ttl=False) is not None
    backend.clock.advance(seconds=1)
    assert store.get(("cache",), "short") is None  # expired at exactly 1 minute
    assert [i.key for i in store.search(("cache",))] == ["forever"]
    store.delete(("cache",), "forever")
    assert store.list_namespaces(prefix=("cache",)) == []  # only an expired item is left


def test_reads_refresh_the_ttl(backend: Backend) -> None:
    store = backend.open()
    store.put(("s",), "k", {"v": 1}, ttl=10)
    backend.clock.advance(minutes=8)
    assert store.get(("s",), "k") is not None  # refresh_on_read defaults to True
    backend.clock.advance(minutes=8)  # 16 minutes after the put, 8 after the read
    assert store.get(("s",), "k", refresh_ttl=False) is not None
    backend.clock.advance(minutes=3)  # the unrefreshing read did not extend it
    assert store.get(("s",), "k") is None


def test_search_refreshes_the_ttl_of_what_it_returns(backend: Backend) -> None:
    store = backend.open()
    store.put(("s",), "a", {"v": 1}, ttl=10)
    store.put(("s",), "b", {"v": 2}, ttl=10)
    backend.clock.advance(minutes=9)
    assert [i.key for i in store.search(("s",), filter={"v": 1})] == ["a"]
    assert store.search(("s",), filter={"v": 2}, refresh_ttl=False) != []
    backend.clock.advance(minutes=2)
    assert [i.key for i in store.search(("s",))] == ["a"]


def test_store_wide_default_ttl_and_refresh_setting(backend: Backend) -> None:
    store = backend.open(ttl={"default_ttl": 5, "refresh_on_read": False})
    store.put(("d",), "default", {"v": 1})
    store.put(("d",), "never", {"v": 2}, ttl=None)
    store.put(("d",), "longer", {"v": 3}, ttl=60)
    backend.clock.advance(minutes=4)
    assert store.get(("d",), "default") is not None  # does not refresh by default now
    assert store.get(("d",), "longer", refresh_ttl=True) is not None  # asked to refresh
    backend.clock.advance(minutes=2)
    assert store.get(("d",), "default") is None
    assert sorted(i.key for i in store.search(("d",))) == ["longer", "never"]
    backend.clock.advance(days=365)
    assert [i.key for i in store.search(("d",))] == ["never"]


def test_a_put_sets_a_new_ttl_and_revives_nothing(backend: Backend) -> None:
    store = backend.open()
    store.put(("r",), "k", {"v": 1}, ttl=1)
    backend.clock.advance(minutes=2)
    assert store.get(("r",), "k") is None
    store.put(("r",), "k", {"v": 2})  # a new item where an expired one was
    item = store.get(("r",), "k")
    assert item is not None and item.value == {"v": 2}
    assert item.created_at == START_TIME + timedelta(minutes=2)
    backend.clock.advance(days=30)
    assert store.get(("r",), "k") is not None  # the new put has no TTL


def test_sweep_removes_expired_items_and_counts_them(sweepable: Backend) -> None:
    store = sweepable.open()
    other = sweepable.open("other-tenant")
    store.put(("t",), "a", {"v": 1}, ttl=1)
    store.put(("t",), "b", {"v": 1}, ttl=5)
    store.put(("t",), "c", {"v": 1})
    other.put(("t",), "a", {"v": 1}, ttl=1)
    assert store.sweep_expired() == 0
    sweepable.clock.advance(minutes=2)
    assert store.sweep_expired() == 2  # every scope's expired items
    assert store.sweep_expired() == 0
    assert sorted(i.key for i in store.search(("t",))) == ["b", "c"]
    sweepable.clock.advance(minutes=10)
    assert store.sweep_expired() == 1


def test_background_sweeper_sweeps_until_stopped(backend: Backend) -> None:
    store = backend.raw(ttl={"sweep_interval_minutes": 0.0001})  # every 6 ms
    swept = threading.Event()

    def sweep() -> int:
        swept.set()
        return 0

    store.sweep_expired = sweep  # type: ignore[method-assign]
    done = store.start_ttl_sweeper()
    assert swept.wait(10)
    assert store.stop_ttl_sweeper(timeout=10)
    assert done.done()
    with pytest.raises(ValueError, match="interval"):
        backend.raw().start_ttl_sweeper()


# -- scopes (tenants) ---------------------------------------------------------------------


def test_scopes_never_see_each_others_items(backend: Backend) -> None:
    a = backend.open("tenant-a")
    b = backend.open("tenant-b")
    a.put(("memories", "u1"), "k", {"owner": "a"})
    b.put(("memories", "u1"), "k", {"owner": "b"})
    a.put(("only-a",), "k", {"owner": "a"})
    got_a, got_b = a.get(("memories", "u1"), "k"), b.get(("memories", "u1"), "k")
    assert got_a is not None and got_a.value == {"owner": "a"}
    assert got_b is not None and got_b.value == {"owner": "b"}
    assert b.get(("only-a",), "k") is None
    assert [i.value["owner"] for i in b.search(())] == ["b"]
    assert b.list_namespaces() == [("memories", "u1")]
    assert a.list_namespaces() == [("memories", "u1"), ("only-a",)]
    b.delete(("memories", "u1"), "k")
    assert a.get(("memories", "u1"), "k") is not None
    assert b.search(()) == []


def test_a_scoped_view_shares_storage_and_the_default_scope_is_empty(backend: Backend) -> None:
    root = backend.raw()
    assert root.scope == ""
    view = root.scoped(backend.prefix + "t")
    view.put(("n",), "k", {"v": 1})
    again = root.scoped(backend.prefix + "t").get(("n",), "k")
    assert again is not None and again.value == {"v": 1}
    assert root.get(("n",), "k") is None  # the unscoped store is scope "", another tenant
    view.close()  # a view does not close its owner's storage
    assert root.scoped(backend.prefix + "t").get(("n",), "k") is not None


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda s: s.put((), "k", {}), ValueError, "namespace must not be empty"),
    (lambda s: s.put(("a.b",), "k", {}), ValueError, r"namespace\[0\].*cannot contain '\.'"),
    (lambda s: s.put(("a", ""), "k", {}), ValueError, r"namespace\[1\] is an empty label"),
    (lambda s: s.put(("a", 3), "k", {}), TypeError, r"namespace\[1\] must be a str"),
    (lambda s: s.put("users", "k", {}), TypeError, "namespace must be a tuple"),
    (lambda s: s.put(("a",), 7, {}), TypeError, "key must be a str"),
    (lambda s: s.put(("a",), "", {}), ValueError, "key must not be empty"),
    (lambda s: s.put(("a",), "k", ["not", "a", "dict"]), TypeError, "value must be a dict"),
    (lambda s: s.put(("a",), "k", "text"), TypeError, "value must be a dict"),
    (lambda s: s.put(("a",), "k", {"when": datetime.now(UTC)}), TypeError,
     r"value\['when'\] is a datetime"),
    (lambda s: s.put(("a",), "k", {"x": [1, {2, 3}]}), TypeError, r"value\['x'\]\[1\] is a set"),
    (lambda s: s.put(("a",), "k", {"x": math.nan}), ValueError, r"value\['x'\].*NaN"),
    (lambda s: s.put(("a",), "k", {1: "int key"}), TypeError, "keys must be str"),
    (lambda s: s.put(("a",), "k", {"s": "nul\x00"}), ValueError, "NUL"),
    (lambda s: s.put(("a",), "k", {}, ttl=-1), ValueError, "ttl must be a positive"),
    (lambda s: s.put(("a",), "k", {}, ttl="5"), TypeError, "ttl must be a number"),
    (lambda s: s.put(("a",), "k", {}, index=3), TypeError, "index must be"),
    (lambda s: s.get((), "k"), ValueError, "namespace must not be empty"),
    (lambda s: s.get(("a",), None), TypeError, "key must be a str"),
    (lambda s: s.get(("a",), "k", refresh_ttl="yes"), TypeError, "refresh_ttl"),
    (lambda s: s.delete(("a",), 1), TypeError, "key must be a str"),
    (lambda s: s.search(("a",), limit=-1), ValueError, "limit must be >= 0"),
    (lambda s: s.search(("a",), offset=-2), ValueError, "offset must be >= 0"),
    (lambda s: s.search(("a",), limit=True), TypeError, "limit must be an int"),
    (lambda s: s.search(("a.b",)), ValueError, r"namespace_prefix\[0\]"),
    (lambda s: s.search(("a",), filter=[("k", 1)]), TypeError, "filter must be a dict"),
    (lambda s: s.search(("a",), filter={"k": {"$in": [1]}}), ValueError,
     r"unknown operator '\$in'"),
    (lambda s: s.search(("a",), filter={"k": {"$gt": [1]}}), TypeError,
     r"\$gt compares numbers or strings"),
    (lambda s: s.search(("a",), filter={"k": {"$gt": 1, "plain": 2}}), ValueError, "mixes"),
    (lambda s: s.search(("a",), query="what does alice like?"), SemanticSearchUnsupported,
     "semantic search"),
    (lambda s: s.list_namespaces(max_depth=0), ValueError, "max_depth must be >= 1"),
    (lambda s: s.list_namespaces(prefix="a"), TypeError, "prefix must be a tuple"),
    (lambda s: s.list_namespaces(limit=-1), ValueError, "limit must be >= 0"),
    (lambda s: s.scoped(5), TypeError, "scope must be a str"),
])
def test_bad_input_is_refused_with_the_argument_named(store: BaseStore, call: Callable[..., Any],
                                                      error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call(store)
    assert store.search(()) == []  # nothing was written


def test_a_query_without_an_embeddings_index_is_a_not_implemented_error(
        store: BaseStore) -> None:
    with pytest.raises(NotImplementedError, match="semantic search"):
        store.search(("a",), query="anything")


def test_bad_store_options(backend: Backend) -> None:
    with pytest.raises(ValueError, match="unknown key"):
        backend.raw(ttl={"default": 5})
    with pytest.raises(ValueError, match="default_ttl"):
        backend.raw(ttl={"default_ttl": 0})
    with pytest.raises(TypeError, match="aware datetime"):
        backend.raw(clock=lambda: datetime(2030, 1, 1)).put(("a",), "k", {})


# -- async --------------------------------------------------------------------------------


async def test_async_twins(backend: Backend) -> None:
    store = backend.open()
    await store.aput(("a", "b"), "k1", {"n": 1})
    await store.aput(("a", "c"), "k2", {"n": 2}, ttl=1)
    item = await store.aget(("a", "b"), "k1")
    assert item is not None and item.value == {"n": 1}
    assert [i.key for i in await store.asearch(("a",), filter={"n": {"$gte": 2}})] == ["k2"]
    assert await store.alist_namespaces(prefix=("a",)) == [("a", "b"), ("a", "c")]
    backend.clock.advance(minutes=5)
    assert await store.aget(("a", "c"), "k2") is None
    await store.adelete(("a", "b"), "k1")
    await store.aput(("a", "b"), "k3", None)
    assert await store.asearch(("a",)) == []
    with pytest.raises(ValueError, match="namespace must not be empty"):
        await store.aput((), "k", {})
    with pytest.raises(SemanticSearchUnsupported):
        await store.asearch(("a",), query="q")


async def test_async_sweep(sweepable: Backend) -> None:
    store = sweepable.open()
    await store.aput(("t",), "a", {"v": 1}, ttl=1)
    sweepable.clock.advance(minutes=2)
    assert await store.asweep_expired() == 1


async def test_concurrent_async_writers(backend: Backend) -> None:
    store = backend.open()
    await asyncio.gather(*(store.aput(("many",), f"k{i}", {"i": i}) for i in range(20)))
    assert len(await store.asearch(("many",), limit=50)) == 20


def test_concurrent_threads(backend: Backend) -> None:
    store = backend.open()

    def write(i: int) -> None:
        store.put(("threads", str(i % 3)), f"k{i}", {"i": i})
        assert store.get(("threads", str(i % 3)), f"k{i}") is not None

    workers = [threading.Thread(target=write, args=(i,)) for i in range(12)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(store.search(("threads",), limit=50)) == 12


# -- SQLite -------------------------------------------------------------------------------


def test_sqlite_persists_across_reopen(tmp_path: Any) -> None:
    path = str(tmp_path / "memory.db")
    with SqliteStore.from_conn_string(path) as store:
        store.scoped("t").put(("users", "1"), "prefs", {"theme": "dark"}, ttl=None)
    with SqliteStore.from_conn_string(path) as store:
        item = store.scoped("t").get(("users", "1"), "prefs")
        assert item is not None and item.value == {"theme": "dark"}
        assert store.scoped("t").list_namespaces() == [("users", "1")]


def test_sqlite_shares_a_file_with_the_checkpoints(tmp_path: Any) -> None:
    from waypoint import START, StateGraph
    from waypoint.checkpoint import SqliteSaver

    path = str(tmp_path / "app.db")

    class Who(TypedDict):
        who: str

    def remember(state: Who, store: BaseStore) -> dict:
        store.put(("seen",), state["who"], {"count": 1})
        return {}

    builder = StateGraph(Who)
    builder.add_node("remember", remember).add_edge(START, "remember")
    with SqliteSaver.from_conn_string(path) as saver, \
            SqliteStore.from_conn_string(path) as store:
        graph = builder.compile(checkpointer=saver, store=store)
        graph.invoke({"who": "ann"}, {"configurable": {"thread_id": "t1"}})
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master "
                                                 "WHERE type = 'table'")}
    assert {"waypoint_store_items", "waypoint_store_migrations", "waypoint_migrations"} <= tables
    with SqliteStore.from_conn_string(path) as store:
        assert store.get(("seen",), "ann") is not None


def test_sqlite_setup_is_idempotent_and_takes_a_connection(tmp_path: Any) -> None:
    conn = sqlite3.connect(str(tmp_path / "c.db"), check_same_thread=False)
    store = SqliteStore(conn)
    store.setup()
    store.setup()
    SqliteStore(conn).setup()
    store.put(("a",), "k", {"v": 1})
    store.close()  # a connection passed in stays open
    assert conn.execute("SELECT count(*) FROM waypoint_store_items").fetchone() == (1,)
    versions = conn.execute("SELECT version FROM waypoint_store_migrations").fetchall()
    assert versions == [(1,), (2,)]  # 2: the vectors of semantic search
    conn.close()
    with pytest.raises(TypeError, match=r"path or a sqlite3\.Connection"):
        SqliteStore(42)  # type: ignore[arg-type]


# -- PostgreSQL ---------------------------------------------------------------------------


def test_postgres_setup_is_idempotent_from_many_processes_at_once() -> None:
    require_postgres()
    from waypoint.store import PostgresStore

    with private_postgres_database() as url:
        stores = [PostgresStore(url) for _ in range(4)]
        errors: list[BaseException] = []

        def setup(store: BaseStore) -> None:
            try:
                store.setup()  # type: ignore[attr-defined]
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=setup, args=(s,)) for s in stores]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        stores[0].setup()  # type: ignore[attr-defined]
        stores[0].put(("a",), "k", {"v": 1})
        item = stores[1].get(("a",), "k")
        assert item is not None and item.value == {"v": 1}
        for store in stores:
            store.close()


async def test_postgres_from_conn_string_sync_and_async() -> None:
    require_postgres()
    from waypoint.store import PostgresStore

    scope = f"wpt-{uuid.uuid4().hex[:12]}-conn"
    try:
        with PostgresStore.from_conn_string(PG_URL) as store:
            store.scoped(scope).put(("a",), "k", {"v": "sync"})
        async with PostgresStore.from_conn_string(PG_URL) as astore:
            item = await astore.scoped(scope).aget(("a",), "k")
            assert item is not None and item.value == {"v": "sync"}
            await astore.scoped(scope).aput(("a",), "k", {"v": "async"})
        with PostgresStore.from_conn_string(PG_URL) as store:
            item = store.scoped(scope).get(("a",), "k")
            assert item is not None and item.value == {"v": "async"}
    finally:
        _delete_scopes(PG_URL, scope)


def test_postgres_filters_run_in_sql() -> None:
    """The filter is in the statement (so LIMIT applies to matches), as parameters."""
    require_postgres()
    from waypoint.store.checks import conditions
    from waypoint.store.postgres import PostgresStore

    store = PostgresStore(PG_URL).scoped("s")
    query, params = store._search_stmt(  # type: ignore[attr-defined]
        ("docs",), conditions({"color": "red", "price": {"$gt": 2}}), 10, 0, START_TIME, False)
    assert "value @> %s::jsonb" in query and "::numeric >" in query
    assert "red" not in query and '{"color":"red"}' in params
    store.close()
