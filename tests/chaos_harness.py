"""Helpers for the chaos test (tests/test_chaos.py) and bench (bench/chaos.py).

- `ChaosServer`: a `ServerProcess` that also serves `tests/chaos_graphs.py`.
- `Fleet`: the worker processes beside it; kills one with SIGKILL, starts a replacement,
  keeps every process it started so their logs can be read at the end.
- `Ledger`: the runs submitted (through the HTTP API, retried while the database is away),
  waiting for them, answering effects found in doubt, and `Ledger.verify()`: finished
  runs, lost committed steps, repeated effects, takeover times.
- `tracebacks()`: the tracebacks in a process log, split into expected (the database
  went away under a restart) and unexpected.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from chaos_graphs import EFFECT_STEPS, STEPS
from server_harness import HERE, ServerProcess, WorkerProcess

CHAOS_GRAPHS = {"chaos": "chaos_graphs.py:chaos"}
TERMINAL = ("success", "error", "timeout", "interrupted")


class ChaosServer(ServerProcess):
    """`waypoint serve` with the harness's graphs and the chaos graphs."""

    def config_path(self) -> Path:
        path = super().config_path()
        config = json.loads(path.read_text())
        for name, target in CHAOS_GRAPHS.items():
            file, attr = target.split(":")
            config["graphs"][name] = f"{HERE / file}:{attr}"
        path.write_text(json.dumps(config))
        return path


def worker_pid(worker_id: str | None) -> int | None:
    """The pid in a worker id (`host:pid:suffix`)."""
    try:
        return int(str(worker_id).split(":")[-2])
    except (IndexError, ValueError):
        return None


# -- the database, read directly -------------------------------------------------------


def query(db: str, sql: str) -> list[tuple[Any, ...]] | None:
    """Rows of `sql` on `db` (a postgresql:// URL or a SQLite file); None while the
    database is away."""
    try:
        if db.startswith("postgres"):
            import psycopg

            with psycopg.connect(db, autocommit=True, connect_timeout=3) as conn:
                return conn.execute(sql).fetchall()
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    except Exception:
        return None


def running_runs(db: str) -> list[tuple[int | None, str]]:
    """(worker pid, run id) of every running run; [] while the database is away."""
    rows = query(db, "SELECT worker, run_id FROM waypoint_runs WHERE status = 'running'")
    return [(worker_pid(worker), run_id) for worker, run_id in rows or []]


def held_by(db: str, pid: int | None) -> list[str]:
    """The runs a process (by pid) is running now."""
    return [run_id for owner, run_id in running_runs(db) if owner == pid]


def active_runs(db: str) -> list[str] | None:
    """Ids of the runs pending or running; None while the database is away."""
    rows = query(db, "SELECT run_id FROM waypoint_runs WHERE status IN ('pending', 'running')")
    return None if rows is None else [row[0] for row in rows]


# -- worker processes ------------------------------------------------------------------


class Fleet:
    """`size` worker processes on `api`'s config and database."""

    def __init__(self, api: ServerProcess, size: int = 2, concurrency: int = 3) -> None:
        self.api = api
        self.size = size
        self.concurrency = concurrency
        self.alive: list[WorkerProcess] = []
        self.started: list[WorkerProcess] = []

    def start(self) -> Fleet:
        threads = [threading.Thread(target=self.replace) for _ in range(self.size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if len(self.alive) < self.size:
            raise RuntimeError("worker processes did not start:\n" + self.logs())
        return self

    def replace(self) -> WorkerProcess:
        worker = WorkerProcess(self.api, concurrency=self.concurrency)
        self.started.append(worker)
        worker.start()
        self.alive.append(worker)
        return worker

    def reap(self) -> int:
        """Replace the workers that died on their own; how many."""
        dead = [w for w in self.alive if w.proc is None or w.proc.poll() is not None]
        for worker in dead:
            self.alive.remove(worker)
            self.replace()
        return len(dead)

    def kill(self, worker: WorkerProcess) -> float:
        """SIGKILL; returns the time it was sent."""
        assert worker.proc is not None
        at = time.time()
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(30)
        self.alive.remove(worker)
        return at

    def stop(self) -> None:
        for worker in list(self.alive):
            worker.stop()
        for worker in self.started:
            worker.kill()

    def logs(self) -> str:
        return "".join(f"--- worker {w.proc.pid if w.proc else '?'}\n{w.output()}"
                       for w in self.started)


def pick_victim(rng: Any, db: str, candidates: Callable[[], list[Any]],
                pid_of: Callable[[Any], int | None], timeout: float = 10.0
                ) -> tuple[Any, list[str]]:
    """A process among `candidates()` that holds a running run (waiting up to `timeout`
    for one; then any), and the runs it holds."""
    deadline = time.monotonic() + timeout
    while True:
        procs = candidates()
        holding: dict[Any, list[str]] = defaultdict(list)
        rows = running_runs(db)
        for proc in procs:
            pid = pid_of(proc)
            holding[proc] = [run for owner, run in rows if owner == pid]
        busy = [p for p in procs if holding[p]]
        if busy:
            victim = rng.choice(busy)
            return victim, holding[victim]
        if time.monotonic() > deadline and procs:
            return rng.choice(procs), []
        time.sleep(0.05)


# -- process logs ----------------------------------------------------------------------

# What a client sees while the database restarts (or its backends are terminated).
DATABASE_AWAY = re.compile(
    r"OperationalError|AdminShutdown|CannotConnectNow|InterfaceError|PoolTimeout|PoolClosed|"
    r"server closed the connection|terminating connection|connection is (closed|lost)|"
    r"connection refused|the database system is (shutting down|starting up)|"
    r"consuming input failed|sending query failed", re.I)


def tracebacks(log: str) -> list[str]:
    """Each traceback in `log`: the log line before it, and its exception line."""
    lines = log.splitlines()
    found = []
    for i, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last)"):
            continue
        before = lines[i - 1] if i > 0 else ""
        end = next((lines[j] for j in range(i + 1, len(lines))
                    if lines[j] and not lines[j][0].isspace()), "?")
        found.append(f"{before.strip()} | {end.strip()}")
    return found


def unexpected_tracebacks(log: str, *, database_restarted: bool) -> tuple[list[str], list[str]]:
    """(expected, unexpected): a database error is expected only when it was restarted."""
    expected, unexpected = [], []
    for item in tracebacks(log):
        exc_line = item.split(" | ", 1)[1]
        if database_restarted and DATABASE_AWAY.search(exc_line):
            expected.append(item)
        else:
            unexpected.append(item)
    return expected, unexpected


# -- runs ------------------------------------------------------------------------------


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _retrying(call: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """`call()` until it answers without a transport error or a 5xx (the database may be
    restarting under the API process)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = call()
            if answer.status_code < 500:
                return answer
            problem = f"{answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as exc:
            problem = repr(exc)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: still failing after {timeout} s: {problem}")
        time.sleep(0.2)


@dataclass
class ChaosRun:
    thread_id: str
    run_id: str
    submitted_at: float
    run_ids: list[str] = field(default_factory=list)  # this one, then its resumes


@dataclass
class Kill:
    at: float
    pid: int | None
    runs: list[str]  # the runs it held just before


@dataclass
class Verdict:
    runs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    stuck: list[str] = field(default_factory=list)
    not_success: list[str] = field(default_factory=list)
    lost_steps: list[str] = field(default_factory=list)
    duplicate_steps: list[str] = field(default_factory=list)
    repeated_effects: list[str] = field(default_factory=list)
    missing_effects: list[str] = field(default_factory=list)
    open_interrupts: list[str] = field(default_factory=list)
    in_doubt: list[str] = field(default_factory=list)
    executions: int = 0
    committed: int = 0
    takeover: list[float] = field(default_factory=list)  # kill -> next step committed
    resume: list[float] = field(default_factory=list)  # kill -> a step starts elsewhere
    censored: int = 0  # runs killed again before their next commit (not in `takeover`)

    @property
    def ok(self) -> bool:
        return not self.problems()

    @property
    def database_errors(self) -> list[str]:
        """Runs that ended in `error` because the database went away under them."""
        return [item for item in self.not_success if DATABASE_AWAY.search(item)]

    def problems(self) -> str:
        """What breaks the invariants ('' if nothing)."""
        out = []
        for name in ("stuck", "not_success", "lost_steps", "duplicate_steps",
                     "repeated_effects", "missing_effects", "open_interrupts"):
            items = getattr(self, name)
            if items:
                out.append(f"{name} ({len(items)}): " + "; ".join(items[:10]))
        return "\n".join(out)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_line(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (f"p50 {statistics.median(values):.2f} s, p99 {percentile(values, 0.99):.2f} s, "
            f"max {max(values):.2f} s (n={len(values)})")


class Ledger:
    """The chaos runs, submitted over HTTP; their side files in `workdir`; `db` (the
    server's database) is read directly to see which runs are still active."""

    def __init__(self, http: Any, workdir: Path, delay: float, db: str) -> None:
        self.http = http
        self.db = db
        self.side = workdir / "effects.log"
        self.delay = delay
        self.runs: list[ChaosRun] = []
        self.kills: list[Kill] = []
        self.in_doubt: list[str] = []

    def submit(self, **extra: Any) -> ChaosRun:
        """A run of `chaos` on a new thread; `extra` goes into its input."""
        http = self.http
        thread = _retrying(lambda: http.post("/threads", json={}), "creating a thread").json()
        tid = thread["thread_id"]
        body = {"assistant_id": "chaos", "input": {"side_file": str(self.side),
                                                   "delay": self.delay, **extra}}

        def create() -> Any:  # retried only while the thread has no run: submitted once
            listed = http.get(f"/threads/{tid}/runs")
            if listed.status_code == 200 and listed.json():
                return _Found(listed.json()[-1])
            return http.post(f"/threads/{tid}/runs", json=body)

        run = _retrying(create, "creating a run").json()
        made = ChaosRun(tid, run["run_id"], time.time(), [run["run_id"]])
        self.runs.append(made)
        return made

    def _runs_of(self, run: ChaosRun) -> list[dict[str, Any]]:
        return _retrying(lambda: self.http.get(f"/threads/{run.thread_id}/runs",
                                               params={"limit": 100}),
                         "listing runs").json()

    def active(self) -> list[str]:
        """Run ids still pending or running (all of them while the database is away)."""
        found = active_runs(self.db)
        return [rid for run in self.runs for rid in run.run_ids] if found is None else found

    def wait(self, timeout: float) -> list[str]:
        """Wait for every run to end; answer effects found in doubt as a person would
        (by looking at the side file), and wait for those resumes too. Returns the runs
        still active after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.active()
            if not left and not self._answer_doubts():
                return []
            if time.monotonic() > deadline:
                return left
            time.sleep(0.25)

    def _answer_doubts(self) -> bool:
        """Resume threads paused at an effect in doubt: 'done' if its line is in the side
        file (it happened), 'retry' if not. True if any was resumed."""
        resumed = False
        written = self.side.read_text() if self.side.exists() else ""
        paused: set[str] = set()
        while True:
            found = _retrying(lambda: self.http.post("/threads/search", json={
                "status": "interrupted", "limit": 1000, "offset": len(paused)}),
                "searching threads").json()
            paused.update(thread["thread_id"] for thread in found)
            if len(found) < 1000:
                break
        for run in self.runs:
            if run.thread_id not in paused:
                continue
            state = _retrying(lambda r=run: self.http.get(f"/threads/{r.thread_id}/state"),
                              "reading state").json()
            doubts = [i for i in state.get("interrupts") or []
                      if isinstance(i.get("value"), dict)
                      and i["value"].get("kind") == "effect_in_doubt"]
            if len(doubts) != 1 or len(state.get("interrupts") or []) != 1:
                continue
            key = doubts[0]["value"]["key"]
            happened = key in written
            answer: Any = {"action": "done", "result": key} if happened else "retry"
            self.in_doubt.append(f"{run.run_id} {doubts[0]['value'].get('effect')} "
                                 f"({'happened: done' if happened else 'not found: retry'})")
            made = _retrying(lambda r=run, a=answer: self.http.post(
                f"/threads/{r.thread_id}/runs", json={"assistant_id": "chaos",
                                                      "command": {"resume": a}}),
                "resuming an effect in doubt").json()
            run.run_ids.append(made["run_id"])
            resumed = True
        return resumed

    def verify(self) -> Verdict:
        verdict = Verdict(runs=len(self.runs), in_doubt=list(self.in_doubt))
        executions = _executions(Path(str(self.side) + ".steps"))
        effects = _effect_lines(self.side)
        verdict.executions = sum(len(v) for v in executions.values())
        next_commit: dict[str, list[float]] = {}
        for run in self.runs:
            ids = set(run.run_ids)
            rows = self._runs_of(run)
            for row in rows:
                verdict.statuses[row["status"]] += 1
                if row["status"] not in TERMINAL:
                    verdict.stuck.append(f"{row['run_id']} {row['status']}")
                elif row["status"] != "success":
                    joined = _retrying(lambda r=run, rid=row["run_id"]: self.http.get(
                        f"/threads/{r.thread_id}/runs/{rid}/join"), "joining").json()
                    error = joined.get("__error__") if isinstance(joined, dict) else None
                    verdict.not_success.append(f"{row['run_id']} {row['status']}: {error}")
            state = _retrying(lambda r=run: self.http.get(f"/threads/{r.thread_id}/state"),
                              "reading state").json()
            steps = (state.get("values") or {}).get("steps") or []
            verdict.committed += len(steps)
            for interrupt in state.get("interrupts") or []:
                verdict.open_interrupts.append(f"{run.run_id} {interrupt.get('value')}")
            counts = Counter(steps)
            succeeded = all(r["status"] == "success" for r in rows)
            for index, step in enumerate(STEPS):
                # committed for sure: the run succeeded, or a later step began (with
                # durability "sync" a step starts only once the one before is committed)
                followed = any(executions.get((rid, later))
                               for rid in ids for later in STEPS[index + 1:])
                if counts[step] == 0 and (succeeded or followed):
                    verdict.lost_steps.append(f"{run.run_id} {step}: not in the final state")
                elif counts[step] > 1:
                    verdict.duplicate_steps.append(f"{run.run_id} {step} x{counts[step]}")
            history = _retrying(lambda r=run: self.http.post(
                f"/threads/{r.thread_id}/history", json={"limit": 1000}), "history").json()
            commits = sorted((epoch(h["created_at"]), h.get("values") or {})
                             for h in history if h.get("created_at"))
            next_commit[run.run_id] = [at for at, _ in commits]
            for step in STEPS:
                committed = [at for at, values in commits if step in (values.get("steps") or [])]
                if not committed:
                    continue
                again = [(t, pid) for rid in ids for t, pid in executions.get((rid, step), [])
                         if t > committed[0]]
                for t, pid in again:  # ran again after its checkpoint was committed
                    verdict.lost_steps.append(
                        f"{run.run_id} {step}: executed again by pid {pid} "
                        f"{t - committed[0]:.3f} s after its commit")
            for step in EFFECT_STEPS:
                times = sum(effects.get((rid, step), 0) for rid in ids)
                if times > 1:
                    verdict.repeated_effects.append(f"{run.run_id} {step} x{times}")
                elif times == 0 and counts[step]:
                    verdict.missing_effects.append(f"{run.run_id} {step}")
        by_run = {run.run_id: run for run in self.runs}
        for kill in self.kills:
            for run_id in kill.runs:
                run = by_run.get(run_id)
                if run is None:
                    continue
                # measured up to the next kill of the same run, if it came first
                again = min((k.at for k in self.kills if k.at > kill.at and run_id in k.runs),
                            default=float("inf"))
                later = [at for at in next_commit.get(run_id, []) if at > kill.at]
                if later and later[0] < again:
                    verdict.takeover.append(later[0] - kill.at)
                elif later:
                    verdict.censored += 1
                starts = [t for rid in run.run_ids for step in STEPS
                          for t, pid in executions.get((rid, step), [])
                          if kill.at < t < again and pid != kill.pid]
                if starts:
                    verdict.resume.append(min(starts) - kill.at)
        return verdict


class _Found:
    """A run found already created (a retried create whose first try committed)."""

    status_code = 200

    def __init__(self, run: dict[str, Any]) -> None:
        self._run = run

    def json(self) -> dict[str, Any]:
        return self._run


def _executions(path: Path) -> dict[tuple[str, str], list[tuple[float, int]]]:
    out: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            at, pid, run_id, step = line.split()
            out[(run_id, step)].append((float(at), int(pid)))
    return out


def _effect_lines(path: Path) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    if path.exists():
        for line in path.read_text().splitlines():
            run_id, step, _key = line.split()
            out[(run_id, step)] += 1
    return out
