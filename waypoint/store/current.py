"""`get_store()`: the running graph's store, found through a lookup the engine registers.

The store layer sits below the engine and never imports it; the engine registers how to
find the store of the node that is running (as the graph layer's compiler hook does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import BaseStore

_lookup: Callable[[], BaseStore | None] | None = None


def register_store_lookup(lookup: Callable[[], BaseStore | None]) -> None:
    global _lookup
    _lookup = lookup


def get_store() -> BaseStore | None:
    """The store of the running graph (None if it was compiled without one).

    Raises RuntimeError outside a node of a running graph.
    """
    if _lookup is None:
        raise RuntimeError("get_store() can only be called inside a node of a running graph")
    return _lookup()
