"""A real `waypoint serve` process for the server tests, on a free port.

`ServerProcess` writes a langgraph.json that serves `tests/server_graphs.py`, starts
`python -m waypoint.cli serve --port 0`, reads the URL from its first line, and stops it
(SIGTERM, then SIGKILL) at the end. `server_backends()` gives the database it runs on:
a SQLite file, or a fresh PostgreSQL schema (dropped afterwards); PostgreSQL tests skip
when the server is unreachable, except under CI=true where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_backends import IN_CI, PG_URL, postgres_reachable

HERE = Path(__file__).parent
GRAPHS = {name: f"server_graphs.py:{name}" for name in (
    "three", "hitl", "boom", "slow", "payment", "chat", "approval", "nested", "memory",
    "trip", "napper", "greeter", "per_user", "crasher", "fenced", "outage", "agent")}
_READY = re.compile(r"waypoint serving .* on (http://\S+) ")
_WORKER_READY = re.compile(r"waypoint worker ")


class _Process:
    """A `python -m waypoint.cli ...` child: started until a line matches, its stderr
    kept, stopped with SIGTERM (then SIGKILL) or killed."""

    proc: subprocess.Popen[str] | None = None

    def _launch(self, args: list[str], cwd: Path, env: dict[str, str],
                ready: re.Pattern[str], timeout: float) -> re.Match[str]:
        self.log: list[str] = []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)]),
               **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "waypoint.cli", *args], cwd=cwd,
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, env=env)
        found: list[re.Match[str]] = []
        seen = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line)
                match = ready.search(line)
                if match and not seen.is_set():
                    found.append(match)
                    seen.set()

        threading.Thread(target=read, daemon=True).start()
        if not seen.wait(timeout):
            self.kill()
            raise RuntimeError(f"waypoint {args[0]} did not start:\n" + "".join(self.log))
        return found[0]

    def output(self) -> str:
        return "".join(self.log)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)


class ServerProcess(_Process):
    def __init__(self, workdir: Path, *, postgres: str | None = None,
                 settings: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 workers: int | None = None, args: list[str] | None = None,
                 graphs: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.graphs = graphs or {}  # more graphs: name -> "/path/to/module.py:attribute"
        self.postgres = postgres
        self.settings = settings or {}
        self.env = env or {}
        self.workers = workers
        self.args = args or []
        self.url = ""
        self.log = []

    def config_path(self) -> Path:
        path = self.workdir / "langgraph.json"
        graphs = {name: f"{HERE / target.split(':')[0]}:{target.split(':')[1]}"
                  for name, target in GRAPHS.items()}
        graphs.update(self.graphs)
        own = {"db": str(self.workdir / "server.db"), "poll_interval": 0.2, **self.settings}
        path.write_text(json.dumps({"graphs": graphs, "waypoint": own}))
        return path

    def start(self, timeout: float = 60.0) -> ServerProcess:
        args = ["serve", "--config", str(self.config_path()), "--port", "0",
                "--log-level", "warning"]
        if self.postgres:
            args += ["--postgres", self.postgres]
        if self.workers is not None:
            args += ["--workers", str(self.workers)]
        args += self.args
        self.url = self._launch(args, self.workdir, self.env, _READY, timeout).group(1)
        return self

    def client(self, api_key: str | None = None) -> Any:
        from langgraph_sdk import get_client

        return get_client(url=self.url, api_key=api_key)

    def http(self, api_key: str | None = None) -> Any:
        import httpx

        headers = {"x-api-key": api_key} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A postgresql:// URL whose search_path is a fresh schema, dropped afterwards."""
    if not postgres_reachable():
        if IN_CI:
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable (CI=true: not skipping)")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable")
    import psycopg

    schema = "wp_serve_" + uuid.uuid4().hex[:10]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in PG_URL else "?"
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextlib.contextmanager
def running_server(tmp: Path, backend: str, **options: Any) -> Iterator[ServerProcess]:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_schema()) if backend == "postgres" else None
        server = ServerProcess(tmp, postgres=url, **options).start()
        try:
            yield server
        finally:
            server.stop()


def wait_until(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy (tests never assert on time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class WorkerProcess(_Process):
    """`waypoint worker` on the same config and PostgreSQL as a `ServerProcess`."""

    def __init__(self, server: ServerProcess, concurrency: int = 4, *,
                 health: bool = False, config: Path | None = None) -> None:
        self.server = server
        self.concurrency = concurrency
        self.health = health
        self.config = config or server.workdir / "langgraph.json"
        self.health_url = ""
        self.log = []

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        server = self.server
        assert server.postgres, "workers share the queue through PostgreSQL"
        args = ["worker", "--config", str(self.config), "--postgres",
                server.postgres, "--concurrency", str(self.concurrency),
                "--log-level", "warning"]
        if self.health:
            args += ["--health-port", "0"]
        line = self._launch(args, server.workdir, server.env, _WORKER_READY, timeout).string
        found = re.search(r"health on (http://\S+)", line)
        self.health_url = found.group(1) if found else ""
        return self
