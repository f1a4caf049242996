"""Tools the model may call: validated arguments, declared effects, and the node that runs
them.

    from waypoint.tools import tool, ToolNode, tools_condition
"""

from .condition import tools_condition
from .node import ToolNode, encode_result
from .tool import (
    EFFECTS,
    Effect,
    InjectedState,
    InjectedToolCallId,
    Tool,
    ToolArgumentError,
    ToolDefinitionError,
    ToolError,
    ToolTimeoutError,
    UnknownToolError,
    tool,
)

__all__ = [
    "EFFECTS",
    "Effect",
    "InjectedState",
    "InjectedToolCallId",
    "Tool",
    "ToolArgumentError",
    "ToolDefinitionError",
    "ToolError",
    "ToolNode",
    "ToolTimeoutError",
    "UnknownToolError",
    "encode_result",
    "tool",
    "tools_condition",
]
