"""The PostgreSQL store's vectors: pgvector where the server has it, brute force elsewhere.

Vectors live in `waypoint_store_vectors` (a foreign key to the item, ON DELETE CASCADE, so
deletes and TTL sweeps take them along), always as a float32 blob and, when the `vector`
extension can be created, also in a `vector` column. Stores with different dims may share a
database, so that column has no fixed size: each dims gets a partial HNSW index on
`embedding::vector(dims)` (`vector_cosine_ops`), which search orders by `<=>`. Vectors of
another dims than the store's index count as absent. Without the extension the store logs a
warning and ranks the blobs in Python: slower on large stores, same results.

Several statements that must share one connection and transaction are written as plans:
generators that yield (sql, params), receive the rows (None for a statement without any),
and have errors thrown back in; `drive` and `adrive` run a plan on a sync or async
connection, so the sync and async stores share every statement.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from typing import Any, TypeVar

from .index import Hit, Index, Vector, Vectors, from_blob, rank, to_blob

log = logging.getLogger("waypoint.store")

T = TypeVar("T")
Plan = Generator[tuple[str, list[Any]], Any, T]

ITEMS = "waypoint_store_items"
VECTORS = "waypoint_store_vectors"
PGVECTOR, PYTHON = "pgvector", "python"
_HNSW_MAX_DIMS = 2000  # pgvector's limit for an HNSW index on vector
_EF_MAX = 1000  # hnsw.ef_search's upper bound
_BACKFILL_BATCH = 500

MIGRATION = (
    f"""CREATE TABLE {VECTORS} (
        scope text COLLATE "C" NOT NULL,
        ns text COLLATE "C" NOT NULL,
        key text COLLATE "C" NOT NULL,
        n integer NOT NULL,
        field text NOT NULL,
        dims integer NOT NULL,
        blob bytea NOT NULL,
        PRIMARY KEY (scope, ns, key, n),
        FOREIGN KEY (scope, ns, key) REFERENCES {ITEMS} (scope, ns, key) ON DELETE CASCADE)""",
)


def literal(vector: Sequence[float]) -> str:
    """pgvector's text form, sent as a parameter and cast with ::vector."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def put_stmt(item_sql: str, item_params: list[Any], scope: str, ns: str, key: str,
             vectors: Vectors, mode: str | None) -> tuple[str, list[Any]]:
    """One statement: upsert the item, replace its vectors (rows past the new count go)."""
    pg = mode == PGVECTOR
    columns = "scope, ns, key, n, field, dims, blob" + (", embedding" if pg else "")
    arrays = "%s::int[], %s::text[], %s::int[], %s::bytea[]" + (", %s::text[]" if pg else "")
    names = "n, field, dims, blob" + (", emb" if pg else "")
    values = "u.n, u.field, u.dims, u.blob" + (", u.emb::vector" if pg else "")
    updates = "field = EXCLUDED.field, dims = EXCLUDED.dims, blob = EXCLUDED.blob" + (
        ", embedding = EXCLUDED.embedding" if pg else "")
    sql = (f"WITH item AS ({item_sql} RETURNING 1), "
           f"gone AS (DELETE FROM {VECTORS} WHERE scope = %s AND ns = %s AND key = %s "
           f"AND n >= %s) "
           f"INSERT INTO {VECTORS} ({columns}) SELECT %s, %s, %s, {values} "
           f"FROM unnest({arrays}) AS u({names}) "
           f"ON CONFLICT (scope, ns, key, n) DO UPDATE SET {updates}")
    params = [*item_params, scope, ns, key, len(vectors), scope, ns, key,
              list(range(len(vectors))), [f for f, _ in vectors],
              [len(v) for _, v in vectors], [to_blob(v) for _, v in vectors]]
    if pg:
        params.append([literal(v) for _, v in vectors])
    return sql, params


# -- setup --------------------------------------------------------------------------------


def setup_plan(index: Index) -> Plan[str]:
    """Use pgvector if it is installed or can be created; PYTHON (with a warning) if not."""
    have = yield "SELECT 1 FROM pg_extension WHERE extname = 'vector'", []
    if not have:
        offered = yield "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'", []
        if not offered:
            log.warning("PostgreSQL has no pgvector extension: the store's semantic search "
                        "ranks vectors in Python (install postgresql-NN-pgvector for an "
                        "HNSW index)")
            return PYTHON
        yield "SAVEPOINT waypoint_vector", []
        try:
            yield "CREATE EXTENSION IF NOT EXISTS vector", []
        except Exception as exc:  # e.g. not allowed to create it: keep going without
            yield "ROLLBACK TO SAVEPOINT waypoint_vector", []
            log.warning("cannot create the pgvector extension (%s): the store's semantic "
                        "search ranks vectors in Python", str(exc).strip())
            return PYTHON
        yield "RELEASE SAVEPOINT waypoint_vector", []
    dims = int(index.dims)  # an int by the index's checks: safe to write into DDL
    yield f"ALTER TABLE {VECTORS} ADD COLUMN IF NOT EXISTS embedding vector", []
    if index.ann == "hnsw":
        if dims <= _HNSW_MAX_DIMS:
            yield (f"CREATE INDEX IF NOT EXISTS {VECTORS}_hnsw_{dims} ON {VECTORS} "
                   f"USING hnsw ((embedding::vector({dims})) vector_cosine_ops) "
                   f"WHERE dims = {dims}"), []
        else:
            log.warning("pgvector indexes at most %d dims: searching %d-dim vectors exactly",
                        _HNSW_MAX_DIMS, dims)
    yield from _backfill()
    return PGVECTOR


def _backfill() -> Plan[None]:
    """Fill `embedding` of vectors written before pgvector was there (from their blobs)."""
    while True:
        rows = yield (f"SELECT scope, ns, key, n, blob FROM {VECTORS} "
                      f"WHERE embedding IS NULL LIMIT {_BACKFILL_BATCH}"), []
        if not rows:
            return
        columns: list[list[Any]] = [[], [], [], [], []]
        for scope, ns, key, n, blob in rows:
            for column, value in zip(columns, (scope, ns, key, n, literal(from_blob(blob))),
                                     strict=True):
                column.append(value)
        yield (f"UPDATE {VECTORS} AS v SET embedding = u.emb::vector FROM unnest("
               "%s::text[], %s::text[], %s::text[], %s::int[], %s::text[]) "
               "AS u(scope, ns, key, n, emb) WHERE v.scope = u.scope AND v.ns = u.ns "
               "AND v.key = u.key AND v.n = u.n"), columns


# -- search -------------------------------------------------------------------------------


def search_plan(scope: str, where: str, params: list[Any], prefix: str, prefix_params: list[Any],
                vector: Vector, limit: int, offset: int, mode: str, ann: str
                ) -> Plan[list[Hit]]:
    """The ranked page's (ns, key, score), as index.rank() would order it.

    `where`/`params` select this scope's live, matching items (columns unqualified);
    `prefix`/`prefix_params` narrow the vectors by namespace ("" for all).
    """
    want = offset + limit
    if want == 0:
        return []
    dims = len(vector)
    if mode != PGVECTOR:
        rows = yield (f"SELECT i.ns, i.key, i.updated_at, v.blob FROM (SELECT ns, key, "
                      f"updated_at FROM {ITEMS} WHERE {where}) AS i LEFT JOIN {VECTORS} AS v "
                      "ON v.scope = %s AND v.ns = i.ns AND v.key = i.key AND v.dims = %s"), [
                          *params, scope, dims]
        return rank(((tuple(ns.split(".")), key, updated, None if blob is None else
                      from_blob(blob)) for ns, key, updated, blob in rows), vector, limit, offset)
    query = literal(vector)
    narrow = f" AND {prefix}" if prefix else ""
    typed = f"embedding::vector({dims})"  # the expression of the dims' partial index
    scored: list[Any] = []
    for k in ([max(40, 4 * want)] if ann == "hnsw" else []) + [None]:
        if k is not None:
            yield "SELECT set_config('hnsw.ef_search', %s, true)", [str(min(_EF_MAX, k))]
        cut = "" if k is None else f" LIMIT {int(k)}"
        scored = yield (
            f"SELECT c.ns, c.key, 1 - min(c.d) AS score FROM ("
            f"SELECT ns, key, {typed} <=> %s::vector({dims}) AS d FROM {VECTORS} "
            f"WHERE scope = %s AND dims = {dims} AND embedding IS NOT NULL{narrow} "
            f"ORDER BY {typed} <=> %s::vector({dims}){cut}) AS c "
            f"JOIN (SELECT ns, key FROM {ITEMS} WHERE {where}) AS i "
            "ON i.ns = c.ns AND i.key = c.key "
            "GROUP BY c.ns, c.key ORDER BY score DESC, c.ns, c.key LIMIT %s"), [
                query, scope, *prefix_params, query, *params, want]
        if len(scored) >= want:  # the approximate neighbours were enough (else: exact)
            break
    hits: list[Hit] = [(tuple(ns.split(".")), key, float(score)) for ns, key, score in scored]
    if len(hits) < want:
        plain = yield (f"SELECT ns, key FROM {ITEMS} AS i WHERE {where} AND NOT EXISTS ("
                       f"SELECT 1 FROM {VECTORS} AS v WHERE v.scope = i.scope "
                       "AND v.ns = i.ns AND v.key = i.key AND v.dims = %s) "
                       "ORDER BY updated_at DESC, ns, key LIMIT %s"), [*params, dims,
                                                                      want - len(hits)]
        hits += [(tuple(ns.split(".")), key, None) for ns, key in plain]
    return hits[offset:want]


def page_stmt(columns: str, scope: str, hits: list[Hit]) -> tuple[str, list[Any]]:
    """The rows of a page's items (in no order: callers order them by the hits)."""
    return (f"SELECT {columns}, expires_at FROM {ITEMS} WHERE scope = %s AND (ns, key) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[]))",
            [scope, [".".join(ns) for ns, _, _ in hits], [key for _, key, _ in hits]])


def in_order(rows: list[Any], hits: list[Hit]) -> list[tuple[Any, float | None]]:
    """Rows ordered as the hits, with their scores (an item deleted meanwhile is left out)."""
    by_key = {(row[0], row[1]): row for row in rows}
    return [(by_key[(".".join(ns), key)], score) for ns, key, score in hits
            if (".".join(ns), key) in by_key]


# -- running plans ------------------------------------------------------------------------


def drive(conn: Any, plan: Plan[T]) -> T:
    """Run a plan on a sync psycopg connection (inside the caller's transaction)."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            sql, params = plan.throw(error) if error is not None else plan.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            cur = conn.execute(sql, params)
            result = cur.fetchall() if cur.description is not None else None
        except Exception as exc:
            error = exc


async def adrive(conn: Any, plan: Plan[T]) -> T:
    """Run a plan on an async psycopg connection (inside the caller's transaction)."""
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            sql, params = plan.throw(error) if error is not None else plan.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            cur = await conn.execute(sql, params)
            result = await cur.fetchall() if cur.description is not None else None
        except Exception as exc:
            error = exc

