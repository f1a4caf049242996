"""Routes as data: branch conditions a reviewer can read, a test can explain, and a config
file can hold.

A `Router` is a list of `Route`s, each `when` (conditions on state fields) `to` (a node),
with the `tools` allowed on that path, and a `default` for when nothing matches; the first
matching route wins. It is a plain callable, so it goes where any router goes:

    router = Router([Route(Condition("kind", "==", "code"), to="coder", tools=("run",))],
                    default="writer")
    builder.add_conditional_edges("classify", router, router.path_map)

Conditions are values, not code: `to_dict()` / `Router.from_dict()` round-trip through
JSON, and bad data (unknown operator, non-JSON value, broken regex) is refused when the
router is built, with the path of the offending field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Literal

from ..constants import END, START


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


# -- routes and the router ----------------------------------------------------------------


def _tool_names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Iterable):
        raise RouteError(f"{where}: tools must be a list of tool names, got {value!r}")
    names = tuple(value)
    for name in names:
        if not isinstance(name, str) or not name:
            raise RouteError(f"{where}: tool names must be non-empty strings, got {name!r}")
    return tuple(dict.fromkeys(names))


def _destination(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise RouteError(f"{where}: expected a node name, got {value!r}")
    if value == START:
        raise RouteError(f"{where}: a route cannot lead back to START")
    return value


@dataclass(frozen=True)
class Route:
    """Go `to` a node when `when` matches the state; `tools` are those allowed on that path."""

    when: When
    to: str
    tools: tuple[str, ...] = ()
    name: str | None = None

    def __post_init__(self) -> None:
        label = f"route to {self.to!r}" if isinstance(self.to, str) else "route"
        object.__setattr__(self, "to", _destination(self.to, f"{label}: to"))
        object.__setattr__(self, "when", as_when(self.when, f"{label}: when"))
        object.__setattr__(self, "tools", _tool_names(self.tools, f"{label}: tools"))
        if self.name is not None and not isinstance(self.name, str):
            raise RouteError(f"{label}: name must be a string, got {self.name!r}")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"when": self.when.to_dict(), "to": self.to,
                                "tools": list(self.tools)}
        if self.name is not None:
            data["name"] = self.name
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "route") -> Route:
        if not isinstance(data, Mapping):
            raise RouteError(f"{where}: expected an object with 'when' and 'to', got "
                             f"{type(data).__name__}")
        _only(data, {"when", "to", "tools", "name"}, where)
        for required in ("when", "to"):
            if required not in data:
                raise RouteError(f"{where}: a route needs {required!r}")
        when = as_when(data["when"], f"{where}.when")
        try:
            return cls(when, _destination(data["to"], f"{where}.to"),
                       _tool_names(data.get("tools"), f"{where}.tools"), data.get("name"))
        except RouteError as exc:
            raise RouteError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class RouteDecision:
    """What `Router.explain(state)` found: where to go, with which tools, and why."""

    destination: str
    tools: tuple[str, ...]
    route: int | None  # index of the matching route; None when the default was taken
    name: str | None
    checks: tuple[tuple[int, Check], ...]  # every route evaluated, in order

    @property
    def matched(self) -> Check | None:
        """The check of the route that matched (None when the default was taken)."""
        return self.checks[-1][1] if self.route is not None else None

    @property
    def reason(self) -> str:
        matched = self.matched
        if matched is None or self.route is None:
            return "no route matched: default"
        return f"route {self.route + 1} matched: {matched.condition} ({matched.reason})"

    def __str__(self) -> str:
        lines = [f"-> {self.destination} (tools: {', '.join(self.tools) or 'none'}); "
                 f"{self.reason}"]
        for index, check in self.checks:
            lines.append(f"  route {index + 1}: {check}")
        return "\n".join(lines)


class Router:
    """Chooses the next node from data: the first `Route` whose condition matches, else
    `default`. Callable as a conditional edge; `destinations` / `path_map` list every
    node it can choose, for compile-time checks and drawing."""

    def __init__(self, routes: Sequence[Route | Mapping[str, Any]], default: str, *,
                 default_tools: Iterable[str] = ()) -> None:
        if isinstance(routes, (Route, Mapping, str)) or not isinstance(routes, Iterable):
            raise RouteError("Router(routes, default): routes must be a list of Route")
        built: list[Route] = []
        for i, route in enumerate(routes):
            if isinstance(route, Mapping):
                route = Route.from_dict(route, f"routes[{i}]")
            elif not isinstance(route, Route):
                raise RouteError(f"routes[{i}]: expected a Route, got {type(route).__name__}")
            built.append(route)
        self.routes: tuple[Route, ...] = tuple(built)
        self.default = _destination(default, "default")
        self.default_tools = _tool_names(default_tools, "default_tools")
        self.destinations: tuple[str, ...] = tuple(
            dict.fromkeys([*(r.to for r in self.routes), self.default]))
        # The builder reads a router's `-> Literal[...]` return hint to know where it may
        # go; this one declares its destinations the same way.
        self.__annotations__ = {"return": Literal[self.destinations]}  # type: ignore[valid-type]

    @property
    def path_map(self) -> dict[str, str]:
        """`{destination: destination}`, for `add_conditional_edges(src, router, path_map)`."""
        return {name: name for name in self.destinations}

    def explain(self, state: Any) -> RouteDecision:
        checks: list[tuple[int, Check]] = []
        for index, route in enumerate(self.routes):
            check = route.when.check(state)
            checks.append((index, check))
            if check.matched:
                return RouteDecision(route.to, route.tools, index, route.name, tuple(checks))
        return RouteDecision(self.default, self.default_tools, None, None, tuple(checks))

    def choose(self, state: Any) -> Route | None:
        """The matching route, or None for the default."""
        for route in self.routes:
            if route.when.evaluate(state):
                return route
        return None

    def __call__(self, state: Any) -> str:
        route = self.choose(state)
        return self.default if route is None else route.to

    def tools_for(self, state: Any) -> tuple[str, ...]:
        """The tools allowed on the path this state takes."""
        route = self.choose(state)
        return self.default_tools if route is None else route.tools

    @property
    def tools(self) -> tuple[str, ...]:
        """Every tool named on any path."""
        names = [n for r in self.routes for n in r.tools] + list(self.default_tools)
        return tuple(dict.fromkeys(names))

    def check(self, *, nodes: Iterable[str] | None = None,
              tools: Iterable[str] | None = None) -> None:
        """Refuse destinations that are not `nodes` and tools that are not `tools`."""
        if nodes is not None:
            known = set(nodes) | {END}
            unknown = [d for d in self.destinations if d not in known]
            if unknown:
                raise RouteError(f"router leads to unknown node(s): {', '.join(unknown)}")
        if tools is not None:
            known_tools = set(tools)
            unknown = [t for t in self.tools if t not in known_tools]
            if unknown:
                raise RouteError(f"router allows unknown tool(s): {', '.join(unknown)}")

    # -- as data ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"routes": [r.to_dict() for r in self.routes], "default": self.default,
                "default_tools": list(self.default_tools)}

    @classmethod
    def from_dict(cls, data: Any) -> Router:
        if not isinstance(data, Mapping):
            raise RouteError(f"router: expected an object with 'routes' and 'default', got "
                             f"{type(data).__name__}")
        _only(data, {"routes", "default", "default_tools"}, "router")
        if "default" not in data:
            raise RouteError("router: 'default' is required (where to go when no route "
                             "matches)")
        routes = data.get("routes", [])
        if not isinstance(routes, list):
            raise RouteError("router.routes: expected a list of routes")
        built = [Route.from_dict(r, f"routes[{i}]") for i, r in enumerate(routes)]
        return cls(built, data["default"], default_tools=data.get("default_tools") or ())

    @classmethod
    def from_json(cls, text: str) -> Router:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RouteError(f"router: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Router) and other.to_dict() == self.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Router({len(self.routes)} routes, default={self.default!r})"

    def __str__(self) -> str:
        rows = [(str(i + 1), str(r.when), r.to, ", ".join(r.tools) or "-")
                for i, r in enumerate(self.routes)]
        rows.append(("*", "otherwise", self.default, ", ".join(self.default_tools) or "-"))
        header = ("#", "when", "to", "tools")
        widths = [max(len(row[c]) for row in [header, *rows]) for c in range(3)]
        lines = ["Router (first matching route wins)"]
        for row in [header, *rows]:
            cells = [row[c].ljust(widths[c]) for c in range(3)]
            lines.append("  " + "  ".join([*cells, row[3]]).rstrip())
        return "\n".join(lines)


__all__ = [
    "MISSING",
    "OPERATORS",
    "AllOf",
    "AnyOf",
    "Check",
    "Condition",
    "Not",
    "Route",
    "RouteDecision",
    "RouteError",
    "RouteEvaluationError",
    "Router",
    "When",
    "all_of",
    "any_of",
    "as_when",
    "not_",
    "resolve_path",
]
