"""The seed examples (research_loop, supervisor, scatter_gather) on their scripted models:
the main paths end to end, their command lines, and every row of their labelled eval sets.

The eval loop here is a stand-in for `waypoint eval`: each row's input is invoked on the
example's `eval_graph()` (WAYPOINT_MODEL=scripted) with a MemorySaver attached, its
`resume` values are fed with Command(resume=...) at each interrupt, and each key of
`expected` must equal the final state's.
"""

import importlib
import json
import sys
from pathlib import Path

import pytest

from waypoint import Command
from waypoint.checkpoint import MemorySaver
from waypoint.models import ScriptedModel, StructuredOutputError

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

rl = importlib.import_module("examples.research_loop")
sv = importlib.import_module("examples.supervisor")
sg = importlib.import_module("examples.scatter_gather")

DATA = ROOT / "examples" / "data"


def config(thread: str = "t") -> dict:
    return {"configurable": {"thread_id": thread}}


# -- research_loop ----------------------------------------------------------------------------


def test_research_conflict_pauses_for_review_and_the_pick_is_honoured():
    app = rl.build_graph(rl.model_for("scripted"), checkpointer=MemorySaver())
    out = app.invoke({"question": "When did the Harlow Bridge open?"}, config())
    (question,) = out["__interrupt__"]
    assert question.value["kind"] == "approval"
    claims = question.value["request"]["claims"]
    assert [(c["n"], c["id"]) for c in claims] == [(1, "S1"), (2, "S2")]
    assert "1887" in claims[0]["text"] and "1889" in claims[1]["text"]
    assert app.get_state(config()).next == ("review",)

    final = app.invoke(Command(resume={"action": "respond", "edits": {"pick": 2}}), config())
    assert final["conflict"] is True and final["review_action"] == "respond"
    assert final["picked_source"] == "S2" and final["citations"] == ["S2"]
    assert "1889" in final["answer"] and "1887" not in final["answer"]
    assert final["status"] == "answered"


def test_research_review_re_asks_on_a_pick_out_of_range_and_takes_a_note():
    app = rl.build_graph(rl.model_for("scripted"), checkpointer=MemorySaver())
    app.invoke({"question": "How often does the Brightwater ferry run?"}, config())
    again = app.invoke(Command(resume={"action": "respond", "edits": {"pick": 5}}), config())
    assert "pick 5 is not a claim number" in again["__interrupt__"][0].value["request"]["error"]
    note = "The 2024 timetable replaced the 2021 one."
    final = app.invoke(Command(resume={"action": "respond", "edits": {"note": note}}), config())
    assert final["picked_source"] is None and final["reviewer_note"] == note
    assert note in final["answer"] and set(final["citations"]) == {"S11", "S12"}


def test_research_loop_stops_on_enough_or_at_the_cap():
    app = rl.build_graph(rl.model_for("scripted"), checkpointer=MemorySaver())
    two_hops = app.invoke({"question": "What payload can the drone used by the Tamsin valley "
                                       "survey team carry?"}, config("a"))
    assert two_hops["verdicts"] == ["more", "enough"] and two_hops["stop_reason"] == "enough"
    assert two_hops["searches"][-1] == {"round": 2, "query": "Osprey X payload",
                                        "found": ["S6"]}
    assert "S6" in two_hops["citations"] and "__interrupt__" not in two_hops

    nothing = app.invoke({"question": "What is the population of the Ares Base colony on "
                                      "Mars?", "max_rounds": 2}, config("b"))
    assert nothing["round"] == 2 and nothing["verdicts"] == ["more", "more"]
    assert (nothing["stop_reason"], nothing["status"]) == ("max_rounds", "no_sources")

    always_more = ScriptedModel([
        '{"queries": ["Harlow Bridge"]}',
        *['{"answer": "missing", "next_query": "bridge"}'] * 3,
        '{"claims": [{"id": "S3", "says": "140 metres"}], "conflict": false, "sources": []}',
        "The bridge is 140 metres long [S3].",
    ])
    capped = rl.build_graph(always_more).invoke({"question": "How long is the Harlow Bridge?"})
    assert capped["round"] == 3 and capped["stop_reason"] == "max_rounds"
    assert capped["citations"] == ["S3"]


def test_research_cli_pauses_then_answers_by_thread_id(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "loop.db")
    args = ["--model", "scripted", "--db", db, "--thread-id", "rl-1"]
    assert rl.main(["How deep is Lake Verren?", *args]) == 0
    out = capsys.readouterr().out
    assert "1. [S7]" in out and "2. [S8]" in out and "--thread-id rl-1" in out
    assert rl.main([*args, "--pick", "1"]) == 0
    out = capsys.readouterr().out
    assert "61 metres" in out and "citations: S7" in out and "kept: S7" in out
    assert rl.main(["How long is the Harlow Bridge?", "--model", "scripted", "--db", db,
                    "--quiet"]) == 0
    assert "140 metres" in capsys.readouterr().out


# -- supervisor -------------------------------------------------------------------------------


def test_supervisor_hands_off_in_order_and_sees_the_reports():
    model = sv.model_for("scripted")
    out = sv.build_graph(model).invoke({"task": sv.DEFAULT_TASK})
    assert out["handoffs"] == ["researcher", "analyzer", "writer"]
    assert [d["next"] for d in out["decisions"]] == ["researcher", "analyzer", "writer",
                                                     "FINISH"]
    assert (out["first_worker"], out["last_worker"], out["n_handoffs"]) == (
        "researcher", "writer", 3)
    assert out["stop_reason"] == "finish"
    assert [r["worker"] for r in out["reports"]] == out["handoffs"]
    assert {"S4", "S6"} <= set(out["reports"][0]["sources"])
    assert out["final"] == out["reports"][-1]["text"]
    supervisor_calls = [r for r in model.requests
                        if r.messages[0].content.startswith("SUPERVISE")]
    assert len(supervisor_calls) == 2  # then only the writer, then only FINISH, is open
    assert "(none yet)" in supervisor_calls[0].messages[-1].content
    assert "- researcher: " in supervisor_calls[1].messages[-1].content
    assert [d["options"] for d in out["decisions"]] == [
        ["researcher", "writer"], ["analyzer", "writer"], ["writer"], ["FINISH"]]


def test_supervisor_cap_stops_the_hand_offs():
    capped = sv.build_graph(sv.model_for("scripted")).invoke(
        {"task": sv.DEFAULT_TASK, "max_handoffs": 2})
    assert capped["handoffs"] == ["researcher", "analyzer"]
    assert (capped["stop_reason"], capped["n_handoffs"]) == ("cap", 2)
    assert len(capped["decisions"]) == 2  # the model is not asked past the cap

    one = sv.build_graph(sv.model_for("scripted")).invoke(
        {"task": "Write a welcome note.", "max_handoffs": 1})
    assert (one["handoffs"], one["stop_reason"]) == (["writer"], "cap")


def test_supervisor_offers_only_the_steps_open_now():
    task = {"task": "Compare the Kestrel K2 and the Osprey X."}
    assert sv.open_steps(task) == ["researcher", "writer"]  # no numbers yet: no analyzer
    found = [{"worker": "researcher", "text": "K2: 38 minutes [S4]."}]
    assert sv.open_steps({**task, "reports": found}) == ["analyzer", "writer"]
    assert sv.open_steps({"task": "Average 12 and 18.", "reports": [
        {"worker": w, "text": "20"} for w in sv.WORKERS]}) == ["FINISH"]

    def always_calculate(request):  # supervisor: "calculate" every time; analyzer: "15"
        supervising = request.messages[0].content.startswith("SUPERVISE")
        return '{"next": "calculate", "reason": "numbers"}' if supervising else "15"

    model = ScriptedModel([always_calculate], cycle=True)
    with pytest.raises(StructuredOutputError, match="Route"):  # not offered: refused
        sv.build_graph(model).invoke({"task": "Average 12 and 18."})


def test_supervisor_cli(capsys):
    assert sv.main(["Write a thank-you note to the volunteers", "--model", "scripted"]) == 0
    out = capsys.readouterr().out
    assert "[supervisor] -> writer" in out and "hand-offs: writer (finish)" in out


# -- scatter_gather ---------------------------------------------------------------------------


def test_scatter_docs_file_is_the_generated_corpus():
    on_disk = [json.loads(line) for line in (DATA / "scatter_docs.jsonl").read_text().splitlines()]
    assert on_disk == sg.generate_docs()
    assert len(on_disk) == 50 and {d["topic"] for d in on_disk} == set(sg.TOPICS)


def test_scatter_gather_tolerates_failures_and_retries_the_transient_one():
    app = sg.build_graph(sg.model_for("scripted"), checkpointer=MemorySaver())
    out = app.invoke({}, config())
    assert (out["n_succeeded"], out["n_failed"]) == (46, 4)
    failures = {f["id"]: f for f in out["failures"]}
    assert sorted(failures) == out["failed_ids"] == ["D06", "D19", "D33", "D47"]
    assert failures["D06"]["reason"].startswith("binary content")
    assert failures["D33"]["reason"] == "empty document"
    assert failures["D47"]["reason"] == "truncated: only 3 words"
    assert {f["error"] for f in failures.values()} == {"PermanentError"}
    assert all(f["attempts"] == 1 for f in failures.values())  # permanent: not retried
    attempts = {s["id"]: s["attempts"] for s in out["summaries"]}
    assert attempts["D12"] == 2 and out["retried_ids"] == ["D12"]
    assert sum(attempts.values()) == 47
    retries = [r for snap in app.get_state_history(config())
               for r in snap.metadata.get("retries", [])]
    assert [(r["node"], r["attempt"], r["kind"]) for r in retries] == [
        ("summarise", 1, "transient")]
    assert out["topic_counts"] == {"beekeeping": 10, "coffee": 9, "cycling": 9,
                                   "shipping": 9, "solar": 9}
    succeeded = sorted(attempts)
    assert all(doc_id in out["report"] for doc_id in succeeded)
    assert not any(doc_id in out["report"] for doc_id in out["failed_ids"])


def test_scatter_gather_cli(capsys):
    assert sg.main(["--docs", "12", "--model", "scripted"]) == 0
    out = capsys.readouterr().out
    assert "summarised 11/12 documents" in out
    assert "failed: D06 (PermanentError: binary content" in out
    assert "retried and recovered: D12" in out


# -- the labelled eval sets -------------------------------------------------------------------


def rows(name: str) -> list[dict]:
    lines = (DATA / f"{name}_eval.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def run_row(module, row: dict) -> dict:
    graph = module.eval_graph()
    assert graph.checkpointer is None  # the eval runner attaches one
    graph.checkpointer = MemorySaver()
    cfg = config(row["id"])
    out = graph.invoke(row["input"], cfg)
    for value in row.get("resume", []):
        assert "__interrupt__" in out, f"{row['id']}: no interrupt to resume"
        out = graph.invoke(Command(resume=value), cfg)
    assert "__interrupt__" not in out, f"{row['id']}: still paused"
    return out


@pytest.mark.parametrize("module,name", [(rl, "research_loop"), (sv, "supervisor"),
                                         (sg, "scatter_gather")])
def test_eval_set_on_the_scripted_model(module, name, monkeypatch):
    monkeypatch.setenv("WAYPOINT_MODEL", "scripted")
    dataset = rows(name)
    assert 6 <= len(dataset) <= 12 and len({r["id"] for r in dataset}) == len(dataset)
    for row in dataset:
        out = run_row(module, row)
        got = {key: out.get(key) for key in row["expected"]}
        assert got == row["expected"], row["id"]
