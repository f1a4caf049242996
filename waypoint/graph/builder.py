"""`StateGraph`: describing a workflow with LangGraph's builder API."""

from __future__ import annotations

import typing
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, get_args, get_origin, get_type_hints

from ..constants import END, NS_SEP, RESERVED, START
from ..errors import GraphValidationError
from .keywords import reject_unknown, warn_no_cache
from .policies import (
    apply_node_defaults,
    check_callable,
    check_on_doubt,
    check_retry_policy,
    check_timeout,
    check_validator,
)
from .schema import KeySpec, StateCodec, first_param_schema, read_schema
from .spec import BranchSpec, GraphSpec, JoinSpec, NodeSpec, call_shape, injected_params
from .validate import validate_graph

# The engine registers the class that turns a GraphSpec into a runnable graph; the graph
# layer never imports the engine.
_compiler: Callable[..., Any] | None = None


def register_compiler(factory: Callable[..., Any]) -> None:
    global _compiler
    _compiler = factory


def _is_compiled_graph(value: Any) -> bool:
    return hasattr(value, "spec") and hasattr(value, "invoke") and hasattr(value, "get_graph")


class StateGraph:
    """A graph whose nodes read and update a shared state described by a schema."""

    def __init__(
        self,
        state_schema: Any = None,
        config_schema: Any = None,
        *,
        input_schema: Any = None,
        output_schema: Any = None,
        context_schema: Any = None,
        input: Any = None,
        output: Any = None,
    ) -> None:
        for alias, (given, other) in {"input": (input, input_schema),
                                      "output": (output, output_schema)}.items():
            if given is not None and other is not None and given is not other:
                raise GraphValidationError(f"StateGraph(): pass {alias}_schema= or its alias "
                                           f"{alias}=, not both")
        input_schema = input_schema or input
        output_schema = output_schema or output
        if state_schema is None:
            if input_schema is None:
                raise GraphValidationError("StateGraph needs a state schema (or input_schema)")
            state_schema = input_schema
        self.state_schema = state_schema
        self.input_schema = input_schema or state_schema
        self.output_schema = output_schema or state_schema
        self.config_schema = config_schema
        self.context_schema = context_schema
        self._keys: dict[str, KeySpec] = {}
        for schema in (state_schema, self.input_schema, self.output_schema):
            self._add_keys(schema)
        self.nodes: dict[str, NodeSpec] = {}
        self.edges: list[tuple[str, str]] = []
        self.joins: list[tuple[tuple[str, ...], str]] = []
        self.branches: dict[str, list[BranchSpec]] = {}
        self._node_defaults: dict[str, Any] = {}
        self.compiled = False

    def _add_keys(self, schema: Any) -> None:
        for name, spec in read_schema(schema).items():
            if name in RESERVED:
                raise GraphValidationError(f"state key {name!r} is a reserved name")
            known = self._keys.get(name)
            if known is None or (known.reducer is None and spec.reducer is not None):
                self._keys[name] = spec

    # -- nodes -------------------------------------------------------------------------

    def add_node(
        self,
        node: str | Callable[..., Any],
        action: Callable[..., Any] | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        input_schema: Any = None,
        retry_policy: Any = None,
        retry: Any = None,
        defer: bool = False,
        destinations: Any = None,
        cache_policy: Any = None,
        timeout: Any = None,
        error_handler: Callable[..., Any] | None = None,
        validate: Any = None,
        compensate: Callable[..., Any] | None = None,
        on_doubt: str = "ask",
    ) -> StateGraph:
        """Add a node by name and callable, or by callable alone (named after it).

        Policies: `retry_policy` (a RetryPolicy or a list, first match applies),
        `timeout` (seconds or TimeoutPolicy, per attempt, sync nodes too),
        `error_handler(state, error)` (its return replaces the failed node's), `validate`
        (a schema or callable checking the node's update), `compensate(state)` (undo,
        run in reverse order when the run fails or is cancelled), `on_doubt` (what an
        effect found in doubt after a crash does: "ask", "fail" or "retry").
        """
        if not isinstance(node, str):
            if action is not None:
                raise GraphValidationError(
                    "add_node(fn, action): give a name and a function (add_node('name', fn)) "
                    "or a function alone (add_node(fn)), not two functions")
            action, node = node, _name_of(node)
        if retry_policy is not None and retry is not None:
            raise GraphValidationError(f"add_node({node!r}): pass retry_policy= or its alias "
                                       f"retry=, not both")
        if defer:
            raise GraphValidationError(
                f"add_node({node!r}, defer=True): deferred nodes are not supported by waypoint; "
                f"use a join (add_edge([a, b], {node!r})) to run it after its sources")
        if metadata is not None and not isinstance(metadata, dict):
            raise GraphValidationError(f"add_node({node!r}): metadata must be a dict, got "
                                       f"{type(metadata).__name__}")
        warn_no_cache(f"add_node({node!r}, cache_policy=...)", cache_policy)
        if action is None:
            raise GraphValidationError(f"add_node({node!r}) needs a function or a graph to run")
        if not isinstance(node, str) or not node:
            raise GraphValidationError(f"node name must be a non-empty string, got {node!r}")
        if node in RESERVED:
            raise GraphValidationError(f"node name {node!r} is reserved")
        if NS_SEP in node or ":" in node:
            raise GraphValidationError(f"node name {node!r} must not contain '|' or ':'")
        if node in self.nodes:
            raise GraphValidationError(f"node {node!r} already exists: node names must be unique")
        subgraph = action if _is_compiled_graph(action) else None
        if subgraph is None and not callable(action):
            raise GraphValidationError(
                f"node {node!r}: expected a function or a compiled graph, got "
                f"{type(action).__name__}"
            )
        if subgraph is not None and timeout is not None:
            raise GraphValidationError(
                f"node {node!r}: timeout= applies to function nodes; give the subgraph's own "
                f"nodes timeouts (or set a run deadline)"
            )
        if input_schema is None and subgraph is None:
            input_schema = first_param_schema(action)
        if input_schema is not None:
            self._add_keys(input_schema)
        codec = StateCodec(input_schema or self.state_schema)
        if subgraph is not None:
            is_async, wants_config, wants_writer = False, False, False
            codec = StateCodec(self.state_schema)
        else:
            is_async, wants_config, wants_writer = call_shape(action)
        if destinations is None and subgraph is None:
            destinations = _literal_targets(action) if _returns_command(action) else None
        elif isinstance(destinations, dict):
            destinations = tuple(destinations)
        elif isinstance(destinations, str):
            destinations = (destinations,)
        if destinations is not None and not all(isinstance(d, str) for d in destinations):
            raise GraphValidationError(f"add_node({node!r}): destinations must be node names, "
                                       f"got {destinations!r}")
        self.nodes[node] = NodeSpec(
            name=node, fn=action, is_async=is_async, wants_config=wants_config,
            wants_writer=wants_writer, codec=codec,
            retry_policy=check_retry_policy(node, retry_policy or retry),
            metadata=dict(metadata or {}), subgraph=subgraph,
            destinations=tuple(destinations) if destinations else None,
            timeout=check_timeout(node, timeout),
            error_handler=check_callable(node, "error_handler", error_handler),
            validate=check_validator(node, validate),
            compensate=check_callable(node, "compensate", compensate),
            on_doubt=check_on_doubt(node, on_doubt),
            injects=() if subgraph is not None else injected_params(action),
        )
        return self

    def set_node_defaults(
        self,
        *,
        retry_policy: Any = None,
        cache_policy: Any = None,
        error_handler: Callable[..., Any] | None = None,
        timeout: Any = None,
    ) -> StateGraph:
        """Policies for every node that does not set its own, applied at `compile()`."""
        warn_no_cache("set_node_defaults(cache_policy=...)", cache_policy)
        if retry_policy is not None:
            self._node_defaults["retry_policy"] = check_retry_policy("*", retry_policy)
        if error_handler is not None:
            self._node_defaults["error_handler"] = check_callable("*", "error_handler",
                                                                  error_handler)
        if timeout is not None:
            self._node_defaults["timeout"] = check_timeout("*", timeout)
        return self

    def add_sequence(
        self, nodes: Sequence[Callable[..., Any] | tuple[str, Callable[..., Any]]]
    ) -> StateGraph:
        """Add nodes chained one after another, in order."""
        if not nodes:
            raise GraphValidationError("add_sequence() needs at least one node")
        previous: str | None = None
        for item in nodes:
            if isinstance(item, tuple):
                if len(item) != 2:
                    raise GraphValidationError(f"add_sequence(): a tuple item must be (name, "
                                               f"function), got {item!r}")
                name, fn = item
            else:
                name, fn = _name_of(item), item
            self.add_node(name, fn)
            if previous is not None:
                self.add_edge(previous, name)
            previous = name
        return self

    # -- edges -------------------------------------------------------------------------

    def add_edge(self, start_key: str | Sequence[str], end_key: str) -> StateGraph:
        """A static edge; a list of sources makes a join that waits for all of them."""
        if not isinstance(end_key, str):
            raise GraphValidationError(
                f"add_edge(..., {end_key!r}): the target must be one node name; add one edge "
                f"per target to fan out")
        if isinstance(start_key, str):
            if start_key == END:
                raise GraphValidationError("END cannot be the source of an edge")
            if end_key == START:
                raise GraphValidationError("START cannot be the target of an edge")
            self.edges.append((start_key, end_key))
            return self
        sources = tuple(start_key)
        if not all(isinstance(source, str) for source in sources):
            raise GraphValidationError(f"add_edge({start_key!r}, {end_key!r}): sources must be "
                                       f"node names")
        if not sources:
            raise GraphValidationError(f"add_edge([], {end_key!r}): a join needs sources")
        if START in sources or END in sources:
            raise GraphValidationError("a join's sources must be nodes, not START or END")
        if end_key in (START, END):
            raise GraphValidationError(f"a join must lead to a node, got {end_key!r}")
        if len(sources) == 1:
            return self.add_edge(sources[0], end_key)
        self.joins.append((sources, end_key))
        return self

    def add_conditional_edges(
        self,
        source: str,
        path: Callable[..., Any],
        path_map: dict[Hashable, str] | Sequence[str] | None = None,
    ) -> StateGraph:
        """After `source`, call `path(state)` and go to the node(s) it names."""
        if source == END:
            raise GraphValidationError("END cannot be the source of a conditional edge")
        if not callable(path):
            raise GraphValidationError(f"conditional edge from {source!r}: path must be callable")
        mapping: dict[Any, str] | None
        if isinstance(path_map, str):
            raise GraphValidationError(
                f"conditional edge from {source!r}: path_map must be a dict or a list of node "
                f"names, got the string {path_map!r} (write [{path_map!r}])")
        if path_map is None:
            mapping = None
            declared = _declared_destinations(path) or _literal_targets(path)
        elif isinstance(path_map, dict):
            mapping = dict(path_map)
            declared = tuple(dict.fromkeys(mapping.values()))
        else:
            mapping = {name: name for name in path_map}
            declared = tuple(mapping.values())
        is_async, wants_config, _ = call_shape(path)
        self.branches.setdefault(source, []).append(
            BranchSpec(source, path, mapping, is_async, wants_config, declared)
        )
        return self

    def set_entry_point(self, key: str) -> StateGraph:
        return self.add_edge(START, key)

    def set_conditional_entry_point(
        self, path: Callable[..., Any], path_map: dict[Hashable, str] | Sequence[str] | None = None
    ) -> StateGraph:
        return self.add_conditional_edges(START, path, path_map)

    def set_finish_point(self, key: str) -> StateGraph:
        return self.add_edge(key, END)

    # -- compile -----------------------------------------------------------------------

    def validate(self, interrupt: Sequence[str] = ()) -> GraphSpec:
        return validate_graph(self, interrupt)

    def compile(
        self,
        checkpointer: Any = None,
        *,
        interrupt_before: Sequence[str] | str | None = None,
        interrupt_after: Sequence[str] | str | None = None,
        debug: bool = False,
        name: str | None = None,
        store: Any = None,
        cache: Any = None,
        durability: str | None = None,
        budget: Any = None,
        run_timeout: float | None = None,
        **unknown: Any,
    ) -> Any:
        """Check the graph and return a runnable compiled graph.

        `store`: long-term memory shared across threads (a waypoint BaseStore), reachable
        from nodes through `get_store()` or a `store` parameter. `durability`, `budget`
        and `run_timeout` are defaults for every run. Unknown keywords raise TypeError.
        """
        reject_unknown("compile", unknown, _COMPILE_KEYWORDS)
        warn_no_cache("compile(cache=...)", cache)
        if name is not None and (not isinstance(name, str) or not name):
            raise GraphValidationError(f"compile(name=...) must be a non-empty string, got "
                                       f"{name!r}")
        before = _node_list(interrupt_before, self.nodes)
        after = _node_list(interrupt_after, self.nodes)
        spec = self.validate((*before, *after))
        apply_node_defaults(spec, self._node_defaults)
        spec.interrupt_before = frozenset(before)
        spec.interrupt_after = frozenset(after)
        if name:
            spec.name = name
        spec.context_schema = self.context_schema
        if _compiler is None:
            raise RuntimeError("the waypoint engine is not loaded: import waypoint first")
        self.compiled = True
        return _compiler(spec, checkpointer=checkpointer, builder=self, store=store,
                         debug=debug, durability=durability, budget=budget,
                         run_timeout=run_timeout)

    # -- helpers used by validation ----------------------------------------------------

    def _codec(self, schema: Any) -> StateCodec:
        return StateCodec(schema)

    def _join_specs(self) -> list[JoinSpec]:
        return [
            JoinSpec(f"join:{'+'.join(sources)}:{target}", frozenset(sources), target)
            for sources, target in self.joins
        ]


_COMPILE_KEYWORDS = ("checkpointer", "interrupt_before", "interrupt_after", "debug", "name",
                     "store", "cache", "durability", "budget", "run_timeout")


def _name_of(fn: Any) -> str:
    name = getattr(fn, "name", None) if _is_compiled_graph(fn) else None
    name = name or getattr(fn, "__name__", None) or type(fn).__name__
    if name == "<lambda>":
        raise GraphValidationError("a lambda needs an explicit node name: add_node(name, fn)")
    return name


def _node_list(value: Sequence[str] | str | None, nodes: dict[str, NodeSpec]) -> list[str]:
    if value is None:
        return []
    if value == "*":
        return list(nodes)
    if isinstance(value, str):
        value = [value]
    names = list(value) if isinstance(value, Iterable) else None
    if names is None or not all(isinstance(n, str) for n in names):
        raise GraphValidationError(f"interrupt_before/interrupt_after take node names or '*', "
                                   f"got {value!r}")
    return names


def _returns_command(fn: Callable[..., Any]) -> bool:
    hint = getattr(fn, "__annotations__", {}).get("return")
    if isinstance(hint, str):
        return hint.startswith("Command")
    return getattr(get_origin(hint) or hint, "__name__", "") == "Command"


def _declared_destinations(path: Callable[..., Any]) -> tuple[str, ...] | None:
    """Targets a router object lists itself (e.g. `Router.destinations`)."""
    names = getattr(path, "destinations", None)
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return tuple(names)
    return None


def _literal_targets(path: Callable[..., Any]) -> tuple[str, ...] | None:
    """Targets declared by a router's `-> Literal[...]` return hint, for drawing."""
    try:
        hint = get_type_hints(path).get("return")
    except Exception:
        hint = getattr(path, "__annotations__", {}).get("return")
    if hint is None:
        return None
    args: list[Any] = []
    stack = [hint]
    while stack:
        current = stack.pop()
        origin = get_origin(current)
        if origin is typing.Literal:
            args.extend(get_args(current))
        elif origin is not None:  # unions, lists, Command[...]: look inside
            stack.extend(get_args(current))
    names = tuple(a for a in args if isinstance(a, str))
    return names or None
