"""Refusing keywords nobody implements, with the closest valid spelling.

A misspelt keyword that is silently swallowed by `**kwargs` runs a different program
than the one written; these helpers make such calls fail where they are made.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable
from typing import Any


def reject_unknown(method: str, extra: dict[str, Any], known: Iterable[str]) -> None:
    """Raise TypeError naming the first unknown keyword (and the closest valid one)."""
    if not extra:
        return
    known = tuple(known)
    name = next(iter(extra))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = (f"; did you mean {close[0]!r}?" if close
            else f" (it takes: {', '.join(sorted(known))})")
    raise TypeError(f"{method}() got an unexpected keyword argument {name!r}{hint}")


def warn_no_cache(where: str, value: Any) -> None:
    """LangGraph's node cache is accepted for compatibility, but waypoint does not cache:
    say so once per call site instead of ignoring it silently."""
    if value is not None:
        warnings.warn(f"{where}: waypoint does not cache node results; every node runs "
                      f"each time (the cache setting has no effect)", UserWarning,
                      stacklevel=3)
