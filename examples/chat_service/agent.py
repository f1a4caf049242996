"""The chat backend's agent: a support chat whose risky tool waits for a person.

    START ──► agent ──► tools ──► agent ...         (lookup_order: runs at once)
                │ ──► approval ──► tools ...        (refund_order: a person decides first)
                │          └─ rejected ─► agent     (the agent is told, and replies)
                └ ──► respond ──► END               (the reply, streamed token by token)

`waypoint serve --config examples/chat_service/langgraph.json` serves this module's `graph`
as the assistant `agent`; the server gives it its checkpointer, so each chat thread is
durable and a paused refund survives a restart. The tools, their argument validation, the
refund as an exactly-once `effect` and the approval schema are those of
`examples/agent_template.py`, imported from it; what this file adds is what a chat service
needs on top:

* every customer message starts a new *turn*: the agent plans from the messages since the
  last one (with the earlier conversation as context), so a second question on the same
  thread gets looked up afresh instead of being answered from the first one's results;
* the agent decides exactly as the template's does (its prompt, `choose_tool`'s
  schema-constrained decision object, the narrowing menu of tools), and a refund is not on
  the menu before the order was looked up in this turn;
* when the agent would answer, the answer the customer sees is written by a separate
  `respond` node as plain text, so a chat UI shows the reply's tokens as they arrive
  (`messages` events with `langgraph_node == "respond"`) instead of a JSON decision. The
  decision's own `answer` is only the model's signal that it is done.

The model is chosen by `WAYPOINT_CHAT_MODEL`: `scripted` (the default: deterministic, no
model needed, what the tests use), `local` (the embedded Qwen2.5-Coder-1.5B), `local-small`
(its 0.5B sibling) or `openai` (`WAYPOINT_MODEL_URL`, `WAYPOINT_MODEL_NAME`,
`OPENAI_API_KEY`). What the stand-in payment system "did" is logged to `WAYPOINT_CHAT_LOG`
(default `examples/chat_service/.waypoint/chat.log`).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from waypoint import END, START, Command, NodeError, StateGraph, approve
from waypoint.checkpoint import register_type
from waypoint.graph import MessagesState
from waypoint.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from waypoint.models import ChatModel, ScriptedModel, choose_tool
from waypoint.tools import ToolNode

# The server imports this file by path; the template lives one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import agent_template as template

# An approver's edits reach the node (and its checkpoint) as a RefundArgs object: a
# restarted server must know the class to read that state back.
register_type(template.RefundArgs)

HERE = Path(__file__).resolve().parent
DEFAULT_LOG = HERE / ".waypoint" / "chat.log"
MAX_TOOL_CALLS = 4  # tool calls per customer message before the agent must reply
RESPOND = ("You are a customer support agent for an online shop, chatting with a customer. "
           "Reply in plain text (no JSON), speaking directly to the customer.")
REPLY_NOW = ("Write your reply to the customer now: one or two sentences saying what you found "
             "or did (with the amounts) and what happens next.")


class ChatState(MessagesState, total=False):
    """The conversation, plus the stand-in systems' settings (fixed at the first turn, so a
    run resumed by another worker logs to the same place)."""

    sim: dict[str, Any]


def current_turn(messages: list[Any]) -> tuple[list[Any], list[Any]]:
    """(earlier, turn): the messages before the customer's latest one, and from it on."""
    last = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=0)
    return messages[:last], messages[last:]


def prompt_text(messages: list[Any]) -> str:
    """The template's plain-text transcript of this turn, after the earlier conversation's
    texts (small models follow prose better than tool messages)."""
    earlier, turn = current_turn(messages)
    said = [f"- {'customer' if isinstance(m, HumanMessage) else 'you'}: {m.text}"
            for m in earlier if isinstance(m, HumanMessage)
            or (isinstance(m, AIMessage) and m.text and not m.tool_calls)]
    context = ["Earlier in this conversation:", *said[-6:], ""] if said else []
    return "\n".join([*context, template.transcript(turn)])


def offered_tools(turn: list[Any]) -> list[Any]:
    """The template's menu (tools that already answered are left out), narrowed further:
    no refund before the order was looked up in this turn, so the amount comes from the
    order system and not from the model's imagination."""
    looked_up = any(isinstance(m, ToolMessage) and m.name == "lookup_order"
                    and m.additional_kwargs.get("status") != "error" for m in turn)
    return [t for t in template.offered_tools(turn)
            if looked_up or t.name not in template.RISKY]


def build_graph(model: ChatModel, checkpointer: Any = None) -> Any:
    """The compiled chat agent; `waypoint serve` supplies the checkpointer."""

    def agent(state: ChatState) -> Command[Literal["tools", "approval", "respond"]]:
        first = {} if state.get("sim") else {
            "sim": {"log": os.environ.get("WAYPOINT_CHAT_LOG") or str(DEFAULT_LOG)}}
        _, turn = current_turn(state["messages"])
        calls = sum(len(getattr(m, "tool_calls", None) or ()) for m in turn)
        if calls >= MAX_TOOL_CALLS:
            return Command(update=first, goto="respond")
        prompt = [SystemMessage(template.SYSTEM), HumanMessage(prompt_text(state["messages"]))]
        decision = choose_tool(model, prompt, offered_tools(turn), max_tokens=200,
                               temperature=0)
        if not decision.tool_calls:  # the model would answer: `respond` writes the reply
            return Command(update=first, goto="respond")
        risky = decision.tool_calls[0]["name"] in template.RISKY
        return Command(update={"messages": [decision], **first},
                       goto="approval" if risky else "tools")

    def approval(state: ChatState) -> Command[Literal["tools", "agent"]]:
        last = state["messages"][-1]
        call = next(c for c in last.tool_calls if c["name"] in template.RISKY)
        decision = approve(
            {"tool": call["name"], "args": call["args"],
             "customer": current_turn(state["messages"])[1][0].text},
            schema=template.RefundArgs, actions=("approve", "reject", "edit"),
            assignee="support-lead")
        if decision.action == "reject":
            why = f": {decision.comment}" if decision.comment else ""
            answer = ToolMessage(f"REJECTED by {decision.by or 'a person'}{why}. No refund "
                                 f"was made.", tool_call_id=call["id"], name=call["name"],
                                 additional_kwargs={"status": "rejected"})
            return Command(update={"messages": [answer]}, goto="agent")
        if decision.action == "edit":
            args = decision.edits.model_dump() if isinstance(decision.edits, BaseModel) \
                else dict(decision.edits)
            edited = [{**c, "args": args} if c["id"] == call["id"] else c
                      for c in last.tool_calls]
            replaced = AIMessage(last.content, id=last.id, tool_calls=edited)
            return Command(update={"messages": [replaced]}, goto="tools")
        return Command(goto="tools")

    def respond(state: ChatState) -> dict[str, Any]:
        body = prompt_text(state["messages"]).rsplit("\n", 1)[0] + "\n" + REPLY_NOW
        reply = model.invoke([SystemMessage(RESPOND), HumanMessage(body)], max_tokens=120,
                             temperature=0)
        return {"messages": [AIMessage(reply.text.strip(), id=reply.id)]}

    def give_up(state: ChatState, error: NodeError) -> Command[Literal["error"]]:
        """After the retries of `agent`, `tools` or `respond`: apologise, never crash."""
        return Command(goto="error")

    def error(state: ChatState) -> dict[str, Any]:
        return {"messages": [AIMessage("Sorry, I could not finish that right now. A member "
                                       "of our team will follow up by e-mail.")]}

    builder = StateGraph(ChatState)
    builder.add_node("agent", agent, retry_policy=template.MODEL_RETRY, error_handler=give_up)
    builder.add_node("tools", ToolNode(template.TOOLS, handle_errors=template.answer_or_raise),
                     retry_policy=template.TOOLS_RETRY, error_handler=give_up)
    builder.add_node("approval", approval)
    builder.add_node("respond", respond, retry_policy=template.MODEL_RETRY,
                     error_handler=give_up)
    builder.add_node("error", error)
    builder.add_edge(START, "agent")
    builder.add_edge("tools", "agent")
    builder.add_edge("respond", END)
    builder.add_edge("error", END)
    return builder.compile(checkpointer=checkpointer, name="agent")


# ---------------------------------------------------------------------------------------
# The deterministic default model
# ---------------------------------------------------------------------------------------

ORDER = re.compile(r"A-[0-9]{4}")


def _steps(text: str) -> list[tuple[str, str]]:
    """(tool, result) of each numbered step in the transcript; result "REJECTED" or JSON."""
    out = []
    for line in text.splitlines():
        if line[:1].isdigit() and ". " in line:
            step = line.partition(". ")[2]
            name = step.partition("(")[0]
            out.append((name, "REJECTED" if " was REJECTED" in step
                        else step.partition(" returned ")[2]))
    return out


def scripted_chat(request: Any) -> str:
    """What `WAYPOINT_CHAT_MODEL=scripted` answers: the decision JSON when asked for one
    (the request carries a response format), else the reply text. It reads the same
    transcript a real model gets, so the graph runs exactly as it does on a real model."""
    text = next((str(m.content) for m in request.messages if "Customer: " in str(m.content)),
                "")
    customer = next((line[len("Customer: "):] for line in text.splitlines()
                     if line.startswith("Customer: ")), "")
    order = ORDER.search(customer) or ORDER.search(text)
    wants_refund = re.search(r"refund|money back", customer, re.IGNORECASE) is not None
    steps = _steps(text)
    found = next((json.loads(r) for name, r in steps if name == "lookup_order"
                  and r.startswith("{")), None)
    refund = next((r for name, r in steps if name == "refund_order"), None)
    if request.response_format is None:  # the `respond` node: plain text
        return _scripted_reply(order, found, refund, wants_refund)
    if order and not any(name == "lookup_order" for name, _ in steps):
        return json.dumps({"tool": "lookup_order", "args": {"order_id": order.group(0)}})
    if found and wants_refund and refund is None and found["status"] == "delivered":
        return json.dumps({"tool": "refund_order", "args": {
            "order_id": found["order_id"], "amount_usd": found["amount_usd"],
            "reason": "item arrived damaged"}})
    return json.dumps({"tool": "none",
                       "answer": _scripted_reply(order, found, refund, wants_refund)})


def _scripted_reply(order: Any, found: dict[str, Any] | None, refund: str | None,
                    wants_refund: bool) -> str:
    if order is None:
        return "Which order is this about? Please give me its number, like A-1001."
    if found is None:
        return f"I could not find order {order.group(0)}; please check the number."
    if refund == "REJECTED":
        return (f"I'm sorry, I can't refund order {found['order_id']}: a colleague reviewed "
                f"the request and declined it.")
    if refund and refund.startswith("{"):
        done = json.loads(refund)
        return (f"Done: ${done['amount_usd']:.2f} for order {done['order_id']} is on its way "
                f"back to you (refund {done['refund_id']}, 3-5 business days).")
    if wants_refund and found["status"] != "delivered":
        return (f"Your order {found['order_id']} ({found['item']}) is still "
                f"{found['status']}, so it can't be refunded yet.")
    return f"Your order {found['order_id']} ({found['item']}) is {found['status']}."


def chat_model(kind: str | None = None) -> ChatModel:
    """The model `WAYPOINT_CHAT_MODEL` names (default `scripted`); see the module doc."""
    kind = kind or os.environ.get("WAYPOINT_CHAT_MODEL") or "scripted"
    if kind == "scripted":
        return ScriptedModel([scripted_chat], model="scripted-chat", cycle=True)
    if kind not in ("local", "local-small", "openai"):
        raise ValueError(f"WAYPOINT_CHAT_MODEL must be scripted, local, local-small or "
                         f"openai, not {kind!r}")
    return template.make_model(kind, base_url=os.environ.get("WAYPOINT_MODEL_URL"),
                               model_name=os.environ.get("WAYPOINT_MODEL_NAME"))


graph = build_graph(chat_model())
