"""`run_eval` / `arun_eval`: every row through the graph, scored, into one report.

Rows are independent threads, so they run in parallel (`concurrency`: worker threads for
`run_eval`, tasks on the event loop for `arun_eval`) and a row that fails is recorded
with its error and scored 0 instead of stopping the eval: one broken row must not hide
the other ninety-nine. Re-running an eval on the same checkpointer continues it (see
`outcome.py`); `fresh=True` forgets the stored threads first.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..checkpoint.base import BaseCheckpointSaver
from .dataset import EvalCase, load_dataset
from .outcome import RowOutcome, arun_row, prepare_target, run_row
from .report import EvalReport, RowResult
from .scorers import Scorer, apply_scorers, resolve_scorers

Progress = Callable[[int, int, RowResult], None]  # (rows done, rows in all, the row just done)
Cases = str | os.PathLike[str] | Iterable[EvalCase | dict[str, Any]]


def thread_id_of(name: str, case: EvalCase) -> str:
    return f"eval:{name}:{case.id}"


def _cases(cases: Cases) -> list[EvalCase]:
    if isinstance(cases, (str, os.PathLike)):
        return load_dataset(cases)
    found: list[EvalCase] = []
    for index, item in enumerate(cases, start=1):
        if isinstance(item, EvalCase):
            found.append(item)
        elif isinstance(item, dict):
            try:
                found.append(EvalCase.from_dict(item, default_id=str(index)))
            except ValueError as exc:
                raise ValueError(f"case {index}: {exc}") from None
        else:
            raise TypeError(f"cases must be EvalCase objects, dicts or a dataset path, got "
                            f"{type(item).__name__}")
    ids = [c.id for c in found]
    doubled = sorted({i for i in ids if ids.count(i) > 1})
    if doubled:
        raise ValueError(f"duplicate case id(s): {', '.join(doubled)}")
    return found


def _name(name: str | None, cases: Cases, found: Sequence[EvalCase]) -> str:
    if name:
        return name
    if isinstance(cases, (str, os.PathLike)):
        return Path(cases).stem
    sources = {c.source for c in found if c.source}
    return Path(sources.pop()).stem if len(sources) == 1 else "eval"


def row_result(case: EvalCase, outcome: RowOutcome, scorers: list[tuple[str, Scorer]]
               ) -> RowResult:
    """Score one outcome: the mean of the scorers that applied; a failed row scores 0."""
    if outcome.error is not None:
        scores: dict[str, float] = {name: 0.0 for name, _ in scorers}
        details: dict[str, str] = {}
        score: float | None = 0.0
    else:
        scores, details = apply_scorers(case, outcome, scorers)
        score = sum(scores.values()) / len(scores) if scores else None
    return RowResult(
        id=case.id, tags=list(case.tags), score=score, scores=scores,
        detail="; ".join(f"{name}: {text}" for name, text in details.items()),
        error=outcome.error, seconds=outcome.seconds, values=outcome.values,
        expected=dict(case.expected), expected_path=case.expected_path, path=outcome.path,
        expected_tools=case.expected_tools, tool_calls=outcome.tool_calls,
        interrupted=outcome.interrupted, reused=outcome.reused)


class _Setup:
    """What both runners share: the cases, the graph on its checkpointer, the scorers."""

    def __init__(self, target: Any, cases: Cases, scorers: Any, concurrency: int,
                 checkpointer: BaseCheckpointSaver | None, name: str | None,
                 fresh: bool) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        self.cases = _cases(cases)
        self.name = _name(name, cases, self.cases)
        self.scorers = resolve_scorers(scorers)
        self.graph = prepare_target(target, checkpointer)
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.clock = time.perf_counter()
        if fresh:
            self.graph.saver.delete_threads([self.thread(c) for c in self.cases])

    def thread(self, case: EvalCase) -> str:
        return thread_id_of(self.name, case)

    def report(self, rows: list[RowResult]) -> EvalReport:
        return EvalReport(name=self.name, rows=rows, scorers=[n for n, _ in self.scorers],
                          started_at=self.started_at, seconds=time.perf_counter() - self.clock)


def run_eval(target: Any, cases: Cases, *, scorers: Any = None, concurrency: int = 1,
             checkpointer: BaseCheckpointSaver | None = None, name: str | None = None,
             config: dict[str, Any] | None = None, progress: Progress | None = None,
             fresh: bool = False) -> EvalReport:
    """Run every case through `target` and score it.

    `target`: a compiled graph, or a factory (no parameter, or one taking the
    checkpointer). `cases`: a dataset path or EvalCase objects (or row dicts).
    `scorers`: names (`SCORERS`, or `module:function`), callables, or `{name: callable}`;
    default `fields`. `checkpointer`: where rows' threads live (default: the graph's own,
    else a new MemorySaver); a durable one makes a killed eval resumable. `name` (default:
    the dataset file's stem) names the threads, `eval:<name>:<id>`. `config` is merged
    into every row's run config. `progress(done, total, row)` is called after each row.
    `fresh=True` deletes this eval's stored threads first.
    """
    setup = _Setup(target, cases, scorers, concurrency, checkpointer, name, fresh)
    total = len(setup.cases)
    results: list[RowResult | None] = [None] * total

    def one(case: EvalCase) -> RowResult:
        outcome = run_row(setup.graph, case, setup.thread(case), config)
        return row_result(case, outcome, setup.scorers)

    done = 0
    if concurrency == 1:
        for index, case in enumerate(setup.cases):
            results[index] = one(case)
            done += 1
            if progress is not None:
                progress(done, total, results[index])
    else:
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="waypoint-eval")
        try:
            futures = {pool.submit(one, case): index for index, case in enumerate(setup.cases)}
            for future in as_completed(futures):
                index = futures[future]
                results[index] = future.result()
                done += 1
                if progress is not None:
                    progress(done, total, results[index])
        finally:  # on Ctrl-C: rows not started are dropped (their threads do not exist yet)
            pool.shutdown(wait=True, cancel_futures=True)
    return setup.report([r for r in results if r is not None])


async def arun_eval(target: Any, cases: Cases, *, scorers: Any = None, concurrency: int = 1,
                    checkpointer: BaseCheckpointSaver | None = None, name: str | None = None,
                    config: dict[str, Any] | None = None, progress: Progress | None = None,
                    fresh: bool = False) -> EvalReport:
    """`run_eval` on the event loop: rows run with `ainvoke`, at most `concurrency` at
    once; scorers (a judge's model call) run in worker threads."""
    setup = _Setup(target, cases, scorers, concurrency, checkpointer, name, fresh)
    total = len(setup.cases)
    results: list[RowResult | None] = [None] * total
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(index: int, case: EvalCase) -> None:
        nonlocal done
        async with gate:
            outcome = await arun_row(setup.graph, case, setup.thread(case), config)
            results[index] = await asyncio.to_thread(row_result, case, outcome, setup.scorers)
        done += 1
        if progress is not None:
            progress(done, total, results[index])  # type: ignore[arg-type]

    await asyncio.gather(*(one(i, c) for i, c in enumerate(setup.cases)))
    return setup.report([r for r in results if r is not None])
