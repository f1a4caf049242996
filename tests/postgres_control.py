"""Restarting the PostgreSQL cluster the tests use, under load, and making sure it is back.

`PostgresControl.detect()` picks how: `pg_ctlcluster ... restart` when this runs as root on
the database's machine; otherwise (or with WAYPOINT_CHAOS_PG_RESTART=terminate) every other
client backend of the database is terminated, which is what a restart looks like to
clients. Used by the chaos test and bench/chaos.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from store_backends import PG_URL


@dataclass
class PostgresControl:
    url: str = PG_URL
    method: str = "terminate"  # "pg_ctlcluster" or "terminate"
    version: str | None = None
    cluster: str | None = None
    why: str = ""
    restarts: list[float] = field(default_factory=list)  # seconds each took
    slow: list[str] = field(default_factory=list)  # what a slow restart was waiting for
    stop_timeout: int = 20

    @classmethod
    def detect(cls, url: str = PG_URL) -> PostgresControl:
        parts = urlsplit(url)
        port = parts.port or 5432
        if os.environ.get("WAYPOINT_CHAOS_PG_RESTART") == "terminate":
            return cls(url, why="WAYPOINT_CHAOS_PG_RESTART=terminate")
        if parts.hostname not in (None, "", "127.0.0.1", "localhost", "::1"):
            return cls(url, why=f"PostgreSQL is on another host ({parts.hostname})")
        if os.geteuid() != 0:
            return cls(url, why="not root")
        if shutil.which("pg_ctlcluster") is None:
            return cls(url, why="no pg_ctlcluster")
        for conf in sorted(Path("/etc/postgresql").glob("*/*/postgresql.conf")):
            found = re.search(r"^\s*port\s*=\s*(\d+)", conf.read_text(errors="replace"), re.M)
            if int(found.group(1) if found else 5432) == port:
                return cls(url, "pg_ctlcluster", conf.parent.parent.name, conf.parent.name)
        return cls(url, why=f"no cluster in /etc/postgresql listens on port {port}")

    def describe(self) -> str:
        if self.method == "pg_ctlcluster":
            return (f"PostgreSQL restart: pg_ctlcluster --skip-systemctl-redirect "
                    f"{self.version} {self.cluster} restart")
        return (f"PostgreSQL restart NOT possible here ({self.why}): falling back to "
                f"terminating every other client backend with pg_terminate_backend")

    def restart(self) -> float:
        """Restart (or cut every connection); returns once it answers again."""
        started = time.monotonic()
        if self.method == "pg_ctlcluster":
            # --force: a fast shutdown, then an immediate one if it has not stopped
            # within -t seconds (a shutdown waits for every child of the postmaster)
            proc = subprocess.Popen(
                ["pg_ctlcluster", "--skip-systemctl-redirect", "--force", str(self.version),
                 str(self.cluster), "restart", "--", "-t", str(self.stop_timeout)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                out, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                stuck = self._dead_end_backends()
                self.slow.append(_postgres_processes() + f"dead-end backends: {stuck}")
                print(f"PostgreSQL's shutdown waits for dead-end backend(s) {stuck}: "
                      f"SIGKILLed (see PostgresControl._dead_end_backends)", flush=True)
                for pid in stuck:  # see _dead_end_backends
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                out, _ = proc.communicate(timeout=120)
            if proc.returncode or out.strip():
                self.slow.append(f"pg_ctlcluster restart exited {proc.returncode}: {out}")
                print(self.slow[-1].strip(), flush=True)
            self.ensure_up()  # a stop that timed out did not start it again
        else:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                             "pid <> pg_backend_pid() AND backend_type = 'client backend' "
                             "AND datname = current_database()")
        self.wait_up(120)
        took = time.monotonic() - started
        self.restarts.append(took)
        return took

    def _dead_end_backends(self) -> list[int]:
        """Children of the postmaster still bearing its own command line: "dead-end"
        backends, forked for connections that arrived during the shutdown to refuse them.
        PostgreSQL up to 16 does not signal them, even in an immediate shutdown, and waits
        for them to exit; one whose client never sends its startup packet waits for
        authentication_timeout (60 s). Seen here under load: a restart then takes over a
        minute, so the harness SIGKILLs them (they hold no shared state)."""
        listed = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True,
                                check=False).stdout.split()
        try:
            data = Path(listed[listed.index(str(self.cluster)) + 4])
            postmaster = int((data / "postmaster.pid").read_text().split()[0])
            own = Path(f"/proc/{postmaster}/cmdline").read_bytes()
        except (ValueError, IndexError, OSError):
            return []
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if not entry.name.isdigit():
                    continue
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == postmaster and (entry / "cmdline").read_bytes() == own:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
        return found

    def up(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    def wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.up():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL at {self.url} is not back within {timeout} s")
            time.sleep(0.2)

    def ensure_up(self, timeout: float = 180.0) -> None:
        """Whatever happened: the database answers before this returns (other tests
        need it). Starts the cluster again (once its old postmaster is gone) if needed."""
        deadline = time.monotonic() + timeout
        while not self.up():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL at {self.url} is not back within {timeout} s")
            if self.method == "pg_ctlcluster":  # refused while the old one still runs
                subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", str(self.version),
                                str(self.cluster), "start"], timeout=120, check=False,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)


def _postgres_processes() -> str:
    ps = subprocess.run(["ps", "-o", "pid,ppid,etimes,args", "-u", "postgres"],
                        capture_output=True, text=True, check=False).stdout
    ss = subprocess.run(["ss", "-tanp"], capture_output=True, text=True, check=False).stdout
    return ps + "".join(line + "\n" for line in ss.splitlines()
                        if ":5432" in line and line.startswith("ESTAB") and "users:" in line)
