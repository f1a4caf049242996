"""Labelled datasets: one JSON object per line, checked line by line.

A dataset is edited by hand and reviewed in pull requests, so a mistake must be reported
where it is (file and line) and a misspelt key must not silently weaken a test: unknown
keys are errors (free-form notes go in `metadata`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .normalize import is_number

KNOWN_KEYS = ("id", "input", "expected", "tags", "expected_path", "expected_tools", "resume",
              "rubric", "tolerance", "expected_schema", "metadata")


@dataclass(slots=True)
class EvalCase:
    """One labelled row: what goes in, what should come out, and how to judge it."""

    id: str
    input: dict[str, Any]
    expected: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    expected_path: list[str] | None = None
    expected_tools: list[dict[str, Any]] | None = None
    resume: list[Any] = field(default_factory=list)
    rubric: str | None = None
    tolerance: float | dict[str, float] | None = None
    expected_schema: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the dataset file it came from
    line: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, default_id: str | None = None,
                  source: str | None = None, line: int | None = None) -> EvalCase:
        """A case from one parsed row; raises ValueError saying what is wrong."""
        return _case(data, default_id=default_id, source=source, line=line)


def load_dataset(path: str | os.PathLike[str]) -> list[EvalCase]:
    """Every row of a JSONL dataset (blank lines skipped, line numbers 1-based)."""
    source = Path(path)
    text = source.read_text(encoding="utf-8")
    cases: list[EvalCase] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{source} line {number}"
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})"
                             ) from None
        try:
            case = _case(data, default_id=str(number), source=str(source), line=number)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if case.id in seen:
            raise ValueError(f"{where}: duplicate id {case.id!r} (first used on line "
                             f"{seen[case.id]})")
        seen[case.id] = number
        cases.append(case)
    if not cases:
        raise ValueError(f"{source}: the dataset has no rows")
    return cases


def _case(data: Any, *, default_id: str | None, source: str | None,
          line: int | None) -> EvalCase:
    if not isinstance(data, dict):
        raise ValueError(f"a row must be a JSON object, got {_kind(data)}")
    unknown = [k for k in data if k not in KNOWN_KEYS]
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} (known keys: "
                         f"{', '.join(KNOWN_KEYS)}; put notes under 'metadata')")
    if "input" not in data:
        raise ValueError("missing 'input' (the graph's input, a JSON object)")
    case_id = data.get("id", default_id)
    if isinstance(case_id, bool) or not isinstance(case_id, (str, int)) or case_id == "":
        raise ValueError(f"'id' must be a non-empty string or an integer, got {case_id!r}")
    return EvalCase(
        id=str(case_id),
        input=_object(data, "input", required=True),
        expected=_object(data, "expected") or {},
        tags=_strings(data, "tags") or [],
        expected_path=_strings(data, "expected_path"),
        expected_tools=_tools(data.get("expected_tools")),
        resume=_list(data, "resume") or [],
        rubric=_text(data, "rubric"),
        tolerance=_tolerance(data.get("tolerance")),
        expected_schema=_object(data, "expected_schema"),
        metadata=_object(data, "metadata") or {},
        source=source,
        line=line,
    )


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _object(data: dict[str, Any], key: str, required: bool = False) -> dict[str, Any] | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"'{key}' must be a JSON object, got {_kind(value)}")
    return value


def _list(data: dict[str, Any], key: str) -> list[Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError(f"'{key}' must be an array, got {_kind(value)}")
    return value


def _strings(data: dict[str, Any], key: str) -> list[str] | None:
    value = _list(data, key)
    if value is not None and not all(isinstance(v, str) for v in value):
        raise ValueError(f"'{key}' must be an array of strings, got {value!r}")
    return value


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"'{key}' must be a string, got {_kind(value)}")
    return value


def _tools(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError(f"'expected_tools' must be an array, got {_kind(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"'expected_tools'[{index}] must be an object with a string "
                             f"'name', got {item!r}")
        extra = set(item) - {"name", "args"}
        if extra:
            raise ValueError(f"'expected_tools'[{index}] has unknown key(s) "
                             f"{', '.join(sorted(extra))} (known: name, args)")
        if "args" in item and not isinstance(item["args"], dict):
            raise ValueError(f"'expected_tools'[{index}].args must be an object")
    return value


def _tolerance(value: Any) -> float | dict[str, float] | None:
    if value is None:
        return None
    if is_number(value):
        if value < 0:
            raise ValueError(f"'tolerance' must be >= 0, got {value}")
        return float(value)
    if isinstance(value, dict) and value and set(value) <= {"rel", "abs"} and all(
            is_number(v) and v >= 0 for v in value.values()):
        return {k: float(v) for k, v in value.items()}
    raise ValueError(f"'tolerance' must be a number >= 0 (relative) or an object with "
                     f"'rel' and/or 'abs' numbers >= 0, got {value!r}")
