"""Lifecycle hooks: what the engine tells tracing and metrics, without importing them.

The engine opens a `Scope` at each moment worth observing — a run, a node attempt, a
model call, a tool call, an effect, a compensation, an approval — and closes it with its
outcome. Layers above (`waypoint.observe.tracing`, the service's metrics) register an
`Observer` to turn scopes into spans or counters. With no observer registered, every hook
point costs one test of a module-level tuple: tracing off costs nothing measurable.

Scopes nest: a scope's parent is the scope that was running when it opened (a model
call's parent is the node attempt that made it; a subgraph's run is a child of the node
attempt that runs it), found through the task runtime, so parallel branches and `Send`
fan-out stay apart. Attributes are plain values keyed by short names (`thread_id`,
`run_id`, `node`, `step`, `model`, `input_tokens`, ...), documented in
docs/observability.md; large or private values (`messages`, `arguments`, `result`) are
passed as objects and an observer decides whether to read them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .context import current_runtime

KINDS = ("run", "attempt", "model", "tool", "effect", "compensation", "approval")


class Scope:
    """One observed moment: its kind, name, attributes, parent and outcome."""

    __slots__ = ("attrs", "error", "handles", "kind", "loop", "name", "parent", "started")

    def __init__(self, kind: str, name: str, attrs: dict[str, Any], parent: Scope | None,
                 loop: Any) -> None:
        self.kind = kind
        self.name = name
        self.attrs = attrs
        self.parent = parent
        self.loop = loop
        self.started = time.perf_counter()
        self.error: BaseException | None = None
        self.handles: list[tuple[Observer, Any]] = []

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def handle(self, observer: Observer) -> Any:
        """What `observer` returned when this scope opened (None if it was not there)."""
        for owner, handle in self.handles:
            if owner is observer:
                return handle
        return None

    def __repr__(self) -> str:
        return f"Scope({self.kind!r}, {self.name!r})"


class Observer:
    """Base of tracing and metrics observers; every hook is optional."""

    def scope_started(self, scope: Scope) -> Any:
        """A scope opened; the return value is handed back at its end (e.g. a span)."""
        return None

    def scope_ended(self, scope: Scope, handle: Any) -> None:
        """A scope closed; `scope.error` and `scope.attrs` hold its outcome."""

    def scope_event(self, scope: Scope, handle: Any, name: str,
                    attrs: Mapping[str, Any]) -> None:
        """Something happened inside an open scope (a checkpoint was committed...)."""

    def enter(self, scope: Scope, handle: Any) -> Any:
        """The scope's code starts running in this context (a node body): e.g. make its
        span the current one, so libraries traced inside the node nest under it."""
        return None

    def leave(self, token: Any) -> None:
        """Undo `enter` (same context, same thread)."""

    def checkpoint_notes(self, scope: Scope, handle: Any) -> Mapping[str, Any] | None:
        """Metadata to keep on the checkpoints a run scope commits (e.g. its trace id)."""
        return None


OBSERVERS: tuple[Observer, ...] = ()


def add_observer(observer: Observer) -> None:
    """Start telling `observer` about every run in this process (once per observer)."""
    global OBSERVERS
    if observer not in OBSERVERS:
        OBSERVERS = (*OBSERVERS, observer)


def remove_observer(observer: Observer) -> None:
    global OBSERVERS
    OBSERVERS = tuple(o for o in OBSERVERS if o is not observer)


def current_scope() -> Scope | None:
    """The node attempt this code runs in (None outside a run or when nothing observes)."""
    runtime = current_runtime()
    return None if runtime is None else runtime.scope


def start(kind: str, name: str, attrs: dict[str, Any] | None = None, *,
          parent: Scope | None = None, loop: Any = None) -> Scope | None:
    """Open a scope (None when nothing observes); its parent defaults to the current one."""
    if not OBSERVERS:
        return None
    if parent is None:
        parent = current_scope()
    if loop is None and parent is not None:
        loop = parent.loop
    scope = Scope(kind, name, attrs if attrs is not None else {}, parent, loop)
    for observer in OBSERVERS:
        try:
            scope.handles.append((observer, observer.scope_started(scope)))
        except Exception:  # an observer's failure never fails the run
            _warn(observer, "scope_started")
    return scope


def end(scope: Scope | None, error: BaseException | None = None, **attrs: Any) -> None:
    """Close a scope with its outcome (a no-op for None)."""
    if scope is None:
        return
    if error is not None:
        scope.error = error
    if attrs:
        scope.attrs.update(attrs)
    for observer, handle in scope.handles:
        try:
            observer.scope_ended(scope, handle)
        except Exception:
            _warn(observer, "scope_ended")


def event(scope: Scope | None, name: str, **attrs: Any) -> None:
    if scope is None:
        return
    for observer, handle in scope.handles:
        try:
            observer.scope_event(scope, handle, name, attrs)
        except Exception:
            _warn(observer, "scope_event")


def point(kind: str, name: str, attrs: dict[str, Any]) -> None:
    """A moment with no duration worth measuring (an approval asked or decided)."""
    end(start(kind, name, attrs))


@contextmanager
def observing(kind: str, name: str, attrs: dict[str, Any] | None = None) -> Iterator[
        Scope | None]:
    """`with observing("effect", name) as scope:` — closed with the error that escapes."""
    scope = start(kind, name, attrs)
    try:
        yield scope
    except BaseException as exc:
        end(scope, exc)
        raise
    end(scope)


def enter(scope: Scope | None) -> list[tuple[Observer, Any]] | None:
    if scope is None:
        return None
    tokens = []
    for observer, handle in scope.handles:
        try:
            tokens.append((observer, observer.enter(scope, handle)))
        except Exception:
            _warn(observer, "enter")
    return tokens


def leave(tokens: list[tuple[Observer, Any]] | None) -> None:
    if not tokens:
        return
    for observer, token in reversed(tokens):
        try:
            observer.leave(token)
        except Exception:
            _warn(observer, "leave")


def checkpoint_notes(scope: Scope | None) -> dict[str, Any]:
    if scope is None:
        return {}
    notes: dict[str, Any] = {}
    for observer, handle in scope.handles:
        try:
            notes.update(observer.checkpoint_notes(scope, handle) or {})
        except Exception:
            _warn(observer, "checkpoint_notes")
    return notes


def _warn(observer: Observer, hook: str) -> None:
    import logging

    logging.getLogger("waypoint.observe").warning(
        "observer %s failed in %s", type(observer).__name__, hook, exc_info=True)
