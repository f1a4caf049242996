"""The research-pipeline example: its graph in-process and its CLI as a subprocess."""

import importlib.util
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from waypoint.checkpoint import MemorySaver, SqliteSaver

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "research_pipeline.py"


def _load_example():
    name = "research_pipeline_example"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


rp = _load_example()
TOPIC = "tidal power"


def _config():
    return {"configurable": {"thread_id": f"t-{uuid.uuid4().hex[:8]}"}}


def _run_to_gate(**kwargs):
    app = rp.build_graph(checkpointer=MemorySaver(), **kwargs)
    config = _config()
    app.invoke({"topic": TOPIC}, config)
    return app, config


# --- the graph, in-process ---------------------------------------------------------------


def test_plan_fans_out_and_one_failed_researcher_degrades_gracefully():
    app, config = _run_to_gate()
    values = app.get_state(config).values

    assert len(values["subtasks"]) == 4
    failed = values["failed_research"]
    assert len(failed) == 1
    assert failed[0]["subtask"].startswith("Economics: ")
    assert failed[0]["subtask"] in values["subtasks"]
    assert failed[0]["error"].startswith("TimeoutError: ")
    assert "timed out" in failed[0]["error"]
    researched = sorted(f["subtask"] for f in values["findings"])
    assert researched == sorted(s for s in values["subtasks"] if not s.startswith("Economics"))
    assert all(f["source"].startswith("doc-") for f in values["findings"])
    # the draft names the gap instead of hiding it
    assert "## Known gaps" in values["draft"]
    assert "Economics" in values["draft"].split("## Known gaps", 1)[1]


def test_no_outage_means_every_subtask_is_researched():
    app, config = _run_to_gate(outages=())
    values = app.get_state(config).values
    assert len(values["findings"]) == len(values["subtasks"]) == 4
    assert values.get("failed_research", []) == []
    assert "## Known gaps" not in values["draft"]


def test_interrupts_before_publish():
    app, config = _run_to_gate()
    snapshot = app.get_state(config)
    assert tuple(snapshot.next) == ("publish",)
    assert snapshot.values["status"] == "awaiting_approval"
    assert "report" not in snapshot.values
    assert "approval" not in snapshot.values


def test_review_loop_takes_two_rounds_by_default():
    app, config = _run_to_gate()
    values = app.get_state(config).values
    assert [r["revision"] for r in values["reviews"]] == [0, 1]
    assert values["reviews"][0]["score"] < rp.QUALITY_BAR <= values["reviews"][1]["score"]
    assert values["revision_count"] == 1
    assert values["verdict"] == "approved"
    assert values.get("warnings", []) == []
    for marker in ("## Summary", "(source: doc-", "## Known gaps"):
        assert marker in values["draft"]


def test_revision_count_is_bounded_and_best_draft_goes_forward():
    model = rp.scripted_model()
    app, config = _run_to_gate(model=model, quality_bar=0.99)
    snapshot = app.get_state(config)
    values = snapshot.values

    assert tuple(snapshot.next) == ("publish",)
    assert values["revision_count"] == rp.MAX_REVISIONS == 3
    assert [r["revision"] for r in values["reviews"]] == [0, 1, 2, 3]
    assert model.script.jobs.count("WRITE") == 4  # first draft + 3 revisions
    assert model.script.jobs.count("REVIEW") == 4
    assert values["verdict"] == "best_effort"
    scores = [r["score"] for r in values["reviews"]]
    assert scores == sorted(scores)  # feedback only ever makes the draft better
    best = max(values["reviews"], key=lambda r: r["score"])
    assert best["revision"] == 1  # the first of the best drafts
    assert values["score"] == best["score"]
    assert values["draft"] == best["draft"]
    assert len(values["warnings"]) == 1
    assert "after 3 revisions" in values["warnings"][0]


def test_custom_max_revisions():
    app, config = _run_to_gate(quality_bar=0.99, max_revisions=1)
    values = app.get_state(config).values
    assert values["revision_count"] == 1
    assert len(values["reviews"]) == 2
    assert values["verdict"] == "best_effort"


def test_approve_publishes_the_report():
    app, config = _run_to_gate()
    app.update_state(config, {"approval": "approved"})
    app.invoke(None, config)
    snapshot = app.get_state(config)
    values = snapshot.values
    assert tuple(snapshot.next) == ()
    assert values["status"] == "published"
    report = values["report"]
    assert report.startswith("# Tidal power: a research brief\n")
    assert "research coverage: 3/4 subtasks" in report
    assert "failed: Economics" in report
    assert "TimeoutError" in report
    assert "review score: 0.90 after 1 revision(s)" in report


def test_bounded_run_publishes_its_warning():
    app, config = _run_to_gate(quality_bar=0.99)
    app.update_state(config, {"approval": "approved"})
    app.invoke(None, config)
    report = app.get_state(config).values["report"]
    assert "warning: review bar 0.99 not met after 3 revisions" in report


def test_reject_ends_without_publishing():
    app, config = _run_to_gate()
    app.update_state(config, {"approval": "rejected"})
    app.invoke(None, config)
    snapshot = app.get_state(config)
    assert tuple(snapshot.next) == ()
    assert snapshot.values["status"] == "rejected"
    assert snapshot.values["report"] is None


def test_reject_with_a_comment_sends_the_draft_back_to_the_writer():
    app, config = _run_to_gate()
    first = app.get_state(config).values
    app.update_state(config, {"approval": "revise",
                              "human_notes": ["Name the tidal sites you mean."]})
    app.invoke(None, config)
    snapshot = app.get_state(config)
    values = snapshot.values
    assert tuple(snapshot.next) == ("publish",)  # the revision waits for a person again
    assert values["status"] == "awaiting_approval" and values["approval"] == ""
    assert values["revision_count"] == first["revision_count"] + 1
    assert "- addressed: Name the tidal sites you mean." in values["draft"]
    assert values["reviews"][-1]["revision"] == values["revision_count"]
    app.update_state(config, {"approval": "approved"})
    app.invoke(None, config)
    final = app.get_state(config).values
    assert final["status"] == "published"
    assert "## Editor's requests" in final["report"]


def test_after_a_comment_the_bounded_loop_keeps_a_draft_that_addresses_it():
    app, config = _run_to_gate(quality_bar=0.99, max_revisions=1)
    app.update_state(config, {"approval": "revise", "human_notes": ["Shorter, please."]})
    app.invoke(None, config)
    values = app.get_state(config).values
    assert values["verdict"] == "best_effort"
    assert "addressed: Shorter, please." in values["draft"]  # not an older, higher draft


def test_human_title_edit_reaches_the_report():
    app, config = _run_to_gate()
    app.update_state(config, {"title": "Tides, Turbines and Trade-offs", "approval": "approved"})
    app.invoke(None, config)
    report = app.get_state(config).values["report"]
    assert report.startswith("# Tides, Turbines and Trade-offs\n")


def test_stream_reports_progress_and_node_updates():
    app = rp.build_graph(checkpointer=MemorySaver())
    config = _config()
    custom, finished = [], []
    for mode, chunk in app.stream({"topic": TOPIC}, config, stream_mode=["updates", "custom"]):
        if mode == "custom":
            custom.append(chunk)
        else:
            finished.extend(node for node in chunk if node != "__interrupt__")

    researching = [c for c in custom if c.startswith("researching: ")]
    assert len(researching) == 4
    assert any(c.startswith("research failed: Economics") for c in custom)
    assert "writing: first draft" in custom
    assert "writing: revision 1" in custom
    assert finished.count("research") == 4
    assert finished[0] == "plan"
    assert finished[-4:] == ["write", "review", "write", "review"]
    assert "publish" not in finished


def test_interactive_edit_path(monkeypatch, capsys, tmp_path):
    answers = iter(["e", "Edited Title"])
    monkeypatch.setattr(rp, "_stdin_is_interactive", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert rp.main(["--topic", TOPIC, "--quiet", "--model", "scripted",
                    "--db", str(tmp_path / "r.db")]) == 0
    out = capsys.readouterr().out
    assert "# Edited Title\n" in out
    assert "research coverage: 3/4 subtasks" in out


def test_interactive_reject_with_a_comment_asks_again_after_the_revision(monkeypatch, capsys,
                                                                          tmp_path):
    answers = iter(["r", "Add a timeline.", "y"])
    monkeypatch.setattr(rp, "_stdin_is_interactive", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert rp.main(["--topic", TOPIC, "--quiet", "--model", "scripted",
                    "--db", str(tmp_path / "r.db")]) == 0
    out = capsys.readouterr().out
    assert out.count("## Findings") >= 3  # the draft, the revised draft, the report
    assert "- addressed: Add a timeline." in out.rpartition("---")[0]
    assert "research coverage: 3/4 subtasks" in out


def test_interactive_default_answer_rejects(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(rp, "_stdin_is_interactive", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": "")
    assert rp.main(["--topic", TOPIC, "--quiet", "--model", "scripted",
                    "--db", str(tmp_path / "r.db")]) == 0
    assert "not published" in capsys.readouterr().out


# --- the CLI, as a subprocess ------------------------------------------------------------


def _cli(*args, stdin=subprocess.DEVNULL, db=None):
    db = db or os.path.join(tempfile.mkdtemp(prefix="waypoint-demo-"), "research.db")
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--db", str(db), "--model", "scripted", *args],
        cwd=REPO, stdin=stdin, capture_output=True, text=True, timeout=120,
    )


def test_cli_second_run_of_a_paused_thread_resumes_instead_of_starting_over(tmp_path):
    db = str(tmp_path / "research.db")
    with SqliteSaver.from_conn_string(db) as saver:  # another process paused at the gate
        app = rp.build_graph(checkpointer=saver)
        app.invoke({"topic": TOPIC}, {"configurable": {"thread_id": "paused"}})
        assert app.get_state({"configurable": {"thread_id": "paused"}}).next == ("publish",)
    proc = _cli("--approve", "--thread-id", "paused", db=db)
    assert proc.returncode == 0, proc.stderr
    assert "resuming thread paused" in proc.stdout
    assert "[done] plan" not in proc.stdout and "[done] research" not in proc.stdout
    assert "[done] publish (published)" in proc.stdout
    again = _cli("--approve", "--thread-id", "paused", db=db)
    assert again.returncode == 0, again.stderr
    assert "already finished" in again.stdout
    assert "# Tidal power: a research brief" in again.stdout
    assert "[done]" not in again.stdout


def test_cli_approve():
    proc = _cli("--approve", "--topic", TOPIC, "--thread-id", "cli-approve")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "thread: cli-approve" in out
    assert "researching: " in out
    for node in ("plan", "research", "write", "review", "publish"):
        assert f"[done] {node}" in out
    assert "[done] research (FAILED: Economics" in out
    assert "[paused] before publish" in out
    assert out.index("[paused] before publish") < out.index("[done] publish")
    assert "decision: approved" in out
    assert "# Tidal power: a research brief" in out
    assert "research coverage: 3/4 subtasks" in out
    assert "review score: 0.90 after 1 revision(s)" in out
    assert "model usage in this run (scripted-demo): 8 calls" in out
    assert "    | ## Known gaps" in out  # the writer's tokens, streamed as they came


def test_cli_outage_none_and_bad_outage():
    proc = _cli("--approve", "--quiet", "--topic", TOPIC, "--outage", "none")
    assert proc.returncode == 0, proc.stderr
    assert "research coverage: 4/4 subtasks" in proc.stdout
    bad = _cli("--approve", "--outage", "third")
    assert bad.returncode == 2 and "--outage takes subtask numbers" in bad.stderr


def test_cli_reject():
    proc = _cli("--reject", "--topic", TOPIC)
    assert proc.returncode == 0, proc.stderr
    assert "[done] publish (rejected)" in proc.stdout
    assert "not published" in proc.stdout
    assert "research coverage" not in proc.stdout


def test_cli_reject_with_a_comment_revises_and_waits_for_the_next_decision(tmp_path):
    db = str(tmp_path / "research.db")
    proc = _cli("--reject", "--comment", "Cite the 2019 survey.", "--topic", TOPIC,
                "--thread-id", "sent-back", db=db)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "decision: revise, comment 'Cite the 2019 survey.'" in out
    assert "[done] publish (revising)" in out
    assert out.count("[paused] before publish") == 2
    assert "waits for approval: run again with --thread-id sent-back" in out
    approve = _cli("--approve", "--thread-id", "sent-back", db=db)
    assert approve.returncode == 0, approve.stderr
    assert "addressed: Cite the 2019 survey." in approve.stdout
    assert "[done] publish (published)" in approve.stdout


def test_cli_comment_needs_reject():
    proc = _cli("--approve", "--comment", "x")
    assert proc.returncode == 2 and "--comment goes with --reject" in proc.stderr


def test_cli_quiet_prints_only_the_report():
    proc = _cli("--approve", "--quiet", "--topic", TOPIC)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# Tidal power: a research brief\n")
    assert "[done]" not in proc.stdout


def test_cli_refuses_without_a_terminal_or_a_flag():
    proc = _cli("--topic", TOPIC)
    assert proc.returncode != 0
    assert "--approve" in proc.stderr
    assert "[done]" not in proc.stdout


def test_cli_approve_and_reject_are_exclusive():
    proc = _cli("--approve", "--reject")
    assert proc.returncode == 2
    assert "not allowed with" in proc.stderr
