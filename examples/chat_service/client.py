#!/usr/bin/env python
"""Chat with the served support agent, and decide its refund, with the official SDK only.

This is the frontend side of seed 004's `/chat` + `/approve` backend, talking to
`waypoint serve --config examples/chat_service/langgraph.json`. It needs `langgraph-sdk`,
not waypoint: anything that speaks LangGraph's Agent Server API could do the same.

* the message is sent as a run streamed with `messages-tuple` (the agent's tool calls and
  the reply's tokens, printed as they arrive, and the tools' results) and `values` (the
  whole conversation after each step, and a pending approval);
* if the state carries `__interrupt__` with an approval, the refund waits for a person. Pass
  `--approve`, `--reject` or `--edit-amount` to decide now; without one, the thread stays
  paused (durably, on the server) and the script prints how to decide later;
* the decision goes either through the SDK (`runs.stream(..., command={"resume": ...})`,
  the reply streams again) or through waypoint's approvals inbox (`--via inbox`:
  `POST /approvals/{id}/decide`, which queues the resuming run; the script then joins it).

    python examples/chat_service/client.py --approve
    python examples/chat_service/client.py "Where is my order A-1002?"
    python examples/chat_service/client.py --thread-id THREAD --reject --comment "too late"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from langgraph_sdk import get_sync_client
from langgraph_sdk.errors import APIStatusError

DEFAULT_URL = os.environ.get("WAYPOINT_URL", "http://127.0.0.1:2024")
DEFAULT_MESSAGE = ("Hi, order A-1001 arrived with a cracked case. "
                   "I'd like a refund please.")
STREAM = ["messages-tuple", "values"]


class Printer:
    """Turns stream parts into lines: the reply's tokens live, then each new message of the
    state once (the `values` snapshots repeat the whole conversation every step). Tool calls
    and results are printed from the state, where they are complete."""

    def __init__(self, seen: int) -> None:
        self.seen = seen  # messages of the thread already shown
        self.streamed: set[str] = set()  # ids of replies whose tokens were printed
        self.open_line = False
        self.last: dict[str, Any] = {}

    def part(self, event: str, data: Any) -> None:
        if event == "messages":
            chunk, meta = data
            if meta.get("langgraph_node") != "agent" or not chunk.get("content"):
                return  # tool calls and results: printed from the state below
            if not self.open_line:
                print("agent: ", end="")
                self.open_line = True
            self.streamed.add(chunk["id"])
            print(chunk["content"], end="", flush=True)
        elif event == "values":
            self.last = data
            self._new_messages(data.get("messages") or [])
        elif event == "error":
            self._close()
            print(f"[error] {data}")

    def _new_messages(self, messages: list[dict[str, Any]]) -> None:
        for message in messages[self.seen:]:
            self._close()
            kind = message.get("type")
            if kind == "ai" and message.get("tool_calls"):
                for call in message["tool_calls"]:
                    print(f"  [agent] calls {call['name']} {json.dumps(call['args'])}")
            elif kind == "tool":
                rejected = (message.get("additional_kwargs") or {}).get(
                    "error_type") == "rejected"
                print(f"  [{'approval' if rejected else 'tools'}] {message.get('name')} -> "
                      f"{str(message['content'])[:110]}")
            elif kind == "ai" and message.get("id") not in self.streamed:
                print(f"agent: {message['content']}")
        self.seen = max(self.seen, len(messages))

    def _close(self) -> None:
        if self.open_line:
            print()
            self.open_line = False

    def done(self) -> dict[str, Any]:
        self._close()
        return self.last


def pending_approval(client: Any, thread_id: str) -> dict[str, Any] | None:
    """The approval the thread waits on (the interrupt's value), or None."""
    for interrupt in client.threads.get_state(thread_id).get("interrupts") or []:
        value = interrupt.get("value")
        if isinstance(value, dict) and value.get("kind") == "approval":
            return value
    return None


def decision_of(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any] | None:
    """The decision the flags ask for, in the shape `approve()` and the inbox take."""
    if args.approve:
        return {"action": "approve", "by": args.by, "comment": args.comment}
    if args.reject:
        return {"action": "reject", "by": args.by, "comment": args.comment}
    if args.edit_amount is not None:
        return {"action": "edit", "by": args.by, "comment": args.comment,
                "edits": {**request["args"], "amount_usd": args.edit_amount}}
    return None


def message_count(client: Any, thread_id: str) -> int:
    return len((client.threads.get_state(thread_id).get("values") or {}).get("messages") or [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("message", nargs="?", default=None,
                        help="what the customer writes (default: a refund request, unless "
                             "--thread-id is given: then only the pending approval is decided)")
    parser.add_argument("--url", default=DEFAULT_URL, help="the server (default: %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("WAYPOINT_API_KEY"))
    parser.add_argument("--thread-id", default=None, help="continue this conversation")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--approve", action="store_true", help="approve the refund")
    choice.add_argument("--reject", action="store_true", help="reject the refund")
    choice.add_argument("--edit-amount", type=float, default=None, metavar="USD",
                        help="approve a different amount (checked against the schema)")
    parser.add_argument("--via", choices=("command", "inbox"), default="command",
                        help="resume with runs.stream(command=...) or decide through "
                             "POST /approvals/{id}/decide (default: %(default)s)")
    parser.add_argument("--by", default="support-lead")
    parser.add_argument("--comment", default=None)
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # tokens and lines in order, even through a pipe
        sys.stdout.reconfigure(line_buffering=True)

    client = get_sync_client(url=args.url, api_key=args.api_key)
    thread_id = args.thread_id or client.threads.create()["thread_id"]
    print(f"thread {thread_id} on {args.url}")
    message = args.message or (None if args.thread_id else DEFAULT_MESSAGE)
    if message:
        print(f"you: {message}")
        printer = Printer(message_count(client, thread_id) + 1)  # +1: our own message
        for part in client.runs.stream(thread_id, "agent", stream_mode=STREAM, input={
                "messages": [{"role": "user", "content": message}]}):
            printer.part(part.event, part.data)
        printer.done()

    decided = False
    while (asked := pending_approval(client, thread_id)) is not None:
        if decided and asked.get("error"):  # approve() refused our answer and asks again
            print(f"client: the decision was refused: {asked['error']}", file=sys.stderr)
            return 2
        request = asked["request"]
        print(f"[approval {asked['approval_id']}] {request['tool']} "
              f"{json.dumps(request['args'])} waits for {asked.get('assignee') or 'a decision'}")
        decision = decision_of(args, request)
        if decision is None:
            print(f"paused; the thread waits on the server. Decide later with:\n  python "
                  f"examples/chat_service/client.py --url {args.url} --thread-id {thread_id} "
                  f"--approve|--reject|--edit-amount USD")
            return 0
        print(f"[decision] {decision['action']} by {decision['by']} (via {args.via})")
        printer = Printer(message_count(client, thread_id))
        if args.via == "command":
            stream = client.runs.stream(thread_id, "agent", stream_mode=STREAM,
                                        command={"resume": decision})
        else:
            try:
                queued = client.http.post(f"/approvals/{asked['approval_id']}/decide",
                                          json=decision)
            except APIStatusError as exc:
                detail = (exc.body or {}).get("detail") if isinstance(exc.body, dict) else exc
                print(f"client: the inbox refused the decision ({exc.status_code}): {detail}",
                      file=sys.stderr)
                return 2
            run = queued["run"]
            print(f"  queued run {run['run_id']} (status {run['status']})")
            stream = client.runs.join_stream(thread_id, run["run_id"], stream_mode=STREAM)
        for part in stream:
            printer.part(part.event, part.data)
        printer.done()
        decided = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
