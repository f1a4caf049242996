"""The `waypoint` command line."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__


def _load_graph(target: str) -> object:
    module_name, _, attr = target.partition(":")
    if not attr:
        raise SystemExit(f"expected MODULE:ATTRIBUTE (e.g. examples.app:graph), got {target!r}")
    module = importlib.import_module(module_name)
    graph = getattr(module, attr, None)
    if graph is None:
        raise SystemExit(f"{module_name} has no attribute {attr!r}")
    return graph() if callable(graph) and not hasattr(graph, "get_graph") else graph


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="waypoint", description=__doc__)
    parser.add_argument("--version", action="version", version=f"waypoint {__version__}")
    commands = parser.add_subparsers(dest="command")
    draw = commands.add_parser("draw", help="print a compiled graph as Mermaid")
    draw.add_argument("target", help="MODULE:ATTRIBUTE of a compiled graph or a builder function")
    draw.add_argument("--xray", action="store_true", help="expand subgraphs")
    args = parser.parse_args(argv)
    if args.command == "draw":
        sys.path.insert(0, "")
        graph = _load_graph(args.target)
        print(graph.get_graph(xray=args.xray).draw_mermaid(), end="")  # type: ignore[attr-defined]
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
