"""Durable-store benchmarks: waypoint's SQLite/PostgreSQL stores next to LangGraph's savers.

    python bench/stores.py [--quick] [--markdown] [--only NAME[,NAME]] [--pg URL]

Workloads (same graph code on both engines, one process, interleaved repetitions):
  step_sqlite / step_pg  durable cost per super-step of a 50-node chain, next to a bare
                         one-row commit on the same database with the same settings
  size_loop              store size after a 100-iteration write/review loop adding 1 KB
  size_chat              store size per turn of a 200-turn chat with add_messages
  get_state              get_state latency on a chat thread at turn 10 and turn 1,000
  pg_threads             throughput of 50 threads running concurrently on PostgreSQL
"""

from __future__ import annotations

import argparse
import gc
import itertools
import operator
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial
from typing import Annotated, Any, TypedDict

PG_URL = os.environ.get("WAYPOINT_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


class ChainState(TypedDict):
    x: int


class LoopState(TypedDict):
    drafts: Annotated[list, operator.add]
    n: int


def _inc(state: ChainState) -> dict:
    return {"x": state["x"] + 1}


def chain(ns: Any, saver: Any, n: int = 50) -> Any:
    builder = ns.StateGraph(ChainState)
    names = [f"n{i}" for i in range(n)]
    for name in names:
        builder.add_node(name, _inc)
    builder.add_edge(ns.START, names[0])
    for a, b in itertools.pairwise(names):
        builder.add_edge(a, b)
    return builder.compile(checkpointer=saver)


def write_loop(ns: Any, saver: Any, iterations: int = 100) -> Any:
    def write(state: LoopState) -> dict:  # 1 KB of text that compresses like prose, not zeros
        rng = random.Random(state["n"])
        return {"drafts": [rng.randbytes(512).hex()], "n": state["n"] + 1}

    def review(state: LoopState) -> str:
        return ns.END if state["n"] >= iterations else "write"

    builder = ns.StateGraph(LoopState)
    builder.add_node("write", write)
    builder.add_edge(ns.START, "write")
    builder.add_conditional_edges("write", review)
    return builder.compile(checkpointer=saver)


def chat(ns: Any, saver: Any) -> Any:
    def reply(state: dict) -> dict:
        last = state["messages"][-1]
        return {"messages": [{"role": "assistant", "content": f"re: {last.content[:40]} " * 3}]}

    builder = ns.StateGraph(ns.MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(ns.START, "reply")
    return builder.compile(checkpointer=saver)


class Engine:
    """One engine's names, and how it opens its SQLite/PostgreSQL savers."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "waypoint":
            import waypoint
            from waypoint.checkpoint import SqliteSaver

            self.StateGraph = waypoint.StateGraph
            self.START, self.END = waypoint.START, waypoint.END
            self.MessagesState = waypoint.MessagesState
            self._sqlite = SqliteSaver.from_conn_string
            try:
                from waypoint.checkpoint.postgres import PostgresSaver

                self._pg = PostgresSaver.from_conn_string
            except ImportError:
                self._pg = None
        else:
            from langgraph.checkpoint.sqlite import SqliteSaver as LGSqlite
            from langgraph.graph import END, START, MessagesState, StateGraph

            self.StateGraph, self.START, self.END = StateGraph, START, END
            self.MessagesState = MessagesState

            def open_lg_sqlite(path: str) -> Any:
                return LGSqlite.from_conn_string(path)

            self._sqlite = open_lg_sqlite
            try:
                from langgraph.checkpoint.postgres import PostgresSaver as LGPostgres

                self._pg = LGPostgres.from_conn_string
            except ImportError:
                self._pg = None

    def sqlite(self, stack: ExitStack, path: str) -> Any:
        saver = stack.enter_context(self._sqlite(path))
        saver.setup()
        return saver

    def postgres(self, stack: ExitStack, url: str) -> Any:
        if self._pg is None:
            raise RuntimeError(f"{self.name} has no PostgreSQL saver installed")
        saver = stack.enter_context(self._pg(url))
        saver.setup()
        return saver


def _median_time(fn: Callable[[], Any], reps: int) -> float:
    samples = []
    for _ in range(reps):
        gc.collect()
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _db_size(path: str) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    return (pages - free) * size


class BareSqliteCommit:
    """One small row per fsync'd transaction, WAL + synchronous=FULL like the stores."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS bare (id INTEGER PRIMARY KEY, body BLOB)")

    def __call__(self) -> None:  # as many commits as a chain run has steps
        for _ in range(51):
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("INSERT INTO bare (body) VALUES (?)", (b"x" * 200,))
            self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class BarePgCommit:
    """One small row per committed transaction on the same server the stores use."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("CREATE TABLE IF NOT EXISTS waypoint_bench_bare (id bigserial "
                          "PRIMARY KEY, body bytea)")

    def __call__(self) -> None:
        for _ in range(51):
            with self.conn.transaction():
                self.conn.execute("INSERT INTO waypoint_bench_bare (body) VALUES (%s)",
                                  (b"x" * 200,))

    def close(self) -> None:
        self.conn.execute("DROP TABLE waypoint_bench_bare")
        self.conn.close()


def step_cost(engines: list[Engine], kind: str, reps: int, tmp: str) -> dict[str, float]:
    """Seconds per durable super-step of a 50-node chain (sync durability), and of a bare
    one-row commit in waypoint's own database file (same WAL, so the same fsync behaviour:
    a commit that overwrites a warm WAL costs about half of one that grows a new file);
    all three interleaved rep by rep, since fsync latency drifts."""
    with ExitStack() as stack:
        runs: dict[str, Callable[[], None]] = {}
        for engine in engines:
            saver = (engine.sqlite(stack, os.path.join(tmp, f"step-{engine.name}.db"))
                     if kind == "sqlite" else engine.postgres(stack, PG_URL))
            graph = chain(engine, saver)
            kwargs = {"durability": "sync"}

            def run(graph: Any = graph, kwargs: dict = kwargs) -> None:
                config = {"configurable": {"thread_id": str(uuid.uuid4())}}
                graph.invoke({"x": 0}, config, **kwargs)

            runs[engine.name] = run
        bare = (BareSqliteCommit(os.path.join(tmp, "step-waypoint.db")) if kind == "sqlite"
                else BarePgCommit(PG_URL))
        stack.callback(bare.close)
        runs["bare"] = bare
        for fn in runs.values():
            fn()
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for rep in range(reps * 3):
            order = list(runs)[rep % 3:] + list(runs)[:rep % 3]
            for name in order:
                samples[name].append(_median_time(runs[name], 1) / 51)
        return {name: statistics.median(values) for name, values in samples.items()}


def store_sizes(engines: list[Engine], tmp: str) -> dict[str, dict[str, float]]:
    sizes: dict[str, dict[str, float]] = {}
    for engine in engines:
        with ExitStack() as stack:
            path = os.path.join(tmp, f"loop-{engine.name}.db")
            saver = engine.sqlite(stack, path)
            write_loop(engine, saver).invoke(
                {"drafts": [], "n": 0}, {"configurable": {"thread_id": "loop"},
                                         "recursion_limit": 1000})
        loop_bytes = _db_size(path)
        with ExitStack() as stack:
            path = os.path.join(tmp, f"chat-{engine.name}.db")
            saver = engine.sqlite(stack, path)
            graph = chat(engine, saver)
            config = {"configurable": {"thread_id": "chat"}}
            for turn in range(200):
                graph.invoke({"messages": [{"role": "user", "content": f"question {turn} " * 8}]},
                             config)
        chat_bytes = _db_size(path)
        sizes[engine.name] = {"loop_mb": loop_bytes / 1e6,
                              "chat_mb_per_turn": chat_bytes / 1e6 / 200}
    return sizes


def get_state_latency(engines: list[Engine], tmp: str,
                      turns: int) -> dict[str, tuple[float, float, float, float]]:
    """get_state at turn 10 and at the last turn, and for waypoint the floor: decoding that
    turn's state from one stored blob, which any store must pay (it grows with the state)."""
    from waypoint.checkpoint import serde

    out: dict[str, tuple[float, float, float, float]] = {}
    for engine in engines:
        with ExitStack() as stack:
            saver = engine.sqlite(stack, os.path.join(tmp, f"gs-{engine.name}.db"))
            graph = chat(engine, saver)
            config = {"configurable": {"thread_id": "gs"}}
            at: dict[int, float] = {}
            floor: dict[int, float] = {10: 0.0, turns: 0.0}
            for turn in range(1, turns + 1):
                graph.invoke({"messages": [{"role": "user", "content": f"q{turn}"}]}, config)
                if turn in (10, turns):
                    at[turn] = _median_time(partial(graph.get_state, config), 15)
                    if engine.name == "waypoint":
                        blob = serde.dumps(graph.get_state(config).values)
                        floor[turn] = _median_time(partial(serde.loads, blob), 15)
            out[engine.name] = (at[10], at[turns], floor[10], floor[turns])
    return out


def pg_threads(engines: list[Engine], threads: int = 50) -> dict[str, float]:
    """Steps per second with `threads` runs (each a 20-node chain) at once on PostgreSQL."""
    out: dict[str, float] = {}
    for engine in engines:
        with ExitStack() as stack:
            saver = engine.postgres(stack, PG_URL)
            graph = chain(engine, saver, 20)

            def one(_: int, graph: Any = graph) -> None:
                graph.invoke({"x": 0}, {"configurable": {"thread_id": str(uuid.uuid4())}})

            one(0)
            with ThreadPoolExecutor(threads) as pool:
                started = time.perf_counter()
                list(pool.map(one, range(threads)))
                elapsed = time.perf_counter() - started
            out[engine.name] = threads * 21 / elapsed
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--only", default="")
    args = parser.parse_args(argv)
    only = set(filter(None, args.only.split(",")))
    def wanted(name: str) -> bool:
        return not only or name in only

    reps = 3 if args.quick else 7
    engines = [Engine("langgraph"), Engine("waypoint")]
    rows: list[tuple[str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if wanted("step_sqlite"):
            cost = step_cost(engines, "sqlite", reps, tmp)
            bare = cost["bare"]
            rows.append(("SQLite durable step", f"{cost['langgraph']*1e3:.3f} ms",
                         f"{cost['waypoint']*1e3:.3f} ms",
                         f"{cost['waypoint']/bare:.2f} x bare commit ({bare*1e3:.3f} ms); "
                         f"LangGraph {cost['langgraph']/bare:.2f} x", "≤ 1.2 x bare"))
        if wanted("step_pg"):
            try:
                cost = step_cost(engines, "pg", reps, tmp)
                bare = cost["bare"]
                rows.append(("PostgreSQL durable step", f"{cost['langgraph']*1e3:.3f} ms",
                             f"{cost['waypoint']*1e3:.3f} ms",
                             f"{cost['waypoint']/bare:.2f} x bare commit ({bare*1e3:.3f} ms); "
                             f"LangGraph {cost['langgraph']/bare:.2f} x", "≤ 1.2 x bare"))
            except Exception as exc:  # reported, not hidden
                rows.append(("PostgreSQL durable step", "-", "-", f"not run: {exc}", ""))
        if wanted("size_loop") or wanted("size_chat"):
            sizes = store_sizes(engines, tmp)
            rows.append(("store size, 100 x 1 KB loop", f"{sizes['langgraph']['loop_mb']:.2f} MB",
                         f"{sizes['waypoint']['loop_mb']:.3f} MB",
                         f"{sizes['waypoint']['loop_mb']/sizes['langgraph']['loop_mb']:.3f}",
                         "≤ 0.5 MB"))
            rows.append(("store size per chat turn (200 turns)",
                         f"{sizes['langgraph']['chat_mb_per_turn']*1e3:.1f} KB",
                         f"{sizes['waypoint']['chat_mb_per_turn']*1e3:.2f} KB",
                         f"{sizes['waypoint']['chat_mb_per_turn']/sizes['langgraph']['chat_mb_per_turn']:.3f}",
                         "report"))
        if wanted("get_state"):
            turns = 200 if args.quick else 1000
            lat = get_state_latency(engines, tmp, turns)
            rows.append((f"get_state at turn 10 / {turns}",
                         f"{lat['langgraph'][0]*1e3:.2f} / {lat['langgraph'][1]*1e3:.2f} ms",
                         f"{lat['waypoint'][0]*1e3:.2f} / {lat['waypoint'][1]*1e3:.2f} ms",
                         f"growth LG {lat['langgraph'][1]/lat['langgraph'][0]:.1f}x, "
                         f"wp {lat['waypoint'][1]/lat['waypoint'][0]:.1f}x; wp beyond decoding "
                         f"the state itself: {(lat['waypoint'][0]-lat['waypoint'][2])*1e3:.2f}"
                         f" / {(lat['waypoint'][1]-lat['waypoint'][3])*1e3:.2f} ms",
                         "bounded by K deltas"))
        if wanted("pg_threads"):
            try:
                rate = pg_threads(engines)
                rows.append(("PostgreSQL, 50 concurrent threads",
                             f"{rate['langgraph']:.0f} steps/s",
                             f"{rate['waypoint']:.0f} steps/s",
                             f"{rate['waypoint']/rate['langgraph']:.2f} x throughput", "report"))
            except Exception as exc:
                rows.append(("PostgreSQL, 50 concurrent threads", "-", "-", f"not run: {exc}", ""))
    header = ("workload", "LangGraph", "waypoint", "ratio / note", "target")
    if args.markdown:
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"{time.strftime('%Y-%m-%d %H:%M')}")
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + " --- |" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
