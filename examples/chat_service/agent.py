"""The chat backend's agent: `examples/agent_template.py`'s agent, served.

`waypoint serve --config examples/chat_service/langgraph.json` serves this module's `graph`
as the assistant `agent`; the server gives it its checkpointer, so each chat thread is
durable and a refund waiting for a person survives a restart.

Why it is nothing but the template's agent: `create_react_agent`'s state is the
conversation itself (`messages`: the customer's, the model's tool calls, the tool
results, the replies), which is exactly what agent-chat-ui-style clients render. A run
streamed with `messages-tuple` gives the reply's tokens as they are decoded and the tool
calls as they are made, all from the `agent` node; `values` gives the whole conversation
after each step, and a pending approval as `__interrupt__`. The approval is the
ToolNode's (`approve()` before `refund_order` runs), so it is also in waypoint's
approvals inbox (`GET /approvals`, `POST /approvals/{id}/decide`).

What differs from the CLI: the budget is per run (one customer message), not per thread,
so a long conversation is not cut off; and the stand-in payment log is
`WAYPOINT_CHAT_LOG` (default `examples/chat_service/.waypoint/chat.log`).

The model is chosen by `WAYPOINT_CHAT_MODEL`: `scripted` (the default: deterministic, no
model needed, what the tests use), `local` (the embedded Qwen2.5-Coder-1.5B), `local-small`
(its 0.5B sibling) or `openai` (`WAYPOINT_MODEL_URL`, `WAYPOINT_MODEL_NAME`,
`OPENAI_API_KEY`); `WAYPOINT_TOOL_CALLING` (`schema` or `native`) picks how a real model
calls tools.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from waypoint import Budget
from waypoint.models import ChatModel

# The server imports this file by path; the template lives one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import agent_template as template

HERE = Path(__file__).resolve().parent
DEFAULT_LOG = HERE / ".waypoint" / "chat.log"
CHAT_BUDGET = Budget(max_tokens=30_000, on_exceed="fail", scope="run")
MODELS = ("scripted", "local", "local-small", "openai")

# The template's tools log where WAYPOINT_AGENT_LOG says (the server's workers inherit it).
os.environ["WAYPOINT_AGENT_LOG"] = (os.environ.get("WAYPOINT_CHAT_LOG")
                                    or os.environ.get("WAYPOINT_AGENT_LOG") or str(DEFAULT_LOG))


def chat_model(kind: str | None = None) -> ChatModel:
    """The model `WAYPOINT_CHAT_MODEL` names (default `scripted`); see the module doc."""
    kind = kind or os.environ.get("WAYPOINT_CHAT_MODEL") or "scripted"
    if kind not in MODELS:
        raise ValueError(f"WAYPOINT_CHAT_MODEL must be one of {', '.join(MODELS)}, "
                         f"not {kind!r}")
    return template.make_model(kind, base_url=os.environ.get("WAYPOINT_MODEL_URL"),
                               model_name=os.environ.get("WAYPOINT_MODEL_NAME"),
                               tool_calling=os.environ.get("WAYPOINT_TOOL_CALLING") or None)


graph: Any = template.build_agent(chat_model(), budget=CHAT_BUDGET)
