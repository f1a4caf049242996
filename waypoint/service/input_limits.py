"""Bounds on what a request may carry, checked before anything reaches a store.

JSON allows values that the layers below cannot hold: numbers beyond 64 bits (SQLite
parameters, orjson and PostgreSQL's bigint refuse integers that large, and jsonb turns such
a float into one), NUL characters (PostgreSQL text
and jsonb refuse them), lone surrogates (not UTF-8), `NaN`/`Infinity` (Python's parser
takes them; JSON has no such numbers) and nesting deep enough to exhaust a serializer's
recursion limit. Each would surface as a server error deep in a write, after part of the
work was done; refusing them here makes them a 422 that names the place.
"""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import Request

from .errors import Unprocessable

MAX_DEPTH = 64  # orjson stops at 254 levels; states and checkpoints wrap a value in more
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
# A float that large is integral, and PostgreSQL's jsonb gives it back as an integer
# (1e20 -> 100000000000000000000) that the JSON encoders then refuse: bounded the same.
_FLOAT_BOUND = float(2**63)
MAX_FILTER_KEYS = 64  # keys of a metadata / values / store filter: one condition each
MAX_IDS = 1000  # ids in one request (search by ids, prune, cancel)
MAX_BATCH = 100  # runs in one /runs/batch
MAX_OFFSET = 10**9  # an offset past every row there could be
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why a string cannot be stored, or None."""
    if text.isascii() and "\x00" not in text:
        return None
    found = _BAD_TEXT.search(text)
    if found is None:
        return None
    return "holds a NUL character" if found.group() == "\x00" else "holds a lone surrogate"


def check_json(value: Any) -> None:
    """Raise ValueError naming the first value (by its path) the stores cannot hold.

    Iterative (no recursion limit to hit) and cheap per value: the path is only spelled
    out for the value that is refused."""
    stack: list[tuple[Any, int, Any]] = [(value, 0, None)]  # (value, depth, trail)
    pop, push = stack.pop, stack.append
    while stack:
        item, depth, trail = pop()
        kind = type(item)
        if kind is str:
            if not item.isascii() or "\x00" in item:
                if problem := text_problem(item):
                    raise ValueError(f"{_path(trail)}: the string {problem}")
        elif kind is dict:
            if depth >= MAX_DEPTH:
                raise ValueError(f"{_path(trail)}: nested deeper than {MAX_DEPTH} levels")
            for key, child in item.items():
                if isinstance(key, str) and (problem := text_problem(key)):
                    raise ValueError(f"{_path(trail)}: a key {problem}")
                push((child, depth + 1, (key, trail)))
        elif kind is list:
            if depth >= MAX_DEPTH:
                raise ValueError(f"{_path(trail)}: nested deeper than {MAX_DEPTH} levels")
            for n, child in enumerate(item):
                push((child, depth + 1, (n, trail)))
        elif kind is int:
            if not INT_MIN <= item <= INT_MAX:
                raise ValueError(f"{_path(trail)}: the integer is outside the 64-bit range")
        elif kind is float and not -_FLOAT_BOUND < item < _FLOAT_BOUND:
            if not math.isfinite(item):
                raise ValueError(f"{_path(trail)}: {item} is not a JSON number")
            raise ValueError(f"{_path(trail)}: the number is outside the 64-bit range")


def _path(trail: Any) -> str:
    """`a.b[0].c` from a trail of (key, parent trail) pairs."""
    parts: list[str] = []
    while trail is not None:
        key, trail = trail
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    text = "".join(reversed(parts)).lstrip(".")
    return (text[:200] + "…") if len(text) > 200 else (text or "value")


async def check_request_text(request: Request) -> None:
    """A dependency of every router: path and query parameters the stores can hold (a NUL
    in an id is refused by PostgreSQL mid-query)."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if isinstance(value, str) and (problem := text_problem(value)):
            raise Unprocessable(f"{name[:64]}: the value {problem}")
