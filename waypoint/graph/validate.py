"""Compile-time checks: a graph that cannot run is refused with the reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..constants import END, START
from ..errors import GraphValidationError
from .schema import StateCodec, read_schema
from .spec import GraphSpec, JoinSpec

if TYPE_CHECKING:
    from .builder import StateGraph


def _known(graph: StateGraph, name: str, role: str) -> None:
    if name not in graph.nodes:
        known = ", ".join(sorted(graph.nodes)) or "none"
        raise GraphValidationError(f"{role} {name!r} is not a node of this graph (nodes: {known})")


def validate_graph(graph: StateGraph, interrupt: Sequence[str] = ()) -> GraphSpec:
    for source, target in graph.edges:
        if source != START:
            _known(graph, source, "edge source")
        if target != END:
            _known(graph, target, "edge target")
    for sources, target in graph.joins:
        for source in sources:
            _known(graph, source, "join source")
        _known(graph, target, "join target")
    for source, branches in graph.branches.items():
        if source != START:
            _known(graph, source, "conditional edge source")
        for branch in branches:
            if branch.path_map is not None:
                for label, target in branch.path_map.items():
                    if target != END and target not in graph.nodes:
                        raise GraphValidationError(
                            f"conditional edge from {source!r}: path_map sends {label!r} to "
                            f"{target!r}, which is not a node of this graph"
                        )
    for name in interrupt:
        _known(graph, name, "interrupt node")
    has_entry = any(s == START for s, _ in graph.edges) or START in graph.branches
    if not has_entry:
        raise GraphValidationError(
            "graph has no entry point: add an edge from START (or set_entry_point) to a node"
        )

    edges: dict[str, list[str]] = {}
    for source, target in graph.edges:
        targets = edges.setdefault(source, [])
        if target not in targets:
            targets.append(target)
    joins = graph._join_specs()
    joins_by_source: dict[str, list[JoinSpec]] = {}
    for join in joins:
        for source in join.sources:
            joins_by_source.setdefault(source, []).append(join)

    keys = dict(graph._keys)
    for node in graph.nodes.values():
        for name, spec in read_schema(node.codec.cls).items():
            keys.setdefault(name, spec)
    input_keys = tuple(read_schema(graph.input_schema))
    output_keys = tuple(read_schema(graph.output_schema))
    return GraphSpec(
        nodes=dict(graph.nodes),
        node_order={name: i for i, name in enumerate(graph.nodes)},
        keys=keys,
        state_codec=StateCodec(graph.state_schema),
        input_keys=input_keys,
        output_keys=output_keys,
        input_schema=graph.input_schema,
        edges={k: tuple(v) for k, v in edges.items()},
        branches={k: tuple(v) for k, v in graph.branches.items()},
        joins_by_source={k: tuple(v) for k, v in joins_by_source.items()},
        joins={j.id: j for j in joins},
        interrupt_before=frozenset(),
        interrupt_after=frozenset(),
    )
