"""JSON Schemas of a compiled graph's input, output, state, config and context.

The Agent Server API describes every graph with these (`GET /assistants/{id}/schemas`,
`/subgraphs`), and clients build their forms from them, so they must exist for any state
a graph can run with: TypedDict, dataclass or pydantic, keys carrying a reducer in
`Annotated`, chat messages, and types pydantic cannot describe. Each key's type is made
describable first (the reducer dropped, messages replaced by one compact message schema,
TypedDicts and dataclasses rebuilt as models) and pydantic emits the JSON Schema (draft
2020-12); a key that still defeats pydantic becomes `{}` (any value) instead of costing the
whole schema.

Which keys are required follows what a caller must really send: a pydantic schema's
required fields (waypoint validates input with it), an explicit TypedDict/dataclass input
schema's declared keys, and none when the state itself is the input, or for output and
state (a run may leave any key unset). Titles follow LangGraph: a pydantic schema keeps
its class name, the others are named after the graph (`agent_input`, `LangGraphState`).

The compiled graph is duck-typed (`.spec`, `.builder`, `.name`): the graph layer never
imports the engine.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
import typing
import warnings
from collections.abc import Iterator
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import typing_extensions
from pydantic import ConfigDict, Field, WithJsonSchema, create_model
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticUndefined

from ..constants import NS_SEP
from ..messages import Message
from .schema import _is_pydantic, _is_typeddict, _reducer_of

DEFAULT_GRAPH_NAME = "LangGraph"

# One message shape for waypoint's and LangChain's message classes alike: what the Agent
# Server's clients send and read (`type`, `content`, ids, tool calls), open to more fields.
_OPTIONAL_STRING: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
MESSAGE_SCHEMA: dict[str, Any] = {
    "title": "Message",
    "type": "object",
    "properties": {
        "type": {"title": "Type", "type": "string",
                 "enum": ["human", "ai", "system", "tool", "remove"]},
        "content": {"title": "Content", "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "object"}]}},
        ]},
        "id": {"title": "Id", **_OPTIONAL_STRING},
        "name": {"title": "Name", **_OPTIONAL_STRING},
        "tool_calls": {"title": "Tool Calls", "type": "array", "items": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "args": {"type": "object"},
                           "id": _OPTIONAL_STRING},
            "required": ["name", "args"],
        }},
        "tool_call_id": {"title": "Tool Call Id", **_OPTIONAL_STRING},
    },
    "required": ["content"],
    "additionalProperties": True,
}
_MESSAGE = Annotated[Any, WithJsonSchema(MESSAGE_SCHEMA)]
_CONFIG = ConfigDict(arbitrary_types_allowed=True)
_UNWRAP: set[Any] = {typing.Required, typing.NotRequired, typing.ClassVar, typing.Final}
_UNWRAP |= {getattr(mod, "ReadOnly", typing.Final) for mod in (typing, typing_extensions)}


class _Lenient(GenerateJsonSchema):
    """Pydantic's generator, but a value it cannot describe becomes `{}`, not an error."""

    def handle_invalid_for_json_schema(self, schema: Any, error_info: str) -> dict[str, Any]:
        return {}


@dataclasses.dataclass(slots=True)
class _Key:
    name: str
    hint: Any
    required: bool
    default: Any = PydanticUndefined
    description: str | None = None


# -- public --------------------------------------------------------------------------------


def graph_schemas(graph: Any, graph_id: str | None = None) -> dict[str, Any]:
    """The `/assistants/{id}/schemas` answer: graph_id and the five schemas of `graph`."""
    name = _graph_name(graph, graph_id)
    return {"graph_id": graph_id if graph_id is not None else name, **_schemas(graph, name)}


def subgraph_schemas(graph: Any, namespace: str | None = None, *,
                     recurse: bool = False) -> dict[str, dict[str, Any]]:
    """The `/assistants/{id}/subgraphs[/{namespace}]` answer: `{namespace: schemas}`.

    Without a namespace: the graph's subgraph nodes (and theirs, joined with "|", when
    `recurse`). With one: only the subgraph at that path ("a|b"), `{}` if there is none.
    """
    found: dict[str, dict[str, Any]] = {}
    for path, subgraph in iter_subgraphs(graph, namespace, recurse=recurse):
        found[path] = _schemas(subgraph, _graph_name(subgraph, path.rsplit(NS_SEP, 1)[-1]))
    return found


def iter_subgraphs(graph: Any, namespace: str | None = None, *,
                   recurse: bool = False) -> Iterator[tuple[str, Any]]:
    """(namespace, compiled subgraph) for the subgraph nodes of `graph`, in node order."""
    if namespace is not None:
        target = graph
        for part in namespace.split(NS_SEP):
            node = _spec(target).nodes.get(part) if target is not None else None
            target = getattr(node, "subgraph", None)
        if target is not None:
            yield namespace, target
        return
    for name, node in _spec(graph).nodes.items():
        if node.subgraph is None:
            continue
        yield name, node.subgraph
        if recurse:
            for path, inner in iter_subgraphs(node.subgraph, recurse=True):
                yield f"{name}{NS_SEP}{path}", inner


def schema_title(graph_name: str, suffix: str) -> str:
    """LangGraph's naming: `LangGraph` + `State` -> `LangGraphState`, `agent` -> `agent_state`."""
    if graph_name[:1].isupper():
        return graph_name + suffix.title()
    return f"{graph_name}_{suffix.lower()}"


# -- the five schemas ----------------------------------------------------------------------


def _spec(graph: Any) -> Any:
    return getattr(graph, "spec", graph)


def _graph_name(graph: Any, fallback: str | None) -> str:
    """The graph's own name; a graph left with the default name goes by its id/node name."""
    name = getattr(graph, "name", None) or getattr(_spec(graph), "name", None)
    if (not name or name == DEFAULT_GRAPH_NAME) and fallback:
        return fallback
    return name or DEFAULT_GRAPH_NAME


def _schemas(graph: Any, name: str) -> dict[str, Any]:
    spec = _spec(graph)
    builder = getattr(graph, "builder", None)
    state_cls = getattr(builder, "state_schema", None) or spec.state_codec.cls
    input_cls = getattr(builder, "input_schema", None) or spec.input_schema or state_cls
    output_cls = getattr(builder, "output_schema", None) or state_cls
    node_classes = [node.codec.cls for node in spec.nodes.values()]
    hints = _hints_by_key([state_cls, input_cls, output_cls, *node_classes])

    state_keys = [_Key(k, hints.get(k, Any), False) for k in spec.keys]
    config_cls = getattr(builder, "config_schema", None)
    context_cls = getattr(builder, "context_schema", None) or getattr(spec, "context_schema", None)
    return {
        "input_schema": _class_schema(
            input_cls, _io_title(input_cls, name, "Input"),
            keep_required=_is_pydantic(input_cls) or input_cls is not state_cls),
        "output_schema": _class_schema(
            output_cls, _io_title(output_cls, name, "Output"),
            keep_required=_is_pydantic(output_cls)),
        "state_schema": _object_schema(schema_title(name, "State"), state_keys),
        "config_schema": _class_schema(config_cls, _class_name(config_cls, "Config"))
        if config_cls else {},
        "context_schema": _class_schema(context_cls, _class_name(context_cls, "Context"))
        if context_cls else None,
    }


def _class_name(cls: Any, default: str) -> str:
    return getattr(cls, "__name__", None) or default


def _io_title(cls: Any, graph_name: str, suffix: str) -> str:
    return _class_name(cls, suffix) if _is_pydantic(cls) else schema_title(graph_name, suffix)


def _class_schema(cls: Any, title: str, *, keep_required: bool = True) -> dict[str, Any]:
    """The object schema of a schema class, its docstring as the description."""
    keys = _keys_of(cls)
    if not keep_required:
        keys = [dataclasses.replace(k, required=False) for k in keys]
    schema = _object_schema(title, keys)
    doc = _own_doc(cls)
    if doc:
        schema["description"] = doc
    return schema


def _object_schema(title: str, keys: list[_Key]) -> dict[str, Any]:
    """A pydantic-emitted object schema for these keys (properties in the order given)."""
    aliases = {f"k{i}": key for i, key in enumerate(keys)}
    memo: dict[type, Any] = {}
    fields = {alias: (_describable(key.hint, memo), key) for alias, key in aliases.items()}
    schema = _safe_model(title, fields)[1]
    properties = schema.get("properties", {})
    for key in keys:  # a default we set only to make a key optional says nothing: drop it
        prop = properties.get(key.name)
        if prop is not None and not key.required and key.default is PydanticUndefined:
            prop.pop("default", None)
    if not schema.get("required"):
        schema.pop("required", None)
    return schema


# -- reading schema classes ----------------------------------------------------------------


def _hints(cls: Any) -> dict[str, Any]:
    try:
        return get_type_hints(cls, include_extras=True)
    except Exception:  # unresolvable forward references: the keys stay, as any value
        names = getattr(cls, "__annotations__", {})
        return dict.fromkeys(names, Any)


def _hints_by_key(classes: list[Any]) -> dict[str, Any]:
    """Each key's type from the first schema class that declares it."""
    found: dict[str, Any] = {}
    for cls in classes:
        if cls is None or cls is dict:
            continue
        for name, hint in _hints(cls).items():
            found.setdefault(name, hint)
    return found


def _keys_of(cls: Any) -> list[_Key]:
    """The keys of a TypedDict, dataclass or pydantic class with what each declares."""
    if cls is None or cls is dict or not isinstance(cls, type):
        return []
    hints = _hints(cls)
    if _is_pydantic(cls):
        keys = []
        for name, info in cls.model_fields.items():
            has_default = info.default is not PydanticUndefined and info.default_factory is None
            keys.append(_Key(name, hints.get(name, info.annotation), info.is_required(),
                             info.default if has_default else PydanticUndefined,
                             info.description))
        return keys
    if dataclasses.is_dataclass(cls):
        return [
            _Key(f.name, hints.get(f.name, Any),
                 f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                 f.default if f.default is not dataclasses.MISSING else PydanticUndefined)
            for f in dataclasses.fields(cls)
        ]
    if _is_typeddict(cls):
        required = getattr(cls, "__required_keys__", frozenset(hints))
        return [_Key(name, hint, name in required) for name, hint in hints.items()]
    return []


def _own_doc(cls: Any) -> str | None:
    """The docstring the class's author wrote (not a dataclass's generated signature)."""
    doc = getattr(cls, "__dict__", {}).get("__doc__") if isinstance(cls, type) else None
    if not doc or (dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}(")):
        return None
    return inspect.cleandoc(doc)


# -- making a type describable -------------------------------------------------------------


def _is_message_class(tp: Any) -> bool:
    if not isinstance(tp, type):
        return False
    if issubclass(tp, Message):
        return True
    langchain = sys.modules.get("langchain_core.messages")  # loaded if the state uses it
    base = getattr(langchain, "BaseMessage", None)
    return isinstance(base, type) and issubclass(tp, base)


def _only_messages(tp: Any) -> bool:
    """A message class, or a union / annotation made only of them (LangChain's AnyMessage)."""
    if _is_message_class(tp):
        return True
    origin = get_origin(tp)
    if origin is Annotated:
        return _only_messages(get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return all(_only_messages(a) for a in get_args(tp))
    return False


def _describable(tp: Any, memo: dict[type, Any]) -> Any:
    """`tp` with reducers dropped, messages replaced and schema classes rebuilt as models."""
    if _only_messages(tp):
        return _MESSAGE
    origin = get_origin(tp)
    if origin is Annotated:
        reducer, base = _reducer_of(tp)
        extras: list[Any] = []
        for extra in tp.__metadata__:
            if isinstance(extra, FieldInfo):  # defaults and names are the key's, set once;
                extras.extend(extra.metadata)  # its constraints (ge, max_length...) stay
            elif extra is not reducer:
                extras.append(extra)
        inner = _describable(base, memo)
        return Annotated[(inner, *extras)] if extras else inner
    if origin in _UNWRAP:
        return _describable(get_args(tp)[0], memo) if get_args(tp) else Any
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_describable(a, memo) for a in get_args(tp))]  # noqa: UP007
    if origin is typing.Literal or origin is None:
        return _class_model(tp, memo) if _rebuildable(tp) else tp
    args = get_args(tp)
    if not args:
        return tp
    try:
        return origin[tuple(_describable(a, memo) if a is not Ellipsis else a for a in args)]
    except TypeError:
        return tp


def _rebuildable(tp: Any) -> bool:
    return isinstance(tp, type) and not _is_pydantic(tp) and (
        _is_typeddict(tp) or dataclasses.is_dataclass(tp)
    )


def _class_model(cls: type, memo: dict[type, Any]) -> Any:
    """A TypedDict or dataclass as a pydantic model (pydantic refuses `typing.TypedDict`
    before Python 3.12, and a message inside would be opaque to it)."""
    if cls in memo:
        return memo[cls]
    memo[cls] = Any  # a class that contains itself is described once, then as any value
    fields = {f"k{i}": (_describable(key.hint, memo), key)
              for i, key in enumerate(_keys_of(cls))}
    memo[cls] = _safe_model(cls.__name__, fields, doc=_own_doc(cls))[0]
    return memo[cls]


# -- building the model --------------------------------------------------------------------


def _field(key: _Key) -> Any:
    default = key.default if key.default is not PydanticUndefined else (
        ... if key.required else None
    )
    return Field(default, alias=key.name, description=key.description)


def _model(title: str, fields: dict[str, tuple[Any, _Key]], doc: str | None = None) -> Any:
    config = ConfigDict(**_CONFIG, title=title)
    return create_model(  # type: ignore[call-overload]
        title, __config__=config, __doc__=doc,
        **{alias: (tp, _field(key)) for alias, (tp, key) in fields.items()},
    )


def _json(model: Any) -> dict[str, Any]:
    with warnings.catch_warnings():  # defaults that are not JSON are left out, silently
        warnings.simplefilter("ignore")
        return model.model_json_schema(schema_generator=_Lenient)


def _safe_model(title: str, fields: dict[str, tuple[Any, _Key]],
                doc: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The model and its schema, any key pydantic cannot describe made an any-value key."""
    try:
        model = _model(title, fields, doc)
        return model, _json(model)
    except Exception:
        pass
    kept: dict[str, tuple[Any, _Key]] = {}
    for alias, (tp, key) in fields.items():
        try:
            _json(_model(title, {alias: (tp, key)}))
            kept[alias] = (tp, key)
        except Exception:
            kept[alias] = (Any, dataclasses.replace(key, default=PydanticUndefined))
    model = _model(title, kept, doc)
    return model, _json(model)
