"""Seed 000's research pipeline as a served graph: the long job of `server_client.py`.

    plan ──Send──► research (x4, one source down) ──► write ⇄ review ──► [pause] ──► publish

It is `examples/research_pipeline.py`'s graph, unchanged: progress goes to the `custom`
stream, the writer's tokens to `messages`, and the run pauses before `publish`
(`interrupt_before`) until someone sets `approval` in the thread's state and resumes it.
Served as the assistant `research` next to the chat `agent`, so one `waypoint serve`
shows both the chat flow and the background-job flow.

The model follows `WAYPOINT_CHAT_MODEL` like the agent's: `scripted` (default) answers
deterministically, after `WAYPOINT_SCRIPTED_DELAY` seconds per call (default 0.3, so a
run lasts long enough to watch it stream and to poll it while it runs); `local`,
`local-small` and `openai` are the pipeline's real models.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from waypoint.models import ChatModel, UsageLedger

# The server imports this file by path; the pipeline lives one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import research_pipeline as pipeline


def research_model(kind: str | None = None) -> ChatModel:
    """The pipeline's model, chosen by `WAYPOINT_CHAT_MODEL` (see the module doc)."""
    kind = kind or os.environ.get("WAYPOINT_CHAT_MODEL") or "scripted"
    if kind == "scripted":
        delay = float(os.environ.get("WAYPOINT_SCRIPTED_DELAY", "0.3"))
        return pipeline.scripted_model(latency=delay)
    return pipeline.make_model(kind, UsageLedger(),
                               base_url=os.environ.get("WAYPOINT_MODEL_URL"),
                               model_name=os.environ.get("WAYPOINT_MODEL_NAME"))


graph: Any = pipeline.build_graph(research_model())
