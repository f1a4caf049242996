"""`EvalReport`: an eval's scores, row by row, as data that outlives the run.

A report is written as JSON so that CI can keep it as an artifact and the next run can
be compared with it (`compare_reports`: which rows got worse); markdown and HTML are
renderings of the same data for people (see `render.py`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .normalize import plain, same, short


@dataclass(slots=True)
class RowResult:
    """One row's result: its score (None when no scorer applied), each scorer's value,
    what went wrong in words, and what the row produced beside what was expected."""

    id: str
    tags: list[str] = field(default_factory=list)
    score: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    detail: str = ""
    error: str | None = None
    seconds: float = 0.0
    values: dict[str, Any] = field(default_factory=dict)  # the final state, as JSON data
    expected: dict[str, Any] = field(default_factory=dict)
    expected_path: list[str] | None = None
    path: list[str] = field(default_factory=list)
    expected_tools: list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    reused: bool = False

    @property
    def perfect(self) -> bool:
        return self.error is None and (self.score is None or self.score >= 1.0)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "tags": list(self.tags), "score": self.score,
                "scores": dict(self.scores), "detail": self.detail, "error": self.error,
                "seconds": round(self.seconds, 6), "values": plain(self.values),
                "expected": plain(self.expected), "expected_path": self.expected_path,
                "path": list(self.path), "expected_tools": plain(self.expected_tools),
                "tool_calls": plain(self.tool_calls), "interrupted": self.interrupted,
                "reused": self.reused}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RowResult:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def diff(self) -> list[tuple[str, str, str]]:
        """(what, expected, got) for everything this row got wrong, for the reports."""
        rows: list[tuple[str, str, str]] = []
        got = plain(self.values)
        for key, want in self.expected.items():
            if key not in got:
                rows.append((key, short(want, 400), "(missing)"))
            elif not same(plain(want), got[key]):
                rows.append((key, short(want, 400), short(got[key], 400)))
        if self.expected_path is not None and list(self.expected_path) != list(self.path):
            rows.append(("(path)", " → ".join(self.expected_path) or "(none)",
                         " → ".join(self.path) or "(none)"))
        if self.expected_tools is not None and self.scores.get("tools", 1.0) < 1.0:
            rows.append(("(tools)", short(self.expected_tools, 400),
                         short(self.tool_calls, 400)))
        return rows


@dataclass(slots=True)
class EvalReport:
    """The result of one eval run: `score` is the mean row score, `n` the row count."""

    name: str
    rows: list[RowResult] = field(default_factory=list)
    scorers: list[str] = field(default_factory=list)
    started_at: str = ""
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def score(self) -> float:
        """Mean over the rows that were scored (0.0 when none was)."""
        scored = [r.score for r in self.rows if r.score is not None]
        return sum(scored) / len(scored) if scored else 0.0

    @property
    def errors(self) -> list[RowResult]:
        return [r for r in self.rows if r.error is not None]

    def row(self, row_id: str) -> RowResult:
        for row in self.rows:
            if row.id == row_id:
                return row
        raise KeyError(row_id)

    def worst(self, count: int = 5) -> list[RowResult]:
        """The lowest-scoring imperfect rows, worst first (errors count as 0)."""
        bad = [r for r in self.rows if not r.perfect]
        return sorted(bad, key=lambda r: (r.score if r.score is not None else 0.0, r.id))[:count]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "score": self.score, "n": self.n,
                "scorers": list(self.scorers), "rows": [r.to_json() for r in self.rows],
                "started_at": self.started_at, "seconds": round(self.seconds, 6)}

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n",
                          encoding="utf-8")
        return target

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalReport:
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            raise ValueError("not an eval report: expected an object with 'rows'")
        return cls(name=str(data.get("name", "")),
                   rows=[RowResult.from_json(r) for r in data["rows"]],
                   scorers=list(data.get("scorers") or []),
                   started_at=str(data.get("started_at", "")),
                   seconds=float(data.get("seconds") or 0.0))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> EvalReport:
        """A report written by `write_json` (or `waypoint eval --json`)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON eval report ({exc.msg})") from None
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    def to_markdown(self) -> str:
        from .render import markdown

        return markdown(self)

    def to_html(self) -> str:
        from .render import html_page

        return html_page(self)


@dataclass(frozen=True, slots=True)
class RowChange:
    """A row whose score moved between two reports."""

    id: str
    old: float | None
    new: float | None
    detail: str = ""  # the new run's detail (or error) for the row


@dataclass(slots=True)
class ReportComparison:
    """What changed from `old` to `new`, by row id."""

    old_score: float
    new_score: float
    worse: list[RowChange] = field(default_factory=list)
    better: list[RowChange] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # ids only in the new report
    removed: list[str] = field(default_factory=list)  # ids only in the old report

    @property
    def regressed(self) -> bool:
        return bool(self.worse)


def _effective(row: RowResult) -> float | None:
    return 0.0 if row.error is not None else row.score


def compare_reports(old: EvalReport, new: EvalReport, *, epsilon: float = 1e-9
                    ) -> ReportComparison:
    """Rows that got worse and better (a failed row counts as 0; rows scored in only
    one of the reports are not compared), worst drop first."""
    before = {r.id: r for r in old.rows}
    after = {r.id: r for r in new.rows}
    result = ReportComparison(old.score, new.score,
                              added=[i for i in after if i not in before],
                              removed=[i for i in before if i not in after])
    for row_id, row in after.items():
        if row_id not in before:
            continue
        was, now = _effective(before[row_id]), _effective(row)
        if was is None or now is None:
            continue
        change = RowChange(row_id, was, now, row.error or row.detail)
        if now < was - epsilon:
            result.worse.append(change)
        elif now > was + epsilon:
            result.better.append(change)
    result.worse.sort(key=lambda c: (c.new or 0.0) - (c.old or 0.0))
    result.better.sort(key=lambda c: (c.old or 0.0) - (c.new or 0.0))
    return result
