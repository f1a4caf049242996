"""Durable-store benchmarks: waypoint's SQLite/PostgreSQL stores next to LangGraph's savers.

    python bench/stores.py [--quick] [--markdown] [--only NAME[,NAME]] [--no-read-memo]

Workloads (same graph code on both engines, one process, interleaved repetitions):
  step_sqlite / step_pg  durable cost per super-step of a 50-node chain, next to a bare
                         one-row commit on the same database with the same settings
  size_loop              store size after a 100-iteration write/review loop adding 1 KB
  size_chat              store size per turn of a 200-turn chat with add_messages
  get_state              get_state latency on a chat thread at turn 10 and turn 1,000 on
                         SQLite, PostgreSQL and memory (--only get_state, get_state_pg,
                         get_state_memory for one of them); growth = turn 1,000 / turn 10
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

    def memory(self) -> Any:
        if self.name == "waypoint":
            from waypoint.checkpoint import MemorySaver

            return MemorySaver()
        from langgraph.checkpoint.memory import InMemorySaver

        return InMemorySaver()

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


def get_state_latency(engines: list[Engine], tmp: str, turns: int, kind: str = "sqlite",
                      reps: int = 21) -> dict[str, tuple[float, float, float, float]]:
    """get_state on a chat at turn 10 and at turn `turns` (one user + one AI message per
    turn, durability="sync") on `kind` ("sqlite", "pg" or "memory"). Two threads are grown,
    one to 10 turns and one to `turns`, then read alternately rep by rep (medians), so the
    machine's drift hits both alike. For waypoint also the floor a store pays if it decodes
    what it reads: decoding that turn's whole state from one blob (it grows with the
    state; waypoint's read memo avoids paying it again for what a read already decoded)."""
    from waypoint.checkpoint import serde

    out: dict[str, tuple[float, float, float, float]] = {}
    for engine in engines:
        with ExitStack() as stack:
            if kind == "sqlite":
                saver = engine.sqlite(stack, os.path.join(tmp, f"gs-{engine.name}.db"))
            elif kind == "pg":
                saver = engine.postgres(stack, PG_URL)
            else:
                saver = engine.memory()
            graph = chat(engine, saver)
            configs = {}
            for length in (10, turns):
                thread_id = f"bench-gs-{uuid.uuid4().hex[:12]}"
                configs[length] = {"configurable": {"thread_id": thread_id}}
                if kind == "pg":
                    stack.callback(saver.delete_thread, thread_id)
                for turn in range(1, length + 1):
                    graph.invoke({"messages": [{"role": "user", "content": f"q{turn}"}]},
                                 configs[length], durability="sync")
            samples: dict[int, list[float]] = {10: [], turns: []}
            for rep in range(reps):
                for length in ((10, turns) if rep % 2 else (turns, 10)):
                    samples[length].append(_median_time(
                        partial(graph.get_state, configs[length]), 1))
            floor = {10: 0.0, turns: 0.0}
            if engine.name == "waypoint":
                for length in (10, turns):
                    blob = serde.dumps(graph.get_state(configs[length]).values)
                    floor[length] = _median_time(partial(serde.loads, blob), reps)
            out[engine.name] = (statistics.median(samples[10]),
                                statistics.median(samples[turns]), floor[10], floor[turns])
    return out


def get_state_rows(engines: list[Engine], tmp: str, turns: int,
                   kinds: list[str]) -> list[tuple[str, str, str, str, str]]:
    """Table rows of the get_state flatness workload, one per store kind."""
    rows = []
    names = {"sqlite": "SQLite", "pg": "PostgreSQL", "memory": "memory"}
    for kind in kinds:
        label = f"get_state at turn 10 / {turns}, {names[kind]}"
        try:
            lat = get_state_latency(engines, tmp, turns, kind)
        except Exception as exc:  # reported, not hidden
            rows.append((label, "-", "-", f"not run: {exc}", ""))
            continue
        lg, wp = lat["langgraph"], lat["waypoint"]
        rows.append((label, f"{lg[0]*1e3:.2f} / {lg[1]*1e3:.2f} ms",
                     f"{wp[0]*1e3:.2f} / {wp[1]*1e3:.2f} ms",
                     f"growth LG {lg[1]/lg[0]:.1f}x, wp {wp[1]/wp[0]:.2f}x; decoding the "
                     f"whole state once: {wp[2]*1e3:.2f} / {wp[3]*1e3:.2f} ms",
                     "wp growth ≤ 2x"))
    return rows


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
    parser.add_argument("--no-read-memo", action="store_true",
                        help="waypoint with its read memo off (the read path before it)")
    args = parser.parse_args(argv)
    if args.no_read_memo:
        from waypoint.checkpoint import read_cache

        read_cache.configure(max_bytes=0)
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
        if wanted("get_state") or wanted("get_state_pg") or wanted("get_state_memory"):
            turns = 200 if args.quick else 1000
            kinds = ([k for k, name in (("sqlite", "get_state"), ("pg", "get_state_pg"),
                                        ("memory", "get_state_memory")) if name in only]
                     if only else ["sqlite", "pg", "memory"])
            rows.extend(get_state_rows(engines, tmp, turns, kinds))
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
