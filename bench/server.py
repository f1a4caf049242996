"""`waypoint serve` next to `langgraph dev`: the same graphs behind the same HTTP API.

    python bench/server.py [--quick] [--rounds N] [--runs N] [--clients N] [--burst N]
                           [--soak N] [--starts N] [--lg-jobs N] [--markdown] [--json OUT]
                           [--keep]

Starts both servers itself on free loopback ports: `waypoint serve` durable on a fresh
SQLite file (default --workers) and `langgraph dev` (in memory, from `langgraph-cli[inmem]`),
each on a generated langgraph.json naming the same two graphs (bench/server_graphs/, written
once with waypoint imports and once with langgraph imports). One client (httpx, asyncio)
drives both, alternating between them round by round (A,B then B,A, ...), so drift on the
machine hits both. Results are medians; ratios are waypoint / langgraph dev. Progress goes
to stderr, the table to stdout. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
GRAPH_DIR = HERE / "server_graphs"
REFERENCE = "langgraph dev"
CANDIDATE = "waypoint"
TIMEOUT = 120.0  # seconds for one request: generous, langgraph dev takes ~1 s per run


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    rounds: int  # alternation rounds per timed workload
    runs: int  # sequential calls (or interrupt cycles) per server per round
    clients: int  # concurrent clients for the throughput and the soak
    burst: int  # runs per throughput sample
    soak: int  # runs of the memory soak (RSS read at 0, soak/2, soak)
    starts: int  # server starts timed per server (the last one stays up)
    warmups: int  # untimed calls per workload after the verification call


def settings_from(args: argparse.Namespace) -> Settings:
    quick = args.quick
    clients = args.clients
    return Settings(
        rounds=args.rounds or (2 if quick else 5),
        runs=args.runs or (3 if quick else 10),
        clients=clients,
        burst=args.burst or clients * (2 if quick else 20),
        soak=args.soak or (200 if quick else 1000),
        starts=args.starts or (1 if quick else 3),
        warmups=1 if quick else 3,
    )


# ---------------------------------------------------------------- servers


class StartError(Exception):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def executable(name: str) -> str | None:
    """A console script of this environment (the venv's), else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


def offline_env() -> dict[str, str]:
    """The environment both servers get: no tracing, no keys, no version check, no analytics."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_", "WAYPOINT_"))
    }
    env.update(
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        LANGGRAPH_NO_VERSION_CHECK="true",  # else it asks PyPI for newer langgraph-api
        LANGGRAPH_CLI_NO_ANALYTICS="1",  # else `langgraph dev` posts usage analytics
        PYTHONUNBUFFERED="1",
    )
    return env


URL = re.compile(rb"http://127\.0\.0\.1:(\d+)")


@dataclass
class Server:
    name: str
    workdir: Path
    command: Callable[[int], list[str]]  # port -> argv
    fresh: Callable[[], None]  # forget what the previous start left on disk
    proc: subprocess.Popen[bytes] | None = None
    base_url: str = ""
    start_times: list[float] = field(default_factory=list)
    failure: str | None = None
    log_offset: int = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def start(self, timeout: float = 120.0) -> float:
        """Spawn; seconds until GET /ok answers 200 on the port the server announced."""
        self.fresh()
        port = free_port()
        argv = self.command(port)
        with self.log_path.open("ab") as log:
            self.log_offset = log.tell()
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=offline_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        with httpx.Client(timeout=2.0) as probe:
            while True:
                if self.proc.poll() is not None:
                    raise StartError(
                        f"exited with status {self.proc.returncode} before answering /ok: "
                        + self.log_tail()
                    )
                if time.perf_counter() - t0 > timeout:
                    raise StartError(f"no answer on /ok within {timeout:.0f} s: " + self.log_tail())
                announced = self.announced_port()
                if announced is not None:
                    if announced != port:
                        print(
                            f"  {self.name}: asked for port {port}, it took {announced}",
                            file=sys.stderr,
                        )
                    self.base_url = f"http://127.0.0.1:{announced}"
                    try:
                        if probe.get(self.base_url + "/ok").status_code == 200:
                            elapsed = time.perf_counter() - t0
                            self.start_times.append(elapsed)
                            return elapsed
                    except httpx.TransportError:
                        pass
                time.sleep(0.01)

    def announced_port(self) -> int | None:
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            found = URL.search(log.read())
        return int(found.group(1)) if found else None

    def log_tail(self, lines: int = 15) -> str:
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            text = log.read().decode(errors="replace")
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # colour codes
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  {self.name}: no exit {timeout:.0f} s after SIGTERM; killing", file=sys.stderr)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc status")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (all its threads)."""
        assert self.proc is not None
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_config(workdir: Path, graph_file: Path) -> Path:
    config = {
        "dependencies": ["."],
        "graphs": {name: f"{graph_file}:{name}" for name in ("chain", "ask")},
    }
    path = workdir / "langgraph.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def fresh_schema(postgres: str) -> str:
    """A URL whose search_path is a new schema of `postgres` (dropped at exit), so the
    bench never touches anyone's tables."""
    import atexit
    import uuid

    import psycopg

    schema = f"wp_bench_{uuid.uuid4().hex[:10]}"

    def reset(create: bool = True) -> None:
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            if create:
                conn.execute(f"CREATE SCHEMA {schema}")

    reset()
    atexit.register(reset, False)
    sep = "&" if "?" in postgres else "?"
    return f"{postgres}{sep}options=-csearch_path%3D{schema}"


def make_servers(root: Path, lg_jobs: int | None = None,
                 postgres: str | None = None) -> list[Server]:
    lg_dir, wp_dir = root / "langgraph", root / "waypoint"
    lg_dir.mkdir()
    wp_dir.mkdir()
    lg_config = write_config(lg_dir, GRAPH_DIR / "lg_graphs.py")
    wp_config = write_config(wp_dir, GRAPH_DIR / "wp_graphs.py")
    db = wp_dir / "server.db"
    lg_exe, wp_exe = executable("langgraph"), executable("waypoint")

    def lg_command(port: int) -> list[str]:
        if lg_exe is None:
            raise StartError("`langgraph` not found: pip install -e '.[bench]' (langgraph-cli)")
        jobs = [] if lg_jobs is None else ["--n-jobs-per-worker", str(lg_jobs)]
        return [lg_exe, "dev", "--config", str(lg_config), "--port", str(port), "--host",
                "127.0.0.1", "--no-browser", "--no-reload", *jobs]

    def wp_command(port: int) -> list[str]:
        if wp_exe is None:
            raise StartError("`waypoint` not found: pip install -e '.[server]'")
        store = ["--postgres", pg_url] if pg_url else ["--db", str(db)]
        return [wp_exe, "serve", "--config", str(wp_config), "--port", str(port), "--host",
                "127.0.0.1", *store]

    def lg_fresh() -> None:  # langgraph dev flushes its in-memory state to .langgraph_api/
        shutil.rmtree(lg_dir / ".langgraph_api", ignore_errors=True)

    pg_url = fresh_schema(postgres) if postgres else None

    def wp_fresh() -> None:
        if postgres:
            return  # one schema for all starts: the tables are migrated once
        for path in wp_dir.glob("server.db*"):
            path.unlink()

    return [
        Server(REFERENCE, lg_dir, lg_command, lg_fresh),
        Server(CANDIDATE, wp_dir, wp_command, wp_fresh),
    ]


# ---------------------------------------------------------------- client workloads


class Mismatch(Exception):
    pass


def short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def body(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise Mismatch(f"HTTP {response.status_code} {response.request.url.path}: "
                       f"{short(response.text, 200)}")
    return response.json()


def expect(got: Any, expected: Any, what: str) -> None:
    if got != expected:
        raise Mismatch(f"{what}: got {short(got)}, expected {short(expected)}")


CHAIN_RUN = {"assistant_id": "chain", "input": {"x": 0}}


async def run_wait(client: httpx.AsyncClient) -> float:
    """One stateless POST /runs/wait of the 3-node chain; seconds."""
    t0 = time.perf_counter()
    response = await client.post("/runs/wait", json=CHAIN_RUN)
    elapsed = time.perf_counter() - t0
    expect(body(response), {"x": 3}, "/runs/wait")
    return elapsed


async def first_event(client: httpx.AsyncClient) -> float:
    """POST /runs/stream; seconds to the first complete event after `metadata`.

    The rest of the stream is read (untimed) and checked: values 0, 1, 2, 3.
    """
    t0 = time.perf_counter()
    first: float | None = None
    events: list[tuple[str, str]] = []
    name: str | None = None
    data: list[str] = []
    payload = {**CHAIN_RUN, "stream_mode": ["values"]}
    async with client.stream("POST", "/runs/stream", json=payload) as response:
        if response.status_code >= 400:
            await response.aread()
            body(response)
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif line == "" and name is not None:
                if first is None and name != "metadata":
                    first = time.perf_counter() - t0
                events.append((name, "\n".join(data)))
                name, data = None, []
    names = [n for n, _ in events]
    if not names or names[0] != "metadata" or first is None:
        raise Mismatch(f"/runs/stream: events {names}, expected metadata then values")
    values = [json.loads(d) for n, d in events if n == "values"]
    expect(values, [{"x": i} for i in range(4)], "/runs/stream values")
    expect([n for n in names[1:] if n != "values"], [], "/runs/stream other events")
    return first


async def interrupt_cycle(client: httpx.AsyncClient) -> float:
    """A thread run stopping at interrupt(), then Command(resume=...); seconds for both.

    Creating the thread is not timed.
    """
    thread_id = body(await client.post("/threads", json={}))["thread_id"]
    path = f"/threads/{thread_id}/runs/wait"
    t0 = time.perf_counter()
    paused = await client.post(path, json={"assistant_id": "ask", "input": {"n": 0}})
    resumed = await client.post(path, json={"assistant_id": "ask",
                                            "command": {"resume": "yes"}})
    elapsed = time.perf_counter() - t0
    state = body(paused)
    interrupts = state.pop("__interrupt__", None) if isinstance(state, dict) else None
    expect(state, {"n": 0}, "run up to interrupt()")
    values = [i.get("value") for i in interrupts] if isinstance(interrupts, list) else interrupts
    expect(values, ["ok?"], "__interrupt__ values")
    expect(body(resumed), {"n": 1, "answer": "yes"}, "resumed run")
    return elapsed


async def burst(client: httpx.AsyncClient, runs: int, clients: int) -> float:
    """`runs` stateless /runs/wait spread over `clients` concurrent clients; runs per second."""
    todo = iter(range(runs))

    async def one_client() -> None:
        for _ in todo:  # shared: each client takes the next run
            await run_wait(client)

    t0 = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:  # one failure cancels the other clients
            for _ in range(clients):
                group.create_task(one_client())
    except ExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    return runs / (time.perf_counter() - t0)


# ---------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    unit: str  # "s" (lower is better) or "runs/s" (higher is better)
    target_ratio: float  # waypoint / langgraph dev: at most (s) or at least (runs/s)
    target_abs: float  # waypoint alone, same direction


WORKLOADS = (
    Workload("wait", "sequential /runs/wait, 3-node graph", "s", 0.05, 0.050),
    Workload("first_event", "/runs/stream: first event after metadata", "s", 0.05, 0.050),
    Workload("interrupt", "interrupt + resume cycle (2 x thread /runs/wait)", "s", 0.05, 0.100),
    Workload("throughput", "runs/s, {clients} concurrent clients, /runs/wait", "runs/s", 5.0,
             200.0),
)


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass
class Side:
    """One server's results."""

    server: Server
    client: httpx.AsyncClient | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    soak_cpu_ms: float | None = None
    client_cpu_ms: float | None = None
    soak_rate: float | None = None

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def up(self) -> bool:
        return self.server.failure is None and self.client is not None

    def live_for(self, key: str) -> bool:
        return self.up and key not in self.failures

    def fail(self, key: str, exc: BaseException) -> None:
        print(f"\n--- {self.name}: {key} failed:", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)
        self.failures[key] = describe(exc)


def workload_call(key: str, settings: Settings) -> Callable[[httpx.AsyncClient],
                                                             Awaitable[float]]:
    if key == "wait":
        return run_wait
    if key == "first_event":
        return first_event
    if key == "interrupt":
        return interrupt_cycle
    return lambda client: burst(client, settings.burst, settings.clients)


def alternating(sides: list[Side], rnd: int) -> list[Side]:
    return sides if rnd % 2 == 0 else sides[::-1]


async def warm_up(sides: list[Side], settings: Settings) -> None:
    """Verify every workload on every server (first call checked like all others), warm up."""
    for workload in WORKLOADS:
        call = workload_call(workload.key, settings)
        for side in sides:
            if not side.live_for(workload.key):
                continue
            assert side.client is not None
            try:
                if workload.key == "throughput":
                    await burst(side.client, settings.clients, settings.clients)
                else:
                    for _ in range(1 + settings.warmups):
                        await call(side.client)
            except Exception as exc:
                side.fail(workload.key, exc)


async def soak(sides: list[Side], settings: Settings) -> None:
    """RSS after warm-up, after soak/2 and after soak stateless runs (A,B then B,A)."""
    half = settings.soak // 2
    live = [s for s in sides if s.live_for("soak")]
    for side in live:
        side.rss["warm"] = side.server.rss_mb()
    # Each server's CPU, the client's CPU and wall time during that server's own bursts.
    busy = {side.name: 0.0 for side in live}
    client = dict(busy)
    server_cpu = dict(busy)
    for phase, label in enumerate(("half", "full")):
        for side in alternating(live, phase):
            if not side.live_for("soak"):
                continue
            assert side.client is not None
            print(f"  soak: {side.name} {half} runs ...", file=sys.stderr)
            t0, c0, s0 = time.perf_counter(), time.process_time(), side.server.cpu_seconds()
            try:
                await burst(side.client, half, settings.clients)
            except Exception as exc:
                side.fail("soak", exc)
                continue
            server_cpu[side.name] += side.server.cpu_seconds() - s0
            busy[side.name] += time.perf_counter() - t0
            client[side.name] += time.process_time() - c0
            side.rss[label] = side.server.rss_mb()
    for side in live:
        if side.live_for("soak"):
            runs = 2 * half
            side.soak_cpu_ms = server_cpu[side.name] / runs * 1e3
            side.client_cpu_ms = client[side.name] / runs * 1e3
            side.soak_rate = runs / busy[side.name]


async def timed(sides: list[Side], settings: Settings) -> None:
    for workload in WORKLOADS:
        call = workload_call(workload.key, settings)
        count = 1 if workload.key == "throughput" else settings.runs
        print(f"{workload.key}: {settings.rounds} rounds x {count} ...", file=sys.stderr)
        for rnd in range(settings.rounds):
            for side in alternating(sides, rnd):
                if not side.live_for(workload.key):
                    continue
                assert side.client is not None
                got = side.samples.setdefault(workload.key, [])
                try:
                    for _ in range(count):
                        got.append(await call(side.client))
                except Exception as exc:
                    side.fail(workload.key, exc)
            summary = ", ".join(  # this round's median
                f"{s.name} {fmt(statistics.median(got[-count:]), workload.unit)}"
                for s in sides
                if (got := s.samples.get(workload.key))
            )
            print(f"  round {rnd + 1}: {summary}", file=sys.stderr)


def start_all(sides: list[Side], settings: Settings) -> None:
    """Start each server `starts` times, alternating; the last start stays up."""
    for rnd in range(settings.starts):
        for side in alternating(sides, rnd):
            server = side.server
            if server.failure is not None:
                continue
            server.stop()
            try:
                elapsed = server.start()
            except Exception as exc:
                server.stop()
                server.failure = f"start failed: {describe(exc)}"
                print(f"--- {server.name}: {server.failure}", file=sys.stderr)
                continue
            print(f"  {server.name}: up in {elapsed:.2f} s on {server.base_url}", file=sys.stderr)


# ---------------------------------------------------------------- reporting


def fmt(value: float, unit: str) -> str:
    if unit == "runs/s":
        return f"{value:.1f} runs/s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if value >= 10:
        return f"{value:.1f} s"
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.1:
        return f"{value * 1e3:.0f} ms"
    return f"{value * 1e3:.1f} ms"


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


@dataclass
class Row:
    label: str
    ref: str
    cand: str
    ratio: str
    target: str
    met: str


def value_cell(side: Side, key: str, unit: str, notes: list[str]) -> tuple[str, float | None]:
    failure = side.server.failure or side.failures.get(key)
    samples = side.samples.get(key) or []
    if failure is None and samples:
        mid = statistics.median(samples)
        if unit == "runs/s":
            return fmt(mid, unit), mid
        # the 90th percentile as well: a poll interval shows there first
        tail = fmt(p90(samples), unit).split()[0]
        return f"{fmt(mid, unit)} (p90 {tail})", mid
    reason = f"{side.name}: {failure or 'no samples'}"
    if reason not in notes:
        notes.append(reason)
    return f"FAILED [{notes.index(reason) + 1}]", None


def met_text(ratio_ok: bool | None, abs_ok: bool | None) -> str:
    if ratio_ok is None:
        return "FAIL" if abs_ok is None else ("abs only" if abs_ok else "NO")
    if ratio_ok and abs_ok:
        return "yes"
    if ratio_ok:
        return "ratio only"
    return "abs only" if abs_ok else "NO"


def build_rows(sides: list[Side], settings: Settings, notes: list[str]) -> tuple[list[Row],
                                                                                dict[str, Any]]:
    ref, cand = sides
    rows: list[Row] = []
    report: dict[str, Any] = {}
    for w in WORKLOADS:
        ref_text, r = value_cell(ref, w.key, w.unit, notes)
        cand_text, c = value_cell(cand, w.key, w.unit, notes)
        ratio = c / r if (r and c is not None) else None
        if w.unit == "runs/s":
            target = f"≥ {w.target_ratio:g} x ({w.target_abs:.0f} runs/s)"
            ratio_ok = None if ratio is None else ratio >= w.target_ratio
            abs_ok = None if c is None else c >= w.target_abs
        else:
            target = f"≤ {w.target_ratio:g} x ({w.target_abs * 1e3:.0f} ms)"
            ratio_ok = None if ratio is None else ratio <= w.target_ratio
            abs_ok = None if c is None else c <= w.target_abs
        met = met_text(ratio_ok, abs_ok)
        label = w.label.format(clients=settings.clients)
        rows.append(Row(label, ref_text, cand_text,
                        "-" if ratio is None else f"{ratio:.3f} x", target, met))
        report[w.key] = {
            "label": label,
            "unit": w.unit,
            "ratio": ratio,
            "target_ratio": w.target_ratio,
            "target_abs": w.target_abs,
            "met": met,
            **{s.name: {"median": statistics.median(s.samples[w.key]) if s.samples.get(w.key)
                        else None,
                        "p90": p90(s.samples[w.key]) if s.samples.get(w.key) else None,
                        "samples": s.samples.get(w.key, []),
                        "failure": s.server.failure or s.failures.get(w.key)}
               for s in sides},
        }

    # Start time: spawn -> /ok answers.
    def start_cell(side: Side) -> tuple[str, float | None]:
        times = side.server.start_times
        if not times:
            return value_cell(side, "start", "s", notes)[0], None
        mid = statistics.median(times)
        spread = f" ({min(times):.2f}-{max(times):.2f})" if len(times) > 1 else ""
        return f"{mid:.2f} s{spread}", mid

    (rs, r), (cs, c) = start_cell(ref), start_cell(cand)
    rows.append(Row(f"server start, spawn → /ok (median of {settings.starts})", rs, cs,
                    "-" if not (r and c) else f"{c / r:.3f} x", "report", "-"))
    report["start"] = {s.name: s.server.start_times for s in sides}

    # Memory: RSS of the server process.
    half = settings.soak // 2
    marks = (("warm", "after warm-up"), ("half", f"after {half:,} runs"),
             ("full", f"after {2 * half:,} runs"))
    for mark, text in marks:
        cells = []
        for side in sides:
            value = side.rss.get(mark)
            cells.append(fmt(value, "MB") if value is not None
                         else value_cell(side, "soak", "MB", notes)[0])
        r, c = ref.rss.get(mark), cand.rss.get(mark)
        target, met = "report", "-"
        if mark == "full":
            target = "flat: ≤ +5 % over the 2nd half"
            growth = {s.name: s.rss["full"] / s.rss["half"] - 1 for s in sides
                      if "full" in s.rss and "half" in s.rss}
            if CANDIDATE in growth:
                met = "yes" if growth[CANDIDATE] <= 0.05 else "NO"
                cells = [cell + (f" ({growth[s.name]:+.1%})" if s.name in growth else "")
                         for cell, s in zip(cells, sides, strict=True)]
            else:
                met = "FAIL"
        rows.append(Row(f"server RSS {text}", *cells,
                        "-" if not (r and c) else f"{c / r:.3f} x", target, met))
    # CPU of the server per run during the soak, and the soak's own rate (context).
    for attr, label, unit in (("soak_cpu_ms", "server CPU per run (soak)", "ms"),
                              ("client_cpu_ms", "client CPU per run (soak, context)", "ms"),
                              ("soak_rate", f"runs/s during the soak ({settings.clients} "
                               "clients)", "runs/s")):
        values = [getattr(s, attr) for s in sides]
        cells = [("-" if v is None else (f"{v:.2f} ms" if unit == "ms" else fmt(v, unit)))
                 for v in values]
        r, c = values
        rows.append(Row(label, *cells, "-" if not (r and c) else f"{c / r:.3f} x",
                        "report", "-"))
    report["memory"] = {s.name: {**s.rss, "cpu_ms_per_run": s.soak_cpu_ms,
                                 "client_cpu_ms_per_run": s.client_cpu_ms,
                                 "soak_runs_per_s": s.soak_rate} for s in sides}
    return rows, report


HEADERS = ("workload", REFERENCE, CANDIDATE, "ratio wp/LG", "target", "met?")


def cells_of(row: Row) -> tuple[str, ...]:
    return (row.label, row.ref, row.cand, row.ratio, row.target, row.met)


def render_text(rows: list[Row], notes: list[str]) -> str:
    table = [HEADERS, *(cells_of(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    lines = []
    for n, line in enumerate(table):
        lines.append("  ".join(text.ljust(w) for text, w in zip(line, widths, strict=True)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [f"[{n}] {text}" for n, text in enumerate(notes, 1)]
    return "\n".join(line.rstrip() for line in lines)


def render_markdown(rows: list[Row], notes: list[str], context: str) -> str:
    def md(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [context, "", md(HEADERS), md(tuple("---" for _ in HEADERS))]
    out += [md(cells_of(r)) for r in rows]
    if notes:
        out += ["", *(f"[{n}] {text}  " for n, text in enumerate(notes, 1))]
    return "\n".join(out)


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def environment(settings: Settings, quick: bool, lg_jobs: int | None) -> str:
    parts = [
        f"Python {platform.python_version()}",
        f"{os.cpu_count()} CPUs",
        f"{platform.system()} {platform.machine()}",
        f"date {_dt.datetime.now().astimezone().isoformat(timespec='minutes')}",
        f"langgraph-api {version_of('langgraph-api')} (langgraph {version_of('langgraph')}, "
        f"langgraph-cli {version_of('langgraph-cli')})",
        f"waypoint {version_of('waypoint')}",
        f"{settings.rounds} rounds x {settings.runs} calls, throughput {settings.burst} runs "
        f"x {settings.rounds}, soak {settings.soak} runs, {settings.clients} clients",
        "mode quick" if quick else "mode default",
    ]
    if lg_jobs is not None:
        parts.append(f"langgraph dev --n-jobs-per-worker {lg_jobs}")
    parts.append(f"1-min load average {os.getloadavg()[0]:.1f} at start")
    return ", ".join(parts)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="waypoint serve vs langgraph dev: same graphs, same client, alternating.")
    parser.add_argument("--quick", action="store_true", help="small counts, a smoke test")
    parser.add_argument("--rounds", type=int, help="alternation rounds (default 5, quick 2)")
    parser.add_argument("--runs", type=int,
                        help="sequential calls per server per round (default 10, quick 3)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (20)")
    parser.add_argument("--burst", type=int,
                        help="runs per throughput sample (default 20 x clients, quick 2 x)")
    parser.add_argument("--soak", type=int,
                        help="runs of the memory soak, RSS at half and end (1000, quick 200)")
    parser.add_argument("--starts", type=int, help="timed starts per server (3, quick 1)")
    parser.add_argument("--lg-jobs", type=int, metavar="N",
                        help="pass --n-jobs-per-worker N to langgraph dev (default: none, "
                        "which runs one run at a time)")
    parser.add_argument("--postgres", metavar="URL",
                        help="run waypoint serve on PostgreSQL (a fresh schema of URL, dropped "
                        "at exit) instead of a SQLite file")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--json", metavar="OUT", type=Path, help="also write results as JSON")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (configs, logs, database)")
    args = parser.parse_args(argv)
    for name in ("rounds", "runs", "clients", "burst", "soak", "starts", "lg_jobs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.soak is not None and args.soak < 2:
        parser.error("--soak must be at least 2")
    return args


async def measure(sides: list[Side], settings: Settings) -> None:
    limits = httpx.Limits(max_connections=settings.clients + 4,
                          max_keepalive_connections=settings.clients + 4)
    for side in sides:
        if side.server.failure is None:
            side.client = httpx.AsyncClient(base_url=side.server.base_url, timeout=TIMEOUT,
                                            limits=limits)
    try:
        print("verifying and warming up ...", file=sys.stderr)
        await warm_up(sides, settings)
        print(f"memory soak ({settings.soak} runs each) ...", file=sys.stderr)
        await soak(sides, settings)
        await timed(sides, settings)
    finally:
        for side in sides:
            if side.client is not None:
                await side.client.aclose()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    context = environment(settings, args.quick, args.lg_jobs)
    context += ", waypoint on " + ("PostgreSQL" if args.postgres else "SQLite")
    print(context, file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="waypoint-bench-server-"))
    sides = [Side(server) for server in make_servers(root, args.lg_jobs, args.postgres)]
    began = time.perf_counter()
    try:
        print(f"starting servers ({settings.starts}x each, in {root}) ...", file=sys.stderr)
        start_all(sides, settings)
        asyncio.run(measure(sides, settings))
    finally:
        for side in sides:
            side.server.stop()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"done in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    context += f", {os.getloadavg()[0]:.1f} at the end"  # other work on the machine

    notes: list[str] = []
    rows, report = build_rows(sides, settings, notes)
    if args.markdown:
        print(render_markdown(rows, notes, context))
    else:
        print(context)
        print(render_text(rows, notes))
    if args.json:
        report = {"environment": context, "settings": settings.__dict__, "notes": notes,
                  "results": report}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = any(s.server.failure or s.failures for s in sides)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
