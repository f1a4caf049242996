"""Running workflows: the super-step loop, tasks, interrupts, streaming, state access."""

from .compiled import CompiledStateGraph
from .context import get_attempt, get_config, get_stream_writer, heartbeat, interrupt
from .effects import aeffect, effect

__all__ = ["CompiledStateGraph", "aeffect", "effect", "get_attempt", "get_config",
           "get_stream_writer", "heartbeat", "interrupt"]
