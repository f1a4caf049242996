"""The compiled description of a graph: pure data the engine runs."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .schema import KeySpec, StateCodec


def call_shape(fn: Callable[..., Any]) -> tuple[bool, bool, bool]:
    """(is_async, wants config, wants writer) from a callable's signature."""
    target = fn
    if not (inspect.isfunction(target) or inspect.ismethod(target)) and callable(fn):
        target = fn.__call__  # type: ignore[operator]
    is_async = inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return is_async, False, False
    return is_async, "config" in params, "writer" in params


INJECTABLE = ("store", "runtime")  # parameters a node gets by name, besides config and writer


def injected_params(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Which of `store` / `runtime` a node function takes by keyword (LangGraph's names)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return ()
    return tuple(name for name in INJECTABLE if name in params
                 and params[name].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                           inspect.Parameter.KEYWORD_ONLY))


@dataclass(slots=True)
class NodeSpec:
    """One node: what it runs and under which policies."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    wants_config: bool
    wants_writer: bool
    codec: StateCodec
    retry_policy: Any = None  # a RetryPolicy or a sequence of them (first match applies)
    metadata: dict[str, Any] = field(default_factory=dict)
    subgraph: Any = None  # a compiled graph run as this node
    destinations: tuple[str, ...] | None = None  # where Command(goto=...) may go, for drawing
    timeout: Any = None  # TimeoutPolicy
    error_handler: Callable[..., Any] | None = None
    validate: Any = None  # a schema (pydantic model, TypedDict, dataclass) or a callable
    compensate: Callable[..., Any] | None = None
    on_doubt: str = "ask"  # an effect found in doubt: "ask" | "fail" | "retry"
    injects: tuple[str, ...] = ()  # "store" / "runtime": passed by keyword when called


@dataclass(slots=True)
class BranchSpec:
    """A conditional edge: `path(state)` picks targets, optionally through `path_map`."""

    source: str
    path: Callable[..., Any]
    path_map: dict[Any, str] | None
    is_async: bool
    wants_config: bool
    declared_targets: tuple[str, ...] | None  # from path_map or a Literal return hint


@dataclass(frozen=True, slots=True)
class JoinSpec:
    """`add_edge([a, b], c)`: `c` runs once every source has finished since it last ran."""

    id: str
    sources: frozenset[str]
    target: str


@dataclass(slots=True)
class GraphSpec:
    """Everything the engine needs to run a graph; built once by `compile()`."""

    nodes: dict[str, NodeSpec]
    node_order: dict[str, int]
    keys: dict[str, KeySpec]
    state_codec: StateCodec
    input_keys: tuple[str, ...]
    output_keys: tuple[str, ...]
    input_schema: Any
    edges: dict[str, tuple[str, ...]]  # source -> static targets (START included)
    branches: dict[str, tuple[BranchSpec, ...]]
    joins_by_source: dict[str, tuple[JoinSpec, ...]]
    joins: dict[str, JoinSpec]
    interrupt_before: frozenset[str]
    interrupt_after: frozenset[str]
    name: str = "LangGraph"
    context_schema: Any = None  # what invoke(..., context=...) is checked against
