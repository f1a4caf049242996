"""What changed between two states: added, removed and changed keys, as plain data.

Pure (no store, no graph, no Rich), so the CLI's `waypoint diff` and, later, the web UI
show the same answer. Values are first normalised to JSON-shaped data (dicts, lists, str,
numbers, None): messages, pydantic models and dataclasses become dicts, so two checkpoints'
messages compare by content whatever classes hold them. `waypoint.service.encoding` has the
wire encoder, but the CLI must not need the server extra, hence this small normaliser.

Lists are compared item by item; items appended at the end are "added". Lists whose items
all carry a unique `id` (chat messages) are matched by id, so a message replaced in place
(add_messages with the same id) is "changed" and a removed one "removed", wherever it was.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
from collections.abc import Mapping
from typing import Any

Path = tuple[str | int, ...]

ADDED, REMOVED, CHANGED = "added", "removed", "changed"


def normalise(value: Any) -> Any:
    """`value` as JSON-shaped data; objects with no JSON form become their `repr`."""
    return _normalise(value, set())


def _normalise(value: Any, seen: set[int]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return _normalise(value.value, seen)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if id(value) in seen:  # a container holding itself
        return "<cycle>"
    seen = seen | {id(value)}
    if isinstance(value, Mapping):
        return {str(k): _normalise(v, seen) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v, seen) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_normalise(v, seen) for v in value), key=repr)
    data = _object_data(value)
    return repr(value) if data is None else _normalise(data, seen)


def _object_data(value: Any) -> Any:
    """The data of a message, model or dataclass instance (None: it has no such form)."""
    if isinstance(value, type):
        return None
    dump = getattr(value, "model_dump", None)  # pydantic v2 (LangChain messages too)
    if callable(dump):
        try:
            return dump(mode="json")
        except TypeError:
            return dump()
    to_dict = getattr(value, "to_dict", None)  # waypoint messages
    if callable(to_dict):
        data = to_dict()
        kind = getattr(value, "type", None)
        return {"type": kind, **data} if isinstance(kind, str) and isinstance(data, dict) \
            else data
    if dataclasses.is_dataclass(value):  # interrupts, user dataclasses
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    for name in ("to_json", "dict"):  # LangChain serialisables, pydantic v1
        method = getattr(value, name, None)
        if callable(method):
            try:
                return method()
            except TypeError:
                continue
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One difference: `kind` is added (only `new`), removed (only `old`) or changed."""

    kind: str
    path: Path
    old: Any = None
    new: Any = None

    @property
    def where(self) -> str:
        return path_text(self.path)


def path_text(path: Path) -> str:
    """`messages[2].content`-style text for a path of keys and list indices."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text or "(root)"


def diff(old: Any, new: Any) -> list[Change]:
    """Every difference from `old` to `new`, recursing into dicts and lists."""
    changes: list[Change] = []
    _diff(normalise(old), normalise(new), (), changes)
    return changes


def _diff(a: Any, b: Any, path: Path, out: list[Change]) -> None:
    if type(a) is type(b) and not isinstance(a, (dict, list)) and a == b:
        return  # containers are walked: 1 == 1.0 inside them is still a change
    if isinstance(a, dict) and isinstance(b, dict):
        for key, value in a.items():
            if key not in b:
                out.append(Change(REMOVED, (*path, key), old=value))
        for key, value in b.items():
            if key in a:
                _diff(a[key], value, (*path, key), out)
            else:
                out.append(Change(ADDED, (*path, key), new=value))
    elif isinstance(a, list) and isinstance(b, list):
        if _keyed(a) and _keyed(b):
            _diff_by_id(a, b, path, out)
            return
        for index, (x, y) in enumerate(zip(a, b, strict=False)):
            _diff(x, y, (*path, index), out)
        for index in range(len(b), len(a)):
            out.append(Change(REMOVED, (*path, index), old=a[index]))
        for index in range(len(a), len(b)):
            out.append(Change(ADDED, (*path, index), new=b[index]))
    else:
        out.append(Change(CHANGED, path, old=a, new=b))


def _keyed(items: list[Any]) -> bool:
    """Whether every item is a dict with an `id`, all different (a list of messages)."""
    ids = [item.get("id") if isinstance(item, dict) else None for item in items]
    return bool(items) and None not in ids and len(set(map(repr, ids))) == len(ids)


def _diff_by_id(a: list[Any], b: list[Any], path: Path, out: list[Change]) -> None:
    old_by_id = {repr(item["id"]): item for item in a}
    new_ids = {repr(item["id"]) for item in b}
    for index, item in enumerate(a):
        if repr(item["id"]) not in new_ids:
            out.append(Change(REMOVED, (*path, index), old=item))
    for index, item in enumerate(b):
        before = old_by_id.get(repr(item["id"]))
        if before is None:
            out.append(Change(ADDED, (*path, index), new=item))
        else:
            _diff(before, item, (*path, index), out)


def diff_json(changes: list[Change]) -> dict[str, list[dict[str, Any]]]:
    """The changes grouped for JSON: {"added": [...], "removed": [...], "changed": [...]}."""
    grouped: dict[str, list[dict[str, Any]]] = {ADDED: [], REMOVED: [], CHANGED: []}
    for change in changes:
        if change.kind == ADDED:
            grouped[ADDED].append({"path": change.where, "value": change.new})
        elif change.kind == REMOVED:
            grouped[REMOVED].append({"path": change.where, "value": change.old})
        else:
            grouped[CHANGED].append({"path": change.where, "old": change.old,
                                     "new": change.new})
    return grouped
