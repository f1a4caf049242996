"""What `bind_tools` accepts, turned into OpenAI function specs, and `tool_choice` values.

Ported code binds whatever it has: waypoint `Tool`s, plain functions, LangChain tools,
pydantic models (as "answer in this shape" tools) or ready-made OpenAI specs. Every one
becomes `{"type": "function", "function": {"name", "description", "parameters"}}`, so
providers only ever see one shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_CHOICE_ALIASES = {"auto": "auto", "none": "none", "any": "required", "required": "required"}


def tool_spec(item: Any) -> dict[str, Any]:
    """The OpenAI function spec of one tool-like object; a clear TypeError otherwise."""
    from ..tools.tool import Tool, _strip_titles

    if isinstance(item, Tool):
        return item.schema
    if isinstance(item, dict):
        if item.get("type") == "function" and isinstance(item.get("function"), dict):
            return item
        if "name" in item and ("parameters" in item or "description" in item):
            return {"type": "function", "function": {
                "name": item["name"], "description": item.get("description", ""),
                "parameters": item.get("parameters") or {"type": "object",
                                                         "properties": {}}}}
        raise TypeError(f"a tool spec dict needs 'name' and 'parameters' (or OpenAI's "
                        f"{{'type': 'function', 'function': ...}}), got keys {sorted(item)}")
    schema = getattr(item, "tool_call_schema", None) or getattr(item, "args_schema", None)
    if hasattr(item, "name") and hasattr(item, "description") and schema is not None:
        parameters = (schema.model_json_schema() if hasattr(schema, "model_json_schema")
                      else dict(schema))  # a LangChain tool
        return {"type": "function", "function": {
            "name": item.name, "description": item.description or "",
            "parameters": _strip_titles(parameters)}}
    if isinstance(item, type) and hasattr(item, "model_json_schema"):  # a pydantic model
        return {"type": "function", "function": {
            "name": item.__name__, "description": (item.__doc__ or "").strip(),
            "parameters": _strip_titles(item.model_json_schema())}}
    if callable(item):
        return Tool(item).schema
    raise TypeError(f"cannot bind {type(item).__name__} as a tool: expected a waypoint Tool, "
                    f"a function, a LangChain tool, a pydantic model or an OpenAI spec dict")


def tool_specs(tools: Sequence[Any]) -> list[dict[str, Any]]:
    if isinstance(tools, (str, dict)) or not isinstance(tools, Sequence):
        raise TypeError("bind_tools(tools) takes a list of tools")
    specs = [tool_spec(t) for t in tools]
    names = [s["function"]["name"] for s in specs]
    doubles = sorted({n for n in names if names.count(n) > 1})
    if doubles:
        raise ValueError(f"two tools are named {doubles[0]!r}; tool names must be unique")
    return specs


def tool_choice_value(choice: Any, names: Sequence[str]) -> Any:
    """OpenAI's `tool_choice` for LangChain's spellings: "auto", "none", "any"/"required"/
    True (must call a tool), a tool's name, or OpenAI's {"type": "function", ...}."""
    if choice is None or choice is False:
        return None
    if choice is True:
        return "required" if len(names) != 1 else _named(names[0])
    if isinstance(choice, str):
        if choice in _CHOICE_ALIASES:
            return _CHOICE_ALIASES[choice]
        if choice in names:
            return _named(choice)
        raise ValueError(f"tool_choice {choice!r} is neither auto, none, any, required nor "
                         f"one of the tools ({', '.join(names)})")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        if name not in names:
            raise ValueError(f"tool_choice names {name!r}, which is not one of the tools "
                             f"({', '.join(names)})")
        return _named(name)
    raise TypeError(f"tool_choice must be a string, True or a dict, got {type(choice).__name__}")


def _named(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def chosen_names(choice: Any, names: Sequence[str]) -> tuple[list[str], bool]:
    """(tools the model may call, whether it may answer without one) under `choice`."""
    if choice == "none":
        return [], True
    if choice == "required":
        return list(names), False
    if isinstance(choice, dict):
        return [choice["function"]["name"]], False
    return list(names), True

