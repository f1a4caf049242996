"""LangGraph's `prebuilt` names: `from waypoint.prebuilt import ToolNode, tools_condition`."""

from .tools import InjectedState, InjectedToolCallId, ToolNode, tools_condition

__all__ = ["InjectedState", "InjectedToolCallId", "ToolNode", "tools_condition"]
