"""API and worker processes on PostgreSQL: queue latency and throughput by worker count.

One `waypoint serve --postgres URL --workers 0` and 1, 2 or 4 `waypoint worker`
processes on a fresh schema. Measured:

- enqueue -> first step: a run's `created_at` (stamped by the API when it commits the row)
  to the moment its first node starts on a worker (the node records `time.time()`), for
  sequential runs; p50 and p99;
- runs/s: `clients` concurrent clients doing `/runs/wait` of a 3-node graph for a while.

There is no LangGraph column: `langgraph dev` has no separate workers to compare with.

    python bench/workers.py [--workers 1,2,4] [--runs 200] [--seconds 10] [--clients 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
PG_URL = os.environ.get("WAYPOINT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
GRAPH_MODULE = '''
import time
from typing import TypedDict
from waypoint import StateGraph, START, END

class S(TypedDict, total=False):
    x: int
    started_at: float

def first(state):
    return {"started_at": time.time(), "x": state.get("x", 0) + 1}

def bump(state):
    return {"x": state["x"] + 1}

b = StateGraph(S)
b.add_node("a", first)
b.add_node("b", bump)
b.add_node("c", bump)
b.add_edge(START, "a")
b.add_edge("a", "b")
b.add_edge("b", "c")
b.add_edge("c", END)
graph = b.compile()
'''


@contextmanager
def schema() -> Any:
    import psycopg

    name = "wp_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _spawn(args: list[str], cwd: Path, ready: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "waypoint.cli", *args], cwd=cwd,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    deadline = time.time() + 60
    for line in proc.stderr:
        if ready in line:
            return proc, line
        if time.time() > deadline:
            break
    proc.kill()
    raise RuntimeError(f"{args[0]} did not start")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def latency(url: str, runs: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(runs):
            run = http.post("/runs/wait", json={"assistant_id": "bench", "input": {"x": 0},
                                                "on_completion": "keep"})
            created = run.headers.get("Content-Location", "")
            values = run.json()
            meta = http.get(created).json()
            out.append(values["started_at"] - _epoch(meta["created_at"]))
    return out


async def throughput(url: str, seconds: float, clients: int) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while time.perf_counter() < stop:
                answer = await http.post("/runs/wait", json={"assistant_id": "bench",
                                                             "input": {"x": 0}})
                if answer.status_code == 200 and answer.json().get("x") == 3:
                    done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done / (time.perf_counter() - started)


def measure(workers: int, runs: int, seconds: float, clients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, schema() as pg:
        work = Path(tmp)
        (work / "bench_graph.py").write_text(GRAPH_MODULE)
        (work / "langgraph.json").write_text(json.dumps({
            "graphs": {"bench": "./bench_graph.py:graph"},
            "waypoint": {"poll_interval": 1.0}}))
        config = str(work / "langgraph.json")
        api, line = _spawn(["serve", "--config", config, "--postgres", pg, "--workers", "0",
                            "--port", "0", "--log-level", "warning"], work, "waypoint serving")
        url = line.split(" on ")[1].split()[0]
        procs = [_spawn(["worker", "--config", config, "--postgres", pg, "--concurrency",
                         "16", "--log-level", "warning"], work, "waypoint worker")[0]
                 for _ in range(workers)]
        try:
            latency(url, 5)  # warm-up
            delays = sorted(latency(url, runs))
            rate = asyncio.run(throughput(url, seconds, clients))
        finally:
            for proc in procs:
                _stop(proc)
            _stop(api)
    return {"workers": workers, "p50_ms": statistics.median(delays) * 1000,
            "p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))] * 1000,
            "runs_per_s": rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    print("| worker processes | enqueue -> first step p50 | p99 | runs/s (/runs/wait, "
          f"{args.clients} clients) |")
    print("| --- | --- | --- | --- |")
    for count in (int(n) for n in args.workers.split(",")):
        row = measure(count, args.runs, args.seconds, args.clients)
        print(f"| {count} | {row['p50_ms']:.1f} ms | {row['p99_ms']:.1f} ms | "
              f"{row['runs_per_s']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
