"""The LLM seam: chat models that stream tokens into waypoint's streams."""

from .scripted import ScriptedChatModel

__all__ = ["ScriptedChatModel"]
