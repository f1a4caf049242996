"""Checking what callers hand a store, so every backend refuses bad input the same way.

Values are JSON documents: a walk finds the first thing JSON (or PostgreSQL's jsonb) cannot
hold and names its path, before anything is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

NS_SEP = "."  # labels are joined with it in SQL backends, so a label may not contain it
WILDCARD = "*"  # matches any one label in list_namespaces(prefix=, suffix=)

Condition = tuple[str, str, Any]  # (top-level key, operator, operand)

OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
_ORDERED = frozenset(("$gt", "$gte", "$lt", "$lte"))


def _label(label: Any, argument: str, index: int) -> str:
    if not isinstance(label, str):
        raise TypeError(f"{argument}[{index}] must be a str, got {type(label).__name__}")
    if not label:
        raise ValueError(f"{argument}[{index}] is an empty label: labels must be non-empty")
    if NS_SEP in label:
        raise ValueError(f"{argument}[{index}] = {label!r}: labels cannot contain '.'")
    if "\x00" in label:
        raise ValueError(f"{argument}[{index}]: labels cannot contain NUL characters")
    return label


def namespace(value: Any, argument: str = "namespace", *, empty: bool = False
              ) -> tuple[str, ...]:
    """A namespace as a tuple of labels; `empty` allows () (search everything)."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{argument} must be a tuple of str, got {type(value).__name__}")
    if not value and not empty:
        raise ValueError(f"{argument} must not be empty: give at least one label")
    return tuple(_label(label, argument, i) for i, label in enumerate(value))


def key(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"key must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError("key must not be empty")
    if "\x00" in value:
        raise ValueError("key cannot contain NUL characters")
    return value


def count(value: Any, argument: str, *, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, got {type(value).__name__}")
    if value < least:
        raise ValueError(f"{argument} must be >= {least}, got {value}")
    return value


def optional_flag(value: Any, argument: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{argument} must be True, False or None, got {type(value).__name__}")
    return value


def minutes(value: Any, argument: str) -> float | None:
    """A TTL in minutes: None (never expires) or a positive number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a number of minutes or None, got "
                        f"{type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{argument} must be a positive number of minutes, got {value!r}")
    return float(value)


def index_fields(value: Any) -> None:
    """put(index=...): False/None, or a list of field paths (no embeddings index to feed yet)."""
    if value is None or value is False:
        return
    if isinstance(value, (list, tuple)) and all(isinstance(f, str) for f in value):
        return
    raise TypeError(f"index must be None, False or a list of field names, got {value!r:.80}")


# -- JSON documents -----------------------------------------------------------------------


def _path(parts: list[Any]) -> str:
    return "".join(f"[{p!r}]" for p in parts)


def _walk(value: Any, parts: list[Any], argument: str) -> None:
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{argument}{_path(parts)} = {value!r}: JSON has no NaN or "
                             f"infinity")
        return
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{argument}{_path(parts)}: strings cannot contain NUL "
                             f"characters (PostgreSQL cannot store them)")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{argument}{_path(parts)} has key {k!r} of type "
                                f"{type(k).__name__}: JSON object keys must be str")
            if "\x00" in k:
                raise ValueError(f"{argument}{_path(parts)}: keys cannot contain NUL characters")
            parts.append(k)
            _walk(v, parts, argument)
            parts.pop()
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            parts.append(i)
            _walk(v, parts, argument)
            parts.pop()
        return
    raise TypeError(f"{argument}{_path(parts)} is a {type(value).__name__}, which is not "
                    f"JSON: store values hold dicts, lists, str, numbers, bools and None")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def document(value: Any) -> str:
    """A put's value, checked and encoded as JSON text."""
    if not isinstance(value, dict):
        raise TypeError(f"value must be a dict (a JSON object), got {type(value).__name__}; "
                        f"put(..., None) deletes")
    _walk(value, [], "value")
    return dumps(value)


# -- filters ------------------------------------------------------------------------------


def _operand(op: str, operand: Any, where: str) -> Any:
    if op in _ORDERED:
        if isinstance(operand, bool) or not isinstance(operand, (int, float, str)):
            raise TypeError(f"{where}: {op} compares numbers or strings, got "
                            f"{type(operand).__name__}")
    _walk(operand, [], where)
    return operand


def conditions(value: Any) -> tuple[Condition, ...]:
    """search(filter=...) as (key, operator, operand) triples, checked.

    A plain value means equality; a dict whose keys all start with '$' holds operators.
    """
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise TypeError(f"filter must be a dict, got {type(value).__name__}")
    found: list[Condition] = []
    for field, wanted in value.items():
        if not isinstance(field, str) or not field:
            raise TypeError(f"filter keys must be non-empty str, got {field!r}")
        where = f"filter[{field!r}]"
        ops = [k for k in wanted if isinstance(k, str) and k.startswith("$")] if isinstance(
            wanted, Mapping) else []
        if not ops:
            found.append((field, "$eq", _operand("$eq", wanted, where)))
            continue
        if len(ops) != len(wanted):
            raise ValueError(f"{where} mixes operators ({', '.join(ops)}) with plain keys: "
                             f"use either operators or a value to match exactly")
        for op, operand in wanted.items():
            if op not in OPERATORS:
                raise ValueError(f"{where}: unknown operator {op!r} (supported: "
                                 f"{', '.join(OPERATORS)})")
            found.append((field, op, _operand(op, operand, f"{where}[{op!r}]")))
    return tuple(found)
