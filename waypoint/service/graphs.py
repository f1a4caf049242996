"""Loading the configured graphs and binding them to the server's store.

A graph is named in the config as `./path/to/file.py:attr` (relative to the config file)
or `package.module:attr`. The attribute may be a compiled graph, a `StateGraph` builder,
or a factory: a zero-argument one is called once at start, one that takes an argument is
called for every run with the run's config (to build a graph per user, model or tenant).
Whatever the code compiled it with, the server supplies the checkpointer and the store,
so every graph is durable in the server's database.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import inspect
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.compiled import CompiledStateGraph
from ..graph.builder import StateGraph

GRAPH_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


class GraphLoadError(Exception):
    """A configured graph could not be loaded: the message names the graph and why."""


@dataclass(slots=True)
class LoadedGraph:
    graph_id: str
    target: str
    graph: CompiledStateGraph | None  # None: a factory called per run
    factory: Any = None

    @property
    def per_run(self) -> bool:
        return self.graph is None


def _import_target(target: str, base_dir: Path) -> Any:
    location, sep, attr = target.rpartition(":")
    if not sep or not location or not attr:
        raise GraphLoadError(f"expected 'path/to/file.py:attr' or 'package.module:attr', "
                             f"got {target!r}")
    if location.endswith(".py") or "/" in location or location.startswith("."):
        path = (base_dir / location).resolve()
        if not path.is_file():
            raise GraphLoadError(f"{target!r}: no file {path}")
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = "waypoint_graph_" + re.sub(r"\W", "_", str(path.with_suffix("")))
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise GraphLoadError(f"{target!r}: cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
    else:
        if str(base_dir) not in sys.path:
            sys.path.insert(0, str(base_dir))
        module = importlib.import_module(location)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise GraphLoadError(f"{target!r}: {location} has no attribute {attr!r}") from None


def load_graph(graph_id: str, target: str, base_dir: Path) -> LoadedGraph:
    if not GRAPH_NAME.match(graph_id):
        raise GraphLoadError(f"graph name {graph_id!r} must be letters, digits, '_', '-', '.'")
    try:
        made = _import_target(target, base_dir)
    except GraphLoadError:
        raise
    except Exception as exc:
        raise GraphLoadError(f"graph {graph_id!r} ({target}): importing failed: "
                             f"{type(exc).__name__}: {exc}") from exc
    if isinstance(made, (CompiledStateGraph, StateGraph)):
        return LoadedGraph(graph_id, target, as_compiled(made, graph_id))
    if callable(made):
        if _takes_config(made):
            return LoadedGraph(graph_id, target, None, made)
        try:
            built = made()
        except Exception as exc:
            raise GraphLoadError(f"graph {graph_id!r}: its factory {target} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        return LoadedGraph(graph_id, target, as_compiled(built, graph_id))
    raise GraphLoadError(f"graph {graph_id!r}: {target} is a {type(made).__name__}, not a "
                         f"compiled graph, a StateGraph or a function returning one")


def _takes_config(fn: Any) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return bool(params)


def as_compiled(made: Any, graph_id: str) -> CompiledStateGraph:
    if isinstance(made, StateGraph):
        made = made.compile()
    if not isinstance(made, CompiledStateGraph):
        raise GraphLoadError(f"graph {graph_id!r}: expected a compiled graph or a StateGraph, "
                             f"got {type(made).__name__}")
    return made


def graph_version(loaded: LoadedGraph, label: str | None = None) -> str:
    """`label+hash` (or the hash alone): a hash of the graph's nodes and edges, so any
    change of structure makes a new version even if nobody bumps the label. A per-run
    factory's structure is known only per run: its target stands in for it."""
    if loaded.graph is not None:
        shape: Any = loaded.graph.get_graph().to_json()
    else:
        shape = {"factory": loaded.target}
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode())
    short = digest.hexdigest()[:12]
    return f"{label}+{short}" if label else short


def bind(graph: CompiledStateGraph, saver: Any, store: Any) -> CompiledStateGraph:
    """A copy of `graph` that checkpoints to `saver` and reads `store` (each run gets its
    tenant's view of it)."""
    bound = copy.copy(graph)
    bound.checkpointer = saver
    bound.options = {**graph.options}
    bound.store = store
    return bound


class GraphRegistry:
    """The server's graphs by id, bound to its store."""

    def __init__(self, graphs: dict[str, LoadedGraph], saver: Any, store: Any,
                 versions: dict[str, str] | None = None) -> None:
        self._loaded = graphs
        self._saver = saver
        self._store = store
        self._bound = {gid: bind(g.graph, saver, store) for gid, g in graphs.items()
                       if g.graph is not None}
        given = versions or {}
        self._versions = {gid: graph_version(g, given.get(gid)) for gid, g in graphs.items()}

    def __contains__(self, graph_id: str) -> bool:
        return graph_id in self._loaded

    def ids(self) -> list[str]:
        return list(self._loaded)

    async def get(self, graph_id: str, config: dict[str, Any] | None = None
                  ) -> CompiledStateGraph:
        """The graph to run (a per-run factory is called with the run's config)."""
        bound = self._bound.get(graph_id)
        if bound is not None:
            return bound
        loaded = self._loaded[graph_id]
        made = loaded.factory(config or {})
        if inspect.isawaitable(made):
            made = await made
        return bind(as_compiled(made, graph_id), self._saver, self._store)

    def versions(self) -> dict[str, str]:
        """Each graph's version: what runs started here are pinned to."""
        return dict(self._versions)

    def get_static(self, graph_id: str) -> CompiledStateGraph | None:
        """The graph when it does not depend on the run (None for per-run factories)."""
        return self._bound.get(graph_id)
