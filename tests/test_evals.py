"""waypoint.evals: datasets, scorers, durable (resumable) runs, reports, CLI, pytest helper."""

from __future__ import annotations

import json
import sys
import textwrap
from collections import Counter
from operator import add
from typing import Annotated, TypedDict

import pytest

from waypoint import END, START, MessagesState, StateGraph, interrupt
from waypoint.checkpoint import MemorySaver, SqliteSaver
from waypoint.cli import main as cli_main
from waypoint.evals import (
    SCORERS,
    EvalCase,
    EvalReport,
    LLMJudge,
    RowOutcome,
    Score,
    arun_eval,
    assert_eval,
    compare_reports,
    load_dataset,
    run_eval,
)
from waypoint.messages import AIMessage
from waypoint.models.scripted import ScriptedModel

RAN: Counter[str] = Counter()  # node executions, to prove what a resumed eval does not redo
FLAKY: set[str] = set()  # texts whose `refund` node fails on its first attempt


@pytest.fixture(autouse=True)
def _reset():
    RAN.clear()
    FLAKY.clear()


class Ticket(TypedDict, total=False):
    text: str
    label: str
    confidence: float
    refunded: bool


def classify(state: Ticket) -> dict:
    RAN["classify"] += 1
    text = state["text"]
    label = "billing" if "charge" in text else "tech" if "crash" in text else "other"
    return {"label": label, "confidence": 0.82 if label != "other" else 0.4}


def refund(state: Ticket) -> dict:
    RAN["refund"] += 1
    if state["text"] in FLAKY:
        FLAKY.discard(state["text"])
        raise RuntimeError("payment service down")
    return {"refunded": True}


def triage_graph(checkpointer=None):
    builder = StateGraph(Ticket)
    builder.add_node("classify", classify)
    builder.add_node("refund", refund)
    builder.add_edge(START, "classify")
    builder.add_conditional_edges("classify", lambda s: "refund" if s["label"] == "billing"
                                  else END, ["refund", END])
    builder.add_edge("refund", END)
    return builder.compile(checkpointer=checkpointer)


class Approval(TypedDict, total=False):
    request: str
    answers: Annotated[list, add]
    approved: bool


def approve(state: Approval) -> dict:
    RAN["approve"] += 1
    first = interrupt({"question": f"approve {state['request']}?"})
    if state["request"] == "twice":
        second = interrupt({"question": "really?"})
        return {"answers": [first, second], "approved": first == second == "yes"}
    return {"answers": [first], "approved": first == "yes"}


def approval_graph(checkpointer=None):
    builder = StateGraph(Approval)
    builder.add_node("approve", approve)
    builder.add_edge(START, "approve")
    builder.add_edge("approve", END)
    return builder.compile(checkpointer=checkpointer)


def tool_graph():
    def agent(state):
        city = state["messages"][-1].content.split()[-1]
        return {"messages": [AIMessage("", tool_calls=[
            {"name": "lookup", "args": {"city": city, "units": "C"}, "id": "c1"}])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    return builder.compile()


ROWS = [
    {"id": "charge", "input": {"text": "double charge"}, "tags": ["billing"],
     "expected": {"label": "billing", "refunded": True},
     "expected_path": ["classify", "refund"]},
    {"id": "crash", "input": {"text": "app crash"}, "expected": {"label": "tech"},
     "expected_path": ["classify"]},
    {"id": "wrong", "input": {"text": "hello"}, "expected": {"label": "tech"},
     "expected_path": ["classify", "refund"]},
    {"id": "charge2", "input": {"text": "charge again"}, "expected": {"label": "billing"}},
]


def write_rows(path, rows=ROWS):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


# -- datasets ------------------------------------------------------------------------------


def test_dataset_rows_defaults_and_extras(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"input": {"text": "a"}, "expected": {"label": "x"}}\n\n'
                    '{"id": 7, "input": {}, "tags": ["t"], "resume": [true], "rubric": "r",'
                    ' "tolerance": {"abs": 0.5}, "expected_tools": [{"name": "f"}]}\n')
    first, second = load_dataset(path)
    assert (first.id, first.input, first.expected, first.line) == ("1", {"text": "a"},
                                                                   {"label": "x"}, 1)
    assert (second.id, second.tags, second.resume, second.rubric) == ("7", ["t"], [True], "r")
    assert second.tolerance == {"abs": 0.5} and second.expected == {} and second.line == 3


@pytest.mark.parametrize("lines, problem", [
    (['{"input": {}}', '{"input": {}', '{"input": {}}'], "line 2: not valid JSON"),
    (['{"input": {}}', '{"expected": {}}'], "line 2: missing 'input'"),
    (['{"id": "a", "input": {}}', '{"id": "a", "input": {}}'], "duplicate id 'a'"),
    (['{"input": {}, "expect": {}}'], "line 1: unknown key(s) 'expect'"),
    (['{"input": {}, "tolerance": -1}'], "'tolerance' must be"),
    (['{"input": {}, "expected_path": "a"}'], "'expected_path' must be an array"),
    (['{"input": {}, "expected_tools": [{"args": {}}]}'], "'expected_tools'[0]"),
    (['[1, 2]'], "line 1: a row must be a JSON object"),
])
def test_dataset_errors_name_file_and_line(tmp_path, lines, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines))
    with pytest.raises(ValueError) as caught:
        load_dataset(path)
    assert problem in str(caught.value) and "bad.jsonl" in str(caught.value)


# -- scorers -------------------------------------------------------------------------------


def test_fields_path_and_run_score(tmp_path):
    report = run_eval(triage_graph(), write_rows(tmp_path / "triage.jsonl"),
                      scorers=["fields", "path"])
    assert report.name == "triage" and report.n == 4
    rows = {r.id: r for r in report.rows}
    assert rows["charge"].score == 1.0 and rows["charge"].scores == {"fields": 1.0, "path": 1.0}
    wrong = rows["wrong"]
    assert wrong.scores["fields"] == 0.0 and wrong.scores["path"] == 0.5  # LCS 1 / 2
    assert 'label: expected "tech", got "other"' in wrong.detail
    assert "expected classify → refund, got classify" in wrong.detail
    assert rows["charge2"].scores == {"fields": 1.0}  # no expected_path: path skipped
    assert report.score == pytest.approx((1 + 1 + 0.25 + 1) / 4)


def test_tools_scorer_matches_names_and_given_args():
    cases = [
        EvalCase("ok", {"messages": [{"role": "user", "content": "weather in Oslo"}]},
                 expected_tools=[{"name": "lookup", "args": {"city": "Oslo"}}]),
        EvalCase("args", {"messages": [{"role": "user", "content": "weather in Rome"}]},
                 expected_tools=[{"name": "lookup", "args": {"city": "Oslo"}}]),
        EvalCase("extra", {"messages": [{"role": "user", "content": "weather in Oslo"}]},
                 expected_tools=[]),
    ]
    report = run_eval(tool_graph(), cases, scorers=["tools"], name="tools")
    rows = {r.id: r for r in report.rows}
    assert rows["ok"].score == 1.0
    assert rows["ok"].tool_calls == [{"name": "lookup", "args": {"city": "Oslo", "units": "C"}}]
    assert rows["args"].score == 0.0 and "missing" in rows["args"].detail
    assert rows["extra"].score == 0.0 and "unexpected" in rows["extra"].detail


def test_numeric_scorer_uses_tolerance():
    cases = [EvalCase("close", {"text": "charge"}, {"confidence": 0.8}, tolerance=0.05),
             EvalCase("far", {"text": "charge"}, {"confidence": 0.8}, tolerance=0.01),
             EvalCase("abs", {"text": "hi"}, {"confidence": 0.5, "label": "other"},
                      tolerance={"abs": 0.11}),
             EvalCase("none", {"text": "hi"}, {"label": "other"})]
    rows = {r.id: r for r in run_eval(triage_graph(), cases, scorers=["numeric"]).rows}
    assert rows["close"].score == 1.0 and rows["far"].score == 0.0
    assert "confidence: expected 0.8, got 0.82" in rows["far"].detail
    assert rows["abs"].score == 1.0
    assert rows["none"].score is None and rows["none"].scores == {}  # nothing numeric


def test_schema_scorer_checks_graph_output_and_row_schema():
    class Out(TypedDict, total=False):
        text: str
        label: str

    builder = StateGraph(Out)
    builder.add_node("label", lambda s: {"label": 5 if s["text"] == "bad" else "ok"})
    builder.add_edge(START, "label")
    graph = builder.compile()
    need = {"type": "object", "required": ["label", "summary"]}
    cases = [EvalCase("good", {"text": "x"}), EvalCase("bad", {"text": "bad"}),
             EvalCase("missing", {"text": "x"}, expected_schema=need)]
    rows = {r.id: r for r in run_eval(graph, cases, scorers=["schema"]).rows}
    assert rows["good"].score == 1.0
    assert rows["bad"].score == 0.0 and "output schema: label" in rows["bad"].detail
    assert rows["missing"].score == 0.0 and "'summary' is a required" in rows["missing"].detail


def test_custom_scorers_by_callable_and_module_path(tmp_path, monkeypatch):
    (tmp_path / "my_eval_scorers.py").write_text(textwrap.dedent("""
        from waypoint.evals import Score

        def confident(case, outcome):
            return Score(1.0 if outcome.values.get("confidence", 0) > 0.5 else 0.0, "conf")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))

    def short_path(case, outcome):
        return 1.0 if len(outcome.path) == 1 else 0.5

    def broken(case, outcome):
        raise KeyError("nope")

    cases = [EvalCase("a", {"text": "crash"}), EvalCase("b", {"text": "charge"})]
    report = run_eval(triage_graph(), cases,
                      scorers=["my_eval_scorers:confident", short_path, broken])
    assert report.scorers == ["my_eval_scorers:confident", "short_path", "broken"]
    a, b = report.rows
    assert a.scores == {"my_eval_scorers:confident": 1.0, "short_path": 1.0, "broken": 0.0}
    assert b.scores["short_path"] == 0.5 and "scorer failed: KeyError" in b.detail
    with pytest.raises(ValueError, match="unknown scorer 'colour'"):
        run_eval(triage_graph(), cases, scorers=["colour"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Score(1.5)


def test_llm_judge_with_scripted_model():
    model = ScriptedModel([{"score": 4, "reason": "close enough"},
                           {"score": 1, "reason": "wrong team"}])
    judge = LLMJudge(model, rubric="The label names the right team.")
    cases = [EvalCase("a", {"text": "charge"}, {"label": "billing"}, rubric="Billing wins."),
             EvalCase("b", {"text": "hi"}, {"label": "tech"}),
             EvalCase("skip", {"text": "hi"})]
    report = run_eval(triage_graph(), cases, scorers=[judge])
    rows = {r.id: r for r in report.rows}
    assert rows["a"].score == 0.75 and "4/5: close enough" in rows["a"].detail
    assert rows["b"].score == 0.0
    assert rows["skip"].score is not None  # the judge has its own rubric: it grades
    first = model.requests[0].messages[-1].content
    assert "Billing wins." in first and '"billing"' in first
    second = model.requests[1].messages[-1].content
    assert "The label names the right team." in second
    assert LLMJudge(model)(EvalCase("x", {}), RowOutcome()) is None  # nothing to grade
    assert set(SCORERS) >= {"fields", "path", "tools", "schema", "numeric", "judge"}


# -- running -------------------------------------------------------------------------------


def test_concurrency_gives_the_same_result(tmp_path):
    path = write_rows(tmp_path / "triage.jsonl", ROWS * 1 + [
        {**r, "id": f"{r['id']}-again"} for r in ROWS])
    one = run_eval(triage_graph(), path, scorers=["fields", "path"])
    four = run_eval(triage_graph(), path, scorers=["fields", "path"], concurrency=4)
    assert [(r.id, r.score, r.scores, r.values) for r in one.rows] == \
        [(r.id, r.score, r.scores, r.values) for r in four.rows]


async def test_arun_eval_runs_async_nodes_concurrently():
    async def shout(state: Ticket) -> dict:
        return {"label": state["text"].upper()}

    builder = StateGraph(Ticket)
    builder.add_node("shout", shout)
    builder.add_edge(START, "shout")
    cases = [EvalCase(str(i), {"text": t}, {"label": t.upper()}) for i, t in
             enumerate(["a", "b", "c"])] + [EvalCase("x", {"text": "x"}, {"label": "nope"})]
    seen = []
    report = await arun_eval(builder.compile(), cases, concurrency=3,
                             progress=lambda done, total, row: seen.append((done, total)))
    assert [r.score for r in report.rows] == [1.0, 1.0, 1.0, 0.0]
    assert sorted(seen) == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_a_failing_row_is_recorded_and_the_eval_goes_on():
    FLAKY.add("double charge")
    graph = triage_graph()
    report = run_eval(graph, ROWS, scorers=["fields", "path"], name="t")
    rows = {r.id: r for r in report.rows}
    assert rows["charge"].score == 0.0 and "payment service down" in rows["charge"].error
    assert rows["charge"].scores == {"fields": 0.0, "path": 0.0}
    assert rows["crash"].score == 1.0
    assert graph.checkpointer is None  # the caller's graph was not changed


def test_killed_eval_resumes_without_rerunning_finished_rows(tmp_path):
    db = str(tmp_path / "evals.db")
    FLAKY.add("charge again")  # row charge2 fails in `refund` on the first run
    with SqliteSaver.from_conn_string(db) as saver:
        first = run_eval(triage_graph, ROWS[:2] + ROWS[3:], checkpointer=saver, name="tri")
    assert {r.id: r.error is None for r in first.rows} == {"charge": True, "crash": True,
                                                         "charge2": False}
    assert RAN == {"classify": 3, "refund": 2}
    with SqliteSaver.from_conn_string(db) as saver:  # a new process on the same file
        second = run_eval(triage_graph, ROWS, checkpointer=saver, name="tri",
                          scorers=["fields", "path"])
    # only `wrong` ran from scratch; charge2 continued at `refund` (classify not redone)
    assert RAN == {"classify": 4, "refund": 3}
    rows = {r.id: r for r in second.rows}
    assert rows["charge"].reused and rows["charge"].score == 1.0
    assert rows["charge"].path == ["classify", "refund"]
    assert not rows["charge2"].reused and rows["charge2"].error is None
    assert rows["charge2"].score == 1.0
    with SqliteSaver.from_conn_string(db) as saver:
        run_eval(triage_graph, ROWS, checkpointer=saver, name="tri", fresh=True)
    assert RAN["classify"] == 8  # --fresh: every row again


def test_resume_values_answer_interrupts_in_order(tmp_path):
    cases = [EvalCase("yes", {"request": "a"}, {"approved": True}, resume=["yes"],
                      expected_path=["approve"]),
             EvalCase("no", {"request": "b"}, {"approved": False}, resume=["no"]),
             EvalCase("waits", {"request": "c"}, {"approved": True}),
             EvalCase("twice", {"request": "twice"}, {"answers": ["yes", "yes"]},
                      resume=["yes", "yes"]),
             EvalCase("null", {"request": "n"}, {"answers": [None]}, resume=[None])]
    report = run_eval(approval_graph(), cases, scorers=["fields", "path"])
    rows = {r.id: r for r in report.rows}
    assert rows["yes"].score == 1.0 and not rows["yes"].interrupted
    assert rows["no"].score == 1.0
    assert rows["waits"].interrupted and rows["waits"].score == 0.0
    assert rows["twice"].score == 1.0
    assert rows["null"].score == 1.0
    assert RAN["approve"] == 2 + 2 + 1 + 3 + 2  # one run per stop, and one to finish


def test_resume_values_continue_after_a_restart(tmp_path):
    db = str(tmp_path / "evals.db")
    with SqliteSaver.from_conn_string(db) as saver:  # stopped after the first answer
        first = run_eval(approval_graph, [EvalCase("t", {"request": "twice"},
                                                   resume=["yes"])],
                         checkpointer=saver, name="ap")
    assert first.rows[0].interrupted
    with SqliteSaver.from_conn_string(db) as saver:  # restarted with both answers
        second = run_eval(approval_graph, [EvalCase("t", {"request": "twice"},
                                                    {"answers": ["yes", "no"]},
                                                    resume=["yes", "no"])],
                          checkpointer=saver, name="ap")
    row = second.rows[0]
    assert not row.interrupted and row.values["answers"] == ["yes", "no"]  # "yes" not re-fed
    assert row.score == 1.0


def test_target_factory_receives_the_checkpointer():
    saver = MemorySaver()
    got = []

    def factory(checkpointer):
        got.append(checkpointer)
        return triage_graph(checkpointer)

    run_eval(factory, ROWS[:1], checkpointer=saver, name="f")
    assert got == [saver]
    assert saver.get_tuple({"configurable": {"thread_id": "eval:f:charge"}}) is not None
    with pytest.raises(TypeError, match="compiled graph"):
        run_eval(lambda: 42, ROWS[:1])


# -- reports -------------------------------------------------------------------------------


def test_reports_json_markdown_html(tmp_path):
    rows = [*ROWS, {"id": "<b>x</b>", "input": {"text": "hi"},
                    "expected": {"label": "<script>alert(1)</script>"}}]
    report = run_eval(triage_graph(), write_rows(tmp_path / "t.jsonl", rows))
    data = report.to_json()
    assert set(data) == {"name", "score", "n", "scorers", "rows", "started_at", "seconds"}
    assert data["n"] == 5 and data["scorers"] == ["fields"]
    back = EvalReport.from_json(report.write_json(tmp_path / "out" / "r.json"))
    assert back.score == report.score and back.row("wrong").values["label"] == "other"
    md = report.to_markdown()
    assert f"**Score: {report.score:.3f}**" in md
    assert "| label | \"tech\" | \"other\" |" in md and "### wrong" in md
    page = report.to_html()
    assert page.startswith("<!doctype html>") and "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "charge2" in page and "Rows not fully right" in page


def test_compare_reports_finds_worse_and_better_rows():
    old = run_eval(triage_graph(), ROWS, name="c")
    FLAKY.add("double charge")
    changed = [dict(r) for r in ROWS]
    changed[2]["expected"] = {"label": "other"}  # `wrong` is now right
    new = run_eval(triage_graph(), [*changed, {"id": "new", "input": {"text": "x"}}], name="c")
    diff = compare_reports(old, new)
    assert [c.id for c in diff.worse] == ["charge"] and "payment" in diff.worse[0].detail
    assert [(c.id, c.old, c.new) for c in diff.better] == [("wrong", 0.0, 1.0)]
    assert diff.added == ["new"] and diff.regressed


# -- pytest helper and CLI -----------------------------------------------------------------


def test_assert_eval_passes_and_fails(tmp_path):
    path = write_rows(tmp_path / "triage.jsonl")
    report = assert_eval(triage_graph(), path, min_score=0.7)
    assert report.score == 0.75
    with pytest.raises(AssertionError) as caught:
        assert_eval(triage_graph(), path, min_score=0.9, scorers=["fields", "path"])
    text = str(caught.value)
    assert "below min_score 0.900" in text and "wrong [0.250]" in text
    assert 'expected "tech", got "other"' in text


CLI_GRAPHS = """
from typing import TypedDict

from waypoint import END, START, StateGraph


class Ticket(TypedDict, total=False):
    text: str
    label: str
    refunded: bool


def classify(state):
    text = state["text"]
    return {"label": "billing" if "charge" in text else "tech" if "crash" in text else "other"}


def make(checkpointer=None):
    builder = StateGraph(Ticket)
    builder.add_node("classify", classify)
    builder.add_node("refund", lambda state: {"refunded": True})
    builder.add_edge(START, "classify")
    builder.add_conditional_edges("classify", lambda s: "refund" if s["label"] == "billing"
                                  else END, ["refund", END])
    builder.add_edge("refund", END)
    return builder.compile(checkpointer=checkpointer)


graph = make()
"""


@pytest.fixture
def cli_graph(tmp_path, monkeypatch):
    """A module `eval_cli_graphs` on sys.path (the triage graph and its factory), the
    working directory in tmp_path, and the triage dataset; returns the dataset's path."""
    (tmp_path / "eval_cli_graphs.py").write_text(CLI_GRAPHS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "eval_cli_graphs", raising=False)
    return write_rows(tmp_path / "triage.jsonl")


def test_cli_min_score_json_and_compare(cli_graph, tmp_path, capsys):
    out = tmp_path / "report.json"
    base = ["eval", "--graph", "eval_cli_graphs:make", "--dataset", str(cli_graph)]
    assert cli_main([*base, "--min-score", "0.7", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "score 0.750 over 4 rows" in printed and "wrong" in printed
    data = json.loads(out.read_text())
    assert data["name"] == "triage" and data["score"] == 0.75 and len(data["rows"]) == 4
    assert (tmp_path / ".waypoint" / "evals.db").exists()  # the default --db
    assert cli_main([*base, "--min-score", "0.9"]) == 1
    printed = capsys.readouterr().out
    assert "below --min-score 0.900" in printed
    assert "4 row(s) were scored from finished threads" in printed  # resumed, not re-run
    worse = [dict(r) for r in ROWS]
    worse[1]["expected"] = {"label": "billing"}  # `crash` now fails
    write_rows(cli_graph, worse)
    assert cli_main([*base, "--scorer", "fields,path", "--compare", str(out), "--fresh",
                     "--markdown", str(tmp_path / "r.md"), "--html",
                     str(tmp_path / "r.html")]) == 0
    printed = capsys.readouterr().out
    assert "rows that got worse" in printed and "crash" in printed
    assert "better: wrong (0.000 → 0.250)" in printed
    assert (tmp_path / "r.md").read_text().startswith("# Eval `triage`")
    assert cli_main([*base, "--tag", "billing", "--json", str(out)]) == 0
    assert [r["id"] for r in json.loads(out.read_text())["rows"]] == ["charge"]


@pytest.mark.parametrize("args, message", [
    (["--dataset", "missing.jsonl"], "no dataset file"),
    (["--graph", "no_such_module_xyz:graph"], "cannot import"),
    (["--graph", "eval_cli_graphs:nothing"], "no attribute"),
    (["--scorer", "colour"], "unknown scorer"),
    (["--compare", "old.json"], "no report file"),
    (["--tag", "nope"], "no row"),
])
def test_cli_bad_input_exits_2_with_a_message(cli_graph, capsys, args, message):
    base = {"--graph": "eval_cli_graphs:graph", "--dataset": str(cli_graph)}
    extra = []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in base:
            base[flag] = value
        else:
            extra += [flag, value]
    argv = ["eval", *[x for pair in base.items() for x in pair], *extra]
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err + captured.out
    assert "Traceback" not in captured.err + captured.out
