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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..constants import END, START
from .conditions import (
    MISSING,
    OPERATORS,
    AllOf,
    AnyOf,
    Check,
    Condition,
    Not,
    RouteError,
    RouteEvaluationError,
    When,
    _only,
    all_of,
    any_of,
    as_when,
    not_,
    resolve_path,
)

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


# The conditions live in conditions.py; these names have always been importable from here.
__all__ = ["MISSING", "OPERATORS", "AllOf", "AnyOf", "Check", "Condition", "Not", "Route",
           "RouteDecision", "RouteError", "RouteEvaluationError", "Router", "When", "all_of",
           "any_of", "as_when", "not_", "resolve_path"]
