"""The embeddings index of a store: its config, the embed function, and which text to embed.

`index={"dims": 384, "embed": ..., "fields": ["text", "$.tags[*].name"]}` as LangGraph's
stores take it. `embed` is "local" (waypoint's bundled all-MiniLM-L6-v2), a LangChain
`Embeddings`-like object (embed_documents / embed_query, async twins used when present), or
a function from a list of texts to a list of vectors, sync or async. Vectors are checked
(count, dims, finite) and normalised here, so every backend ranks by a plain dot product and
a bad embed function fails at put time with a message, not later inside SQL.
"""

from __future__ import annotations

import array
import asyncio
import inspect
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, TypedDict

Vector = list[float]
Vectors = Sequence[tuple[str, Vector]]  # (field path, unit vector), in field order
Step = tuple[str, Any]  # ("key", name) | ("index", i) | ("all", None)

LOCAL_DIMS = 384
_ANN_KINDS = ("hnsw", "flat")


class IndexConfig(TypedDict, total=False):
    """A store's embeddings index (LangGraph's IndexConfig keys)."""

    dims: int  # the embed function's vector size (optional with embed="local": 384)
    embed: Any  # "local", an Embeddings-like object, or texts -> vectors (sync or async)
    fields: list[str] | None  # what to embed of each document; default ["$"]: all of it
    distance_type: Literal["cosine"]  # the only one supported
    ann_index_config: dict[str, Any]  # PostgreSQL: {"kind": "hnsw" | "flat"}


# -- field paths --------------------------------------------------------------------------


_TOKEN = re.compile(r"(\.?)(?:([^.\[\]]+)|\[\s*(\*|-?\d+)\s*\])")


def parse_path(path: Any) -> tuple[Step, ...]:
    """A field path as steps: "$" (whole doc), "a.b", "a[0]", "a[-1]", "a[*].b", "a.*"."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"index field paths must be non-empty str, got {path!r}")
    text = path.strip()
    if text == "$":
        return ()
    if text.startswith("$"):
        text = text[1:] if text.startswith("$[") else text[2:] if text.startswith("$.") else text
    steps: list[Step] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        dot, name, sub = match.groups() if match else ("", None, None)
        # a name follows a dot (or starts the path); a subscript never follows a dot
        if match is None or (name is not None and bool(dot) != (pos > 0)) or (
                sub is not None and dot):
            raise ValueError(f"index field path {path!r}: cannot read it at {text[pos:]!r} "
                             f"(use a.b, a[0], a[-1], a[*].b or $ for the whole document)")
        if name is not None:
            steps.append(("all", None) if name == "*" else ("key", name))
        else:
            steps.append(("all", None) if sub == "*" else ("index", int(sub)))
        pos = match.end()
    return tuple(steps)


def _follow(value: Any, steps: tuple[Step, ...]) -> Iterable[Any]:
    if not steps:
        yield value
        return
    (kind, arg), rest = steps[0], steps[1:]
    if kind == "key":
        if isinstance(value, dict) and arg in value:
            yield from _follow(value[arg], rest)
    elif kind == "index":
        if isinstance(value, list) and -len(value) <= arg < len(value):
            yield from _follow(value[arg], rest)
    elif isinstance(value, list):
        for element in value:
            yield from _follow(element, rest)
    elif isinstance(value, dict):
        for element in value.values():
            yield from _follow(element, rest)


def texts_at(doc: dict[str, Any], steps: tuple[Step, ...]) -> list[str]:
    """The text found at a parsed path: strings as they are, other values as JSON."""
    found = []
    for value in _follow(doc, steps):
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                                sort_keys=True)
        if text.strip():
            found.append(text)
    return found


# -- vectors ------------------------------------------------------------------------------


def unit(vector: Any, dims: int, where: str) -> Vector:
    """A checked vector scaled to length 1 (the zero vector stays zero)."""
    try:
        values = [float(x) for x in vector]
    except (TypeError, ValueError):
        raise TypeError(f"{where} must be a sequence of numbers, got "
                        f"{type(vector).__name__}") from None
    if len(values) != dims:
        raise ValueError(f"{where} has {len(values)} dims but the index says dims={dims}")
    norm = math.sqrt(math.fsum(x * x for x in values))
    if not math.isfinite(norm):
        raise ValueError(f"{where} has a NaN or infinite component")
    return [x / norm for x in values] if norm else values


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def to_blob(vector: Sequence[float]) -> bytes:
    """float32, little-endian: how SQL backends keep vectors (no pickle, portable)."""
    packed = array.array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def from_blob(blob: bytes) -> Vector:
    packed = array.array("f")
    packed.frombytes(bytes(blob))
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tolist()


Hit = tuple[tuple[str, ...], str, float | None]  # (namespace, key, score)


def rank(rows: Iterable[tuple[tuple[str, ...], str, datetime, Vector | None]],
         query: Vector, limit: int, offset: int) -> list[Hit]:
    """A page of a semantic search from (ns, key, updated_at, vector or None) rows.

    An item scores its best-matching field; items with vectors come first, best first (ties
    by namespace and key); items with none follow with score None, newest first, as
    LangGraph's stores return them.
    """
    best: dict[tuple[tuple[str, ...], str], float] = {}
    plain: dict[tuple[tuple[str, ...], str], datetime] = {}
    dims = len(query)
    for ns, key, updated_at, vector in rows:
        if vector is None:
            plain.setdefault((ns, key), updated_at)
            continue
        if len(vector) != dims:
            raise ValueError(f"a stored vector of {ns}/{key} has {len(vector)} dims but the "
                             f"index says dims={dims}: re-put the items after changing dims")
        score = dot(query, vector)
        if score > best.get((ns, key), -math.inf):
            best[(ns, key)] = score
    scored = sorted(best.items(), key=lambda hit: (-hit[1], hit[0]))
    unscored = sorted((k for k in plain if k not in best), key=lambda k: k)
    unscored.sort(key=lambda k: plain[k], reverse=True)
    hits: list[Hit] = [(ns, key, score) for (ns, key), score in scored]
    hits += [(ns, key, None) for ns, key in unscored]
    return hits[offset:offset + limit]


# -- the embed function -------------------------------------------------------------------


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None))  # noqa: B004 - an object with an async __call__


class Embedder:
    """One interface over "local", Embeddings-like objects and (a)sync functions."""

    def __init__(self, embed: Any) -> None:
        self._docs: Callable[[list[str]], Any] | None = None
        self._query: Callable[[str], Any] | None = None
        self._adocs: Callable[[list[str]], Any] | None = None
        self._aquery: Callable[[str], Any] | None = None
        if isinstance(embed, str):
            if embed not in ("local", "waypoint:local"):
                raise ValueError(f"index['embed'] = {embed!r}: the only named embeddings are "
                                 f"'local' (all-MiniLM-L6-v2, bundled); pass an object or "
                                 f"a function for others")
            from .embeddings import local_embeddings

            embed = local_embeddings()
        if hasattr(embed, "embed_documents") and hasattr(embed, "embed_query"):
            self._docs, self._query = embed.embed_documents, embed.embed_query
            self._adocs = getattr(embed, "aembed_documents", None)
            self._aquery = getattr(embed, "aembed_query", None)
        elif callable(embed) and _is_async(embed):
            self._adocs = embed
            self._aquery = None
        elif callable(embed):
            self._docs = embed
        else:
            raise TypeError(f"index['embed'] must be 'local', an Embeddings object or a "
                            f"function of a list of texts, got {type(embed).__name__}")
        self.target = embed

    def _sync(self) -> Callable[[list[str]], Any]:
        if self._docs is None:
            raise TypeError("index['embed'] is an async function: use aput()/asearch(), or "
                            "give a sync function (or an object with both)")
        return self._docs

    def documents(self, texts: list[str]) -> list[Any]:
        return list(self._sync()(texts)) if texts else []

    def query(self, text: str) -> Any:
        if self._query is not None:
            return self._query(text)
        return self.documents([text])[0]

    async def adocuments(self, texts: list[str]) -> list[Any]:
        if not texts:
            return []
        if self._adocs is not None:
            return list(await self._adocs(texts))
        return await asyncio.to_thread(self.documents, texts)

    async def aquery(self, text: str) -> Any:
        if self._aquery is not None:
            return await self._aquery(text)
        if self._query is not None:
            return await asyncio.to_thread(self._query, text)
        return (await self.adocuments([text]))[0]


# -- the parsed config --------------------------------------------------------------------


class Index:
    """A checked IndexConfig: what a store embeds and how."""

    def __init__(self, config: Any) -> None:
        if not isinstance(config, dict):
            raise TypeError(f"index must be an IndexConfig dict, got {type(config).__name__}")
        unknown = set(config) - set(IndexConfig.__annotations__)
        if unknown:
            raise ValueError(f"index has unknown key(s) {sorted(unknown)} (known: "
                             f"{', '.join(IndexConfig.__annotations__)})")
        if "embed" not in config:
            raise ValueError("index needs 'embed': 'local', an Embeddings object or a function")
        embed = config["embed"]
        known = LOCAL_DIMS if embed in ("local", "waypoint:local") else getattr(
            embed, "dims", None)  # LocalEmbeddings says its size
        dims = config.get("dims", known)
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            raise ValueError(f"index['dims'] must be a positive int, got {dims!r}")
        if config.get("distance_type", "cosine") != "cosine":
            raise ValueError(f"index['distance_type'] = {config['distance_type']!r}: only "
                             f"'cosine' is supported")
        ann = dict(config.get("ann_index_config") or {})
        self.ann = ann.get("kind", "hnsw")
        if self.ann not in _ANN_KINDS:
            raise ValueError(f"index['ann_index_config']['kind'] = {self.ann!r}: use one of "
                             f"{', '.join(_ANN_KINDS)}")
        fields = config.get("fields")
        self.fields: tuple[str, ...] = ("$",) if fields is None else self._fields(fields)
        self.dims = dims
        self.embedder = Embedder(embed)
        self.config = IndexConfig(**{**config, "dims": dims})  # type: ignore[typeddict-item]
        self._paths: dict[str, tuple[Step, ...]] = {}
        for field in self.fields:
            self.steps(field)

    @staticmethod
    def _fields(fields: Any) -> tuple[str, ...]:
        if isinstance(fields, str) or not isinstance(fields, (list, tuple)):
            raise TypeError(f"index fields must be a list of str, got {fields!r:.80}")
        for field in fields:
            parse_path(field)
        return tuple(fields)

    def steps(self, field: str) -> tuple[Step, ...]:
        found = self._paths.get(field)
        if found is None:
            found = self._paths[field] = parse_path(field)
        return found

    def texts(self, value: dict[str, Any], fields: Any) -> list[tuple[str, str]]:
        """(field, text) pairs to embed: `fields` is put()'s index= (None: the config's)."""
        if fields is False:
            return []
        chosen = self.fields if fields is None else self._fields(fields)
        return [(field, text) for field in chosen for text in texts_at(value,
                                                                        self.steps(field))]

    def vectors(self, pairs: list[tuple[str, str]], raw: list[Any]) -> list[tuple[str, Vector]]:
        if len(raw) != len(pairs):
            raise ValueError(f"index['embed'] returned {len(raw)} vectors for {len(pairs)} "
                             f"texts")
        return [(field, unit(vector, self.dims, f"the vector of field {field!r}"))
                for (field, _), vector in zip(pairs, raw, strict=True)]

    def embed(self, value: dict[str, Any], fields: Any) -> list[tuple[str, Vector]]:
        pairs = self.texts(value, fields)
        return self.vectors(pairs, self.embedder.documents([t for _, t in pairs]))

    async def aembed(self, value: dict[str, Any], fields: Any) -> list[tuple[str, Vector]]:
        pairs = self.texts(value, fields)
        return self.vectors(pairs, await self.embedder.adocuments([t for _, t in pairs]))

    def query(self, text: str) -> Vector:
        return unit(self.embedder.query(text), self.dims, "the query's vector")

    async def aquery(self, text: str) -> Vector:
        return unit(await self.embedder.aquery(text), self.dims, "the query's vector")
