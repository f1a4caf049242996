"""Values sent for a thread's state — a state update, a run's `input`, a command's `update`
— checked against the graph's state schema before anything is written.

Each key is checked as the JSON it arrived as against the type its schema declares: a
pydantic state's keys by the model's own rules (as the graph validates its input), the
keys of a TypedDict or dataclass state strictly, since nothing converts them later (`"3"`
is not an `int` there; an object is fine for a nested model or dataclass). A key a
reducer folds is checked against the reducer's input type: the second parameter's
annotation, or the key's own type for `operator.add` / `operator.or_` (a list adds a list).
Where that type is unknown (`Any`, an unannotated reducer, a class pydantic cannot build
from JSON, chat messages, whose many shapes the reducer itself reads) the key is not
checked. Unknown keys are left to the callers' own checks.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import operator
import typing
from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from pydantic import ConfigDict, TypeAdapter, ValidationError

from ..errors import Unprocessable

# Reducers that combine two values of the key's own type (list + list, set | set, ...).
_SAME_TYPE_REDUCERS = (operator.add, operator.or_)
_CONFIG = ConfigDict(arbitrary_types_allowed=True)


def check_state_values(graph: Any, values: Any, *, graph_id: str | None = None,
                       what: str = "values", as_input: bool = False) -> None:
    """Refuse (422) `values` whose keys do not fit the graph's state schema; `detail` names
    each key and what was wrong. `as_input`: prefer the graph's input schema's types."""
    if graph is None or not isinstance(values, dict) or not values:
        return
    adapters = _adapters_for(graph, as_input)
    problems: list[str] = []
    for key, value in values.items():
        adapter, strict = adapters.get(key) or (None, True)
        if adapter is None:
            continue
        try:
            encoded = json.dumps(value)
        except (TypeError, ValueError):
            continue  # not JSON: not from a request, nothing to check here
        try:
            adapter.validate_json(encoded, strict=True if strict else None)
        except ValidationError as exc:
            problems.extend(_describe(key, exc))
    if problems:
        name = graph_id or getattr(graph, "name", None) or "?"
        raise Unprocessable(f"{what} not valid for the state of graph {name!r}: "
                            + "; ".join(problems))


def _describe(key: str, exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False)[:5]:
        where = "".join(_where(part) for part in error.get("loc", ()))
        got = error.get("input")
        lines.append(f"key {key!r}{where}: {error.get('msg', 'invalid')} "
                     f"(got {type(got).__name__} {_short(got)})")
    return lines


def _where(part: Any) -> str:
    """A step of an error's location: [0], .name, or " as T" (the member of a union)."""
    if isinstance(part, int):
        return f"[{part}]"
    text = str(part)
    return f".{text}" if text.isidentifier() else f" as {text}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


Checker = tuple[TypeAdapter[Any] | None, bool]  # (adapter or None: unchecked, strict)


def _adapters_for(graph: Any, as_input: bool) -> dict[str, Checker]:
    builder = getattr(graph, "builder", None)
    spec = getattr(graph, "spec", None)
    state = getattr(builder, "state_schema", None) or getattr(
        getattr(spec, "state_codec", None), "cls", None)
    inputs = getattr(builder, "input_schema", None) or getattr(spec, "input_schema", None)
    outputs = getattr(builder, "output_schema", None)
    order = (inputs, state, outputs) if as_input else (state, inputs, outputs)
    classes = tuple(c for c in order if isinstance(c, type))
    reducers = tuple((name, key.reducer) for name, key in
                     (getattr(spec, "keys", None) or {}).items() if key.reducer is not None)
    try:
        return _adapters(classes, reducers)
    except TypeError:  # an unhashable reducer: build without the cache
        return _adapters.__wrapped__(classes, reducers)


@functools.lru_cache(maxsize=256)
def _adapters(classes: tuple[type, ...], reducers: tuple[tuple[str, Any], ...]
              ) -> dict[str, Checker]:
    """{key: checker}, from the first class that declares each key."""
    folded = dict(reducers)
    found: dict[str, Checker] = {}
    for cls in classes:
        strict = not _is_pydantic(cls)
        for key, hint in _declared(cls).items():
            if key in found:
                continue
            reducer = folded.get(key)
            if reducer is not None:
                hint = _reducer_input(reducer, hint)
            found[key] = (_adapter(hint) if hint is not None else None, strict)
    return found


def _is_pydantic(cls: type) -> bool:
    return isinstance(getattr(cls, "model_fields", None), dict) and hasattr(cls,
                                                                          "model_validate")


def _declared(cls: type) -> dict[str, Any]:
    """Each key's declared type (with its pydantic constraints), reducers stripped."""
    try:
        hints = get_type_hints(cls, include_extras=True)
    except Exception:
        return {}
    if _is_pydantic(cls):
        declared = {}
        for name, field in cls.model_fields.items():  # type: ignore[attr-defined]
            metadata = [m for m in field.metadata if not callable(m)]
            base = field.annotation if field.annotation is not None else Any
            declared[name] = Annotated[(base, *metadata)] if metadata else base
        return declared
    if dataclasses.is_dataclass(cls):
        names = [f.name for f in dataclasses.fields(cls)]
        return {n: _strip(hints.get(n, Any)) for n in names}
    return {n: _strip(h) for n, h in hints.items()}


def _strip(hint: Any) -> Any:
    """`Annotated[T, reducer, ...]` as T (other metadata kept for pydantic)."""
    if get_origin(hint) is Annotated:
        base, *extras = get_args(hint)
        kept = [e for e in extras if not callable(e)]
        return Annotated[(base, *kept)] if kept else base
    return hint


def _reducer_input(reducer: Callable[..., Any], declared: Any) -> Any:
    """The type a reducer takes as its update, or None when that cannot be known."""
    if any(reducer is same for same in _SAME_TYPE_REDUCERS):
        return declared
    try:
        params = [p for p in inspect.signature(reducer).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        hints = get_type_hints(reducer, include_extras=True)
    except Exception:
        return None
    if len(params) < 2:
        return None
    hint = hints.get(params[1].name)
    return None if hint is None or hint is Any else hint


def _adapter(hint: Any) -> TypeAdapter[Any] | None:
    if hint is Any or _mentions_messages(hint):
        return None
    for config in (_CONFIG, None):  # models and dataclasses with a config refuse ours
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(hint, config=config)
            adapter.json_schema()  # fails for types JSON cannot build (isinstance checks)
            return adapter
        except Exception:
            continue
    return None


def _mentions_messages(hint: Any) -> bool:
    """Chat messages come in many shapes (role dicts, LangChain's, waypoint's): the
    message reducer reads them, so keys holding them are not checked here."""
    if isinstance(hint, type):
        if any(c.__name__.endswith("Message") and c.__module__.split(".")[0] in (
                "waypoint", "langchain_core") for c in hint.__mro__):
            return True
        return False
    if isinstance(hint, typing.ForwardRef):
        return False
    return any(_mentions_messages(arg) for arg in get_args(hint))


