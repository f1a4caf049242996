"""`waypoint eval`: run a graph over a labelled dataset, print scores, gate CI on them.

Rows run as threads in a SQLite file (`--db`, default .waypoint/evals.db), so an eval
interrupted by a timeout or Ctrl-C continues where it stopped when run again; `--fresh`
starts over. Bad input (a missing file, a graph that cannot be imported, an unknown
scorer) exits 2 with a message; a score below `--min-score` exits 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .loading import graph_on, open_store

DEFAULT_DB = Path(".waypoint/evals.db")


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, soft_wrap=True).print(Text.assemble(("error: ", "red"), message))
    return typer.Exit(2)


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _load_cases(dataset: Path, tags: list[str]) -> list[Any]:
    from ..evals import load_dataset

    if not dataset.is_file():
        raise _fail(f"no dataset file {dataset}")
    try:
        cases = load_dataset(dataset)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(str(exc)) from None
    if tags:
        cases = [c for c in cases if set(c.tags) & set(tags)]
        if not cases:
            raise _fail(f"no row of {dataset} has tag {', '.join(tags)}")
    return cases


def _scorers(names: list[str]) -> dict[str, Any]:
    from ..evals.scorers import resolve_scorers

    chosen = [n.strip() for item in names for n in item.split(",") if n.strip()] or None
    try:
        return dict(resolve_scorers(chosen))
    except ValueError as exc:
        raise _fail(str(exc)) from None


@contextlib.contextmanager
def _progress(console: Console, total: int) -> Iterator[Any]:
    """A progress bar on a terminal; nothing in CI logs."""
    if not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("eval", total=total)
        yield lambda done, _total, row: bar.update(task, completed=done,
                                                   description=f"eval {row.id}")


def _table(report: Any) -> Table:
    table = Table(title=f"eval {report.name}")
    table.add_column("id")
    table.add_column("score", justify="right")
    table.add_column("detail")
    table.add_column("seconds", justify="right")
    for row in report.rows:
        notes = [f"error: {row.error}"] if row.error else []
        if row.interrupted:
            notes.append("waiting at an interrupt")
        if row.detail:
            notes.append(row.detail)
        detail = "; ".join(notes)
        style = "red" if row.error or (row.score is not None and row.score < 1) else ""
        table.add_row(Text(row.id), Text(_score(row.score), style=style),
                      Text(detail if len(detail) <= 160 else detail[:159] + "…"),
                      f"{row.seconds:.2f}")
    return table


def _print_comparison(console: Console, old: Any, report: Any) -> None:
    from ..evals import compare_reports

    diff = compare_reports(old, report)
    console.print(f"compared with {old.name or 'the old report'}: {diff.old_score:.3f} → "
                  f"{diff.new_score:.3f}")
    if not diff.worse:
        console.print("no row got worse")
    else:
        table = Table(title="rows that got worse")
        for column in ("id", "was", "now", "detail"):
            table.add_column(column, justify="right" if column in ("was", "now") else "left")
        for change in diff.worse:
            table.add_row(Text(change.id), _score(change.old), _score(change.new),
                          Text(change.detail[:160]))
        console.print(table)
    if diff.better:
        console.print("better: " + ", ".join(f"{c.id} ({_score(c.old)} → {_score(c.new)})"
                                             for c in diff.better), highlight=False)


def eval_command(
    graph: str = typer.Option(..., "--graph", "-g", help="MODULE:ATTR of a compiled graph, "
                              "or of a function building one (it may take the checkpointer)."),
    dataset: Path = typer.Option(..., "--dataset", "-d", help="JSONL file: one "
                                 '{"input": ..., "expected": ...} per line.'),
    scorer: list[str] = typer.Option([], "--scorer", "-s", help="fields (default), path, "
                                     "tools, schema, numeric, judge, or module:function "
                                     "(repeat or comma-separate)."),
    min_score: float | None = typer.Option(None, "--min-score", help="Exit 1 when the "
                                           "score is below this (0..1)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON."),
    markdown_out: Path | None = typer.Option(None, "--markdown", help="Write a markdown "
                                             "report (e.g. $GITHUB_STEP_SUMMARY)."),
    html_out: Path | None = typer.Option(None, "--html", help="Write an HTML report."),
    concurrency: int = typer.Option(1, "--concurrency", "-c", min=1, help="Rows run at "
                                    "once."),
    db: str = typer.Option(str(DEFAULT_DB), "--db", help="SQLite file (or postgresql:// "
                           "URL) keeping the rows' threads, so a killed eval resumes."),
    fresh: bool = typer.Option(False, "--fresh", help="Discard this eval's stored threads "
                               "and run every row again."),
    compare: Path | None = typer.Option(None, "--compare", help="An earlier --json report: "
                                        "print the rows that got worse."),
    tag: list[str] = typer.Option([], "--tag", "-t", help="Only rows with this tag "
                                  "(repeatable: any of them)."),
    name: str | None = typer.Option(None, "--name", help="The eval's name in thread ids "
                                    "and reports (default: the dataset's file name)."),
) -> None:
    """Score a graph on a labelled dataset (see docs/evals.md)."""
    from ..evals import EvalReport, run_eval

    cases = _load_cases(dataset, tag)
    old = None
    if compare is not None:
        if not compare.is_file():
            raise _fail(f"no report file {compare}")
        try:
            old = EvalReport.from_json(compare)
        except ValueError as exc:
            raise _fail(str(exc)) from None
    scorers = _scorers(scorer)
    if not db.startswith(("postgresql://", "postgres://")):
        Path(db).parent.mkdir(parents=True, exist_ok=True)
    console = Console(soft_wrap=False)
    with open_store(db) as store:
        try:
            target = graph_on(graph, store)
        except typer.BadParameter as exc:
            raise _fail(exc.message) from None
        except Exception as exc:
            raise _fail(f"cannot build the graph {graph}: {type(exc).__name__}: {exc}"
                        ) from None
        with _progress(console, len(cases)) as progress:
            try:
                report = run_eval(target, cases, scorers=scorers, concurrency=concurrency,
                                  checkpointer=store, name=name or dataset.stem,
                                  progress=progress, fresh=fresh)
            except (TypeError, ValueError) as exc:
                raise _fail(str(exc)) from None
            except KeyboardInterrupt:
                Console(stderr=True).print(f"interrupted: run the same command again to "
                                           f"continue (threads are kept in {db})",
                                           highlight=False)
                raise typer.Exit(130) from None
    console.print(_table(report))
    console.print(f"score {report.score:.3f} over {report.n} rows "
                  f"({len(report.errors)} failed, {report.seconds:.1f}s)", highlight=False)
    reused = sum(1 for row in report.rows if row.reused)
    if reused:
        console.print(f"{reused} row(s) were scored from finished threads in {db} without "
                      f"running again (--fresh runs every row)", highlight=False)
    for path, write in ((json_out, report.write_json),
                        (markdown_out, lambda p: _write(p, report.to_markdown())),
                        (html_out, lambda p: _write(p, report.to_html()))):
        if path is not None:
            write(path)
            console.print(f"wrote {path}", highlight=False)
    if old is not None:
        _print_comparison(console, old, report)
    if min_score is not None and report.score < min_score:
        console.print(f"score {report.score:.3f} is below --min-score {min_score:.3f}",
                      style="red", highlight=False)
        raise typer.Exit(1)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
