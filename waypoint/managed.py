"""LangGraph's managed values: `from waypoint.managed import RemainingSteps, IsLastStep`.

A state key annotated with one is filled by the engine on every read (the steps left
before the recursion limit; whether this is the last one) and never stored."""

from .graph.schema import IsLastStep, RemainingSteps

__all__ = ["IsLastStep", "RemainingSteps"]
