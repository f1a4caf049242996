"""Finding a graph for a command: `module:attr`, and the store it runs on."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
from collections.abc import Iterator
from typing import Any

import typer


def import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise typer.BadParameter(f"expected MODULE:ATTRIBUTE (e.g. examples.app:graph), got "
                                 f"{target!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise typer.BadParameter(f"cannot import {module_name}: {exc}") from None
    made = getattr(module, attr, None)
    if made is None:
        raise typer.BadParameter(f"{module_name} has no attribute {attr!r}")
    return made


def load_graph(target: str) -> Any:
    """A compiled graph, or what a zero-argument function returns."""
    made = import_target(target)
    return made() if callable(made) and not hasattr(made, "get_graph") else made


def graph_on(target: str, store: Any) -> Any:
    """A compiled graph, or a function that takes a checkpointer (or nothing) and makes one."""
    made = import_target(target)
    if hasattr(made, "get_graph"):
        return made
    if store is not None and inspect.signature(made).parameters:
        return made(store)
    return made()


@contextlib.contextmanager
def open_store(url: str) -> Iterator[Any]:
    """A checkpointer for a SQLite path or a postgresql:// URL."""
    if url.startswith(("postgresql://", "postgres://")):
        from ..checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(url) as store:
            yield store
    else:
        from ..checkpoint import SqliteSaver

        with SqliteSaver.from_conn_string(url) as store:
            yield store
