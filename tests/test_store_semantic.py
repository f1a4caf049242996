"""Semantic search in the long-term store: `index=` config, `search(query=...)`, on the
memory, SQLite and PostgreSQL stores, with the real bundled model (all-MiniLM-L6-v2) and
with a deterministic fake embed function where exact order or errors are the point.

The model is loaded once per session. Time is an injected clock. PostgreSQL tests work in
their own scopes on the shared database (deleted afterwards) and fail, not skip, under
CI=true when the server cannot be reached; they run on pgvector when the server has it and
on the Python fallback otherwise (one test forces the fallback).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from store_backends import IN_CI, PG_URL, postgres_reachable

from waypoint.store import BaseStore, InMemoryStore, SearchItem, SqliteStore
from waypoint.store.index import Index, parse_path, texts_at

KINDS = ("memory", "sqlite", "postgres")
START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

DOCS = {
    "cooking": "A recipe for a rich tomato pasta sauce with garlic, olive oil and fresh basil.",
    "astronomy": "The telescope revealed distant galaxies and a faint nebula in the night sky.",
    "football": "The striker scored twice in the second half and the team won the league.",
    "finance": "The central bank raised interest rates again to slow down inflation.",
    "gardening": "Water the roses in the morning and prune the dead branches in early spring.",
}
QUERIES = {
    "what can I cook for dinner with tomatoes?": "cooking",
    "stars, planets and space exploration": "astronomy",
    "who won the soccer match?": "football",
    "mortgage costs and the economy": "finance",
    "how do I look after my flowers?": "gardening",
}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def words(texts: list[str]) -> list[list[float]]:
    """A fake embed function: counts of the words alpha, beta, gamma (3 dims, exact)."""
    return [[float(t.split().count(w)) for w in ("alpha", "beta", "gamma")] for t in texts]


async def awords(texts: list[str]) -> list[list[float]]:
    await asyncio.sleep(0)
    return words(texts)


@pytest.fixture(scope="module")
def local() -> Any:
    """The bundled model, loaded once; missing packages fail under CI (they are in dev)."""
    from waypoint.store.embeddings import EmbeddingsUnavailable, local_embeddings

    model = local_embeddings()
    try:
        model.embed_query("warm up")
    except EmbeddingsUnavailable as exc:
        if IN_CI:
            pytest.fail(f"the embeddings extra is missing (CI=true): {exc}")
        pytest.skip(str(exc))
    return model


def require_postgres() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"psycopg is missing (CI=true: PostgreSQL tests must run): {exc}")
        pytest.skip(f"psycopg is missing: {exc}")
    if not postgres_reachable():
        if IN_CI:
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable (CI=true: PostgreSQL tests "
                        f"must run)")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable")


class Stores:
    """Opens stores of one kind on one location, each scoped to this test's prefix."""

    def __init__(self, kind: str, location: str | None) -> None:
        self.kind = kind
        self.location = location
        self.prefix = f"sem-{uuid.uuid4().hex[:12]}-"
        self.clock = Clock()
        self.opened: list[BaseStore] = []

    def open(self, index: dict[str, Any] | None = None, **options: Any) -> BaseStore:
        options.setdefault("clock", self.clock)
        if self.kind == "memory":
            store: BaseStore = InMemoryStore(index=index, **options)  # type: ignore[arg-type]
        elif self.kind == "sqlite":
            store = SqliteStore(self.location, index=index, **options)  # type: ignore[arg-type]
        else:
            from waypoint.store import PostgresStore

            store = PostgresStore(self.location, index=index, **options)  # type: ignore
        self.opened.append(store)
        return store.scoped(self.prefix + "main")

    def close(self) -> None:
        for store in self.opened:
            store.close()
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(self.location, autocommit=True) as conn:
                conn.execute("DELETE FROM waypoint_store_items WHERE scope LIKE %s",
                             [self.prefix + "%"])


@pytest.fixture(params=KINDS)
def stores(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Stores]:
    if request.param == "postgres":
        require_postgres()
    location = {"memory": None, "sqlite": str(tmp_path / "store.db"),
                "postgres": PG_URL}[request.param]
    opened = Stores(request.param, location)
    try:
        yield opened
    finally:
        opened.close()


def keys(found: list[SearchItem]) -> list[str]:
    return [item.key for item in found]


def fill(store: BaseStore, ns: tuple[str, ...] = ("docs",)) -> None:
    for key, text in DOCS.items():
        store.put(ns, key, {"text": text, "topic": key})


# -- the real model -----------------------------------------------------------------------


def test_the_real_model_ranks_the_matching_document_first(stores: Stores, local: Any) -> None:
    store = stores.open({"dims": 384, "embed": local, "fields": ["text"]})
    fill(store)
    for query, expected in QUERIES.items():
        found = store.search(("docs",), query=query, limit=5)
        assert keys(found)[0] == expected, (query, [(i.key, i.score) for i in found])
        scores = [i.score for i in found]
        assert all(isinstance(s, float) and -1.0 <= s <= 1.0 + 1e-6 for s in scores)
        assert scores == sorted(scores, reverse=True)
        assert found[0].value == {"text": DOCS[expected], "topic": expected}


def test_local_by_name_and_filters_with_a_query(stores: Stores, local: Any) -> None:
    store = stores.open({"embed": "local", "fields": ["text"]})  # dims default to 384
    fill(store)
    store.put(("other",), "cooking", {"text": DOCS["cooking"], "topic": "cooking"})
    query = "what can I cook for dinner with tomatoes?"
    found = store.search(("docs",), query=query, filter={"topic": {"$ne": "cooking"}})
    assert "cooking" not in keys(found) and len(found) == 4
    found = store.search((), query=query, limit=2)
    assert [(i.namespace, i.key) for i in found] == [(("docs",), "cooking"),
                                                    (("other",), "cooking")]
    assert store.search(("docs",), query=query, filter={"topic": "football"},
                        limit=3)[0].key == "football"


def test_fields_and_index_false(stores: Stores, local: Any) -> None:
    store = stores.open({"dims": 384, "embed": local, "fields": ["summary"]})
    store.put(("d",), "space", {"summary": DOCS["astronomy"], "body": DOCS["cooking"]})
    store.put(("d",), "food", {"summary": DOCS["football"], "body": DOCS["cooking"]})
    store.put(("d",), "hidden", {"summary": DOCS["cooking"]}, index=False)
    store.put(("d",), "by-body", {"summary": "nothing", "body": DOCS["cooking"]},
              index=["body"])
    found = store.search(("d",), query="a tomato pasta recipe")
    assert keys(found)[0] == "by-body"  # its body was embedded, not its summary
    assert keys(found)[-1] == "hidden" and found[-1].score is None  # nothing embedded
    assert all(i.score is not None for i in found[:-1])
    assert keys(store.search(("d",), query="galaxies and nebulae", limit=1)) == ["space"]


def test_overwrite_and_delete_update_the_vectors(stores: Stores, local: Any) -> None:
    store = stores.open({"dims": 384, "embed": local, "fields": ["text"]})
    fill(store)
    query = "what can I cook for dinner with tomatoes?"
    store.put(("docs",), "cooking", {"text": DOCS["astronomy"], "topic": "moved"})
    found = store.search(("docs",), query=query, limit=5)
    assert keys(found)[0] != "cooking"
    assert keys(store.search(("docs",), query="galaxies in the night sky", limit=2)) in (
        ["astronomy", "cooking"], ["cooking", "astronomy"])
    store.delete(("docs",), "cooking")
    store.put(("docs",), "astronomy", None)
    found = store.search(("docs",), query="galaxies in the night sky", limit=10)
    assert sorted(keys(found)) == ["finance", "football", "gardening"]


def test_ttl_expiry_removes_items_from_semantic_results(stores: Stores, local: Any) -> None:
    store = stores.open({"dims": 384, "embed": local, "fields": ["text"]})
    fill(store)
    store.put(("docs",), "fleeting", {"text": DOCS["cooking"]}, ttl=1)
    query = "what can I cook for dinner with tomatoes?"
    assert "fleeting" in keys(store.search(("docs",), query=query, limit=2))
    stores.clock.advance(minutes=2)
    assert "fleeting" not in keys(store.search(("docs",), query=query, limit=10))
    store.sweep_expired()
    assert "fleeting" not in keys(store.search(("docs",), query=query, limit=10))
    if stores.kind == "sqlite":
        with sqlite3.connect(stores.location) as conn:  # type: ignore[arg-type]
            left = conn.execute("SELECT count(*) FROM waypoint_store_vectors "
                                "WHERE key = 'fleeting'").fetchone()
        assert left == (0,)


def test_a_read_refreshes_the_ttl_of_what_semantic_search_returns(stores: Stores,
                                                                  local: Any) -> None:
    store = stores.open({"dims": 384, "embed": local, "fields": ["text"]})
    store.put(("docs",), "k", {"text": DOCS["finance"]}, ttl=2)
    stores.clock.advance(minutes=1.5)
    assert keys(store.search(("docs",), query="interest rates")) == ["k"]
    stores.clock.advance(minutes=1.5)  # 3 minutes after the put, 1.5 after the read
    assert store.get(("docs",), "k", refresh_ttl=False) is not None


async def test_async_twins_with_the_real_model(stores: Stores, local: Any) -> None:
    store = stores.open({"dims": 384, "embed": local, "fields": ["text"]})
    for key, text in DOCS.items():
        await store.aput(("docs",), key, {"text": text})
    found = await store.asearch(("docs",), query="who won the soccer match?", limit=2)
    assert keys(found)[0] == "football" and found[0].score is not None


# -- exact order with a fake embed function -----------------------------------------------


def test_exact_order_paging_and_scoreless_items(stores: Stores) -> None:
    store = stores.open({"dims": 3, "embed": words, "fields": ["t"]})
    store.put(("w",), "a", {"t": "alpha"})
    store.put(("w",), "ab", {"t": "alpha beta"})
    store.put(("w",), "b", {"t": "beta"})
    store.put(("w",), "g", {"t": "gamma"})
    store.put(("w",), "a2", {"t": "alpha alpha"})  # same direction as "a": ties by key
    stores.clock.advance(minutes=1)
    store.put(("w",), "none1", {"other": "alpha"})  # no text at the field: scoreless
    stores.clock.advance(minutes=1)
    store.put(("w",), "none2", {"t": "alpha"}, index=False)
    found = store.search(("w",), query="alpha", limit=10)
    assert keys(found) == ["a", "a2", "ab", "b", "g", "none2", "none1"]
    assert [round(i.score, 6) if i.score is not None else None for i in found] == [
        1.0, 1.0, round(2 ** -0.5, 6), 0.0, 0.0, None, None]
    assert keys(store.search(("w",), query="alpha", limit=3, offset=2)) == ["ab", "b", "g"]
    assert keys(store.search(("w",), query="alpha", limit=2, offset=5)) == ["none2", "none1"]
    assert store.search(("w",), query="alpha", limit=0) == []
    # without a query: the plain order, scores None
    plain = store.search(("w",), limit=2)
    assert keys(plain) == ["none2", "none1"] and plain[0].score is None


def test_array_paths_take_the_best_matching_element(stores: Stores) -> None:
    store = stores.open({"dims": 3, "embed": words, "fields": ["$.notes[*].text", "title"]})
    store.put(("p",), "x", {"title": "gamma", "notes": [{"text": "beta"}, {"text": "alpha"}]})
    store.put(("p",), "y", {"title": "beta", "notes": [{"text": "gamma"}]})
    store.put(("p",), "z", {"notes": [{"text": "beta beta"}]}, index=["notes[0].text"])
    assert keys(store.search(("p",), query="alpha"))[0] == "x"
    found = store.search(("p",), query="beta")  # x by a note, y by its title, z by index=
    assert keys(found) == ["x", "y", "z"] and {round(i.score, 6) for i in found} == {1.0}


def test_wrong_dims_are_refused_before_anything_is_written(stores: Stores) -> None:
    store = stores.open({"dims": 4, "embed": words, "fields": ["t"]})
    with pytest.raises(ValueError, match="3 dims but the index says dims=4"):
        store.put(("w",), "k", {"t": "alpha"})
    assert store.get(("w",), "k") is None
    store.put(("w",), "k", {"t": "alpha"}, index=False)  # nothing to embed: fine
    with pytest.raises(ValueError, match="dims=4"):
        store.search(("w",), query="alpha")
    short = stores.open({"dims": 3, "embed": lambda texts: [[1.0, 0.0, 0.0]], "fields": ["t"]})
    with pytest.raises(ValueError, match="returned 1 vectors for 2 texts"):
        short.put(("w",), "k2", {"t": ["alpha", "beta"]}, index=["t[*]"])


async def test_async_embed_functions_and_langchain_embeddings(stores: Stores) -> None:
    store = stores.open({"dims": 3, "embed": awords, "fields": ["t"]})
    await store.aput(("w",), "a", {"t": "alpha"})
    await store.aput(("w",), "b", {"t": "beta"})
    assert keys(await store.asearch(("w",), query="beta")) == ["b", "a"]
    with pytest.raises(TypeError, match="async function: use aput"):
        store.put(("w",), "c", {"t": "gamma"})
    from langchain_core.embeddings import DeterministicFakeEmbedding

    lc = stores.open({"dims": 16, "embed": DeterministicFakeEmbedding(size=16),
                      "fields": ["t"]})
    lc.put(("l",), "one", {"t": "the first text"})
    lc.put(("l",), "two", {"t": "another text entirely"})
    found = lc.search(("l",), query="another text entirely")
    assert keys(found)[0] == "two" and found[0].score == pytest.approx(1.0, abs=1e-5)
    found = await lc.asearch(("l",), query="the first text")
    assert keys(found)[0] == "one"


def test_scopes_see_only_their_own_vectors(stores: Stores) -> None:
    store = stores.open({"dims": 3, "embed": words, "fields": ["t"]})
    other = store.scoped(stores.prefix + "other")
    store.put(("w",), "mine", {"t": "alpha"})
    other.put(("w",), "theirs", {"t": "alpha"})
    assert keys(store.search(("w",), query="alpha")) == ["mine"]
    assert keys(other.search(("w",), query="alpha")) == ["theirs"]


def test_a_store_without_an_index_still_refuses_a_query(stores: Stores) -> None:
    store = stores.open()
    store.put(("w",), "k", {"t": "alpha"}, index=["t"])  # accepted, nothing to embed into
    with pytest.raises(NotImplementedError, match="no embeddings index"):
        store.search(("w",), query="alpha")
    assert keys(store.search(("w",), query=None)) == ["k"]


def test_reopening_keeps_the_vectors(stores: Stores) -> None:
    if stores.kind == "memory":
        pytest.skip("a memory store ends with its process")
    index = {"dims": 3, "embed": words, "fields": ["t"]}
    stores.open(index).put(("w",), "a", {"t": "alpha"})
    stores.open(index).put(("w",), "b", {"t": "beta"})
    again = stores.open(index)
    assert keys(again.search(("w",), query="beta")) == ["b", "a"]
    stores.open().put(("w",), "b", {"t": "alpha"})  # no index: its old vectors are dropped
    found = again.search(("w",), query="beta")
    assert [(i.key, i.score) for i in found][-1] == ("b", None)


# -- backend specifics --------------------------------------------------------------------


def test_sqlite_migrates_a_version_1_database(tmp_path: Any) -> None:
    from waypoint.store.sqlite import _MIGRATIONS

    path = str(tmp_path / "old.db")
    with sqlite3.connect(path) as conn:  # a database made before semantic search
        conn.executescript(_MIGRATIONS[0][1] + """;
            CREATE TABLE waypoint_store_migrations (version INTEGER PRIMARY KEY,
                                                    applied_at REAL NOT NULL);
            INSERT INTO waypoint_store_migrations VALUES (1, 0);
            INSERT INTO waypoint_store_items VALUES ('', 'old', 'k', '{"t": "alpha"}', 0, 0,
                                                     NULL, NULL)""")
    with SqliteStore.from_conn_string(path, index={"dims": 3, "embed": words,
                                                   "fields": ["t"]}) as store:
        store.put(("new",), "k", {"t": "alpha"})
        found = store.search((), query="alpha")
        assert [(i.namespace, i.score) for i in found] == [(("new",), 1.0), (("old",), None)]
    with sqlite3.connect(path) as check:
        versions = check.execute("SELECT version FROM waypoint_store_migrations").fetchall()
    assert versions == [(1,), (2,)]


def test_postgres_falls_back_to_python_ranking(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    require_postgres()
    from waypoint.store import pg_vectors

    def no_pgvector(index: Any) -> Any:
        offered = yield "SELECT 1 FROM pg_available_extensions WHERE name = 'no-such-ext'", []
        assert not offered
        pg_vectors.log.warning("PostgreSQL has no pgvector extension (test)")
        return pg_vectors.PYTHON

    monkeypatch.setattr(pg_vectors, "setup_plan", no_pgvector)
    opened = Stores("postgres", PG_URL)
    try:
        store = opened.open({"dims": 3, "embed": words, "fields": ["t"]})
        with caplog.at_level("WARNING", logger="waypoint.store"):
            store.put(("w",), "a", {"t": "alpha"})
        assert "no pgvector" in caplog.text
        store.put(("w",), "b", {"t": "beta gamma"})
        store.put(("w",), "c", {"t": "x"}, index=False)
        found = store.search(("w",), query="gamma")
        assert [(i.key, round(i.score, 6) if i.score is not None else None)
                for i in found] == [("b", round(2 ** -0.5, 6)), ("a", 0.0), ("c", None)]
    finally:
        opened.close()


def test_postgres_reports_whether_it_uses_pgvector() -> None:
    require_postgres()
    opened = Stores("postgres", PG_URL)
    try:
        store = opened.open({"dims": 3, "embed": words, "fields": ["t"]})
        store.put(("w",), "a", {"t": "alpha"})
        import psycopg

        with psycopg.connect(PG_URL) as conn:
            available = conn.execute("SELECT 1 FROM pg_available_extensions "
                                     "WHERE name = 'vector'").fetchone()
        mode = store._pools.vectors  # type: ignore[attr-defined]
        assert mode == ("pgvector" if available else "python")
    finally:
        opened.close()


# -- config, paths and errors -------------------------------------------------------------


@pytest.mark.parametrize("path, steps", [
    ("$", ()),
    ("text", (("key", "text"),)),
    ("$.a.b", (("key", "a"), ("key", "b"))),
    ("a[*].b", (("key", "a"), ("all", None), ("key", "b"))),
    ("a[0]", (("key", "a"), ("index", 0))),
    ("a[-1]", (("key", "a"), ("index", -1))),
    ("a.*", (("key", "a"), ("all", None))),
])
def test_field_paths(path: str, steps: tuple[Any, ...]) -> None:
    assert parse_path(path) == steps


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.[0]", "a[x]", "a[", "a]b"])
def test_bad_field_paths(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        parse_path(path)


def test_text_extraction() -> None:
    doc = {"a": [{"b": "x"}, {"b": 2}, {"c": 1}], "t": "hello", "n": None, "e": " "}
    assert texts_at(doc, parse_path("a[*].b")) == ["x", "2"]
    assert texts_at(doc, parse_path("a[-1]")) == ['{"c": 1}']
    assert texts_at(doc, parse_path("t")) == ["hello"]
    assert texts_at(doc, parse_path("n")) == texts_at(doc, parse_path("e")) == []
    assert texts_at(doc, parse_path("missing.x")) == texts_at(doc, parse_path("a[9]")) == []
    assert texts_at({"k": "v"}, parse_path("$")) == ['{"k": "v"}']


@pytest.mark.parametrize("config, error, match", [
    ({"dims": 3}, ValueError, "needs 'embed'"),
    ({"dims": 0, "embed": words}, ValueError, "dims"),
    ({"embed": words}, ValueError, "dims"),
    ({"dims": 3, "embed": words, "fields": "text"}, TypeError, "list of str"),
    ({"dims": 3, "embed": words, "fields": ["a..b"]}, ValueError, "path"),
    ({"dims": 3, "embed": words, "colour": 1}, ValueError, "unknown key"),
    ({"dims": 3, "embed": "openai:text-embedding-3-small"}, ValueError, "'local'"),
    ({"dims": 3, "embed": 42}, TypeError, "index\\['embed'\\]"),
    ({"dims": 3, "embed": words, "distance_type": "l2"}, ValueError, "cosine"),
    ({"dims": 3, "embed": words, "ann_index_config": {"kind": "ivfflat"}}, ValueError,
     "hnsw"),
    ("local", TypeError, "IndexConfig dict"),
])
def test_bad_index_configs(config: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        InMemoryStore(index=config)


def test_bad_put_index_and_query() -> None:
    store = InMemoryStore(index={"dims": 3, "embed": words, "fields": ["t"]})
    with pytest.raises(ValueError, match="path"):
        store.put(("a",), "k", {"t": "alpha"}, index=["t..x"])
    with pytest.raises(TypeError, match="query must be a str"):
        store.search(("a",), query=3)  # type: ignore[arg-type]
    assert store.index_config == {"dims": 3, "embed": words, "fields": ["t"]}
    assert Index({"embed": "local"}).dims == 384


# -- the server ---------------------------------------------------------------------------


def test_store_index_in_langgraph_json(tmp_path: Any) -> None:
    from waypoint.service.config import ConfigError, load_settings, store_index_config

    (tmp_path / "embedder.py").write_text(
        "def embed(texts):\n    return [[float(len(t)), 1.0] for t in texts]\n")
    path = tmp_path / "langgraph.json"
    path.write_text('{"graphs": {}, "store": {"index": {"dims": 2, '
                    '"embed": "./embedder.py:embed", "fields": ["text"]}}}')
    config = store_index_config(load_settings(path))
    assert config is not None and config["dims"] == 2 and config["fields"] == ["text"]
    assert config["embed"](["abc"]) == [[3.0, 1.0]]
    path.write_text('{"graphs": {}, "store": {"index": {"dims": 384, "embed": "local"}}}')
    assert store_index_config(load_settings(path)) == {"dims": 384, "embed": "local"}
    path.write_text('{"graphs": {}, "store": {"index": "local"}}')
    with pytest.raises(ConfigError, match=r"store\.index"):
        load_settings(path)
    path.write_text('{"graphs": {}}')
    assert store_index_config(load_settings(path)) is None


async def test_the_store_router_passes_the_query_through(tmp_path: Any, local: Any) -> None:
    import httpx

    from waypoint.service.app import create_app
    from waypoint.service.config import load_settings

    config = tmp_path / "langgraph.json"  # the index as a server is configured with it
    config.write_text('{"graphs": {}, "store": {"index": {"embed": "local", '
                      '"fields": ["text"]}}}')
    settings = load_settings(config, db=tmp_path / "server.db")
    app = create_app(settings, start_workers=False)
    async with app.router.lifespan_context(app):
        assert app.state.service.store.index_config is not None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for key, text in DOCS.items():
                response = await http.put("/store/items", json={
                    "namespace": ["docs"], "key": key, "value": {"text": text}})
                assert response.status_code == 204, response.text
            response = await http.post("/store/items/search", json={
                "namespace_prefix": ["docs"], "query": "who won the soccer match?",
                "limit": 2})
            assert response.status_code == 200, response.text
            items = response.json()["items"]
            assert items[0]["key"] == "football" and items[0]["score"] > items[1]["score"]
            response = await http.post("/store/items/search", json={
                "namespace_prefix": ["docs"], "query": "football",
                "filter": {"text": DOCS["finance"]}})
            assert [i["key"] for i in response.json()["items"]] == ["finance"]

