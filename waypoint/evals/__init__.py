"""Evals: measure an agent graph on a labelled dataset, locally and in CI.

    from waypoint.evals import load_dataset, run_eval

    report = run_eval(graph, load_dataset("evals/triage.jsonl"), scorers=["fields", "path"])
    print(report.score, report.to_markdown())

Each row runs as its own durable thread, so an eval killed half-way continues where it
stopped; see docs/evals.md. The engine never imports this package: evals sit on top.
"""

from .dataset import EvalCase, load_dataset
from .judge import LLMJudge, Verdict
from .outcome import RowOutcome
from .pytest_helper import assert_eval
from .report import EvalReport, ReportComparison, RowChange, RowResult, compare_reports
from .runner import arun_eval, run_eval
from .scorers import SCORERS, Score, Scorer

__all__ = [
    "SCORERS",
    "EvalCase",
    "EvalReport",
    "LLMJudge",
    "ReportComparison",
    "RowChange",
    "RowOutcome",
    "RowResult",
    "Score",
    "Scorer",
    "Verdict",
    "arun_eval",
    "assert_eval",
    "compare_reports",
    "load_dataset",
    "run_eval",
]
