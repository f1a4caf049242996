"""Checking the keyword arguments of `invoke`/`stream` and their twins.

A misspelt keyword must fail loudly (`interupt_before=` silently running without a
breakpoint is worse than an error), and LangGraph keywords that waypoint does not
implement are refused with the reason rather than ignored. Only what is semantically
harmless is accepted without effect (see `docs/architecture.md`, "Call keywords").
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import GraphValidationError
from .stream import STREAM_MODES, StreamSink, normalize_modes, shape

if TYPE_CHECKING:
    from ..graph.spec import GraphSpec

_NOT_GIVEN: Any = object()

# Keywords each entry point takes (besides `input` and `config`), for error messages.
INVOKE_KEYWORDS = ("context", "stream_mode", "print_mode", "output_keys", "interrupt_before",
                   "interrupt_after", "durability", "debug", "control", "version", "budget",
                   "store", "checkpoint_during")
STREAM_KEYWORDS = (*INVOKE_KEYWORDS, "subgraphs")
EVENTS_KEYWORDS = ("version", "context", "interrupt_before", "interrupt_after", "durability",
                   "budget", "store", "include_names", "include_types", "include_tags",
                   "exclude_names", "exclude_types", "exclude_tags")


def take_checkpoint_during(method: str, extra: dict[str, Any], durability: str | None
                           ) -> str | None:
    """LangGraph's deprecated `checkpoint_during=` as the `durability` it stands for."""
    if "checkpoint_during" not in extra:
        return durability
    during = extra.pop("checkpoint_during")
    if during is None:
        return durability
    warnings.warn(f"{method}(checkpoint_during=...) is deprecated: use durability= "
                  f"('async' or 'exit')", DeprecationWarning, stacklevel=3)
    if durability is not None:
        raise ValueError(f"{method}(): pass durability= or checkpoint_during=, not both")
    return "async" if during else "exit"


def check_unsupported(method: str, control: Any, version: str) -> None:
    """LangGraph keywords waypoint does not implement: refused unless left at default."""
    if control is not None:
        raise TypeError(f"{method}(control=...) is not supported by waypoint: stop a run with "
                        f"graph.cancel(config) or by closing its stream")
    if version != "v1":
        raise ValueError(f"{method}(version={version!r}): waypoint streams LangGraph's v1 "
                         f"shapes only (chunks, (mode, chunk), (ns, mode, chunk))")


def print_modes(print_mode: Any, debug: bool | None) -> frozenset[str]:
    """Modes printed to the console (`debug=True` prints the "debug" stream)."""
    if print_mode is None or print_mode == () or print_mode == []:
        modes: frozenset[str] = frozenset()
    elif isinstance(print_mode, str):
        modes = frozenset({print_mode})
    else:
        modes = frozenset(print_mode)
    if debug:
        modes |= {"debug"}
    return modes


def printer(emit: Callable[[Any], None] | None, wanted: frozenset[str],
            printed: frozenset[str]) -> Callable[[Any], None]:
    """An emit function that prints parts of `printed` modes and passes on `wanted` ones."""

    def emit_and_print(part: Any) -> None:
        namespace, mode, payload = part
        if mode in printed:
            where = f" {'|'.join(namespace)}" if namespace else ""
            print(f"[{mode}{where}] {payload!r}", flush=True)
        if emit is not None and mode in wanted:
            emit(part)

    return emit_and_print


def node_list(spec_nodes: Iterable[str], names: Any, what: str) -> Sequence[str] | None:
    """`interrupt_before=`/`interrupt_after=` as node names ("*": every node)."""
    if names is None:
        return None
    nodes = tuple(spec_nodes)
    if isinstance(names, str):
        names = nodes if names == "*" else (names,)
    elif not isinstance(names, Iterable):
        raise TypeError(f"{what} takes a list of node names or '*', got "
                        f"{type(names).__name__}")
    names = tuple(names)
    for name in names:
        if name not in nodes:
            raise GraphValidationError(f"{what}: {name!r} is not a node of this graph "
                                       f"(nodes: {', '.join(nodes)})")
    return names


def with_interrupts(spec: GraphSpec, before: Any, after: Any) -> GraphSpec:
    """A copy of `spec` with call-time breakpoints (None: keep the compiled ones)."""
    changed = copy.copy(spec)
    before = node_list(spec.nodes, before, "interrupt_before")
    after = node_list(spec.nodes, after, "interrupt_after")
    if before is not None:
        changed.interrupt_before = frozenset(before)
    if after is not None:
        changed.interrupt_after = frozenset(after)
    return changed


class OutputKeys:
    """`output_keys=`: which state keys `values` and `updates` chunks (and invoke) show."""

    __slots__ = ("keys", "single")

    def __init__(self, output_keys: str | Sequence[str], state_keys: Iterable[str]) -> None:
        known = tuple(state_keys)
        single = isinstance(output_keys, str)
        keys = (output_keys,) if single else tuple(output_keys)  # type: ignore[arg-type]
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise ValueError(f"output_keys {unknown} are not keys of the state "
                             f"(keys: {', '.join(known)})")
        self.keys = keys
        self.single = single

    def values(self, values: dict[str, Any]) -> Any:
        if self.single:
            return values.get(self.keys[0])
        out = {k: values[k] for k in self.keys if k in values}
        if "__interrupt__" in values:
            out["__interrupt__"] = values["__interrupt__"]
        return out

    def update(self, chunk: dict[str, Any]) -> Any:
        """An `updates` chunk reduced to the output keys (_NOT_GIVEN: nothing to show)."""
        out: dict[str, Any] = {}
        for node, update in chunk.items():
            if node == "__interrupt__" or not isinstance(update, dict):
                out[node] = update
            elif self.single:
                if self.keys[0] in update:
                    out[node] = update[self.keys[0]]
            else:
                kept = {k: v for k, v in update.items() if k in self.keys}
                if kept:
                    out[node] = kept
        return out or _NOT_GIVEN

    def part(self, part: Any) -> Any:
        namespace, mode, payload = part
        if mode == "values" and isinstance(payload, dict):
            return (namespace, mode, self.values(payload))
        if mode == "updates" and isinstance(payload, dict):
            shown = self.update(payload)
            return _NOT_GIVEN if shown is _NOT_GIVEN else (namespace, mode, shown)
        return part


SKIP = _NOT_GIVEN


class StreamCall:
    """One `stream()` call's shaping: its modes, what it prints, which keys it shows."""

    __slots__ = ("live", "modes", "out", "printed", "single", "subgraphs")

    def __init__(self, graph: Any, stream_mode: Any, print_mode: Any, debug: bool | None,
                 output_keys: Any, subgraphs: bool) -> None:
        self.modes, self.single = normalize_modes(stream_mode)
        self.printed = print_modes(print_mode, getattr(graph, "debug", False)
                                   if debug is None else debug)
        self.out = None if output_keys is None else OutputKeys(output_keys, graph.spec.keys)
        self.subgraphs = bool(subgraphs)
        self.live = bool((self.modes | self.printed) & _LIVE_MODES)
        unknown = (self.modes | self.printed) - STREAM_MODES
        if unknown:  # now, not at the first next(): the mistake is in this call
            known = ", ".join(sorted(STREAM_MODES - {"events"}))
            raise ValueError(f"unknown stream_mode {sorted(unknown)} (known: {known})")

    def sink(self, emit: Callable[[Any], None]) -> StreamSink:
        if not self.printed:
            return StreamSink(self.modes, emit, subgraphs=self.subgraphs)
        return StreamSink(self.modes | self.printed, printer(emit, self.modes, self.printed),
                          subgraphs=self.subgraphs)

    def deliver(self, part: Any) -> Any:
        """A part as the caller gets it, or SKIP when output_keys leaves nothing of it."""
        if self.out is not None:
            part = self.out.part(part)
            if part is SKIP:
                return SKIP
        return shape(part, single=self.single, subgraphs=self.subgraphs)


_LIVE_MODES = frozenset({"messages", "custom", "events"})


def _names(value: Sequence[str] | str | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset({value}) if isinstance(value, str) else frozenset(value)


class EventFilter:
    """LangChain's `include_*`/`exclude_*` filters of `astream_events`."""

    __slots__ = ("exclude", "include", "on")

    def __init__(self, include_names: Any, include_types: Any, include_tags: Any,
                 exclude_names: Any, exclude_types: Any, exclude_tags: Any) -> None:
        self.include = (_names(include_names), _names(include_types), _names(include_tags))
        self.exclude = (_names(exclude_names), _names(exclude_types), _names(exclude_tags))
        self.on = any(f is not None for f in (*self.include, *self.exclude))

    def __call__(self, event: dict[str, Any]) -> bool:
        if not self.on:
            return True
        name = event.get("name")
        kind = str(event.get("event", "")).removeprefix("on_").rsplit("_", 1)[0]
        tags = set(event.get("tags") or ())
        names, types, tag_set = self.include
        if names is not None or types is not None or tag_set is not None:
            if not ((names is not None and name in names)
                    or (types is not None and kind in types)
                    or (tag_set is not None and tags & tag_set)):
                return False
        names, types, tag_set = self.exclude
        if names is not None and name in names:
            return False
        if types is not None and kind in types:
            return False
        return not (tag_set is not None and tags & tag_set)
