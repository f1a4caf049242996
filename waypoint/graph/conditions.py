"""Conditions on state fields, as data: the `when` of a route (see routes.py).

`Condition(field, op, value)` and its combinations (`AllOf`, `AnyOf`, `Not`) are values,
not code: they print as readable text, explain why they matched, round-trip through
JSON, and refuse bad data (unknown operator, non-JSON value, broken regex) when built.
"""


from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any


class RouteError(ValueError):
    """Route data that cannot be used: the message names the field or operator."""


class RouteEvaluationError(ValueError):
    """A condition that cannot be evaluated on this state (e.g. comparing text with a
    number): a wrong route or a wrong state, never silently treated as "no match"."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()
_INDEX = re.compile(r"^-?\d+$")
_SEGMENT = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_-]*|-?\d+)$")

OPERATORS: tuple[str, ...] = (
    "==", "!=", "<", "<=", ">", ">=", "in", "not_in", "contains", "exists", "matches")
_ALIASES = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
            "not in": "not_in", "notin": "not_in"}


def resolve_path(state: Any, path: str) -> Any:
    """The value at a dotted path (`"user.tier"`, `"messages.-1.content"`) in dicts, lists,
    attributes or pydantic models; `MISSING` when any step is absent."""
    current = state
    for part in path.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, Sequence) and not isinstance(current, (str, bytes)):
            if not _INDEX.match(part):
                return MISSING
            index = int(part)
            if not -len(current) <= index < len(current):
                return MISSING
            current = current[index]
        elif current is None or isinstance(current, (str, bytes, int, float)):
            return MISSING
        else:
            current = getattr(current, part, MISSING)
            if current is MISSING:
                return MISSING
    return current


def _show(value: Any) -> str:
    if value is MISSING:
        return "missing"
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _as_json(value: Any, where: str) -> Any:
    """`value` as plain JSON data (tuples become lists), or a RouteError naming `where`."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RouteError(
            f"{where}: value {value!r} is not JSON data ({exc}); routes must be storable "
            f"in a config file") from None


# -- checks: what an evaluation found ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """One condition's verdict on one state, with the reason in words."""

    condition: str
    matched: bool
    reason: str
    children: tuple[Check, ...] = ()

    def __str__(self) -> str:
        return f"{self.condition}: {'yes' if self.matched else 'no'} ({self.reason})"


# -- conditions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """`field op value` on the state. `field` is a dotted path; operators: ==, !=, <, <=, >,
    >=, in, not_in, contains, exists (value True/False: present and not None), matches
    (regular expression, searched). A missing field matches only !=, not_in and
    `exists False`."""

    field: str
    op: str
    value: Any = None
    _pattern: re.Pattern[str] | None = dc_field(default=None, init=False, repr=False,
                                                 compare=False)

    def __post_init__(self) -> None:
        path = self.field
        if not isinstance(path, str) or not path:
            raise RouteError(f"condition: field must be a non-empty dotted path, got {path!r}")
        for part in path.split("."):
            if not _SEGMENT.match(part):
                raise RouteError(
                    f"condition on {path!r}: {part!r} is not a valid path segment (use names "
                    f"starting with a letter, or list indexes like 0 or -1)")
        where = f"condition on {path!r}"
        op = _ALIASES.get(self.op, self.op) if isinstance(self.op, str) else self.op
        if op not in OPERATORS:
            raise RouteError(
                f"{where}: unknown operator {self.op!r} (known: {', '.join(OPERATORS)})")
        object.__setattr__(self, "op", op)
        value = _as_json(self.value, where)
        if op in ("in", "not_in") and not isinstance(value, list):
            raise RouteError(f"{where}: {op!r} needs a list of values, got {value!r}")
        if op == "exists":
            value = True if value is None else value
            if not isinstance(value, bool):
                raise RouteError(f"{where}: 'exists' takes true or false, got {value!r}")
        if op == "matches":
            if not isinstance(value, str):
                raise RouteError(f"{where}: 'matches' needs a regular expression string, "
                                 f"got {value!r}")
            try:
                object.__setattr__(self, "_pattern", re.compile(value))
            except re.error as exc:
                raise RouteError(
                    f"{where}: regular expression {value!r} does not compile ({exc})") from None
        if op in ("<", "<=", ">", ">=") and (
            value is None or isinstance(value, (bool, list, dict))
        ):
            raise RouteError(f"{where}: {op!r} needs a number or a string, got {value!r}")
        if op == "contains" and value is None:
            raise RouteError(f"{where}: 'contains' needs a value to look for")
        object.__setattr__(self, "value", value)

    def __str__(self) -> str:
        if self.op == "exists":
            return f"{self.field} {'exists' if self.value else 'does not exist'}"
        return f"{self.field} {self.op} {_show(self.value)}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"field": self.field, "op": self.op}
        if not (self.op == "exists" and self.value is True):
            data["value"] = self.value
        return data

    def check(self, state: Any) -> Check:
        actual = resolve_path(state, self.field)
        matched = self._test(actual)
        shown = f"{self.field} is {_show(actual)}" if actual is not MISSING else (
            f"{self.field} is missing")
        return Check(str(self), matched, shown)

    def evaluate(self, state: Any) -> bool:
        return self._test(resolve_path(state, self.field))

    def _test(self, actual: Any) -> bool:
        op, value = self.op, self.value
        if op == "exists":
            present = actual is not MISSING and actual is not None
            return present == value
        if actual is MISSING:
            return op in ("!=", "not_in")
        try:
            if op == "==":
                return bool(actual == value)
            if op == "!=":
                return bool(actual != value)
            if op == "in":
                return actual in value
            if op == "not_in":
                return actual not in value
            if actual is None:
                return False
            if op == "<":
                return bool(actual < value)
            if op == "<=":
                return bool(actual <= value)
            if op == ">":
                return bool(actual > value)
            if op == ">=":
                return bool(actual >= value)
            if op == "contains":
                if isinstance(actual, str) and not isinstance(value, str):
                    raise TypeError("text can only contain text")
                if isinstance(actual, (str, list, tuple, set, frozenset, Mapping)):
                    return value in actual
                raise TypeError(f"{type(actual).__name__} has no items to search")
            if op == "matches":
                if not isinstance(actual, str):
                    raise TypeError("only text can match a regular expression")
                assert self._pattern is not None
                return self._pattern.search(actual) is not None
        except TypeError as exc:
            raise RouteEvaluationError(
                f"condition {self}: cannot apply {op!r} to {self.field} = {_show(actual)} "
                f"({type(actual).__name__}) and {_show(value)} ({exc})") from None
        raise AssertionError(op)  # pragma: no cover - operators are checked at construction


@dataclass(frozen=True)
class AllOf:
    """Matches when every condition matches (an empty list always matches)."""

    conditions: tuple[When, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditions", tuple(as_when(c) for c in self.conditions))

    def __str__(self) -> str:
        if not self.conditions:
            return "always"
        return " and ".join(_wrapped(c) for c in self.conditions)

    def to_dict(self) -> dict[str, Any]:
        return {"all": [c.to_dict() for c in self.conditions]}

    def check(self, state: Any) -> Check:
        children: list[Check] = []
        for condition in self.conditions:
            child = condition.check(state)
            children.append(child)
            if not child.matched:
                return Check(str(self), False, f"{child.condition}: no, {child.reason}",
                             tuple(children))
        reason = "; ".join(c.reason for c in children) or "no conditions"
        return Check(str(self), True, reason, tuple(children))

    def evaluate(self, state: Any) -> bool:
        return all(c.evaluate(state) for c in self.conditions)


@dataclass(frozen=True)
class AnyOf:
    """Matches when at least one condition matches."""

    conditions: tuple[When, ...]

    def __post_init__(self) -> None:
        conditions = tuple(as_when(c) for c in self.conditions)
        if not conditions:
            raise RouteError("any_of() needs at least one condition")
        object.__setattr__(self, "conditions", conditions)

    def __str__(self) -> str:
        return " or ".join(_wrapped(c) for c in self.conditions)

    def to_dict(self) -> dict[str, Any]:
        return {"any": [c.to_dict() for c in self.conditions]}

    def check(self, state: Any) -> Check:
        children: list[Check] = []
        for condition in self.conditions:
            child = condition.check(state)
            children.append(child)
            if child.matched:
                return Check(str(self), True, f"{child.condition}: yes, {child.reason}",
                             tuple(children))
        return Check(str(self), False, "; ".join(c.reason for c in children), tuple(children))

    def evaluate(self, state: Any) -> bool:
        return any(c.evaluate(state) for c in self.conditions)


@dataclass(frozen=True)
class Not:
    """Matches when its condition does not."""

    condition: When

    def __post_init__(self) -> None:
        object.__setattr__(self, "condition", as_when(self.condition))

    def __str__(self) -> str:
        return f"not ({self.condition})"

    def to_dict(self) -> dict[str, Any]:
        return {"not": self.condition.to_dict()}

    def check(self, state: Any) -> Check:
        child = self.condition.check(state)
        return Check(str(self), not child.matched, child.reason, (child,))

    def evaluate(self, state: Any) -> bool:
        return not self.condition.evaluate(state)


When = Condition | AllOf | AnyOf | Not


def _wrapped(condition: When) -> str:
    text = str(condition)
    return f"({text})" if isinstance(condition, (AllOf, AnyOf)) and len(
        condition.conditions) > 1 else text


def all_of(*conditions: Any) -> AllOf:
    return AllOf(tuple(conditions))


def any_of(*conditions: Any) -> AnyOf:
    return AnyOf(tuple(conditions))


def not_(condition: Any) -> Not:
    return Not(condition)


def as_when(value: Any, where: str = "when") -> When:
    """A condition from a condition object, a list (all of them) or its dict form."""
    if isinstance(value, (Condition, AllOf, AnyOf, Not)):
        return value
    if isinstance(value, (list, tuple)):
        return AllOf(tuple(as_when(v, f"{where}[{i}]") for i, v in enumerate(value)))
    if isinstance(value, Mapping):
        return _when_from_dict(value, where)
    raise RouteError(
        f"{where}: expected a Condition, any_of(...), a list of conditions or a dict, got "
        f"{type(value).__name__}")


def _when_from_dict(data: Mapping[str, Any], where: str) -> When:
    keys = set(data)
    for combinator, build in (("all", AllOf), ("any", AnyOf)):
        if combinator in keys:
            _only(data, {combinator}, where)
            items = data[combinator]
            if not isinstance(items, list):
                raise RouteError(f"{where}.{combinator}: expected a list of conditions")
            parts = tuple(as_when(v, f"{where}.{combinator}[{i}]") for i, v in enumerate(items))
            try:
                return build(parts)
            except RouteError as exc:
                raise RouteError(f"{where}: {exc}") from None
    if "not" in keys:
        _only(data, {"not"}, where)
        return Not(as_when(data["not"], f"{where}.not"))
    _only(data, {"field", "op", "value"}, where)
    for required in ("field", "op"):
        if required not in data:
            raise RouteError(f"{where}: a condition needs {required!r} (has: "
                             f"{', '.join(sorted(map(str, data))) or 'nothing'})")
    try:
        return Condition(data["field"], data["op"], data.get("value"))
    except RouteError as exc:
        raise RouteError(f"{where}: {exc}") from None


def _only(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise RouteError(
            f"{where}: unknown key(s) {', '.join(sorted(map(repr, unknown)))} (expected "
            f"{', '.join(sorted(allowed))})")
