#!/usr/bin/env python
"""A production agent template: tool loop, approval for the risky tool, error node, bounds.

    START ──► agent ──► tools ──► agent ...        (a read tool: runs at once)
                │ ──► approval ──► tools ...       (the risky tool: a person decides first)
                │          └─ rejected ─► agent    (the agent is told, and answers)
                │ ──► END                          (the agent answered)
                └ ... error ──► END                (model or tools failed for good, or the
                                                    loop limit was reached)

* ``agent`` asks the model for its next action as a schema-constrained decision
  (``choose_tool``), which small local models get right where native tool calling fails.
* Tools validate their arguments (``@tool`` type hints and pydantic ``Field`` limits); a bad
  call or an unknown order goes back to the model as an error message it can act on.
* ``refund_order`` is declared ``effect="dangerous"``: the graph routes its calls through
  ``approval``, which calls ``approve()`` (approve, reject, or edit the arguments against a
  schema) before the tool runs. Inside the tool the refund is an ``effect``, so it is made
  once whatever re-runs the node.
* Failures are policies: the ``agent`` and ``tools`` nodes retry transient errors
  (``RetryPolicy``, ``max_attempts`` bounds it) and their ``error_handler`` routes a final
  failure to the ``error`` node, which answers the customer gracefully. The loop is
  bounded by ``--max-turns`` and, as a last line, the run's ``recursion_limit``.

Runs on the embedded local model by default (``--model local``; ``local-small`` for the
0.5B one), any OpenAI-compatible endpoint with ``--model openai --base-url URL``, or a
scripted model with ``--model scripted``. Checkpoints go to ``.waypoint/agent.db``; the
payment and order systems are local stand-ins logging to ``.waypoint/agent.log``.

    python examples/agent_template.py --approve
    python examples/agent_template.py --reject --comment "outside the refund window"
    python examples/agent_template.py --orders-down      # tools fail -> error node
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, Field

from waypoint import (
    END,
    START,
    Command,
    NodeError,
    PermanentError,
    RetryPolicy,
    StateGraph,
    add_messages,
    approve,
    effect,
    get_config,
)
from waypoint.checkpoint import SqliteSaver
from waypoint.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from waypoint.models import ChatModel, ModelConfigError, ScriptedModel, UsageLedger, choose_tool
from waypoint.tools import InjectedState, ToolArgumentError, ToolError, ToolNode, tool

DEFAULT_DB = os.path.join(".waypoint", "agent.db")
DEFAULT_LOG = os.path.join(".waypoint", "agent.log")
DEFAULT_REQUEST = ("Hi, order A-1001 arrived with a cracked case. "
                   "I'd like a refund for it please.")
MAX_TURNS = 6
ORDER_ID = r"^A-[0-9]{4}$"  # [0-9], not \d: llama.cpp's schema grammar has no \d
RECURSION_LIMIT = 40
MODEL_RETRY = RetryPolicy(initial_interval=1.0, backoff_factor=2.0, max_attempts=3)
TOOLS_RETRY = RetryPolicy(initial_interval=0.5, backoff_factor=2.0, max_attempts=2)

ORDERS = {
    "A-1001": {"item": "wireless headphones", "amount_usd": 89.0, "status": "delivered",
               "days_since_delivery": 12},
    "A-1002": {"item": "phone charger", "amount_usd": 19.5, "status": "in transit",
               "days_since_delivery": None},
}


class AgentState(TypedDict, total=False):
    messages: Annotated[list, add_messages]
    turns: int  # model decisions made so far
    sim: dict[str, Any]  # the stand-in systems' switches and log file
    error: str | None
    outcome: str  # "answered" | "failed"


class RefundArgs(BaseModel):
    """What an approver may change in a refund (the `edit` action is checked against it)."""

    order_id: str = Field(pattern=ORDER_ID)
    amount_usd: float = Field(gt=0, le=500)
    reason: str = Field(min_length=3, max_length=200)


# ---------------------------------------------------------------------------------------
# The outside world: an order system and a payment system that log what "happened".
# ---------------------------------------------------------------------------------------


def _record(sim: dict[str, Any], event: str, detail: str) -> None:
    log = Path(sim.get("log") or DEFAULT_LOG)
    log.parent.mkdir(parents=True, exist_ok=True)
    thread = str(get_config()["configurable"]["thread_id"])
    with log.open("a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\t{thread}\t{event}\t{detail}\n")


def read_log(log: str | Path, thread: str | None = None) -> list[list[str]]:
    path = Path(log)
    if not path.exists():
        return []
    rows = [line.split("\t", 3) for line in path.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if len(r) == 4 and (thread is None or r[1] == thread)]


def _issue_refund(sim: dict[str, Any], order_id: str, amount_usd: float, reason: str, *,
                  idempotency_key: str) -> dict[str, Any]:
    """The payment provider's refund call; the key makes a repeated request a no-op there."""
    refund_id = "rf-" + idempotency_key[-8:]
    _record(sim, "refund issued", f"{refund_id} {order_id} ${amount_usd:.2f} ({reason}) "
                                  f"key={idempotency_key}")
    return {"refund_id": refund_id, "order_id": order_id, "amount_usd": amount_usd}


# ---------------------------------------------------------------------------------------
# Tools: type hints and Field limits are the argument validation the model must pass.
# ---------------------------------------------------------------------------------------


@tool
def lookup_order(
    order_id: Annotated[str, Field(pattern=ORDER_ID, description="e.g. A-1001")],
    sim: Annotated[dict, InjectedState("sim")],
) -> dict:
    """Look up an order: item, amount paid, delivery status."""
    if sim.get("orders_down"):
        _record(sim, "order lookup failed", f"{order_id}: order service unreachable")
        raise ConnectionError("order service unreachable (connection refused)")
    _record(sim, "order looked up", order_id)
    if order_id not in ORDERS:
        raise LookupError(f"there is no order {order_id}")
    return {"order_id": order_id, **ORDERS[order_id]}


@tool(effect="dangerous")
def refund_order(
    order_id: Annotated[str, Field(pattern=ORDER_ID)],
    amount_usd: Annotated[float, Field(gt=0, le=500, description="amount to refund in USD")],
    reason: Annotated[str, Field(min_length=3, max_length=200)],
    sim: Annotated[dict, InjectedState("sim")],
) -> dict:
    """Refund money to the customer for an order. Needs a person's approval."""
    return effect("refund", _issue_refund, sim, order_id, amount_usd, reason)


TOOLS = [lookup_order, refund_order]
RISKY = {t.name for t in TOOLS if t.effect == "dangerous"}


def answer_or_raise(exc: BaseException) -> str:
    """ToolNode's error policy: mistakes the model can fix go back to it as messages;
    anything else (a system that is down) is raised, so the node's retry policy and error
    handler deal with it."""
    if isinstance(exc, ToolArgumentError):
        return f"Error: {exc}. Call the tool again with corrected arguments."
    if isinstance(exc, (ToolError, LookupError, PermanentError)):
        return f"Error: {exc}"
    raise exc


# ---------------------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------------------

SYSTEM = ("You are a customer support agent for an online shop. You act in steps, one "
          "tool per step.\n"
          "- If the order has not been looked up yet: call lookup_order.\n"
          "- If it was looked up, is delivered, the customer wants a refund and no refund "
          "was tried yet: call refund_order with the amount paid and a short reason (a "
          "person approves refunds; you do not ask).\n"
          "- If a refund was made, rejected or failed, or nothing else is needed: answer "
          "with tool 'none', speaking to the customer in one or two sentences.")


def _call_text(call: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={json.dumps(v)}" for k, v in call["args"].items())
    return f"{call['name']}({args})"


def transcript(messages: list[Any]) -> str:
    """The conversation as plain text: what the customer asked, what was done so far and
    which tools were already called. Small models follow this better than tool messages."""
    results = {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
    asked = [m.text for m in messages if isinstance(m, HumanMessage)]
    done, called = [], []
    for message in messages:
        for call in getattr(message, "tool_calls", None) or ():
            result = results.get(call["id"])
            if result is None:
                continue
            called.append(call["name"])
            if result.additional_kwargs.get("status") == "rejected":
                done.append(f"{_call_text(call)} was {result.text}")
            else:
                done.append(f"{_call_text(call)} returned {result.text}")
    lines = [f"Customer: {text}" for text in asked]
    lines.append("Done so far:")
    lines += [f"{i}. {step}" for i, step in enumerate(done, 1)] or ["nothing yet"]
    lines.append(f"Already called: {', '.join(called) or 'none'}.")
    if offered_tools(messages):
        lines.append("What is the next step?")
    else:
        lines.append("Now reply to the customer: tell them, addressing them as 'you', what "
                     "was done and what happens next.")
    return "\n".join(lines)


def offered_tools(messages: list[Any]) -> list[Any]:
    """The tools the model may pick now: each one that has already answered (or was
    rejected by a person) is left out, so a small model cannot loop on it; one that failed
    with an error stays, so the model can correct its call. The narrower the menu, the
    better small models choose."""
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)
                and m.additional_kwargs.get("status") != "error"}
    used = {call["name"] for m in messages for call in getattr(m, "tool_calls", None) or ()
            if call["id"] in answered}
    return [t for t in TOOLS if t.name not in used]


def build_graph(model: ChatModel, checkpointer: Any = None, *, max_turns: int = MAX_TURNS,
                model_retry: RetryPolicy = MODEL_RETRY,
                tools_retry: RetryPolicy = TOOLS_RETRY) -> Any:
    """The compiled agent. `model` decides each step; `max_turns` bounds the decisions."""
    if not isinstance(max_turns, int) or max_turns < 1:
        raise ValueError(f"max_turns must be a whole number >= 1, got {max_turns!r}")

    def agent(state: AgentState) -> dict:
        prompt = [SystemMessage(SYSTEM), HumanMessage(transcript(state["messages"]))]
        decision = choose_tool(model, prompt, offered_tools(state["messages"]),
                               max_tokens=200, temperature=0)
        update: dict[str, Any] = {"messages": [decision], "turns": state.get("turns", 0) + 1}
        if not decision.tool_calls:
            update["outcome"] = "answered"
        return update

    def route(state: AgentState) -> str:
        last = state["messages"][-1]
        calls = getattr(last, "tool_calls", None) or []
        if not calls:
            return END
        if state.get("turns", 0) >= max_turns:
            return "loop_limit"
        if any(call["name"] in RISKY for call in calls):
            return "approval"
        return "tools"

    def loop_limit(state: AgentState) -> Command[Literal["error"]]:
        return Command(update={"error": f"no answer after {max_turns} steps (loop limit)"},
                       goto="error")

    def approval(state: AgentState) -> Command[Literal["tools", "agent"]]:
        last = state["messages"][-1]
        call = next(c for c in last.tool_calls if c["name"] in RISKY)
        decision = approve(
            {"tool": call["name"], "args": call["args"],
             "customer": state["messages"][0].text},
            schema=RefundArgs, actions=("approve", "reject", "edit"), assignee="support-lead")
        if decision.action == "reject":
            why = f": {decision.comment}" if decision.comment else ""
            rejected = ToolMessage(f"REJECTED by {decision.by or 'a person'}{why}. No refund "
                                   f"was made.",
                                   tool_call_id=call["id"], name=call["name"],
                                   additional_kwargs={"status": "rejected"})
            return Command(update={"messages": [rejected]}, goto="agent")
        if decision.action == "edit":
            args = decision.edits.model_dump() if isinstance(decision.edits, BaseModel) \
                else dict(decision.edits)
            edited = [{**c, "args": args} if c["id"] == call["id"] else c
                      for c in last.tool_calls]
            replaced = AIMessage(last.content, id=last.id, tool_calls=edited)
            return Command(update={"messages": [replaced]}, goto="tools")
        return Command(goto="tools")

    def give_up(state: AgentState, error: NodeError) -> Command[Literal["error"]]:
        """error_handler of `agent` and `tools`: after their retries, go to the error node."""
        return Command(update={"error": f"{error.node} failed after {error.attempts} "
                                        f"attempt(s): {type(error.error).__name__}: "
                                        f"{error.error}"},
                       goto="error")

    def error(state: AgentState) -> dict:
        reply = AIMessage("Sorry, I could not finish handling your request right now. A "
                          "member of our team will follow up by e-mail.")
        return {"messages": [reply], "outcome": "failed"}

    builder = StateGraph(AgentState)
    builder.add_node("agent", agent, retry_policy=model_retry, error_handler=give_up)
    builder.add_node("tools", ToolNode(TOOLS, handle_errors=answer_or_raise),
                     retry_policy=tools_retry, error_handler=give_up)
    builder.add_node("approval", approval)
    builder.add_node("loop_limit", loop_limit)
    builder.add_node("error", error)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route, ["tools", "approval", "loop_limit", END])
    builder.add_edge("tools", "agent")
    builder.add_edge("error", END)
    return builder.compile(checkpointer=checkpointer, name="agent_template")


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


def scripted_agent(request: Any) -> str:
    """The `--model scripted` stand-in: look the order up, refund it, then answer."""
    text = next((str(m.content) for m in request.messages if "Customer:" in str(m.content)),
                "")
    steps = [line.partition(". ")[2] for line in text.splitlines() if line[:1].isdigit()]
    order = re.search(r"A-[0-9]{4}", text)
    if not steps:
        if order is None:
            return json.dumps({"tool": "none", "answer": "Which order is this about?"})
        return json.dumps({"tool": "lookup_order", "args": {"order_id": order.group(0)}})
    last = steps[-1]
    result = last.partition(" returned ")[2]
    if last.startswith("lookup_order"):
        if not result.startswith("{"):
            return json.dumps({"tool": "none", "answer": "I could not find that order; "
                                                         "please check the number."})
        found = json.loads(result)
        return json.dumps({"tool": "refund_order", "args": {
            "order_id": found["order_id"], "amount_usd": found["amount_usd"],
            "reason": "item arrived damaged"}})
    if " was REJECTED" in last:
        return json.dumps({"tool": "none", "answer": "I'm sorry, I can't refund this order. "
                                                     "A colleague reviewed it and declined."})
    if last.startswith("refund_order") and result.startswith("{"):
        amount = json.loads(result)["amount_usd"]
        return json.dumps({"tool": "none", "answer": f"Done: ${amount:.2f} is on its way back "
                                                     f"to you (3-5 business days)."})
    return json.dumps({"tool": "none", "answer": "I could not complete that; sorry."})


def make_model(kind: str, ledger: UsageLedger | None = None, *, base_url: str | None = None,
               model_name: str | None = None) -> ChatModel:
    if kind == "scripted":
        return ScriptedModel([scripted_agent], model="scripted-agent", cycle=True, ledger=ledger)
    if kind == "openai":
        from waypoint.models import OpenAICompatible

        if not base_url:
            raise SystemExit("agent_template: --model openai needs --base-url")
        return OpenAICompatible(base_url, model_name or "default",
                                api_key=os.environ.get("OPENAI_API_KEY"), ledger=ledger)
    from waypoint.models import LocalModel

    name = "qwen2.5-coder-0.5b" if kind == "local-small" else "qwen2.5-coder-1.5b"
    return LocalModel(name, ledger=ledger)


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def _print_updates(mode: str, chunk: Any) -> None:
    if mode == "tasks" and "retry" in chunk:
        r = chunk["retry"]
        print(f"[retry] {r['node']}: attempt {r['attempt']} failed ({r['error'][:120]}), "
              f"next in {r['delay']:.1f} s")
        return
    if mode == "tasks" and "effect" in chunk:
        print(f"[effect] {chunk['effect']['effect']} {chunk['effect']['status']}")
        return
    if mode != "updates":
        return
    for node, update in chunk.items():
        if node == "__interrupt__" or not isinstance(update, dict):
            continue
        for message in update.get("messages") or ():
            if isinstance(message, AIMessage) and message.tool_calls:
                for call in message.tool_calls:
                    print(f"[{node}] calls {call['name']} {json.dumps(call['args'])}")
            elif isinstance(message, ToolMessage):
                print(f"[{node}] {message.name} -> {message.text[:160]}")
            elif isinstance(message, AIMessage):
                print(f"[{node}] answers: {message.text}")
        if update.get("error"):
            print(f"[{node}] error: {update['error'][:200]}")


def _run(app: Any, inputs: Any, config: dict) -> None:
    for mode, chunk in app.stream(inputs, config, stream_mode=["updates", "tasks"]):
        _print_updates(mode, chunk)


def _decision(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any] | None:
    if args.approve:
        return {"action": "approve", "by": args.by, "comment": args.comment}
    if args.reject:
        return {"action": "reject", "by": args.by, "comment": args.comment}
    if args.edit_amount is not None:
        return {"action": "edit", "by": args.by, "comment": args.comment,
                "edits": {**request["args"], "amount_usd": args.edit_amount}}
    if sys.stdin is not None and sys.stdin.isatty():
        answer = input("Approve? [y = approve / n = reject / Enter = later] ").strip().lower()
        if answer in ("y", "yes"):
            return {"action": "approve", "by": args.by}
        if answer in ("n", "no"):
            return {"action": "reject", "by": args.by,
                    "comment": input("Why? ").strip() or None}
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("request", nargs="?", default=DEFAULT_REQUEST,
                        help="the customer's message")
    parser.add_argument(
        "--model", choices=("local", "local-small", "openai", "scripted"),
        default=os.environ.get("WAYPOINT_MODEL", "local"))
    parser.add_argument("--base-url", default=os.environ.get("WAYPOINT_MODEL_URL"))
    parser.add_argument("--model-name", default=os.environ.get("WAYPOINT_MODEL_NAME"))
    decision = parser.add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true", help="approve the refund")
    decision.add_argument("--reject", action="store_true", help="reject the refund")
    decision.add_argument("--edit-amount", type=float, default=None, metavar="USD",
                          help="approve a different amount")
    parser.add_argument("--by", default=os.environ.get("USER") or "cli")
    parser.add_argument("--comment", default=None)
    parser.add_argument("--orders-down", action="store_true",
                        help="the order system is unreachable: the tools node fails for good")
    parser.add_argument("--max-turns", type=int, default=MAX_TURNS,
                        help="most model decisions per run (default: %(default)s)")
    parser.add_argument("--thread-id", default=None, help="resume this thread")
    parser.add_argument("--db", default=DEFAULT_DB, help="SQLite checkpoints (%(default)s)")
    parser.add_argument("--log", default=DEFAULT_LOG,
                        help="where the stand-in systems log what happened (%(default)s)")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # progress lines in order, even through a pipe
        sys.stdout.reconfigure(line_buffering=True)
    if args.max_turns < 1:
        parser.error("--max-turns must be 1 or more")

    if os.path.dirname(args.db):
        os.makedirs(os.path.dirname(args.db), exist_ok=True)
    ledger = UsageLedger()
    try:
        model = make_model(args.model, ledger, base_url=args.base_url,
                           model_name=args.model_name)
    except ModelConfigError as exc:  # e.g. the local model's weights are not installed
        print(f"agent_template: {exc}", file=sys.stderr)
        return 2
    with SqliteSaver.from_conn_string(args.db) as saver:
        app = build_graph(model, saver, max_turns=args.max_turns)
        thread = args.thread_id or f"agent-{uuid.uuid4().hex[:8]}"
        config = {"configurable": {"thread_id": thread}, "recursion_limit": RECURSION_LIMIT}
        if not app.get_state(config).values:
            print(f"customer: {args.request}\n(thread {thread}, model {model.model})")
            _run(app, {"messages": [HumanMessage(args.request)], "turns": 0,
                       "sim": {"log": str(Path(args.log).resolve()),
                               "orders_down": args.orders_down}}, config)
        answered = False
        while True:
            pending = [i.value for i in app.get_state(config).interrupts
                       if isinstance(i.value, dict) and i.value.get("kind") == "approval"]
            if not pending:
                break
            if answered and pending[0].get("error"):  # our answer was refused: say why
                print(f"agent_template: {pending[0]['error']}", file=sys.stderr)
                return 2
            request = pending[0]["request"]
            print(f"\n[approval] {request['tool']} {json.dumps(request['args'])} needs a "
                  f"decision (assigned to {pending[0]['assignee']})")
            answer = _decision(args, request)
            if answer is None:
                print(f"\nPaused and stored. Decide later with:\n  python "
                      f"examples/agent_template.py --thread-id {thread} --approve|--reject")
                return 0
            print(f"[approval] {answer['action']} by {answer['by']}")
            _run(app, Command(resume=answer), config)
            answered = True
        values = app.get_state(config).values
        print(f"\noutcome: {values.get('outcome')} after {values.get('turns', 0)} model "
              f"decision(s)")
        log = (values.get("sim") or {}).get("log") or DEFAULT_LOG
        rows = read_log(log, thread)
        if rows:
            print(f"what happened ({log}):")
            for row in rows:
                print(f"  {row[2]:<20} {row[3]}")
    total = ledger.total()
    if total.calls:
        print(f"model calls: {total.calls}, {total.input_tokens} input + "
              f"{total.output_tokens} output tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
