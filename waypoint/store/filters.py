"""Matching in Python: value filters (memory, SQLite) and namespace listing (all backends).

Equality follows JSON, as PostgreSQL's jsonb does: 1 equals 1.0, but true is not 1, and
objects compare without regard to key order. Ordered operators compare numbers with numbers
and strings with strings (by code point); a value of another type, or a missing key, does
not match. `$ne` matches a missing key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .checks import WILDCARD, Condition


def json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(
            json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _ordered(op: str, have: Any, operand: Any) -> bool:
    if isinstance(operand, str):
        if not isinstance(have, str):
            return False
    elif isinstance(have, bool) or not isinstance(have, (int, float)):
        return False
    if op == "$gt":
        return have > operand
    if op == "$gte":
        return have >= operand
    if op == "$lt":
        return have < operand
    return have <= operand


_ABSENT = object()


def matches(value: dict[str, Any], conditions: Iterable[Condition]) -> bool:
    """Whether a stored value passes every condition of a filter."""
    for field, op, operand in conditions:
        have = value.get(field, _ABSENT)
        if op == "$eq":
            if have is _ABSENT or not json_equal(have, operand):
                return False
        elif op == "$ne":
            if have is not _ABSENT and json_equal(have, operand):
                return False
        elif have is _ABSENT or not _ordered(op, have, operand):
            return False
    return True


# -- namespaces ---------------------------------------------------------------------------


def literal_prefix(prefix: tuple[str, ...] | None) -> tuple[str, ...]:
    """The labels of `prefix` before its first wildcard: a backend may narrow by them."""
    if not prefix:
        return ()
    head: list[str] = []
    for label in prefix:
        if label == WILDCARD:
            break
        head.append(label)
    return tuple(head)


def _fits(labels: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    return all(p == WILDCARD or p == label for p, label in zip(pattern, labels, strict=True))


def select_namespaces(found: Iterable[tuple[str, ...]], prefix: tuple[str, ...] | None,
                      suffix: tuple[str, ...] | None, max_depth: int | None, limit: int,
                      offset: int) -> list[tuple[str, ...]]:
    """list_namespaces' answer from the namespaces that hold live items: filtered by
    prefix/suffix (wildcards allowed), cut to `max_depth` labels, unique, sorted, paged."""
    chosen: set[tuple[str, ...]] = set()
    for ns in found:
        if prefix and (len(ns) < len(prefix) or not _fits(ns[:len(prefix)], prefix)):
            continue
        if suffix and (len(ns) < len(suffix) or not _fits(ns[len(ns) - len(suffix):], suffix)):
            continue
        chosen.add(ns[:max_depth] if max_depth is not None else ns)
    return sorted(chosen)[offset:offset + limit]
