"""Drawing a graph: nodes and edges as data, and Mermaid text from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..constants import END, START
from .graph_json import graph_to_json
from .spec import GraphSpec


@dataclass(frozen=True, slots=True)
class DrawEdge:
    source: str
    target: str
    conditional: bool = False
    label: str | None = None


@dataclass(slots=True)
class DrawableGraph:
    """The drawable shape of a compiled graph (`get_graph()`)."""

    nodes: dict[str, str] = field(default_factory=dict)  # id -> label
    edges: list[DrawEdge] = field(default_factory=list)
    subgraphs: dict[str, DrawableGraph] = field(default_factory=dict)
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> node metadata

    def draw_mermaid(self) -> str:
        lines = ["---", "config:", "  flowchart:", "    curve: linear", "---", "graph TD;"]
        lines.extend(self._mermaid_body(prefix="", indent="\t"))
        lines.append("\tclassDef default fill:#f2f0ff,line-height:1.2")
        lines.append("\tclassDef first fill-opacity:0")
        lines.append("\tclassDef last fill:#bfb6fc")
        return "\n".join(lines) + "\n"

    def _mermaid_body(self, prefix: str, indent: str) -> list[str]:
        lines: list[str] = []
        for node_id, label in self.nodes.items():
            full = f"{prefix}{node_id}"
            if node_id in self.subgraphs:
                lines.append(f"{indent}subgraph {full}")
                lines.extend(self.subgraphs[node_id]._mermaid_body(f"{full}:", indent + "\t"))
                lines.append(f"{indent}end")
                continue
            if node_id == START:
                lines.append(f"{indent}{_safe(full)}([<p>{label}</p>]):::first")
            elif node_id == END:
                lines.append(f"{indent}{_safe(full)}([<p>{label}</p>]):::last")
            else:
                lines.append(f"{indent}{_safe(full)}({label})")
        for edge in self.edges:
            source, target = f"{prefix}{edge.source}", f"{prefix}{edge.target}"
            if edge.conditional:
                if edge.label and edge.label != edge.target:
                    arrow = f" -. &nbsp;{edge.label}&nbsp; .-> "
                else:
                    arrow = " -.-> "
            else:
                arrow = " --> "
            lines.append(f"{indent}{_safe(source)}{arrow}{_safe(target)};")
        return lines

    def to_json(self) -> dict[str, Any]:
        """The graph as the Agent Server's `/assistants/{id}/graph` answer (see graph_json)."""
        return graph_to_json(self)


def _node_metadata(spec: GraphSpec, name: str, own: dict[str, Any]) -> dict[str, Any]:
    """A node's metadata plus where the graph pauses around it, for clients that draw it."""
    metadata = dict(own or {})
    pauses = [when for when, nodes in (("before", spec.interrupt_before),
                                       ("after", spec.interrupt_after)) if name in nodes]
    if pauses:
        metadata["__interrupt"] = ",".join(pauses)
    return metadata


def _safe(node_id: str) -> str:
    return node_id.replace(" ", "_").replace("-", "_")


def drawable_graph(spec: GraphSpec, *, xray: bool | int = False) -> DrawableGraph:
    graph = DrawableGraph()
    graph.nodes[START] = START
    for name, node in spec.nodes.items():
        graph.nodes[name] = name
        metadata = _node_metadata(spec, name, node.metadata)
        if metadata:
            graph.metadata[name] = metadata
        if xray and node.subgraph is not None:
            depth = xray - 1 if isinstance(xray, int) and not isinstance(xray, bool) else xray
            graph.subgraphs[name] = drawable_graph(node.subgraph.spec, xray=depth)
    ends = False
    for source, targets in spec.edges.items():
        for target in targets:
            graph.edges.append(DrawEdge(source, target))
            ends = ends or target == END
    for join in spec.joins.values():
        for source in sorted(join.sources):
            graph.edges.append(DrawEdge(source, join.target))
    for source, branches in spec.branches.items():
        for branch in branches:
            if branch.path_map is not None:
                pairs = [(str(label), target) for label, target in branch.path_map.items()]
            elif branch.declared_targets:
                pairs = [(t, t) for t in branch.declared_targets]
            else:  # unknown: any node, or the end
                pairs = [(t, t) for t in [*spec.nodes, END] if t != source]
            for label, target in pairs:
                graph.edges.append(DrawEdge(source, target, True, label))
                ends = ends or target == END
    for name, node in spec.nodes.items():
        for target in node.destinations or ():
            graph.edges.append(DrawEdge(name, target, True, target))
            ends = ends or target == END
        has_out = name in spec.edges or name in spec.branches or name in spec.joins_by_source
        if not has_out and not node.destinations:
            graph.edges.append(DrawEdge(name, END))
            ends = True
    if ends:
        graph.nodes[END] = END
    return graph
