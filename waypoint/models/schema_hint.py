"""What to answer, in words a small model follows: a compact rendering of a JSON schema.

Constrained decoding keeps an answer inside the schema, but it cannot tell the model what
the fields mean: a 1.5B model that never saw the choices picks the first label that
decodes. Showing the fields, their types, the allowed values and the descriptions in a
form close to the JSON to be written (one line per field) lifted ticket classification
with a one-line prompt from 5 and 6 of 12 to 10 and 9 of 12 (docs/models.md).
"""

from __future__ import annotations

import json
from typing import Any

_MAX_DEPTH = 4


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = defs.get(ref.removeprefix("#/$defs/"), {})
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _bounds(node: dict[str, Any], low: str, high: str, unit: str = "") -> str:
    lo, hi = node.get(low), node.get(high)
    if lo is not None and hi is not None:
        return f" {lo}..{hi}{unit}"
    if hi is not None:
        return f" at most {hi}{unit}"
    if lo is not None:
        return f" at least {lo}{unit}"
    return ""


def _type_of(node: dict[str, Any], defs: dict[str, Any], depth: int, indent: str) -> str:
    node = _resolve(node, defs)
    if "const" in node:
        return json.dumps(node["const"])
    if "enum" in node:
        return " | ".join(json.dumps(v) for v in node["enum"])
    for key in ("anyOf", "oneOf"):
        if key in node:
            options = [_type_of(o, defs, depth, indent) for o in node[key]]
            return " | ".join(dict.fromkeys(options))
    kind = node.get("type")
    if isinstance(kind, list):
        return " | ".join(_type_of({**node, "type": k}, defs, depth, indent) for k in kind)
    if kind == "string":
        text = "string" + _bounds(node, "minLength", "maxLength", " chars")
        return text + (f" ({node['format']})" if "format" in node else "")
    if kind in ("integer", "number"):
        return kind + _bounds(node, "minimum", "maximum")
    if kind == "boolean":
        return "true | false"
    if kind == "null":
        return "null"
    if kind == "array":
        item = _type_of(node.get("items", {}), defs, depth + 1, indent)
        return f"[{item}, ...]" + _bounds(node, "minItems", "maxItems", " items")
    if kind == "object" or "properties" in node:
        if depth >= _MAX_DEPTH or not node.get("properties"):
            return "object"
        return _object(node, defs, depth + 1, indent)
    return "any value"


def _object(node: dict[str, Any], defs: dict[str, Any], depth: int, indent: str) -> str:
    required = set(node.get("required", ()))
    fields = list(node.get("properties", {}).items())
    lines = []
    for position, (name, field) in enumerate(fields):
        field = _resolve(field, defs)
        line = f"{indent}{json.dumps(name)}: {_type_of(field, defs, depth, indent + '  ')}"
        line += "," if position < len(fields) - 1 else ""
        notes = []
        if name not in required:
            notes.append("optional")
        if field.get("description"):
            notes.append(" ".join(str(field["description"]).split()))
        if notes:
            line += "  // " + "; ".join(notes)
        lines.append(line)
    closing = indent[:-2] if len(indent) >= 2 else ""
    return "{\n" + "\n".join(lines) + "\n" + closing + "}"


def schema_hint(schema: dict[str, Any]) -> str:
    """An instruction naming every field of `schema` with its type, choices and meaning."""
    defs = schema.get("$defs", {})
    shape = _type_of(schema, defs, 0, "  ")
    about = " ".join(str(schema.get("description", "")).split())
    head = "Answer with one JSON object and nothing else"
    head += f" ({about})" if about else ""
    return f"{head}, in this form:\n{shape}"
