#!/usr/bin/env python
"""A resilient model node: primary model, then a fallback, then a person.

    write_update ──► stage_draft ──► publish ──► END
         │ both models failed
         └──► ask_human ──► stage_draft ...

* ``write_update`` turns an engineer's incident notes into a customer-facing status
  update. Its model is a ``Gateway([primary, fallback])``: a transient error (connection
  refused, 429, 5xx) is retried on the same model with exponential backoff, honouring the
  server's retry-after, then the call falls back to the next model. The node's own
  ``RetryPolicy`` tries the whole chain once more after a pause; when that fails too (or a
  model answers with something unusable), its ``error_handler`` sends the run to
  ``ask_human`` instead of failing.
* ``ask_human`` calls ``approve()``: the run stops, durably, until a person writes the
  update (action "respond", checked against a schema) or gives up ("reject").
* ``stage_draft`` saves the update as a draft on the status page: reversible, so the node
  declares ``compensate=delete_draft``.
* ``publish`` e-mails the subscribers: irreversible, so it comes last and runs as an
  ``effect`` (once, whatever re-runs the node). If it fails for good (``--fail-publish``),
  waypoint compensates what came before it: the draft is deleted, nothing half-done stays.

By default the primary model is an OpenAI-compatible endpoint that is down (a closed
loopback port, so the example runs offline) and the fallback is the embedded local model
(``--model local``; ``local-small`` for the 0.5B one). ``--model scripted`` uses a scripted
primary that answers 429 with a retry-after and a scripted fallback; ``--fallback-down``
makes the fallback fail too, so a person is asked.

    python examples/resilient_node.py --model local-small
    python examples/resilient_node.py --fallback-down --answer "Checkout is back to normal."
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, Field

from waypoint import (
    END,
    START,
    Command,
    NodeError,
    PermanentError,
    RetryPolicy,
    StateGraph,
    TimeoutPolicy,
    approve,
    effect,
    get_config,
)
from waypoint.checkpoint import SqliteSaver
from waypoint.messages import HumanMessage, SystemMessage
from waypoint.models import (
    AllModelsFailed,
    ChatModel,
    Gateway,
    ModelConfigError,
    ModelUnavailable,
    RateLimited,
    ScriptedModel,
    UsageLedger,
)

DEFAULT_DB = os.path.join(".waypoint", "resilient.db")
DEFAULT_LOG = os.path.join(".waypoint", "status_page.log")
DEFAULT_NOTES = ("checkout API returned 502 for ~35% of requests from 14:05 to 14:40 UTC. "
                 "cause: bad config push to the payment gateway pool. rolled back 14:38, "
                 "error rate normal since 14:40. no data lost, some orders need a retry.")
# The whole fallback chain is tried twice (a pause of about 2 s between), then a person.
NODE_RETRY = RetryPolicy(initial_interval=2.0, backoff_factor=2.0, max_attempts=2, jitter=True)
NODE_TIMEOUT = TimeoutPolicy(run_timeout=300)  # a cold local model takes a while to load


class StatusUpdate(BaseModel):
    """What the models (or the person standing in for them) must produce."""

    title: str = Field(min_length=5, max_length=80, description="short headline")
    status: Literal["investigating", "monitoring", "resolved"]
    body: str = Field(min_length=20, max_length=600,
                      description="two to four plain sentences for customers: what happened, "
                                  "what they should do, current state")


class IncidentState(TypedDict, total=False):
    notes: str
    sim: dict[str, Any]  # the simulated status page's switches and log file
    update: dict[str, Any]
    written_by: str
    needs_human: bool
    model_errors: list[str]
    draft: dict[str, Any] | None
    sent: dict[str, Any] | None
    outcome: str  # "published" | "abandoned"


WRITE = ("You write customer-facing status page updates from an engineer's incident notes. "
         "Plain words, no internal names, no blame. Say what happened, whether customers "
         "must do anything, and the current state. Answer in JSON.")


# ---------------------------------------------------------------------------------------
# The status page and the mailer: local stand-ins that log what "happened".
# ---------------------------------------------------------------------------------------


class StatusPage:
    """A simulated status page with drafts and a subscriber mailer, logging to `log`."""

    def __init__(self, log: str | Path, thread: str, sim: dict[str, Any]) -> None:
        self.log = Path(log)
        self.thread = thread
        self.sim = sim

    def record(self, event: str, detail: str) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with self.log.open("a", encoding="utf-8") as out:
            out.write(f"{stamp}\t{self.thread}\t{event}\t{detail}\n")

    def create_draft(self, update: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        draft_id = "draft-" + idempotency_key[-8:]
        self.record("draft created", f"{draft_id}: {update['title']}")
        return {"id": draft_id, "thread": self.thread}

    def delete_draft(self, draft: dict[str, Any]) -> None:
        self.record("draft deleted", draft["id"])

    def publish(self, draft: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        if self.sim.get("fail_publish"):
            self.record("publish refused", f"{draft['id']}: mail provider rejected the sender")
            raise PermanentError("mail provider rejected the sender domain (403): "
                                 "nothing was sent")
        self.record("published", f"{draft['id']} e-mailed to 1204 subscribers "
                                 f"(key {idempotency_key})")
        return {"draft": draft["id"], "recipients": 1204}


def read_log(log: str | Path, thread: str | None = None) -> list[list[str]]:
    path = Path(log)
    if not path.exists():
        return []
    rows = [line.split("\t", 3) for line in path.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if len(r) == 4 and (thread is None or r[1] == thread)]


def _page(state: IncidentState, thread: str | None = None) -> StatusPage:
    sim = state.get("sim") or {}
    if thread is None:
        thread = str(get_config()["configurable"]["thread_id"])
    return StatusPage(sim.get("log") or DEFAULT_LOG, thread, sim)


# ---------------------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------------------


def build_graph(model: ChatModel, checkpointer: Any = None, *,
                node_retry: RetryPolicy = NODE_RETRY) -> Any:
    """The compiled graph; `model` is the fallback chain (a Gateway) the node calls."""

    def write_update(state: IncidentState) -> dict:
        answer = model.structured(
            [SystemMessage(WRITE), HumanMessage(f"Incident notes: {state['notes']}")],
            StatusUpdate, max_tokens=300, temperature=0)
        update = {k: v.strip() if isinstance(v, str) else v
                  for k, v in answer.model_dump().items()}
        return {"update": update, "written_by": _answered_by(model),
                "needs_human": False}

    def models_failed(state: IncidentState, error: NodeError) -> Command:
        """The node's error handler: after its retries, hand the job to a person. (A handled
        node's own edges do not fire: the handler routes with Command(goto=...).)"""
        exc = error.error
        if isinstance(exc, AllModelsFailed):  # the last error of each model of the chain
            last = {name: e for name, e in exc.attempts}
            errors = [f"{name}: {type(e).__name__}: {e}" for name, e in last.items()]
        else:  # e.g. an answer that did not fit the schema
            errors = [f"{type(exc).__name__}: {exc}"]
        return Command(update={"needs_human": True, "model_errors": errors},
                       goto="ask_human")

    def ask_human(state: IncidentState) -> dict:
        decision = approve(
            {"task": "The models could not write this status update; please write it.",
             "notes": state["notes"], "errors": state.get("model_errors", [])},
            schema=StatusUpdate, actions=("respond", "reject"), assignee="on-call")
        if decision.action == "reject":
            return {"outcome": "abandoned", "written_by": f"human:{decision.by}"}
        update = decision.edits
        if isinstance(update, BaseModel):
            update = update.model_dump()
        return {"update": update, "written_by": f"human:{decision.by}"}

    def stage_draft(state: IncidentState) -> dict:
        page = _page(state)
        return {"draft": effect("create draft", page.create_draft, state["update"])}

    def delete_draft(state: IncidentState, update: dict) -> None:
        """Compensation of stage_draft (runs outside the node: the draft names its thread)."""
        draft = update["draft"]
        _page(state, draft["thread"]).delete_draft(draft)

    def publish(state: IncidentState) -> dict:
        page = _page(state)
        sent = effect("e-mail subscribers", page.publish, state["draft"])
        return {"sent": sent, "outcome": "published"}

    def after_human(state: IncidentState) -> str:
        return END if state.get("outcome") == "abandoned" else "stage_draft"

    builder = StateGraph(IncidentState)
    builder.add_node("write_update", write_update, retry_policy=node_retry,
                     timeout=NODE_TIMEOUT, error_handler=models_failed)
    builder.add_node("ask_human", ask_human)
    builder.add_node("stage_draft", stage_draft, compensate=delete_draft)
    builder.add_node("publish", publish)
    builder.add_edge(START, "write_update")
    builder.add_edge("write_update", "stage_draft")
    builder.add_conditional_edges("ask_human", after_human, ["stage_draft", END])
    builder.add_edge("stage_draft", "publish")
    builder.add_edge("publish", END)
    return builder.compile(checkpointer=checkpointer, name="resilient_node")


def _answered_by(model: ChatModel) -> str:
    """The model that answered the last call (the gateway's ledger knows)."""
    ledger = getattr(model, "ledger", None)
    records = ledger.records() if ledger is not None else []
    return records[-1].model if records else model.model


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


def closed_port_url() -> str:
    """An OpenAI-style URL on a loopback port nothing listens on: a provider that is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def scripted_writer(request: Any) -> str:
    """The scripted fallback: a plain summary of the notes, as the schema asks."""
    notes = request.messages[-1].content.partition(": ")[2]
    first = notes.split(". ")[0].strip().rstrip(".")
    return json.dumps({
        "title": "Checkout errors earlier today",
        "status": "resolved",
        "body": f"Between 14:05 and 14:40 UTC some checkout requests failed ({first[:120]}). "
                "The change that caused it was rolled back and checkout works normally "
                "again. If an order failed, please place it again.",
    })


def scripted_models(*, fallback_down: bool = False) -> tuple[ScriptedModel, ScriptedModel]:
    """A primary that is rate limited (429, retry after 1.5 s) then unavailable (503), and
    a fallback that answers (or is unavailable too)."""
    primary = ScriptedModel([RateLimited("429 Too Many Requests", model="primary-gpt",
                                         status=429, retry_after=1.5),
                             ModelUnavailable("503 Service Unavailable", model="primary-gpt",
                                              status=503)],
                            model="primary-gpt", cycle=True)
    fallback: list[Any] = [ModelUnavailable("connection refused", model="fallback")] \
        if fallback_down else [scripted_writer]
    return primary, ScriptedModel(fallback, model="fallback-scripted", cycle=True)


def make_model(kind: str, *, primary_url: str | None = None, fallback_down: bool = False,
               base_url: str | None = None, model_name: str | None = None,
               ledger: UsageLedger | None = None, sleep: Callable[[float], None] | None = None,
               retries: int = 2, backoff: float = 0.5) -> Gateway:
    """The node's model: Gateway([primary, fallback]) with retries and backoff (`sleep`
    is how the gateway waits between retries; tests pass a recorder)."""
    from waypoint.models import OpenAICompatible

    if kind == "scripted":
        primary, fallback = scripted_models(fallback_down=fallback_down)
    else:
        primary = OpenAICompatible(primary_url or closed_port_url(), "gpt-4o-mini",
                                   api_key=os.environ.get("OPENAI_API_KEY"), timeout=30)
        if fallback_down:
            fallback = OpenAICompatible(closed_port_url(), "backup-model", timeout=30)
        elif kind == "openai":
            if not base_url:
                raise SystemExit("resilient_node: --model openai needs --base-url")
            fallback = OpenAICompatible(base_url, model_name or "default",
                                        api_key=os.environ.get("OPENAI_API_KEY"))
        else:
            from waypoint.models import LocalModel

            name = "qwen2.5-coder-0.5b" if kind == "local-small" else "qwen2.5-coder-1.5b"
            fallback = LocalModel(name)
    return Gateway([primary, fallback], retries=retries, backoff=backoff, max_backoff=5.0,
                   ledger=ledger, sleep=sleep or time.sleep)


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def _print_progress(mode: str, chunk: Any) -> None:
    if mode == "tasks" and "retry" in chunk:
        r = chunk["retry"]
        print(f"[retry] {r['node']}: attempt {r['attempt']} failed ({r['error'][:140]}), "
              f"next attempt in {r['delay']:.1f} s")
    elif mode == "tasks" and "effect" in chunk:
        e = chunk["effect"]
        print(f"[effect] {e['effect']} {e['status']}")
    elif mode == "updates":
        for node, update in chunk.items():
            if node == "__interrupt__" or not isinstance(update, dict):
                continue
            if update.get("needs_human"):
                print(f"[handled] {node}: every model failed, asking a person")
            elif node in ("write_update", "ask_human") and update.get("update"):
                print(f"[done] {node}: written by {update['written_by']}")
            else:
                print(f"[done] {node}")


def _run(app: Any, inputs: Any, config: dict) -> int:
    try:
        for mode, chunk in app.stream(inputs, config, stream_mode=["updates", "tasks"]):
            _print_progress(mode, chunk)
    except Exception as exc:
        print(f"[failed] {type(exc).__name__}: {exc}")
        summary = getattr(exc, "compensation", None)
        if summary is not None:
            print(f"[compensated] {', '.join(summary['compensated']) or 'nothing'}")
        return 1
    return 0


def _human_answer(args: argparse.Namespace) -> dict[str, Any] | None:
    text = args.answer
    if text is None and sys.stdin is not None and sys.stdin.isatty():
        text = input("Write the status update (empty = decide later, '-' = give up): ").strip()
        if not text:
            return None
    if text is None:
        return None
    if text == "-":
        return {"action": "reject", "by": args.by}
    edits = {"title": args.title, "status": args.status, "body": text}
    return {"action": "respond", "by": args.by, "edits": edits}


def _show(app: Any, config: dict, thread: str) -> None:
    state = app.get_state(config)
    values = state.values
    print()
    if values.get("update"):
        u = values["update"]
        print(f"[{u['status']}] {u['title']}\n  {u['body']}\n  (written by "
              f"{values.get('written_by')})")
    print(f"outcome: {values.get('outcome') or 'failed'}")
    compensation = (state.metadata or {}).get("compensation")
    if compensation:
        print(f"compensated: {', '.join(compensation['compensated']) or 'nothing'}")
    log = (values.get("sim") or {}).get("log") or DEFAULT_LOG
    rows = read_log(log, thread)
    if rows:
        print(f"what happened ({log}):")
        for row in rows:
            print(f"  {row[2]:<16} {row[3]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", default=DEFAULT_NOTES, help="the engineer's incident notes")
    parser.add_argument(
        "--model", choices=("local", "local-small", "openai", "scripted"),
        default=os.environ.get("WAYPOINT_MODEL", "local"),
        help="the fallback model: local (Qwen2.5-Coder-1.5B, default), local-small (0.5B), "
             "openai (--base-url), scripted (no model; the primary is scripted too)")
    parser.add_argument("--primary-url", default=None,
                        help="the primary's OpenAI-compatible URL (default: a closed port)")
    parser.add_argument("--base-url", default=os.environ.get("WAYPOINT_MODEL_URL"))
    parser.add_argument("--model-name", default=os.environ.get("WAYPOINT_MODEL_NAME"))
    parser.add_argument("--fallback-down", action="store_true",
                        help="the fallback is unreachable too: a person is asked")
    parser.add_argument("--answer", default=None,
                        help="the person's status update body when asked ('-' gives up)")
    parser.add_argument("--title", default="Checkout errors earlier today",
                        help="title of the person's update (with --answer)")
    parser.add_argument("--status", default="resolved",
                        choices=("investigating", "monitoring", "resolved"))
    parser.add_argument("--by", default=os.environ.get("USER") or "cli")
    parser.add_argument("--fail-publish", action="store_true",
                        help="the mail provider refuses: the draft is deleted again")
    parser.add_argument("--thread-id", default=None, help="resume this thread")
    parser.add_argument("--db", default=DEFAULT_DB, help="SQLite checkpoints (%(default)s)")
    parser.add_argument("--log", default=DEFAULT_LOG,
                        help="where the status page logs what happened (%(default)s)")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # progress lines in order, even through a pipe
        sys.stdout.reconfigure(line_buffering=True)
    logging.basicConfig(format="[gateway] %(message)s")
    logging.getLogger("waypoint.models.gateway").setLevel(logging.WARNING)

    if os.path.dirname(args.db):
        os.makedirs(os.path.dirname(args.db), exist_ok=True)
    try:
        model = make_model(args.model, primary_url=args.primary_url,
                           fallback_down=args.fallback_down, base_url=args.base_url,
                           model_name=args.model_name)
    except ModelConfigError as exc:  # e.g. the local model's weights are not installed
        print(f"resilient_node: {exc}", file=sys.stderr)
        return 2
    print(f"models: {' -> '.join(m.model for m in model.models)} -> a person")
    with SqliteSaver.from_conn_string(args.db) as saver:
        app = build_graph(model, saver)
        thread = args.thread_id or f"incident-{uuid.uuid4().hex[:8]}"
        config = {"configurable": {"thread_id": thread}}
        snapshot = app.get_state(config)
        if not snapshot.values:
            print(f"thread {thread}, store {args.db}")
            inputs = {"notes": args.notes,
                      "sim": {"log": str(Path(args.log).resolve()),
                              "fail_publish": args.fail_publish}}
            if _run(app, inputs, config):
                _show(app, config, thread)
                return 1
        elif snapshot.next:
            print(f"resuming thread {thread} (waiting at: {', '.join(snapshot.next)})")
        else:
            print(f"thread {thread} has already finished")
        for item in app.get_state(config).interrupts:
            if isinstance(item.value, dict) and item.value.get("kind") == "approval":
                print("\n[waiting] a person is asked to write the update; the models said:")
                for line in item.value["request"]["errors"]:
                    print(f"  - {line[:160]}")
                answer = _human_answer(args)
                if answer is None:
                    print(f"\nPaused and stored. Answer later with:\n  python "
                          f"examples/resilient_node.py --thread-id {thread} --answer \"...\"")
                    return 0
                if _run(app, Command(resume=answer), config):
                    _show(app, config, thread)
                    return 1
                for again in app.get_state(config).interrupts:  # the answer was refused
                    if isinstance(again.value, dict) and again.value.get("error"):
                        print(f"resilient_node: {again.value['error']}", file=sys.stderr)
                        return 2
                break
        _show(app, config, thread)
    return 0


if __name__ == "__main__":
    sys.exit(main())
