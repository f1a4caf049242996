"""Reading a state schema (TypedDict, dataclass, pydantic) into keys and reducers."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args, get_origin, get_type_hints

from ..errors import GraphValidationError, InvalidUpdateError

_MISSING = object()


class ManagedValue:
    """Marks a state key the engine fills on every read instead of storing it."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return f"ManagedValue({self.kind!r})"


# LangGraph's names: the steps left before the recursion limit, and whether this is the last.
RemainingSteps = typing.Annotated[int, ManagedValue("remaining_steps")]
IsLastStep = typing.Annotated[bool, ManagedValue("is_last_step")]


def _managed_kind(hint: Any) -> str | None:
    if get_origin(hint) is typing.Annotated:
        for extra in get_args(hint)[1:]:
            if isinstance(extra, ManagedValue):
                return extra.kind
    return None


def managed_keys(cls: Any) -> dict[str, str]:
    """{key: kind} of the managed keys of a schema class."""
    if not is_schema_class(cls):
        return {}
    try:
        hints = get_type_hints(cls, include_extras=True)
    except Exception:
        return {}
    return {name: kind for name, hint in hints.items() if (kind := _managed_kind(hint))}


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One state key: its reducer (None for last-value) and its initial value factory."""

    name: str
    reducer: Callable[[Any, Any], Any] | None
    initial: Callable[[], Any] | None


def _is_pydantic(cls: Any) -> bool:
    return isinstance(cls, type) and hasattr(cls, "model_fields") and hasattr(cls, "model_validate")


def _is_typeddict(cls: Any) -> bool:
    return isinstance(cls, type) and typing.is_typeddict(cls)


def is_schema_class(cls: Any) -> bool:
    """True for the classes that can describe a state: TypedDict, dataclass, pydantic."""
    return _is_typeddict(cls) or dataclasses.is_dataclass(cls) or _is_pydantic(cls)


def _reducer_of(hint: Any) -> tuple[Callable[[Any, Any], Any] | None, Any]:
    """The reducer in `Annotated[T, reducer]` (the last 2-argument callable) and T."""
    if get_origin(hint) is typing.Annotated:
        base, *extras = get_args(hint)
        for extra in reversed(extras):
            if callable(extra) and _takes_two(extra):
                return extra, base
        return None, base
    return None, hint


def _takes_two(fn: Callable[..., Any]) -> bool:
    try:
        params = [
            p for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):  # builtins such as operator.add
        return True
    return any(p.kind == p.VAR_POSITIONAL for p in params) or len(params) >= 2


def _initial_factory(base: Any) -> Callable[[], Any] | None:
    origin = get_origin(base) or base
    if origin in (list, dict, set, tuple, int, float, str):
        return origin
    return None


def read_schema(cls: Any) -> dict[str, KeySpec]:
    """The keys of a schema class, in declaration order."""
    if cls is None or cls is dict:
        return {}
    if not is_schema_class(cls):
        raise GraphValidationError(
            f"state schema must be a TypedDict, dataclass or pydantic model, got {cls!r}"
        )
    try:
        hints = get_type_hints(cls, include_extras=True)
    except Exception as exc:  # forward references that cannot resolve
        raise GraphValidationError(f"cannot read the type hints of {cls.__name__}: {exc}") from exc
    if _is_pydantic(cls):
        names = list(cls.model_fields)
    elif dataclasses.is_dataclass(cls):
        names = [f.name for f in dataclasses.fields(cls)]
    else:
        names = list(hints)
    keys: dict[str, KeySpec] = {}
    for name in names:
        reducer, base = _reducer_of(hints.get(name, Any))
        keys[name] = KeySpec(name, reducer, _initial_factory(base) if reducer else None)
    return keys


class StateCodec:
    """Builds a node's input from channel values in the form its schema expects."""

    __slots__ = ("cls", "keys", "kind", "managed")

    def __init__(self, cls: Any) -> None:
        self.cls = cls
        self.keys = tuple(read_schema(cls)) if cls not in (None, dict) else ()
        self.managed = managed_keys(cls) if cls not in (None, dict) else {}
        if _is_pydantic(cls):
            self.kind = "pydantic"
        elif cls is not None and dataclasses.is_dataclass(cls):
            self.kind = "dataclass"
        else:
            self.kind = "dict"

    def build(self, values: dict[str, Any], steps_left: int | None = None) -> Any:
        """The node's input; `steps_left` (before the recursion limit) fills managed keys."""
        keys = self.keys
        if self.managed and steps_left is not None:
            values = {**values, **{k: steps_left if kind == "remaining_steps"
                                   else steps_left < 1 for k, kind in self.managed.items()}}
        if self.kind == "dict":
            if not keys:
                return dict(values)
            return {k: values[k] for k in keys if k in values}
        data = {k: values[k] for k in keys if k in values}
        try:
            return self.cls(**data)
        except Exception as exc:
            raise InvalidUpdateError(
                f"state does not fit {self.cls.__name__}: {exc}"
            ) from exc


def object_to_update(value: Any) -> dict[str, Any] | None:
    """A node's update from a typed state object (pydantic or dataclass), else None."""
    if hasattr(value, "model_fields_set") and hasattr(type(value), "model_fields"):
        return {k: getattr(value, k) for k in value.model_fields_set}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return None


def input_to_dict(value: Any, cls: Any) -> dict[str, Any]:
    """Caller input as a dict of keys, validated by a pydantic input schema."""
    if isinstance(value, dict):
        if _is_pydantic(cls):
            try:
                model = cls.model_validate(value)
            except Exception as exc:
                raise InvalidUpdateError(f"input does not fit {cls.__name__}: {exc}") from exc
            return {k: getattr(model, k) for k in value if k in cls.model_fields} | {
                k: getattr(model, k) for k in model.model_fields_set
            }
        return value
    if _is_pydantic(type(value)):
        return {k: getattr(value, k) for k in type(value).model_fields}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise InvalidUpdateError(
        f"graph input must be a dict or a state object, got {type(value).__name__}: {value!r:.80}"
    )


def first_param_schema(fn: Callable[..., Any]) -> Any:
    """The schema class a node declares for its input through its first parameter's hint."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if not params:
        return None
    annotation = params[0].annotation
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        try:
            annotation = get_type_hints(fn).get(params[0].name)
        except Exception:
            return None
    return annotation if is_schema_class(annotation) else None


MISSING = _MISSING
