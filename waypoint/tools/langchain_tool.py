"""LangChain tools (`@tool` from langchain_core, `StructuredTool`, `BaseTool` subclasses) as
waypoint `Tool`s, so ported code can hand them to `ToolNode` and `create_react_agent`.

The LangChain tool keeps running itself (its own argument parsing, callbacks and error
handling); waypoint adds its timeout, retries, approvals and error messages around it.
"""

from __future__ import annotations

import inspect
from typing import Any

from .tool import Tool, ToolDefinitionError


def _call_sync(lc_tool: Any) -> Any:
    def call(**kwargs: Any) -> Any:
        return lc_tool.invoke(kwargs)

    return call


def _call_async(lc_tool: Any) -> Any:
    async def call(**kwargs: Any) -> Any:
        return await lc_tool.ainvoke(kwargs)

    return call


def from_langchain_tool(lc_tool: Any, **options: Any) -> Tool:
    """A `Tool` that runs `lc_tool`; `options` are `Tool`'s metadata (effect, timeout...)."""
    schema = getattr(lc_tool, "tool_call_schema", None) or getattr(lc_tool, "args_schema", None)
    if schema is None or not hasattr(schema, "model_json_schema"):
        raise ToolDefinitionError(f"LangChain tool {getattr(lc_tool, 'name', lc_tool)!r} has "
                                  f"no pydantic args_schema to validate calls against")
    is_async = getattr(lc_tool, "coroutine", None) is not None and getattr(
        lc_tool, "func", None) is None
    def placeholder() -> None:  # replaced below: its signature is the LangChain schema
        return None

    made = Tool(placeholder, name=lc_tool.name,
                description=lc_tool.description or lc_tool.name, **options)
    made.func = _call_async(lc_tool) if is_async else _call_sync(lc_tool)
    made.is_async = is_async
    made.args_model = schema
    made._params = [(name, inspect.Parameter.KEYWORD_ONLY) for name in schema.model_fields]
    made._fields = {name: name for name in schema.model_fields}
    made._injected = {}
    made.langchain_tool = lc_tool
    return made
