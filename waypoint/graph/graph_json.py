"""A drawable graph as JSON, in the shape LangGraph's Agent Server returns.

`GET /assistants/{id}/graph` answers `{"nodes": [...], "edges": [...]}`: every node is
`{"id", "type": "runnable", "data": {"name"}}` (the end node is a bare `{"id"}`), every
edge `{"source", "target"}` plus `"conditional": true` and `"data": label` when a path-map
label differs from its target. With xray, a subgraph node is replaced by the subgraph's
own nodes, ids prefixed `"<node>:"`; its start and end are dropped when the subgraph has a
single entry and exit, and the parent's edges then lead straight to its first and from
its last inner node, the way LangGraph's `get_graph(xray=...).to_json()` draws it, so
clients built for that server (Studio, agent-chat UIs) read ours unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..constants import END

if TYPE_CHECKING:
    from .mermaid import DrawableGraph


@dataclass(slots=True)
class _Edge:
    source: str
    target: str
    conditional: bool
    label: str | None


@dataclass(slots=True)
class _Flat:
    """A graph with its subgraphs already expanded: plain nodes and edges."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> node JSON
    edges: list[_Edge] = field(default_factory=list)

    def first(self, without: str | None = None) -> str | None:
        """The one node no edge leads to (ignoring `without`), or None if not exactly one."""
        targets = {e.target for e in self.edges if e.source != without}
        found = [n for n in self.nodes if n != without and n not in targets]
        return found[0] if len(found) == 1 else None

    def last(self, without: str | None = None) -> str | None:
        """The one node no edge leaves (ignoring `without`), or None if not exactly one."""
        sources = {e.source for e in self.edges if e.target != without}
        found = [n for n in self.nodes if n != without and n not in sources]
        return found[0] if len(found) == 1 else None

    def drop(self, node_id: str) -> None:
        del self.nodes[node_id]
        self.edges = [e for e in self.edges if node_id not in (e.source, e.target)]

    def trim_ends(self) -> None:
        """Drop the entry and exit when one edge leaves/reaches them and another node takes
        their place, so the parent can link straight to the subgraph's real first/last node."""
        first = self.first()
        if first and self.first(without=first) and sum(e.source == first for e in self.edges) == 1:
            self.drop(first)
        last = self.last()
        if last and self.last(without=last) and sum(e.target == last for e in self.edges) == 1:
            self.drop(last)


def _node_json(node_id: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
    if node_id == END:  # LangGraph's end node carries no runnable
        node: dict[str, Any] = {"id": node_id}
    else:
        node = {"id": node_id, "type": "runnable", "data": {"name": node_id}}
    if metadata:
        node["metadata"] = dict(metadata)
    return node


def _flatten(graph: DrawableGraph) -> _Flat:
    flat = _Flat()
    for node_id in graph.nodes:
        flat.nodes[node_id] = _node_json(node_id, graph.metadata.get(node_id))
    seen: set[tuple[str, str]] = set()
    for edge in graph.edges:  # one edge per (source, target): the first drawn wins
        if (edge.source, edge.target) in seen:
            continue
        seen.add((edge.source, edge.target))
        label = edge.label if edge.label is not None and edge.label != edge.target else None
        flat.edges.append(_Edge(edge.source, edge.target, edge.conditional, label))
    for name, subgraph in graph.subgraphs.items():
        if name in flat.nodes:
            _expand(flat, name, _flatten(subgraph))
    return flat


def _expand(flat: _Flat, name: str, inner: _Flat) -> None:
    """Put the subgraph's nodes in place of node `name` and reroute the edges around it."""
    if len(inner.nodes) < 2 or inner.first() is None or inner.last() is None:
        return  # nothing to show inside, or no single way in and out: keep the plain node
    inner.trim_ends()
    first, last = inner.first(), inner.last()
    if first is None or last is None:
        return
    prefix = f"{name}:"
    nodes: dict[str, dict[str, Any]] = {}
    for node_id, node in flat.nodes.items():
        if node_id != name:
            nodes[node_id] = node
            continue
        for inner_id, inner_node in inner.nodes.items():  # in the subgraph node's place
            full = prefix + inner_id
            nodes[full] = {**inner_node, "id": full}
            if "data" in inner_node:
                nodes[full]["data"] = {**inner_node["data"], "name": full}
    flat.nodes = nodes
    for edge in flat.edges:
        if edge.source == name:
            edge.source = prefix + last
        if edge.target == name:
            edge.target = prefix + first
    flat.edges.extend(
        _Edge(prefix + e.source, prefix + e.target, e.conditional, e.label) for e in inner.edges
    )


def graph_to_json(graph: DrawableGraph) -> dict[str, Any]:
    """`{"nodes": [...], "edges": [...]}` for a drawable graph, subgraphs expanded."""
    flat = _flatten(graph)
    edges: list[dict[str, Any]] = []
    for edge in flat.edges:
        item: dict[str, Any] = {"source": edge.source, "target": edge.target}
        if edge.label is not None:
            item["data"] = edge.label
        if edge.conditional:
            item["conditional"] = True
        edges.append(item)
    return {"nodes": list(flat.nodes.values()), "edges": edges}
