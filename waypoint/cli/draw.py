"""`waypoint draw`: a compiled graph as Mermaid text."""

from __future__ import annotations

import typer

from .loading import load_graph


def draw(target: str = typer.Argument(..., help="MODULE:ATTRIBUTE of a compiled graph or a "
                                                "function building one"),
         xray: bool = typer.Option(False, "--xray", help="Expand subgraphs.")) -> None:
    """Print a compiled graph as Mermaid."""
    graph = load_graph(target)
    typer.echo(graph.get_graph(xray=xray).draw_mermaid(), nl=False)
