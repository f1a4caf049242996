"""waypoint vs LangGraph benchmark.

    python bench/run.py [--quick] [--only NAME[,NAME...]] [--markdown] [--reference-as-waypoint]
                        [--server]

Both engines are measured in this one process, interleaved (A/B, then B/A, ...), and each
workload reports the median of several repetitions taken after a verified warm-up run.
Progress goes to stderr; the result table goes to stdout. See bench/README.md.

`--server` (or `--only server`) adds bench/server.py: `waypoint serve` next to
`langgraph dev` over HTTP, in server processes it starts itself (opt-in: ~5 minutes,
~1 minute with --quick).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import math
import os
import platform
import statistics
import sys
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import WORKLOADS, Case, Workload

REFERENCE = "LangGraph"
CANDIDATE = "waypoint"

# Targets on the ratio waypoint/LangGraph (None: reported only).
TARGETS: dict[str, float | None] = {
    "chain200": 0.20,
    "chain2000": None,  # its target is flatness, a row of its own
    "loop100": None,
    "fanout1000": 0.33,
    "interrupt100": 0.25,
}
FLATNESS_TARGET = 1.2


@dataclass(frozen=True)
class Settings:
    budget: float  # seconds of timed runs (both engines) aimed at per workload
    min_sample: float  # a sample repeats the call until it lasts at least this long
    min_reps: int
    max_reps: int
    warmups: int  # untimed runs after the verification run


DEFAULT = Settings(budget=20.0, min_sample=0.25, min_reps=5, max_reps=15, warmups=1)
QUICK = Settings(budget=2.5, min_sample=0.08, min_reps=3, max_reps=5, warmups=0)


# ---------------------------------------------------------------- engines


def langgraph_namespace() -> types.SimpleNamespace:
    from langgraph.checkpoint.memory import MemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, Send, interrupt

    return types.SimpleNamespace(
        StateGraph=StateGraph,
        START=START,
        END=END,
        Send=Send,
        Command=Command,
        interrupt=interrupt,
        MemorySaver=MemorySaver,
    )


def waypoint_namespace() -> types.SimpleNamespace:
    from waypoint import END, START, Command, Send, StateGraph, interrupt
    from waypoint.checkpoint import MemorySaver

    return types.SimpleNamespace(
        StateGraph=StateGraph,
        START=START,
        END=END,
        Send=Send,
        Command=Command,
        interrupt=interrupt,
        MemorySaver=MemorySaver,
    )


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------- measuring


class Failure(Exception):
    """A workload could not be measured on one engine; str() is the table text."""


def describe_exception(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" [{Path(last.filename).name}:{last.lineno} in {last.name}]"
    text = f"{type(exc).__name__}: {exc}".strip()
    if len(text) > 160:
        text = text[:157] + "..."
    return text + where


def short(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain_mismatch(got: Any, expected: Any) -> str:
    if isinstance(got, dict) and isinstance(expected, dict):
        missing = [k for k in expected if k not in got]
        extra = [k for k in got if k not in expected]
        if missing:
            return f"wrong result: keys missing {missing}; got {short(got)}"
        if extra:
            return f"wrong result: unexpected keys {extra}; got {short(got)}"
        for key in expected:
            if got[key] != expected[key]:
                return f"wrong result: {key!r} {explain_value(got[key], expected[key])}"
    return f"wrong result: got {short(got)}, expected {short(expected)}"


def explain_value(got: Any, expected: Any) -> str:
    if isinstance(got, list) and isinstance(expected, list):
        for i, (a, b) in enumerate(zip(got, expected, strict=False)):
            if a != b:
                return f"(len {len(got)}, expected {len(expected)}) first differs at [{i}]: " + (
                    f"{short(a, 60)} != expected {short(b, 60)}"
                )
        return f"has length {len(got)}, expected {len(expected)}"
    return f"= {short(got)}, expected {short(expected)}"


def guarded(engine: str, action: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        print(f"\n--- {engine}: {action} raised:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        raise Failure(f"{action} failed: {describe_exception(exc)}") from exc


@dataclass
class Side:
    """One engine's state for one workload."""

    engine: str
    case: Case | None = None
    failure: str | None = None
    single: float = 0.0  # duration of one call, from the warm-up
    inner: int = 1
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def timed_call(case: Case) -> tuple[float, Any]:
    run = case.prepare()
    gc.collect()
    t0 = time.perf_counter()
    out = run()
    return time.perf_counter() - t0, out


def sample(side: Side) -> float:
    """Mean duration of ``side.inner`` calls; set-up (prepare) and gc.collect() not timed.

    Every call starts from a collected heap: without that, the garbage of the previous call
    (e.g. 1,000 finished Send tasks) makes the next call pay for a full collection, which
    roughly doubled fanout1000 in the harness self-check.
    """
    assert side.case is not None
    elapsed = 0.0
    for _ in range(side.inner):
        run = side.case.prepare()
        gc.collect()
        t0 = time.perf_counter()
        run()
        elapsed += time.perf_counter() - t0
        del run
    return elapsed / side.inner


MAX_INNER = 200


def collect_cost() -> float:
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(3):
        gc.collect()
    return max((time.perf_counter() - t0) / 3, 1e-4)


def attempt(side: Side, fn: Callable[[], float], record: bool = False) -> None:
    """Run one timed thing; keep its time (warm-up: as ``single``) or the failure."""
    try:
        elapsed = guarded(side.engine, "run", fn)
    except Failure as exc:
        side.failure = str(exc)
        return
    if record:
        side.samples.append(elapsed)
    else:
        side.single = max(elapsed, 1e-6)


def measure(workload: Workload, engines: dict[str, Any], settings: Settings) -> dict[str, Side]:
    sides = {name: Side(name) for name in engines}
    # 1. Build and verify on every engine.
    for name, ns in engines.items():
        side = sides[name]
        if isinstance(ns, Failure):
            side.failure = str(ns)
            continue
        try:
            gc.collect()
            side.case = guarded(name, "build", lambda ns=ns: workload.factory(ns))
            # Verification run (also the first warm-up).
            elapsed, out = guarded(name, "run", lambda side=side: timed_call(side.case))
            if out != side.case.expected:
                raise Failure(explain_mismatch(out, side.case.expected))
            side.single = max(elapsed, 1e-6)
        except Failure as exc:
            side.failure = str(exc)
            side.case = None
            print(f"  {workload.name}: {name} FAILED: {exc}", file=sys.stderr)

    live = [s for s in sides.values() if s.failure is None]
    if not live:
        return sides
    # 2. Warm up and size the samples. Every call is preceded by an (untimed) gc.collect(),
    # whose cost also bounds how many calls one sample may hold.
    gc_cost = collect_cost()
    try:
        for side in live:
            for _ in range(settings.warmups):
                attempt(side, lambda side=side: timed_call(side.case)[0])
            side.inner = max(
                1,
                min(
                    math.ceil(settings.min_sample / side.single),
                    int(settings.min_sample / gc_cost),
                    MAX_INNER,
                ),
            )
        live = [s for s in live if s.failure is None]
        pair = sum((s.single + gc_cost) * s.inner for s in live)
        reps = max(settings.min_reps, min(settings.max_reps, int(settings.budget / pair)))
        if pair * settings.min_reps > 3 * settings.budget:  # something is very slow
            reps = 3
        if live:
            print(
                f"  {workload.name}: {reps} reps; one call "
                + ", ".join(f"{s.engine} {fmt_time(s.single)} (x{s.inner})" for s in live)
                + f"; gc.collect {fmt_time(gc_cost)}",
                file=sys.stderr,
            )
        # 3. Interleaved repetitions: A,B then B,A, ...
        for rep in range(reps):
            for side in live if rep % 2 == 0 else live[::-1]:
                if side.failure is None:
                    attempt(side, lambda side=side: sample(side), record=True)
    finally:
        for side in sides.values():
            side.case = None  # free graphs and checkpointers before the next workload
        gc.collect()
    return sides
    pair = sum(s.single * s.inner for s in live)
    reps = int(settings.budget / pair)
    reps = max(settings.min_reps, min(settings.max_reps, reps))
    if pair * settings.min_reps > 3 * settings.budget:  # something is very slow: keep it short
        reps = 3
    print(
        f"  {workload.name}: {reps} reps; one call "
        + ", ".join(f"{s.engine} {fmt_time(s.single)} (x{s.inner})" for s in live),
        file=sys.stderr,
    )
    for rep in range(reps):
        order = live if rep % 2 == 0 else live[::-1]
        for side in order:
            if side.failure is not None:
                continue
            try:
                side.samples.append(guarded(side.engine, "run", lambda side=side: sample(side)))
            except Failure as exc:
                side.failure = str(exc)
    for side in sides.values():
        side.case = None  # free graphs and checkpointers before the next workload
    gc.collect()
    return sides


# ---------------------------------------------------------------- reporting


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


@dataclass
class Row:
    label: str
    ref: str
    cand: str
    ratio: str
    target: str
    status: str
    reps: str


def per_unit(side: Side, workload: Workload) -> float | None:
    if side.failure is not None or not side.samples:
        return None
    return side.median / workload.divisor


def cell(side: Side, value: float | None, notes: list[str]) -> str:
    """A time, or ``FAILED [n]`` with the reason kept as footnote n (identical reasons shared)."""
    if value is not None:
        return fmt_time(value)
    reason = f"{side.engine}: {side.failure or 'no samples'}"
    if reason not in notes:
        notes.append(reason)
    return f"FAILED [{notes.index(reason) + 1}]"


def build_rows(results: dict[str, dict[str, Side]], notes: list[str]) -> list[Row]:
    rows: list[Row] = []
    per_step: dict[str, dict[str, float | None]] = {}
    for name, sides in results.items():
        workload = WORKLOADS[name]
        ref, cand = sides[REFERENCE], sides[CANDIDATE]
        r, c = per_unit(ref, workload), per_unit(cand, workload)
        per_step[name] = {REFERENCE: r, CANDIDATE: c}
        ratio = c / r if (r and c is not None) else None
        target = TARGETS[name]
        if target is None:
            target_text = "flatness row" if name == "chain2000" else "reported only"
            status = "-" if ratio is not None else "FAIL"
        else:
            target_text = f"≤ {target:.2f}"
            status = "FAIL" if ratio is None else ("PASS" if ratio <= target else "MISS")
        label = name if workload.divisor == 1 else f"{name} (per {workload.unit})"
        reps = "/".join(f"{len(s.samples)}x{s.inner}" for s in (ref, cand) if s.samples) or "-"
        rows.append(
            Row(
                label,
                cell(ref, r, notes),
                cell(cand, c, notes),
                "-" if ratio is None else f"{ratio:.3f}",
                target_text,
                status,
                reps,
            )
        )
        if name == "chain2000" and "chain200" in per_step:
            flat: dict[str, float | None] = {}
            for engine in (REFERENCE, CANDIDATE):
                small, big = per_step["chain200"][engine], per_step["chain2000"][engine]
                flat[engine] = big / small if (small and big is not None) else None
            fc = flat[CANDIDATE]
            rows.append(
                Row(
                    "chain2000 flatness (2000/200)",
                    "-" if flat[REFERENCE] is None else f"{flat[REFERENCE]:.2f}",
                    "-" if fc is None else f"{fc:.2f}",
                    "-",
                    f"{CANDIDATE} ≤ {FLATNESS_TARGET:.2f}",
                    "FAIL" if fc is None else ("PASS" if fc <= FLATNESS_TARGET else "MISS"),
                    "-",
                )
            )
    return rows


HEADERS = (
    "workload",
    f"{REFERENCE} (median)",
    f"{CANDIDATE} (median)",
    "ratio wp/LG",
    "target",
    "status",
    "reps x calls",
)


def as_cells(row: Row) -> tuple[str, ...]:
    return (row.label, row.ref, row.cand, row.ratio, row.target, row.status, row.reps)


def footnotes(notes: list[str]) -> list[str]:
    return [f"[{n}] {text}" for n, text in enumerate(notes, 1)]


def render_text(rows: list[Row], notes: list[str]) -> str:
    table = [HEADERS, *(as_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    lines = []
    for n, line in enumerate(table):
        lines.append("  ".join(text.ljust(w) for text, w in zip(line, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += footnotes(notes)
    return "\n".join(line.rstrip() for line in lines)


def render_markdown(rows: list[Row], notes: list[str], context: str) -> str:
    def md(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [context, "", md(HEADERS), md(tuple("---" for _ in HEADERS))]
    out += [md(as_cells(r)) for r in rows]
    if notes:
        out += ["", *(f"{line}  " for line in footnotes(notes))]
    return "\n".join(out)


def environment(quick: bool, reference_as_candidate: bool) -> str:
    cand_version = version_of("waypoint")
    if reference_as_candidate:
        cand_version = "replaced by langgraph (harness self-check)"
    parts = [
        f"Python {platform.python_version()} ({platform.python_implementation()})",
        f"{os.cpu_count()} CPUs",
        f"{platform.system()} {platform.machine()}",
        f"date {_dt.datetime.now().astimezone().isoformat(timespec='minutes')}",
        f"langgraph {version_of('langgraph')}",
        f"waypoint {cand_version}",
        "mode quick" if quick else "mode default",
    ]
    return ", ".join(parts)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark waypoint against LangGraph (same graphs, one process).",
        epilog="workloads: " + "; ".join(f"{w.name}: {w.what}" for w in WORKLOADS.values()),
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 30 s)")
    parser.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        help=f"run only these workloads ({', '.join(WORKLOADS)}, server); "
        "chain2000 also runs chain200 so flatness can be computed",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--server",
        action="store_true",
        help="also run bench/server.py: waypoint serve vs langgraph dev over HTTP "
        "(~5 min, ~1 min with --quick); `--only server` runs just that",
    )
    parser.add_argument(
        "--reference-as-waypoint",
        action="store_true",
        help="harness self-check: run LangGraph in the waypoint column too (ratios ~ 1)",
    )
    args = parser.parse_args(argv)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        if "server" in wanted:
            args.server = True
            wanted = [n for n in wanted if n != "server"]
            if not wanted:
                args.selected = []
                return args
        unknown = [n for n in wanted if n not in WORKLOADS]
        if unknown:
            parser.error(f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)}")
        if "chain2000" in wanted and "chain200" not in wanted:
            wanted.insert(0, "chain200")
        args.selected = [n for n in WORKLOADS if n in wanted]
    else:
        args.selected = list(WORKLOADS)
    return args


def load_engine(name: str, loader: Callable[[], Any]) -> Any:
    try:
        return loader()
    except Exception as exc:
        print(f"--- cannot load {name}:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return Failure(f"import failed: {describe_exception(exc)}")


def run_server_bench(args: argparse.Namespace) -> int:
    """bench/server.py, in this process: it starts and stops both servers itself."""
    import server

    argv = (["--quick"] if args.quick else []) + (["--markdown"] if args.markdown else [])
    print(" ".join(["server: bench/server.py", *argv]) + " ...", file=sys.stderr)
    return server.main(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.selected:
        return run_server_bench(args)
    settings = QUICK if args.quick else DEFAULT
    engines = {
        REFERENCE: load_engine(REFERENCE, langgraph_namespace),
        CANDIDATE: load_engine(
            CANDIDATE,
            langgraph_namespace if args.reference_as_waypoint else waypoint_namespace,
        ),
    }
    context = environment(args.quick, args.reference_as_waypoint)
    print(context, file=sys.stderr)
    started = time.perf_counter()
    results: dict[str, dict[str, Side]] = {}
    for name in args.selected:
        print(f"{name} ...", file=sys.stderr)
        results[name] = measure(WORKLOADS[name], engines, settings)
    print(f"done in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    notes: list[str] = []
    rows = build_rows(results, notes)
    if args.markdown:
        print(render_markdown(rows, notes, context))
    else:
        print(context)
        print(render_text(rows, notes))
    failed = any(s.failure for sides in results.values() for s in sides.values())
    if args.server:
        print()
        sys.stdout.flush()
        failed = run_server_bench(args) != 0 or failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
