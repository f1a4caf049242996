"""What tracing costs: chain200 per step with tracing off, on (OTLP/HTTP through a batch
processor to a local receiver), against LangGraph and against waypoint before its
observer hooks existed, all measured in this run.

Each variant runs in its own subprocess (so tracing set up by environment variables, as a
user would, cannot leak into another), several times in alternation to spread the
machine's noise; a variant's figure is the median of its runs' medians.

    python bench/tracing.py [--rounds 5] [--baseline REV] [--markdown]

`--baseline REV` (default: the commit before the hooks, a9269e5) is checked out in a
temporary git worktree and imported from there: "off" within noise of it is the claim
that tracing off costs nothing measurable.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "a9269e5"
STEPS = 200

_SCRIPT = r"""
import json, sys, time, itertools
from typing import TypedDict
engine = sys.argv[1]
if engine == "langgraph":
    from langgraph.graph import StateGraph, START, END
else:
    from waypoint import StateGraph, START, END
class S(TypedDict):
    x: int
def inc(s):
    return {"x": s["x"] + 1}
b = StateGraph(S)
names = [f"n{i}" for i in range(200)]
for n in names:
    b.add_node(n, inc)
b.add_edge(START, names[0])
for a, c in itertools.pairwise(names):
    b.add_edge(a, c)
b.add_edge(names[-1], END)
g = b.compile()
cfg = {"recursion_limit": 300}
for _ in range(5):
    g.invoke({"x": 0}, cfg)
times = []
deadline = time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < deadline or len(times) < 10:
    t = time.perf_counter()
    out = g.invoke({"x": 0}, cfg)
    times.append(time.perf_counter() - t)
    assert out["x"] == 200
print(json.dumps({"per_step_us": sorted(times)[len(times) // 2] / 200 * 1e6,
                  "runs": len(times)}))
"""


class _Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that accepts and counts, decoding nothing."""

    received = 0

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).received += length
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


def _measure(engine: str, env: dict[str, str], seconds: float) -> float:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, engine, str(seconds)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{out.stderr[-2000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["per_step_us"])


def _worktree(rev: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="waypoint-baseline-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--baseline", default=BASELINE, help="git rev before the hooks")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    here = {**clean, "PYTHONPATH": str(ROOT)}
    tree = _worktree(args.baseline)
    variants = {
        "LangGraph": ("langgraph", clean),
        f"waypoint {args.baseline} (before hooks)": ("waypoint", {**clean,
                                                                  "PYTHONPATH": str(tree)}),
        "waypoint, tracing off": ("waypoint", here),
        "waypoint, tracing on (batch, OTLP/HTTP)": ("waypoint", {
            **here, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_SERVICE_NAME": "waypoint-bench"}),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for round_no in range(args.rounds):
            for name, (engine, env) in variants.items():
                results[name].append(_measure(engine, env, args.seconds))
            print(f"round {round_no + 1}/{args.rounds}: " + ", ".join(
                f"{n.split(',')[-1].strip()} {v[-1]:.1f}" for n, v in results.items()),
                file=sys.stderr)
    finally:
        server.shutdown()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                       check=False, capture_output=True)
    medians = {name: statistics.median(values) for name, values in results.items()}
    spread = {name: (min(v), max(v)) for name, v in results.items()}
    reference = medians["LangGraph"]
    before = medians[f"waypoint {args.baseline} (before hooks)"]
    rows = [(name, f"{m:.2f}", f"{spread[name][0]:.2f}-{spread[name][1]:.2f}",
             f"{m / reference:.3f}", f"{m / before:.3f}") for name, m in medians.items()]
    head = ("variant", "µs/step (median)", "range over rounds", "vs LangGraph",
            "vs before hooks")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        for row in [head, *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"\nOTLP bytes received by the local sink: {_Sink.received:,}", file=sys.stderr)
    if _Sink.received == 0:
        print("warning: the traced variant exported nothing", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
