"""Every example's eval set, scored by `waypoint eval` on the scripted model (as CI does).

The local-model scores of the same sets are in examples/README.md with the commands that
reproduce them; here the point is that each set runs end to end through the CLI, every
row is scored, and the deterministic stand-ins get every row right.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from waypoint.cli import main

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data"

EVALS = [
    ("examples.support_router:eval_graph", "support_router_eval.jsonl"),
    ("examples.research_pipeline:eval_graph", "research_pipeline_eval.jsonl"),
    ("examples.research_loop:eval_graph", "research_loop_eval.jsonl"),
    ("examples.supervisor:eval_graph", "supervisor_eval.jsonl"),
    ("examples.scatter_gather:eval_graph", "scatter_gather_eval.jsonl"),
    ("examples.triage_confidence:eval_graph", "triage_eval.jsonl"),
    ("examples.rag_router:eval_graph", "rag_router_eval.jsonl"),
]


@pytest.mark.parametrize(("target", "dataset"), EVALS, ids=[d for _, d in EVALS])
def test_example_eval_passes_on_the_scripted_model(target: str, dataset: str, tmp_path,
                                                   monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WAYPOINT_MODEL", "scripted")
    # Three docs, not all of them: embedding the whole corpus takes a minute of CPU, and the
    # scripted model's routes and citations do not depend on which docs are indexed
    # (tests/test_rag_router.py runs the set over the full index).
    monkeypatch.setenv("WAYPOINT_RAG_DB", str(tmp_path / "rag.db"))
    monkeypatch.setenv("WAYPOINT_RAG_FILES", "docs/tools.md,docs/graph-json.md,docs/agents.md")
    report = tmp_path / "report.json"
    code = main(["eval", "--graph", target, "--dataset", str(DATA / dataset),
                 "--db", str(tmp_path / "evals.db"), "--json", str(report),
                 "--min-score", "1.0"])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    result = json.loads(report.read_text())
    rows = [json.loads(line) for line in (DATA / dataset).read_text().splitlines() if line]
    assert result["n"] == len(rows) and result["score"] == 1.0
    assert all(row["error"] is None for row in result["rows"])
