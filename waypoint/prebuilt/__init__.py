"""LangGraph's `prebuilt` names: `from waypoint.prebuilt import create_react_agent, ToolNode`."""

from ..graph.schema import IsLastStep, RemainingSteps
from ..tools import InjectedState, InjectedToolCallId, ToolNode, tools_condition
from .react_agent import AgentState, AgentStateWithStructuredResponse, create_react_agent

__all__ = ["AgentState", "AgentStateWithStructuredResponse", "InjectedState",
           "InjectedToolCallId", "IsLastStep", "RemainingSteps", "ToolNode",
           "create_react_agent", "tools_condition"]
