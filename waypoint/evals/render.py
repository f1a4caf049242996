"""Reports for people: markdown (a CI job summary, a PR comment) and one HTML page.

Both show the total, a row table, and for every row not fully right a diff of expected
against got. Everything from the dataset or the graph is escaped: a state may hold any
text, and a report page must not run it.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import EvalReport, RowResult


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or " "


def _problem(row: RowResult) -> str:
    notes = []
    if row.error:
        notes.append(f"error: {row.error}")
    if row.interrupted:
        notes.append("still waiting at an interrupt")
    if row.detail:
        notes.append(row.detail)
    return "; ".join(notes)


def markdown(report: EvalReport) -> str:
    lines = [f"# Eval `{report.name}`", "",
             f"**Score: {report.score:.3f}** over {report.n} rows "
             f"(scorers: {', '.join(report.scorers)}; {len(report.errors)} failed; "
             f"{report.seconds:.1f}s)", "",
             "| id | score | detail | seconds |", "|---|---:|---|---:|"]
    for row in report.rows:
        lines.append(f"| {_cell(row.id)} | {_score(row.score)} | {_cell(_problem(row)[:200])} "
                     f"| {row.seconds:.2f} |")
    bad = [r for r in report.rows if not r.perfect]
    if bad:
        lines += ["", "## Rows not fully right"]
        for row in bad:
            lines += ["", f"### {_cell(row.id)} — {_score(row.score)}"]
            if row.error:
                error = row.error.replace("`", "'")
                lines += ["", f"Error: `{error}`"]
            diff = row.diff()
            if diff:
                lines += ["", "| what | expected | got |", "|---|---|---|"]
                lines += [f"| {_cell(w)} | {_cell(e)} | {_cell(g)} |" for w, e, g in diff]
            if row.detail:
                lines += ["", _cell(row.detail)]
    return "\n".join(lines) + "\n"


_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d2330}
h1{font-size:1.4em}table{border-collapse:collapse;margin:1em 0;width:100%}
th,td{border:1px solid #d5d9e0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{background:#fff4f2}tr.mid td{background:#fffbea}
code,pre{font:12px ui-monospace,monospace;white-space:pre-wrap;word-break:break-word}
.exp{color:#116329}.got{color:#a40e26}.total{font-size:1.2em}
"""


def _row_class(row: RowResult) -> str:
    if row.error is not None or (row.score is not None and row.score < 0.5):
        return "bad"
    return "" if row.perfect else "mid"


def html_page(report: EvalReport) -> str:
    """A self-contained page (no scripts, no outside resources)."""
    e = html.escape
    out = ["<!doctype html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>Eval {e(report.name)}</title><style>{_STYLE}</style></head><body>",
           f"<h1>Eval {e(report.name)}</h1>",
           f"<p class=\"total\"><b>Score {report.score:.3f}</b> over {report.n} rows</p>",
           f"<p>Scorers: {e(', '.join(report.scorers))} · {len(report.errors)} failed · "
           f"started {e(report.started_at)} · {report.seconds:.1f}s</p>",
           "<table><thead><tr><th>id</th><th>tags</th><th>score</th><th>scores</th>"
           "<th>detail</th><th>seconds</th></tr></thead><tbody>"]
    for row in report.rows:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in row.scores.items())
        out.append(f"<tr class=\"{_row_class(row)}\"><td><code>{e(row.id)}</code></td>"
                   f"<td>{e(', '.join(row.tags))}</td><td class=\"num\">{_score(row.score)}</td>"
                   f"<td>{e(scores)}</td><td>{e(_problem(row))}</td>"
                   f"<td class=\"num\">{row.seconds:.2f}</td></tr>")
    out.append("</tbody></table>")
    bad = [r for r in report.rows if not r.perfect]
    if bad:
        out.append("<h2>Rows not fully right</h2>")
    for row in bad:
        out.append(f"<h3><code>{e(row.id)}</code> — {_score(row.score)}</h3>")
        if row.error:
            out.append(f"<p class=\"got\">Error: <code>{e(row.error)}</code></p>")
        diff = row.diff()
        if diff:
            out.append("<table><thead><tr><th>what</th><th>expected</th><th>got</th></tr>"
                       "</thead><tbody>")
            out += [f"<tr><td><code>{e(w)}</code></td><td class=\"exp\"><pre>{e(x)}</pre></td>"
                    f"<td class=\"got\"><pre>{e(g)}</pre></td></tr>" for w, x, g in diff]
            out.append("</tbody></table>")
        if row.detail:
            out.append(f"<p>{e(row.detail)}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
