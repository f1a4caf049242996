"""Running workflows: the super-step loop, tasks, interrupts, streaming, state access."""

from .approvals import Decision, approve, decide
from .compiled import CompiledStateGraph
from .context import get_attempt, get_config, get_stream_writer, heartbeat, interrupt
from .effects import aeffect, effect
from .timers import FiredTimer, fire_due_timers, sleep, wait_until

__all__ = ["CompiledStateGraph", "Decision", "FiredTimer", "aeffect", "approve", "decide",
           "effect", "fire_due_timers", "get_attempt", "get_config", "get_stream_writer",
           "heartbeat", "interrupt", "sleep", "wait_until"]
