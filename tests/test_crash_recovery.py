"""Crash recovery: SIGKILL a run at a random point, resume it in a new process.

For SQLite and PostgreSQL (memory cannot outlive its process). A child process
(crash_child.py) runs a 40-node chain on a thread; every node records itself in a side file
before returning. The parent kills the child with SIGKILL after a random delay, reads what
the store committed, then runs a new child that resumes the thread with invoke(None) (or
starts it, if nothing was committed) to the end. Trials alternate invoke and ainvoke, and a
few use durability="async" or "exit" (for which less is committed before the kill).

Asserted: the final state equals an uninterrupted run's; every node whose step was committed
before the kill executed exactly once (never again after the resume); each node is committed
exactly once in the final history. Timings only pick kill points; nothing asserts on them.
"""

from __future__ import annotations

import collections
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from crash_child import CHAIN_LENGTH, chain_expected, node_name
from store_backends import PG_URL, Backend, open_store, require

CHILD = str(Path(__file__).with_name("crash_child.py"))
TRIALS = int(os.environ.get("WAYPOINT_CRASH_TRIALS", "12"))  # more: bench/chaos.py
WORKERS = 4
SEED = int(os.environ.get("WAYPOINT_CRASH_SEED", "20240917"))
NODES = [node_name(i) for i in range(CHAIN_LENGTH)]
EXPECTED = chain_expected()
# mostly the default; a few trials commit in the background ("async") or only at the end
DURABILITY = ("sync", "sync", "sync", "async", "sync", "sync", "sync", "exit")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def cfg(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def child_args(kind: str, url: str, thread_id: str, side: Path, mode: str,
               durability: str = "sync") -> list[str]:
    return [sys.executable, CHILD, "chain", kind, url, thread_id, str(side), mode, durability]


def read_line(process: subprocess.Popen, timeout: float = 60) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            process.kill()
            raise AssertionError(f"child printed nothing for {timeout} s")
    return process.stdout.readline()


def committed_nodes(kind: str, url: str, thread_id: str) -> tuple[list[str], int]:
    """Nodes of the committed checkpoints (in chain order), and how many checkpoints."""
    with open_store(kind, url) as store:
        history = list(store.list(cfg(thread_id)))
    ran = [n for t in reversed(history) for n in t.checkpoint.ran if n in EXPECTED["log"]]
    return ran, len(history)


def side_counts(side: Path) -> collections.Counter:
    return collections.Counter(side.read_text().splitlines() if side.exists() else [])


def run_child(kind: str, url: str, thread_id: str, side: Path, mode: str,
              durability: str = "sync") -> float:
    done = subprocess.run(child_args(kind, url, thread_id, side, mode, durability),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"child failed:\n{done.stderr[-3000:]}"
    return float(done.stdout.split("done")[-1])


def trial(kind: str, url: str, thread_id: str, side: Path, mode: str, durability: str,
          delay: float) -> dict[str, Any]:
    process = subprocess.Popen(child_args(kind, url, thread_id, side, mode, durability),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = read_line(process)
        if line.strip() != "ready":
            _, err = process.communicate(timeout=60)
            raise AssertionError(f"first child did not start: {line!r}\n{err[-3000:]}")
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    killed = process.returncode == -signal.SIGKILL
    if not killed:
        assert process.returncode == 0, f"first child failed:\n{err[-3000:]}"

    before, checkpoints = committed_nodes(kind, url, thread_id)
    executed_before = side_counts(side)
    # the committed steps of a chain are a prefix of it, and did execute
    assert before == NODES[: len(before)], before
    assert all(executed_before[n] == 1 for n in before), (before, executed_before)

    run_child(kind, url, thread_id, side, mode, durability)

    counts = side_counts(side)
    after, _ = committed_nodes(kind, url, thread_id)
    with open_store(kind, url) as store:
        final = store.get_tuple(cfg(thread_id))
    problems = []
    if final is None or final.checkpoint.values != EXPECTED:
        problems.append(f"final state {final and final.checkpoint.values!r} != {EXPECTED!r}")
    rerun = sorted(n for n in before if counts[n] != 1)
    if rerun:
        problems.append(f"committed before the kill but executed again: "
                        f"{[(n, counts[n]) for n in rerun]}")
    missing = [n for n in NODES if counts[n] == 0]
    if missing:
        problems.append(f"never executed: {missing}")
    if after != NODES:
        problems.append(f"final history commits {after} instead of each node once")
    return {"killed": killed, "committed": len(before), "checkpoints": checkpoints,
            "problems": problems, "mode": f"{mode}, durability={durability}", "delay": delay}


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_sigkill_at_random_points_then_resume(kind, tmp_path):
    require(kind)
    url = str(tmp_path / "crash.db") if kind == "sqlite" else PG_URL
    threads = Backend(kind, url)
    rng = random.Random(f"{SEED}-{kind}")
    try:
        # an uninterrupted run: the reference final state, and how long a run lasts
        reference = threads.thread("reference")
        reference_side = tmp_path / "reference.txt"
        duration = run_child(kind, url, reference, reference_side, "sync")
        with open_store(kind, url) as store:
            assert store.get_tuple(cfg(reference)).checkpoint.values == EXPECTED
        assert side_counts(reference_side) == collections.Counter(NODES)

        plans = [(threads.thread(f"crash{i}"), tmp_path / f"side{i}.txt",
                  "async" if i % 2 else "sync", DURABILITY[i % len(DURABILITY)],
                  rng.uniform(0.0, duration * 1.05))
                 for i in range(TRIALS)]
        with ThreadPoolExecutor(WORKERS) as pool:
            outcomes = list(pool.map(lambda plan: trial(kind, url, *plan), plans))
    finally:
        threads.cleanup()

    summary = [f"trial {i} ({o['mode']}, kill after {o['delay']:.3f} s, "
               f"{'killed' if o['killed'] else 'finished first'}, {o['committed']} nodes "
               f"committed): {'; '.join(o['problems']) or 'ok'}" for i, o in enumerate(outcomes)]
    print("\n".join(summary))
    assert not any(o["problems"] for o in outcomes), "\n".join(summary)
