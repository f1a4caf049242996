"""`assert_eval`: an eval as a pytest test, failing with the rows that brought it down."""

from __future__ import annotations

import os
from typing import Any

from .report import EvalReport
from .runner import run_eval


def failure_message(report: EvalReport, min_score: float, count: int = 5) -> str:
    """What an assertion shows: the score, the bar, and the worst rows with their details."""
    lines = [f"eval {report.name!r} scored {report.score:.3f} over {report.n} rows, below "
             f"min_score {min_score:.3f}; worst rows:"]
    for row in report.worst(count):
        score = "—" if row.score is None else f"{row.score:.3f}"
        why = f"error: {row.error}" if row.error else (row.detail or "(no detail)")
        if row.interrupted:
            why += " (still waiting at an interrupt)"
        lines.append(f"  - {row.id} [{score}]: {why}")
    return "\n".join(lines)


def assert_eval(target: Any, dataset_path: str | os.PathLike[str], *, min_score: float,
                scorers: Any = None, **kw: Any) -> EvalReport:
    """Run the dataset through `target` (see `run_eval` for `scorers` and `**kw`) and
    fail the test when the score is below `min_score`; returns the report to check more."""
    report = run_eval(target, dataset_path, scorers=scorers, **kw)
    if report.score < min_score:
        raise AssertionError(failure_message(report, min_score))
    return report
