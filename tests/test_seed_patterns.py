"""Workflow patterns users asked for, each as a small real graph with assertions.

Re-expressed from the seed material: a bounded writer/reviewer loop, a ticket router with
a fallback, a supervisor driving workers with Command(goto=...), a subgraph used as a node,
a publish gate with a human edit, an interrupt()-based approval, and parallel research in
which one researcher crashes and the run resumes without repeating finished work.
"""

import operator
import threading
import time
import uuid
from collections import Counter
from typing import Annotated, Literal, TypedDict

import pytest

from waypoint import (
    END,
    START,
    Command,
    GraphRecursionError,
    Send,
    StateGraph,
    interrupt,
)
from waypoint.checkpoint import MemorySaver


def _config(**extra):
    return {"configurable": {"thread_id": f"seed-{uuid.uuid4().hex[:8]}"}, **extra}


# --- writer / reviewer loop with a revision bound ---------------------------------------


class DraftState(TypedDict, total=False):
    draft: str
    revisions: int
    scores: Annotated[list[float], operator.add]
    approved: bool
    published: str
    warning: str


MAX_REVISIONS = 3


def _draft_loop(score_for):
    """write -> review -> (write | publish); score_for(revision) is the reviewer's score."""
    calls = Counter()

    def write(state: DraftState) -> dict:
        calls["write"] += 1
        if "draft" not in state:
            return {"draft": "v0", "revisions": 0}
        n = state["revisions"] + 1
        return {"draft": f"v{n}", "revisions": n}

    def review(state: DraftState) -> dict:
        calls["review"] += 1
        score = score_for(state["revisions"])
        return {"scores": [score], "approved": score >= 0.8}

    def route(state: DraftState) -> Literal["revise", "publish"]:
        if state["approved"] or state["revisions"] >= MAX_REVISIONS:
            return "publish"
        return "revise"

    def publish(state: DraftState) -> dict:
        calls["publish"] += 1
        out = {"published": state["draft"]}
        if not state["approved"]:
            out["warning"] = f"published unapproved after {state['revisions']} revisions"
        return out

    g = StateGraph(DraftState)
    g.add_node("write", write)
    g.add_node("review", review)
    g.add_node("publish", publish)
    g.add_edge(START, "write")
    g.add_edge("write", "review")
    g.add_conditional_edges("review", route, {"revise": "write", "publish": "publish"})
    g.add_edge("publish", END)
    return g.compile(), calls


def test_reviewer_that_never_approves_stops_after_three_revisions():
    app, calls = _draft_loop(lambda revision: 0.2)
    out = app.invoke({}, {"recursion_limit": 50})
    assert out["revisions"] == 3
    assert out["published"] == "v3"
    assert out["scores"] == [0.2] * 4
    assert calls == Counter(write=4, review=4, publish=1)
    assert out["warning"] == "published unapproved after 3 revisions"


def test_reviewer_that_approves_the_second_draft_ends_the_loop_early():
    app, calls = _draft_loop(lambda revision: 0.5 if revision == 0 else 0.9)
    out = app.invoke({})
    assert out["revisions"] == 1
    assert out["published"] == "v1"
    assert out["scores"] == [0.5, 0.9]
    assert "warning" not in out
    assert calls == Counter(write=2, review=2, publish=1)


# --- support-ticket router ------------------------------------------------------------


class Ticket(TypedDict, total=False):
    text: str
    label: str
    handled_by: str
    reply: str


KEYWORDS = {"invoice": "billing", "refund": "billing", "error": "technical",
            "crash": "technical", "hours": "general", "legal": "legal"}


def _router():
    def classify(state: Ticket) -> dict:
        words = state["text"].lower().split()
        label = next((KEYWORDS[w] for w in words if w in KEYWORDS), "general")
        return {"label": label}

    def route(state: Ticket) -> str:
        routes = ("billing", "technical", "general")
        return state["label"] if state["label"] in routes else "fallback"

    def handler(name):
        def handle(state: Ticket) -> dict:
            return {"handled_by": name, "reply": f"[{name}] re: {state['text']}"}
        return handle

    g = StateGraph(Ticket)
    g.add_node("classify", classify)
    for name in ("billing_desk", "tech_support", "front_desk", "human_triage"):
        g.add_node(name, handler(name))
        g.add_edge(name, END)
    g.add_edge(START, "classify")
    g.add_conditional_edges(
        "classify",
        route,
        {"billing": "billing_desk", "technical": "tech_support", "general": "front_desk",
         "fallback": "human_triage"},
    )
    return g.compile()


@pytest.mark.parametrize(
    ("text", "label", "desk"),
    [
        ("Wrong amount on my invoice", "billing", "billing_desk"),
        ("App shows an error on login", "technical", "tech_support"),
        ("What are your opening hours", "general", "front_desk"),
        ("Nothing matches here", "general", "front_desk"),
        ("A legal question about my contract", "legal", "human_triage"),
    ],
)
def test_ticket_router(text, label, desk):
    out = _router().invoke({"text": text})
    assert out["label"] == label
    assert out["handled_by"] == desk
    assert out["reply"] == f"[{desk}] re: {text}"


def test_ticket_router_runs_exactly_one_handler():
    app = _router()
    steps = [next(iter(chunk)) for chunk in app.stream({"text": "refund please"},
                                                        stream_mode="updates")]
    assert steps == ["classify", "billing_desk"]


# --- supervisor with Command(goto=...) ------------------------------------------------


class TeamState(TypedDict, total=False):
    task: str
    plan: list[str]
    log: Annotated[list[str], operator.add]
    turns: int
    done_reason: str


WORKERS = ("researcher", "coder", "critic")


def _team(plan_for, max_turns=5):
    calls = Counter()

    def supervisor(state: TeamState) -> Command[Literal["researcher", "coder", "critic",
                                                        "__end__"]]:
        calls["supervisor"] += 1
        turns = state.get("turns", 0)
        pending = plan_for(state)
        if not pending:
            return Command(goto=END, update={"done_reason": "finished"})
        if turns >= max_turns:
            return Command(goto=END, update={"done_reason": "turn limit"})
        return Command(goto=pending[0], update={"turns": turns + 1})

    def worker(name):
        def work(state: TeamState) -> dict:
            calls[name] += 1
            return {"log": [f"{name}:{state['turns']}"]}
        return work

    g = StateGraph(TeamState)
    g.add_node("supervisor", supervisor)
    for name in WORKERS:
        g.add_node(name, worker(name))
        g.add_edge(name, "supervisor")  # every worker reports back
    g.add_edge(START, "supervisor")
    return g.compile(), calls


def _remaining(state):
    done = {entry.split(":")[0] for entry in state.get("log", [])}
    return [w for w in state["plan"] if w not in done]


def test_supervisor_routes_each_worker_then_finishes():
    app, calls = _team(_remaining)
    out = app.invoke({"task": "ship it", "plan": ["researcher", "coder", "critic"]})
    assert out["log"] == ["researcher:1", "coder:2", "critic:3"]
    assert out["done_reason"] == "finished"
    assert calls == Counter(supervisor=4, researcher=1, coder=1, critic=1)


def test_supervisor_is_bounded_by_its_turn_limit():
    app, calls = _team(lambda state: ["coder"], max_turns=4)  # never satisfied
    out = app.invoke({"task": "endless", "plan": []}, {"recursion_limit": 100})
    assert out["done_reason"] == "turn limit"
    assert out["log"] == ["coder:1", "coder:2", "coder:3", "coder:4"]
    assert calls["supervisor"] == 5


def test_unbounded_supervisor_hits_the_recursion_limit():
    app, calls = _team(lambda state: ["critic"], max_turns=10**9)
    with pytest.raises(GraphRecursionError):
        app.invoke({"task": "endless", "plan": []}, {"recursion_limit": 12})
    assert calls["supervisor"] + calls["critic"] == 12


# --- subgraph as a node ---------------------------------------------------------------


class BriefState(TypedDict, total=False):
    topic: str
    angle: str
    findings: list[str]
    brief: str


class TeamInner(TypedDict, total=False):
    topic: str
    findings: list[str]  # shared with the parent: this is how results flow out
    scratch: str  # private to the subgraph


def _research_team(calls):
    def gather(state: TeamInner) -> dict:
        calls["gather"] += 1
        return {"scratch": f"raw data on {state['topic']}"}

    def condense(state: TeamInner) -> dict:
        calls["condense"] += 1
        return {"findings": [f"condensed({state['scratch']})", "second finding"]}

    g = StateGraph(TeamInner)
    g.add_node("gather", gather)
    g.add_node("condense", condense)
    g.add_edge(START, "gather")
    g.add_edge("gather", "condense")
    g.add_edge("condense", END)
    return g.compile()


def _brief_graph(calls=None):
    calls = Counter() if calls is None else calls

    def kickoff(state: BriefState) -> dict:
        return {"angle": f"why {state['topic']} matters"}

    def summarize(state: BriefState) -> dict:
        return {"brief": f"{state['angle']}: " + "; ".join(state["findings"])}

    g = StateGraph(BriefState)
    g.add_node("kickoff", kickoff)
    g.add_node("research_team", _research_team(calls))
    g.add_node("summarize", summarize)
    g.add_edge(START, "kickoff")
    g.add_edge("kickoff", "research_team")
    g.add_edge("research_team", "summarize")
    g.add_edge("summarize", END)
    return g.compile()


def test_compiled_graph_as_a_node():
    calls = Counter()
    out = _brief_graph(calls).invoke({"topic": "heat pumps"})
    assert out["findings"] == ["condensed(raw data on heat pumps)", "second finding"]
    assert out["brief"] == (
        "why heat pumps matters: condensed(raw data on heat pumps); second finding"
    )
    assert "scratch" not in out  # the subgraph's private key stays inside it
    assert calls == Counter(gather=1, condense=1)


def test_subgraph_updates_stream_under_its_namespace():
    seen = []
    for ns, chunk in _brief_graph().stream({"topic": "heat pumps"}, stream_mode="updates",
                                           subgraphs=True):
        seen.append((ns, next(iter(chunk))))
    inner = [node for ns, node in seen if ns]
    assert inner == ["gather", "condense"]
    assert all(ns[0].startswith("research_team:") for ns, _ in seen if ns)
    assert [node for ns, node in seen if not ns] == ["kickoff", "research_team", "summarize"]


# --- publish gate: interrupt_before + human edit ---------------------------------------


class ArticleState(TypedDict, total=False):
    title: str
    body: str
    published: str


def _gated_article(published_log):
    def draft(state: ArticleState) -> dict:
        return {"title": f"Notes on {state['title']}", "body": "body text"}

    def publish(state: ArticleState) -> dict:
        published_log.append(state["title"])
        return {"published": f"{state['title']}\n\n{state['body']}"}

    g = StateGraph(ArticleState)
    g.add_node("draft", draft)
    g.add_node("publish", publish)
    g.add_edge(START, "draft")
    g.add_edge("draft", "publish")
    g.add_edge("publish", END)
    return g.compile(checkpointer=MemorySaver(), interrupt_before=["publish"])


def test_publish_gate_with_human_edit():
    published = []
    app = _gated_article(published)
    config = _config()

    first = app.invoke({"title": "solar"}, config)
    assert "published" not in first
    assert published == []
    snapshot = app.get_state(config)
    assert tuple(snapshot.next) == ("publish",)
    assert snapshot.values["title"] == "Notes on solar"

    app.update_state(config, {"title": "Solar, Revisited"})
    edited = app.get_state(config)
    assert edited.values["title"] == "Solar, Revisited"
    assert tuple(edited.next) == ("publish",)
    assert edited.metadata["source"] == "update"

    final = app.invoke(None, config)
    assert published == ["Solar, Revisited"]
    assert final["published"] == "Solar, Revisited\n\nbody text"
    assert tuple(app.get_state(config).next) == ()


def test_publish_gate_holds_until_resumed_and_runs_publish_once():
    published = []
    app = _gated_article(published)
    config = _config()
    app.invoke({"title": "wind"}, config)
    assert published == []
    app.invoke(None, config)
    app.invoke(None, config)  # nothing left to do
    assert published == ["Notes on wind"]


# --- approval with interrupt() and Command(resume=...) ----------------------------------


class ActionState(TypedDict, total=False):
    action: str
    outcome: str


def _approval_graph(executed):
    def propose(state: ActionState) -> dict:
        return {"action": f"delete {state['action']}"}

    def approve(state: ActionState) -> Command[Literal["execute", "__end__"]]:
        decision = interrupt({"question": "allow?", "action": state["action"]})
        if decision.get("approved"):
            return Command(goto="execute")
        return Command(goto=END, update={"outcome": f"cancelled: {decision.get('why', '')}"})

    def execute(state: ActionState) -> dict:
        executed.append(state["action"])
        return {"outcome": f"done: {state['action']}"}

    g = StateGraph(ActionState)
    g.add_node("propose", propose)
    g.add_node("approve", approve)
    g.add_node("execute", execute)
    g.add_edge(START, "propose")
    g.add_edge("propose", "approve")
    g.add_edge("execute", END)
    return g.compile(checkpointer=MemorySaver())


@pytest.mark.parametrize("approved", [True, False])
def test_interrupt_approval(approved):
    executed = []
    app = _approval_graph(executed)
    config = _config()
    paused = app.invoke({"action": "staging db"}, config)
    pending = paused["__interrupt__"]
    assert len(pending) == 1
    assert pending[0].value == {"question": "allow?", "action": "delete staging db"}
    assert executed == []
    snapshot = app.get_state(config)
    assert tuple(snapshot.next) == ("approve",)
    assert snapshot.tasks[0].interrupts[0].value["action"] == "delete staging db"

    out = app.invoke(Command(resume={"approved": approved, "why": "too risky"}), config)
    if approved:
        assert executed == ["delete staging db"]
        assert out["outcome"] == "done: delete staging db"
    else:
        assert executed == []
        assert out["outcome"] == "cancelled: too risky"
    assert tuple(app.get_state(config).next) == ()


# --- parallel research, one researcher crashes, resume without redoing work -------------


class LabState(TypedDict, total=False):
    topic: str
    questions: list[str]
    results: Annotated[list[str], operator.add]
    report: str


class Assignment(TypedDict):
    question: str


QUESTIONS = ["history", "methods", "datasets", "risks"]
BROKEN = "risks"


def _lab(calls, broken):
    """plan -> research x4 (Send) -> report. broken: set of questions whose node raises."""
    finished = {q: threading.Event() for q in QUESTIONS if q != BROKEN}
    lock = threading.Lock()

    def plan(state: LabState) -> dict:
        return {"questions": list(QUESTIONS)}

    def fan_out(state: LabState) -> list[Send]:
        return [Send("research", {"question": q}) for q in state["questions"]]

    def research(task: Assignment) -> dict:
        q = task["question"]
        with lock:
            calls[q] += 1
        if q in broken:
            # Let concurrently running siblings finish first, so the test can check that
            # their writes survive (a sequential engine runs them first anyway: BROKEN is
            # sent last). The short pause lets an engine that records a task's writes on a
            # worker thread just after the node returns do so. Nothing asserts on timing.
            for event in finished.values():
                event.wait(timeout=5)
            time.sleep(0.05)
            raise ConnectionError(f"source for {q!r} unreachable")
        if q in finished:
            finished[q].set()
        return {"results": [f"{q}: ok"]}

    def report(state: LabState) -> dict:
        calls["report"] += 1
        return {"report": "; ".join(sorted(state["results"]))}

    g = StateGraph(LabState)
    g.add_node("plan", plan)
    g.add_node("research", research)
    g.add_node("report", report)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", fan_out, ["research"])
    g.add_edge("research", "report")
    g.add_edge("report", END)
    return g.compile(checkpointer=MemorySaver())


def test_failing_researcher_keeps_siblings_writes_and_resume_skips_them():
    calls = Counter()
    broken = {BROKEN}
    app = _lab(calls, broken)
    config = _config()

    with pytest.raises(ConnectionError, match="unreachable"):
        app.invoke({"topic": "ocean acidification"}, config)
    assert calls == Counter(history=1, methods=1, datasets=1, risks=1)

    snapshot = app.get_state(config)
    assert "research" in snapshot.next
    research_tasks = [t for t in snapshot.tasks if t.name == "research"]
    assert len(research_tasks) == 4
    failed = [t for t in research_tasks if t.error is not None]
    assert len(failed) == 1
    assert "unreachable" in str(failed[0].error)
    kept = sorted(r for t in research_tasks if t.error is None for r in t.result["results"])
    assert kept == ["datasets: ok", "history: ok", "methods: ok"]

    broken.clear()  # fix the cause, then resume the same thread
    out = app.invoke(None, config)
    assert calls == Counter(history=1, methods=1, datasets=1, risks=2, report=1)
    assert out["report"] == "datasets: ok; history: ok; methods: ok; risks: ok"
    assert tuple(app.get_state(config).next) == ()


def test_parallel_research_without_failures_merges_all_results():
    calls = Counter()
    app = _lab(calls, broken=set())
    out = app.invoke({"topic": "x"}, _config())
    assert sorted(out["results"]) == sorted(f"{q}: ok" for q in QUESTIONS)
    assert calls == Counter(history=1, methods=1, datasets=1, risks=1, report=1)
