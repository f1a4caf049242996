"""The `waypoint` command line."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import sys
import time
from collections.abc import Iterator
from typing import Any

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


@contextlib.contextmanager
def open_store(url: str) -> Iterator[Any]:
    """A checkpointer for a SQLite path or a postgresql:// URL."""
    if url.startswith(("postgresql://", "postgres://")):
        from .checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(url) as store:
            yield store
    else:
        from .checkpoint import SqliteSaver

        with SqliteSaver.from_conn_string(url) as store:
            yield store


def _graph_on(target: str, store: Any) -> Any:
    """MODULE:ATTRIBUTE as a compiled graph on `store`: a graph, or a function building one."""
    module_name, _, attr = target.partition(":")
    if not attr:
        raise SystemExit(f"expected MODULE:ATTRIBUTE (e.g. examples.app:build_graph), got "
                         f"{target!r}")
    made = getattr(importlib.import_module(module_name), attr, None)
    if made is None:
        raise SystemExit(f"{module_name} has no attribute {attr!r}")
    if hasattr(made, "get_graph"):
        return made
    if store is not None and inspect.signature(made).parameters:
        return made(store)
    return made()


def run_timers(args: argparse.Namespace) -> int:
    from .engine.timers import fire_due_timers

    sys.path.insert(0, "")
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(open_store(args.store)) if args.store else None
        graph = _graph_on(args.graph, store)
        if graph.saver is None:
            raise SystemExit("the graph has no checkpointer: pass --store PATH_OR_URL")
        while True:
            for timer in fire_due_timers(graph, limit=args.limit):
                print(f"{timer.outcome}: thread {timer.thread_id} ({timer.kind} timer "
                      f"{timer.timer_id})", flush=True)
            if not args.watch:
                return 0
            time.sleep(args.interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="waypoint", description=__doc__)
    parser.add_argument("--version", action="version", version=f"waypoint {__version__}")
    commands = parser.add_subparsers(dest="command")
    draw = commands.add_parser("draw", help="print a compiled graph as Mermaid")
    draw.add_argument("target", help="MODULE:ATTRIBUTE of a compiled graph or a builder function")
    draw.add_argument("--xray", action="store_true", help="expand subgraphs")
    timers = commands.add_parser(
        "timers", help="resume threads whose durable timers (sleeps, approval deadlines) are due")
    timers.add_argument("--graph", required=True,
                        help="MODULE:ATTRIBUTE of a compiled graph, or of a function that takes "
                             "a checkpointer and returns one")
    timers.add_argument("--store", help="SQLite file or postgresql:// URL the graph runs on")
    timers.add_argument("--watch", action="store_true", help="keep firing timers as they fall due")
    timers.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    timers.add_argument("--limit", type=int, default=100, help="timers per pass")
    args = parser.parse_args(argv)
    if args.command == "timers":
        return run_timers(args)
    if args.command == "draw":
        sys.path.insert(0, "")
        graph = _load_graph(args.target)
        print(graph.get_graph(xray=args.xray).draw_mermaid(), end="")  # type: ignore[attr-defined]
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
