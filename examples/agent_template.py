#!/usr/bin/env python
"""A production agent template: LangGraph's prebuilt agent, with the risky tool gated.

    START ──► agent ──► tools ──► agent ... ──► END     (create_react_agent's loop)
                          └─ refund_order: approve() first (approve / reject / edit)

Why it is built this way:

* The graph is `create_react_agent`, the shape LangGraph users already know, so the
  template carries over to (and from) LangGraph code; what production needs is added as
  policies on it rather than as extra nodes to maintain.
* Tools validate their arguments from type hints and `Field` limits: a bad call comes back
  to the model as an error message naming the argument, before any code runs.
* `refund_order` is `effect="dangerous"`, and the agent approves "dangerous" tools: the
  ToolNode asks `approve()` before it runs one. The pause is durable (SQLite here), so a
  person can decide hours later, from another process. A rejection is answered to the
  model as a tool message, with the approver's comment; an edit replaces the arguments.
  Inside the tool the refund is an `effect`, so it is paid once whatever re-runs the node.
* What create_react_agent cannot express, and what replaces it. The old template had an
  `error` node: now a failing tool (`--orders-down`) is answered to the model as an error
  message after the tool's own retry, so the customer gets an answer instead of a crash,
  and a model that keeps failing after the node's `RetryPolicy` fails the run, which the
  CLI reports in one line (a person should look; nothing was paid). The old loop counter
  is now the recursion limit (`--max-turns`): near it the agent apologises instead of
  calling another tool. A thread-wide `Budget` on tokens backs it up.
* The local model calls tools through a schema-constrained decision by default
  (`--tool-calling schema`). On the 1.5B model both paths picked the right first move 9
  times in 10 (examples/README.md), but `native`'s miss was the dangerous kind: it skipped
  the lookup and proposed a refund of an invented amount. `native` is twice as fast.

The order and payment systems are stand-ins that log to `.waypoint/agent.log` (or
`$WAYPOINT_AGENT_LOG`), so each refund can be seen happening exactly once.

    python examples/agent_template.py --approve
    python examples/agent_template.py --reject --comment "outside the refund window"
    python examples/agent_template.py --orders-down      # the lookup fails -> told, answers
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
from typing import Annotated, Any

from pydantic import Field, ValidationError

from waypoint import Budget, BudgetExceeded, Command, RetryPolicy, effect, get_config
from waypoint.checkpoint import SqliteSaver
from waypoint.messages import AIMessage, HumanMessage, ToolMessage
from waypoint.models import ChatModel, ModelConfigError, ModelRequest, ScriptedModel, UsageLedger
from waypoint.prebuilt import AgentState, create_react_agent
from waypoint.prebuilt.react_agent import NEED_MORE_STEPS
from waypoint.tools import InjectedState, tool

DEFAULT_DB = os.path.join(".waypoint", "agent.db")
DEFAULT_LOG = os.path.join(".waypoint", "agent.log")
DEFAULT_REQUEST = ("Hi, order A-1001 arrived with a cracked case. "
                   "I'd like a refund for it please.")
MAX_TURNS = 6  # model calls per run; the recursion limit is derived from it
ORDER_ID = r"^A-[0-9]{4}$"  # [0-9], not \d: llama.cpp's schema grammar has no \d
MODEL_RETRY = RetryPolicy(initial_interval=1.0, backoff_factor=2.0, max_attempts=3)
MAX_TOKENS = 400  # per model call: replies are short; a budget reserves this much per call
BUDGET = Budget(max_tokens=30_000, on_exceed="fail", scope="thread")  # the whole request

ORDERS = {
    "A-1001": {"item": "wireless headphones", "amount_usd": 89.0, "status": "delivered",
               "days_since_delivery": 12},
    "A-1002": {"item": "phone charger", "amount_usd": 19.5, "status": "in transit",
               "days_since_delivery": None},
}

# Numbered rules, not prose: on the 1.5B model they took the first move from 6/10 and
# 5/10 right to 9/10 on both tool-calling paths (examples/measure_tool_choice.py).
SYSTEM = (
    "You are a customer support agent for an online shop. Decide the next step:\n"
    "1. The customer gives an order number (like A-1001) that was not looked up yet: call "
    "lookup_order with it.\n"
    "2. The order was looked up, its status is \"delivered\", the customer asked for a "
    "refund, and refund_order was not called yet: call refund_order with the order id, the "
    "amount paid and a short reason. A person approves refunds.\n"
    "3. Otherwise (a greeting, an order not delivered, a refund made or not approved, a "
    "tool error, a question already answered): call no tool; reply to the customer in one "
    "or two sentences.\n"
    "Never invent an order number.")


class SupportState(AgentState, total=False):
    """create_react_agent's state, plus the stand-in systems' switches (kept in the state,
    so a run resumed by another process behaves like the one that started it)."""

    sim: dict[str, Any]


# ---------------------------------------------------------------------------------------
# The outside world: an order system and a payment system that log what "happened".
# ---------------------------------------------------------------------------------------


def _sim(state: Any) -> dict[str, Any]:
    return (state.get("sim") if isinstance(state, dict) else None) or {}


def log_path(sim: dict[str, Any]) -> Path:
    return Path(sim.get("log") or os.environ.get("WAYPOINT_AGENT_LOG") or DEFAULT_LOG)


def _record(sim: dict[str, Any], event: str, detail: str) -> None:
    log = log_path(sim)
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


@tool(retries=1)  # a read: ToolNode tries it once more before answering with the error
def lookup_order(
    order_id: Annotated[str, Field(pattern=ORDER_ID, description="e.g. A-1001")],
    state: Annotated[dict, InjectedState],
) -> dict:
    """Look up an order: item, amount paid, delivery status."""
    sim = _sim(state)
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
    state: Annotated[dict, InjectedState],
) -> dict:
    """Refund money to the customer for a delivered order. A person approves it first."""
    return effect("refund", _issue_refund, _sim(state), order_id, amount_usd, reason)


TOOLS = [lookup_order, refund_order]


def build_agent(model: ChatModel, checkpointer: Any = None, *,
                retry: RetryPolicy | None = None, budget: Budget | None = BUDGET) -> Any:
    """The compiled agent; approvals need a checkpointer (the pause is stored there).
    `retry`: the model node's policy (default `MODEL_RETRY`)."""
    return create_react_agent(model, TOOLS, prompt=SYSTEM, state_schema=SupportState,
                              checkpointer=checkpointer, retry=retry or MODEL_RETRY,
                              budget=budget, approve_tools="dangerous")


def run_config(thread_id: str, max_turns: int = MAX_TURNS) -> dict[str, Any]:
    """A run's config: `max_turns` model calls at most (agent and tools alternate, and the
    agent apologises when one step is left instead of calling a tool)."""
    if not isinstance(max_turns, int) or max_turns < 1:
        raise ValueError(f"max_turns must be a whole number >= 1, got {max_turns!r}")
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": 2 * max_turns}


def outcome(messages: list[Any]) -> str:
    """How the run ended: "answered", "loop limit", "waiting" (for a tool) or "no reply"."""
    last = messages[-1] if messages else None
    if isinstance(last, AIMessage) and last.tool_calls:
        return "waiting"
    if isinstance(last, AIMessage):
        return "loop limit" if last.text == NEED_MORE_STEPS else "answered"
    return "no reply"


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------

ORDER = re.compile(r"A-[0-9]{4}")
REFUND_WORDS = re.compile(r"refund|money back", re.IGNORECASE)


def _call(name: str, **args: Any) -> dict[str, Any]:
    """A scripted tool call, with an id unique in the conversation (chat UIs pair each tool
    result with its call by id)."""
    return {"tool_calls": [{"name": name, "args": args, "id": f"call_{uuid.uuid4().hex[:12]}"}]}


def scripted_agent(request: ModelRequest) -> dict[str, Any] | str:
    """The `--model scripted` stand-in: reads the conversation since the customer's last
    message as a real model would, and calls tools or answers accordingly."""
    messages = list(request.messages)
    start = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=0)
    customer, last = messages[start].text, messages[-1]
    order = ORDER.search(customer)
    if not isinstance(last, ToolMessage):
        if order is None:
            return "Hello! Which order is this about? Please give me its number, like A-1001."
        return _call("lookup_order", order_id=order.group(0))
    failed = last.additional_kwargs.get("status") == "error"
    if last.name == "lookup_order":
        if failed and "no order" in last.text:
            return f"I could not find order {order.group(0) if order else ''}; please check " \
                   f"the number."
        if failed:
            return ("Sorry, our order system is not answering right now. A member of our team "
                    "will follow up by e-mail.")
        found = json.loads(last.text)
        if REFUND_WORDS.search(customer) and found["status"] == "delivered":
            return _call("refund_order", order_id=found["order_id"],
                         amount_usd=found["amount_usd"], reason="item arrived damaged")
        if REFUND_WORDS.search(customer):
            return (f"Your order {found['order_id']} ({found['item']}) is still "
                    f"{found['status']}, so it can't be refunded yet.")
        return f"Your order {found['order_id']} ({found['item']}) is {found['status']}."
    if last.additional_kwargs.get("error_type") == "rejected":
        return ("I'm sorry, I can't refund this order: a colleague reviewed the request and "
                "declined it.")
    if failed:
        return "I could not make the refund; a member of our team will follow up by e-mail."
    done = json.loads(last.text)
    return (f"Done: ${done['amount_usd']:.2f} for order {done['order_id']} is on its way back "
            f"to you (refund {done['refund_id']}, 3-5 business days).")


def make_model(kind: str, ledger: UsageLedger | None = None, *, base_url: str | None = None,
               model_name: str | None = None, tool_calling: str | None = None) -> ChatModel:
    """`kind`: scripted, local (Qwen2.5-Coder-1.5B), local-small (0.5B) or openai.
    `tool_calling`: "schema" (default for local) or "native" (default for openai)."""
    if kind == "scripted":
        return ScriptedModel([scripted_agent], model="scripted-agent", cycle=True, ledger=ledger,
                             max_tokens=MAX_TOKENS)
    if kind == "openai":
        from waypoint.models import OpenAICompatible

        if not base_url:
            raise SystemExit("agent_template: --model openai needs --base-url")
        return OpenAICompatible(base_url, model_name or "default",
                                api_key=os.environ.get("OPENAI_API_KEY"), ledger=ledger,
                                tool_calling=tool_calling or "native", temperature=0,
                                max_tokens=MAX_TOKENS)
    if kind not in ("local", "local-small"):
        raise ValueError(f"unknown model kind {kind!r}")
    from waypoint.models import LocalModel

    name = "qwen2.5-coder-0.5b" if kind == "local-small" else "qwen2.5-coder-1.5b"
    return LocalModel(name, ledger=ledger, tool_calling=tool_calling or "schema",
                      temperature=0, max_tokens=MAX_TOKENS)


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def _print_chunk(mode: str, chunk: Any) -> None:
    if mode == "tasks" and "effect" in chunk:
        print(f"[effect] {chunk['effect']['effect']} {chunk['effect']['status']}")
    elif mode == "tasks" and "retry" in chunk:
        r = chunk["retry"]
        print(f"[retry] {r['node']}: attempt {r['attempt']} failed ({r['error'][:120]}), "
              f"next in {r['delay']:.1f} s")
    elif mode == "updates":
        for node, update in chunk.items():
            for message in (update or {}).get("messages") or () if isinstance(
                    update, dict) else ():
                if isinstance(message, AIMessage) and message.tool_calls:
                    for call in message.tool_calls:
                        print(f"[{node}] calls {call['name']} {json.dumps(call['args'])}")
                elif isinstance(message, ToolMessage):
                    print(f"[{node}] {message.name} -> {message.text[:160]}")
                elif isinstance(message, AIMessage):
                    print(f"[{node}] answers: {message.text}")


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


def _check_edits(answer: dict[str, Any], tool_name: str) -> str | None:
    """What is wrong with an edit, checked against the tool's own argument model (approve()
    shows the tool's JSON schema but does not enforce it in-process)."""
    if answer["action"] != "edit":
        return None
    found = next(t for t in TOOLS if t.name == tool_name)
    try:
        found.args_model.model_validate(answer["edits"])
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return None


def _drive(app: Any, config: dict[str, Any], inputs: Any, args: argparse.Namespace,
           thread: str) -> int:
    """Run, then answer approvals until the run ends or waits for a decision later."""
    while True:
        for mode, chunk in app.stream(inputs, config, stream_mode=["updates", "tasks"]):
            _print_chunk(mode, chunk)
        pending = [i.value for i in app.get_state(config).interrupts
                   if isinstance(i.value, dict) and i.value.get("kind") == "approval"]
        if not pending:
            return 0
        request = pending[0]["request"]
        print(f"\n[approval] {request['tool']} {json.dumps(request['args'])} needs a decision")
        answer = _decision(args, request)
        if answer is None:
            print(f"\nPaused and stored. Decide later with:\n  python "
                  f"examples/agent_template.py --thread-id {thread} --approve|--reject")
            return 0
        problem = _check_edits(answer, request["tool"])
        if problem:
            print(f"agent_template: the edit does not fit {request['tool']}: {problem}",
                  file=sys.stderr)
            return 2
        print(f"[approval] {answer['action']} by {answer['by']}")
        inputs = Command(resume=answer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("request", nargs="?", default=DEFAULT_REQUEST,
                        help="the customer's message")
    parser.add_argument("--model", choices=("local", "local-small", "openai", "scripted"),
                        default=os.environ.get("WAYPOINT_MODEL", "local"))
    parser.add_argument("--tool-calling", choices=("schema", "native"), default=None,
                        help="how local/openai models call tools (default: schema for local, "
                             "native for openai)")
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
                        help="the order system is unreachable: the lookup fails")
    parser.add_argument("--max-turns", type=int, default=MAX_TURNS,
                        help="most model calls per run (default: %(default)s)")
    parser.add_argument("--thread-id", default=None, help="resume this thread")
    parser.add_argument("--db", default=DEFAULT_DB, help="SQLite checkpoints (%(default)s)")
    parser.add_argument("--log", default=None,
                        help=f"where the stand-in systems log (default: {DEFAULT_LOG})")
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
                           model_name=args.model_name, tool_calling=args.tool_calling)
    except ModelConfigError as exc:  # e.g. the local model's weights are not installed
        print(f"agent_template: {exc}", file=sys.stderr)
        return 2
    with SqliteSaver.from_conn_string(args.db) as saver:
        app = build_agent(model, saver)
        thread = args.thread_id or f"agent-{uuid.uuid4().hex[:8]}"
        config = run_config(thread, args.max_turns)
        inputs: Any = None  # resuming a thread: answer what it waits for
        if not app.get_state(config).values:
            print(f"customer: {args.request}\n(thread {thread}, model {model.model})")
            sim = {"log": str(log_path({"log": args.log}).resolve()),
                   "orders_down": args.orders_down}
            inputs = {"messages": [HumanMessage(args.request)], "sim": sim}
        try:
            code = _drive(app, config, inputs, args, thread)
        except BudgetExceeded as exc:
            print(f"agent_template: stopped by the budget: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # the model failed for good (after its retry policy)
            print(f"agent_template: the run failed: {type(exc).__name__}: {exc}. Nothing "
                  f"more was done; resume with --thread-id {thread} once it is fixed.",
                  file=sys.stderr)
            return 1
        values = app.get_state(config).values
        if code or app.get_state(config).next:
            return code
        messages = values.get("messages") or []
        calls = sum(isinstance(m, AIMessage) for m in messages)
        print(f"\noutcome: {outcome(messages)} after {calls} model call(s)")
        rows = read_log(log_path(_sim(values)), thread)
        if rows:
            print(f"what happened ({log_path(_sim(values))}):")
            for row in rows:
                print(f"  {row[2]:<20} {row[3]}")
    total = ledger.total()
    if total.calls:
        print(f"model calls: {total.calls}, {total.input_tokens} input + "
              f"{total.output_tokens} output tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
