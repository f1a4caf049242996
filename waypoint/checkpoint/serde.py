"""A safe serializer for checkpoints: msgpack with tagged types, never pickle.

Values are msgpack-native data plus a fixed set of tagged types (tuples, sets, datetimes,
UUIDs, decimals, enums, dataclasses, pydantic models, waypoint's own types). Classes are
rebuilt only if registered: `register_type(cls)`, or automatically for classes this process
has itself serialized or that appear in a compiled graph's state schema. Data read back can
therefore never name an arbitrary class to import or code to run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import threading
import uuid
from collections.abc import Callable
from typing import Any

import ormsgpack

from ..errors import SerializationError
from ..interop.langchain_messages import from_langchain, is_langchain_message

_OPTS = (
    ormsgpack.OPT_PASSTHROUGH_DATACLASS
    | ormsgpack.OPT_PASSTHROUGH_DATETIME
    | ormsgpack.OPT_PASSTHROUGH_TUPLE
    | ormsgpack.OPT_PASSTHROUGH_UUID
    | ormsgpack.OPT_PASSTHROUGH_ENUM
    | ormsgpack.OPT_PASSTHROUGH_SUBCLASS
    | ormsgpack.OPT_PASSTHROUGH_BIG_INT
    | ormsgpack.OPT_NON_STR_KEYS
)

_TUPLE, _SET, _FROZENSET, _DATETIME, _DATE, _TIME, _TIMEDELTA = 1, 2, 3, 4, 5, 6, 7
_UUID, _DECIMAL, _OBJECT, _ENUM, _BIGINT, _STR, _DICT, _LIST = 8, 9, 10, 11, 12, 13, 14, 15

_NOTHING = object()
_registry: dict[str, type] = {}
# Custom encoders: cls -> (to_data, from_data), for types that are neither dataclass nor
# pydantic (waypoint's own message type registers here).
_codecs: dict[type, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {}


def _type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_type(
    cls: type,
    to_data: Callable[[Any], Any] | None = None,
    from_data: Callable[[Any], Any] | None = None,
) -> type:
    """Allow `cls` to be rebuilt from stored data (optionally with custom codec functions)."""
    _registry[_type_name(cls)] = cls
    if to_data is not None and from_data is not None:
        _codecs[cls] = (to_data, from_data)
    return cls


def _pack(value: Any) -> bytes:
    return ormsgpack.packb(value, default=_encode, option=_OPTS)


def _encode(obj: Any) -> Any:
    kind = type(obj)
    if kind is tuple:
        return ormsgpack.Ext(_TUPLE, _pack(list(obj)))
    if kind is set or kind is frozenset:
        code = _SET if kind is set else _FROZENSET
        try:
            items = sorted(obj)
        except TypeError:
            items = list(obj)
        return ormsgpack.Ext(code, _pack(items))
    if isinstance(obj, enum.Enum):  # before int and str: IntEnum, StrEnum keep their type
        register_type(kind)
        return ormsgpack.Ext(_ENUM, _pack([_type_name(kind), obj.value]))
    if isinstance(obj, dt.datetime):
        return ormsgpack.Ext(_DATETIME, obj.isoformat().encode())
    if isinstance(obj, dt.date):
        return ormsgpack.Ext(_DATE, obj.isoformat().encode())
    if isinstance(obj, dt.time):
        return ormsgpack.Ext(_TIME, obj.isoformat().encode())
    if isinstance(obj, dt.timedelta):
        return ormsgpack.Ext(_TIMEDELTA, _pack([obj.days, obj.seconds, obj.microseconds]))
    if isinstance(obj, uuid.UUID):
        return ormsgpack.Ext(_UUID, obj.bytes)
    if isinstance(obj, decimal.Decimal):
        return ormsgpack.Ext(_DECIMAL, str(obj).encode())
    if isinstance(obj, int):  # beyond 64 bits
        return ormsgpack.Ext(_BIGINT, str(obj).encode())
    codec = _codecs.get(kind)
    if codec is None and is_langchain_message(obj):  # stored as waypoint's, read as either
        obj = from_langchain(obj)
        kind = type(obj)
        codec = _codecs.get(kind)
    if codec is not None:
        return ormsgpack.Ext(_OBJECT, _pack([_type_name(kind), codec[0](obj)]))
    if hasattr(obj, "model_dump") and hasattr(kind, "model_fields"):
        register_type(kind)
        data = {name: getattr(obj, name) for name in kind.model_fields}
        extra = getattr(obj, "__pydantic_extra__", None)  # extra="allow" fields
        if extra:
            data.update(extra)
        return ormsgpack.Ext(_OBJECT, _pack([_type_name(kind), data]))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        register_type(kind)
        data = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return ormsgpack.Ext(_OBJECT, _pack([_type_name(kind), data]))
    if isinstance(obj, str):  # str subclasses other than enums
        return ormsgpack.Ext(_STR, obj.encode())
    if isinstance(obj, dict):
        return ormsgpack.Ext(_DICT, _pack(dict(obj)))
    if isinstance(obj, list):
        return ormsgpack.Ext(_LIST, _pack(list(obj)))
    raise SerializationError(f"{kind.__module__}.{kind.__qualname__}")


def _decode(code: int, data: bytes) -> Any:
    try:
        return _decode_ext(code, data)
    except SerializationError as exc:  # ormsgpack hides the cause; keep it for loads()
        _failure.error = exc
        raise
    except Exception as exc:  # a class that no longer takes what was stored, and the like
        if getattr(_failure, "error", None) is None:  # the innermost failure says most
            _failure.error = SerializationError(
                f"cannot rebuild a stored value (type tag {code}): "
                f"{type(exc).__name__}: {exc}")
        raise


def _decode_ext(code: int, data: bytes) -> Any:
    if code == _TUPLE:
        return tuple(_unpack(data))
    if code == _SET:
        return set(_unpack(data))
    if code == _FROZENSET:
        return frozenset(_unpack(data))
    if code == _DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == _DATE:
        return dt.date.fromisoformat(data.decode())
    if code == _TIME:
        return dt.time.fromisoformat(data.decode())
    if code == _TIMEDELTA:
        days, seconds, micros = _unpack(data)
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    if code == _UUID:
        return uuid.UUID(bytes=data)
    if code == _DECIMAL:
        return decimal.Decimal(data.decode())
    if code == _BIGINT:
        return int(data.decode())
    if code == _STR:
        return data.decode()
    if code == _DICT:
        return _unpack(data)
    if code == _LIST:
        return _unpack(data)
    if code == _ENUM:
        name, value = _unpack(data)
        return _lookup(name)(value)
    if code == _OBJECT:
        name, payload = _unpack(data)
        cls = _lookup(name)
        codec = _codecs.get(cls)
        if codec is not None:
            return codec[1](payload)
        if hasattr(cls, "model_construct"):
            return _rebuild_model(cls, payload)
        if dataclasses.is_dataclass(cls):
            return _rebuild_dataclass(cls, payload)
        return cls(**payload)
    raise SerializationError(f"unknown stored type tag {code}")


def _rebuild_model(cls: Any, payload: dict[str, Any]) -> Any:
    """A pydantic model from its fields, stored by name: accepted by name even where the
    field has an alias (pydantic >= 2.11 says so per call; older ones read aliases)."""
    if _BY_NAME:
        return cls.model_validate(payload, by_name=True)
    fields = cls.model_fields
    return cls.model_validate({(fields[k].alias or k) if k in fields else k: v
                               for k, v in payload.items()})


def _rebuild_dataclass(cls: Any, payload: dict[str, Any]) -> Any:
    """A dataclass from its stored fields: those its __init__ takes go through it, the
    others (`field(init=False)`) are set afterwards, as stored."""
    fields = dataclasses.fields(cls)
    obj = cls(**{f.name: payload[f.name] for f in fields if f.init and f.name in payload})
    for f in fields:
        if not f.init and f.name in payload:
            object.__setattr__(obj, f.name, payload[f.name])  # frozen ones too
    return obj


def _pydantic_by_name() -> bool:
    try:
        import pydantic
    except ImportError:
        return False
    major, minor = (int(p) for p in pydantic.VERSION.split(".")[:2])
    return (major, minor) >= (2, 11)


_BY_NAME = _pydantic_by_name()


def _lookup(name: str) -> type:
    cls = _registry.get(name)
    if cls is None:
        raise SerializationError(
            f"stored value has type {name}, which is not registered in this process; "
            f"call waypoint.checkpoint.register_type({name.split(':')[-1]}) before reading it"
        )
    return cls


def _unpack(data: bytes) -> Any:
    return ormsgpack.unpackb(data, ext_hook=_decode, option=ormsgpack.OPT_NON_STR_KEYS)


def dumps(value: Any, *, explain: Any = _NOTHING, name: str = "state") -> bytes:
    """Serialize `value`; an unsupported part fails with its path, e.g.
    `state.research_results[3].source: socket`, searched in `explain` (default: value)."""
    try:
        return _pack(value)
    except (SerializationError, TypeError, ormsgpack.MsgpackEncodeError) as exc:
        found = find_unserializable(value if explain is _NOTHING else explain, name)
        if found is None and explain is not _NOTHING:
            found = find_unserializable(value, "value")
        if found is None:
            raise SerializationError(f"cannot store value: {exc}") from None
        path, type_name = found
        raise SerializationError(
            f"cannot store {path}: {type_name} is not serializable (store plain data, a "
            f"dataclass or pydantic model, or register the type with register_type)"
        ) from None


_failure = threading.local()


def loads(data: bytes) -> Any:
    try:
        return _unpack(data)
    except ValueError:
        cause = getattr(_failure, "error", None)
        _failure.error = None
        if cause is not None:
            raise cause from None
        raise


def find_unserializable(value: Any, path: str = "state") -> tuple[str, str] | None:
    """The first path under `value` whose value cannot be stored, with its type name."""
    if isinstance(value, (str, int, float, bool, bytes, type(None))):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = find_unserializable(item, f"{path}.{key}" if isinstance(key, str) else
                                        f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            found = find_unserializable(item, f"{path}[{i}]")
            if found:
                return found
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            found = find_unserializable(getattr(value, f.name), f"{path}.{f.name}")
            if found:
                return found
        return None
    if hasattr(value, "model_dump") and hasattr(type(value), "model_fields"):
        for name in type(value).model_fields:
            found = find_unserializable(getattr(value, name), f"{path}.{name}")
            if found:
                return found
        return None
    try:
        _pack(value)
    except Exception:
        return path, type(value).__name__
    return None
