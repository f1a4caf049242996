"""The graph the image serves until you put your own project in /app.

A chat graph with no model: it answers every message with its own text, so a fresh
deployment can be checked end to end (create a thread, stream a run, read the state)
with langgraph-sdk, agent-chat-ui or curl before any real graph or model is wired in.
Replace this folder with your project (its `langgraph.json` and code) in an image built
`FROM` this one, or point `--config` at another file.
"""

from __future__ import annotations

from typing import Any

from waypoint import END, START, MessagesState, StateGraph
from waypoint.messages import AIMessage


def reply(state: MessagesState) -> dict[str, Any]:
    last = state["messages"][-1] if state["messages"] else None
    text = getattr(last, "content", "") if last is not None else ""
    return {"messages": [AIMessage(content=f"echo: {text}")]}


_builder = StateGraph(MessagesState)
_builder.add_node("reply", reply)
_builder.add_edge(START, "reply")
_builder.add_edge("reply", END)
graph = _builder.compile()
