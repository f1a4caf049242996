#!/usr/bin/env python
"""How well does the agent template's model pick its next tool? Both tool-calling paths.

A small local model is only useful as an agent if its first move is right: look the order
up before talking about it, refund only after the lookup and with the amount paid, and
just answer when no tool is needed. This runs a handful of support conversations through
`examples/agent_template.py`'s own agent (its prompt, tools and `create_react_agent`
graph, stopped before the tools run) and scores the one model call each needs, once per
tool-calling path:

* `schema`: the model fills a schema-constrained decision (`{"tool", "args"}` or
  `{"tool": "none", "answer"}`), so it cannot produce a malformed call;
* `native`: OpenAI-style `tools=` through llama.cpp's chat-template parsing (with
  waypoint's recovery of calls the template left as JSON text).

    python examples/measure_tool_choice.py                      # both paths, the 1.5B model
    python examples/measure_tool_choice.py --paths native --model local-small
    python examples/measure_tool_choice.py --model scripted    # no model: a smoke test

Takes about 2-5 s per call on 2 CPU cores, plus the model load; the scores are written to
stdout as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import agent_template as agt

from waypoint.checkpoint import MemorySaver
from waypoint.messages import AIMessage, HumanMessage, ToolMessage
from waypoint.models import ChatModel, ModelRequest
from waypoint.models.base import ModelDelta
from waypoint.models.schema_tools import stream_decision

REFUND = "Hi, order A-1001 arrived with a cracked case. I'd like a refund for it please."
DELIVERED = json.dumps({"order_id": "A-1001", **agt.ORDERS["A-1001"]})
IN_TRANSIT = json.dumps({"order_id": "A-1002", **agt.ORDERS["A-1002"]})


def _after(request: str, *steps: tuple[str, dict[str, Any], str, str | None]) -> list[Any]:
    """A conversation: the customer's request, then (tool, args, result, error_type)
    steps as the agent would have made them."""
    messages: list[Any] = [HumanMessage(request)]
    for i, (name, args, result, error) in enumerate(steps):
        call = {"name": name, "args": args, "id": f"call_{i}", "type": "tool_call"}
        messages.append(AIMessage("", tool_calls=[call]))
        extra = {"status": "error", "error_type": error} if error else {}
        messages.append(ToolMessage(result, tool_call_id=f"call_{i}", name=name,
                                    additional_kwargs=extra))
    return messages


@dataclass
class Case:
    name: str
    messages: list[Any]
    tool: str | None  # the expected first tool, None for a plain answer
    args: dict[str, Any] = field(default_factory=dict)  # expected values of these args


LOOKUP_1001 = ("lookup_order", {"order_id": "A-1001"}, DELIVERED, None)
REFUND_89 = {"order_id": "A-1001", "amount_usd": 89.0, "reason": "cracked case"}
CASES = [
    Case("order question -> lookup", [HumanMessage("Where is my order A-1002?")],
         "lookup_order", {"order_id": "A-1002"}),
    Case("refund request -> lookup first", [HumanMessage(REFUND)],
         "lookup_order", {"order_id": "A-1001"}),
    Case("unknown order -> lookup", [HumanMessage("Can you check on order A-1003 for me?")],
         "lookup_order", {"order_id": "A-1003"}),
    Case("greeting -> answer", [HumanMessage("Hi there! Good morning.")], None),
    Case("delivered + refund asked -> refund", _after(REFUND, LOOKUP_1001),
         "refund_order", {"order_id": "A-1001", "amount_usd": 89.0}),
    Case("in transit + refund asked -> answer",
         _after("I want a refund for order A-1002.",
                ("lookup_order", {"order_id": "A-1002"}, IN_TRANSIT, None)), None),
    Case("status question answered -> answer",
         _after("Where is my order A-1002?",
                ("lookup_order", {"order_id": "A-1002"}, IN_TRANSIT, None)), None),
    Case("refund made -> answer",
         _after(REFUND, LOOKUP_1001, ("refund_order", REFUND_89, json.dumps(
             {"refund_id": "rf-1a2b3c4d", "order_id": "A-1001", "amount_usd": 89.0}), None)),
         None),
    Case("refund rejected -> answer",
         _after(REFUND, LOOKUP_1001, ("refund_order", REFUND_89,
                "The call to refund_order was not approved: outside the refund window. "
                "Do not retry it unchanged.", "rejected")), None),
    Case("order system down -> answer",
         _after(REFUND, ("lookup_order", {"order_id": "A-1001"},
                         "Error: tool 'lookup_order' failed (after 2 attempts): "
                         "ConnectionError: order service unreachable", "exception")), None),
]


@dataclass
class Outcome:
    case: Case
    tool: str | None
    args: dict[str, Any]
    seconds: float
    error: str | None = None

    @property
    def tool_ok(self) -> bool:
        return self.error is None and self.tool == self.case.tool

    @property
    def args_ok(self) -> bool:
        return self.tool_ok and all(self.args.get(k) == v for k, v in self.case.args.items())


def first_move(app: Any, case: Case) -> Outcome:
    """The agent's one model call for `case`: the graph stops before any tool runs."""
    config = {"configurable": {"thread_id": f"measure-{uuid.uuid4().hex[:8]}"}}
    started = time.perf_counter()
    try:
        out = app.invoke({"messages": case.messages}, config, interrupt_before=["tools"])
    except Exception as exc:  # an invalid decision, a timeout: counted as wrong
        return Outcome(case, None, {}, time.perf_counter() - started,
                       f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - started
    last = out["messages"][-1]
    calls = getattr(last, "tool_calls", None) or []
    if not calls:
        return Outcome(case, None, {}, seconds)
    return Outcome(case, calls[0]["name"], dict(calls[0]["args"]), seconds)


class ScriptedDecisions(ChatModel):
    """`--model scripted` on the schema path: the agent template's scripted stand-in,
    answering through the same schema-constrained decision (JSON text, parsed and checked
    by `stream_decision`) that the local model fills."""

    model = "scripted-decisions"

    def __init__(self) -> None:
        super().__init__(max_tokens=agt.MAX_TOKENS)

    def _stream_raw(self, request: ModelRequest) -> Any:
        answer = agt.scripted_agent(request)
        if isinstance(answer, str):
            decision: dict[str, Any] = {"tool": "none", "answer": answer}
        else:
            call = answer["tool_calls"][0]
            decision = {"tool": call["name"], "args": call["args"]}

        def raw(plain: ModelRequest) -> Any:
            text = json.dumps(decision)
            for start in range(0, len(text), 7):  # streamed in pieces, as a model does
                yield ModelDelta(text[start:start + 7])
            yield ModelDelta(finish_reason="stop")

        if not request.tools:
            yield from raw(request)
            return
        yield from stream_decision(request, raw)


def make_model(kind: str, path: str) -> ChatModel:
    """The model to measure; "scripted" needs no weights (native: calls as they are)."""
    if kind == "scripted":
        return ScriptedDecisions() if path == "schema" else agt.make_model("scripted")
    return agt.make_model(kind, tool_calling=path)


def measure(kind: str, path: str) -> list[Outcome]:
    model = make_model(kind, path)
    started = time.perf_counter()
    start = getattr(model, "start", None)
    if start is not None:
        start()  # load it now: not part of a call's time
    print(f"[{path}] model {model.model} ready in {time.perf_counter() - started:.1f} s",
          flush=True)
    app = agt.build_agent(model, MemorySaver(), budget=None)
    outcomes = []
    for case in CASES:
        outcome = first_move(app, case)
        mark = "ok " if outcome.args_ok else ("ARG" if outcome.tool_ok else "NO ")
        got = outcome.error or f"{outcome.tool or 'answer'} {json.dumps(outcome.args)}"
        print(f"[{path}] {mark} {outcome.seconds:5.1f} s  {case.name}: {got[:150]}",
              flush=True)
        outcomes.append(outcome)
    return outcomes


def table(results: dict[str, list[Outcome]]) -> str:
    rows = ["| path | right tool | right args (of the right tool calls) | both right | "
            "s per call (median, max) |", "|---|---|---|---|---|"]
    for path, outcomes in results.items():
        called = [o for o in outcomes if o.case.tool and o.tool_ok]
        times = sorted(o.seconds for o in outcomes)
        rows.append(
            f"| `{path}` | {sum(o.tool_ok for o in outcomes)}/{len(outcomes)} | "
            f"{sum(o.args_ok for o in called)}/{len(called)} | "
            f"{sum(o.args_ok for o in outcomes)}/{len(outcomes)} | "
            f"{times[len(times) // 2]:.1f}, {times[-1]:.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("local", "local-small", "scripted"),
                        default="local")
    parser.add_argument("--paths", nargs="+", choices=("schema", "native"),
                        default=["schema", "native"])
    args = parser.parse_args(argv)
    results = {path: measure(args.model, path) for path in args.paths}
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
