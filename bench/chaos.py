"""Chaos, the long version: SIGKILL trials under a steady load of runs; what was lost.

A trial is one SIGKILL at a random point: a process that holds a running run is picked,
killed 0..`--kill-window` seconds later (default: a run's length), and replaced.
Meanwhile `--load` runs of the five-step graph of `tests/chaos_graphs.py` are kept in
flight (three of its steps perform an effect that appends a line to a side file).

- `--mode postgres` (default): one `waypoint serve --workers 0` (API) and `--workers`
  `waypoint worker` processes on a fresh PostgreSQL schema; the killed worker's runs are
  taken over by another once their lease lapses; PostgreSQL is restarted every
  `--pg-restart-every` trials (`pg_ctlcluster ... restart` when root on the database's
  machine, else every other client backend is terminated: what a restart looks like to
  clients).
- `--mode sqlite`: one `waypoint serve` on a SQLite file, killed and started again; its
  runs resume at the start.

At the end (no more submissions; every run waited for, effects found in doubt answered
by looking at the side file, as a person would) it prints: trials, runs, lost committed
steps (a step missing from its run's final state though its run succeeded or a later step
began, or a step executed again after its checkpoint was committed), repeated effects (a
(run, step) line twice in the side file), stuck runs (still pending/running after
`--settle` seconds), runs that ended in error, and the takeover time: SIGKILL -> the next
step of each run the killed process held committed elsewhere (checkpoint time), p50 and
p99, beside `lease_seconds` (also SIGKILL -> a step of it starting elsewhere).

    python bench/chaos.py --trials 1000 [--mode postgres|sqlite] [--pg-restart-every 100]
        [--load 6] [--workers 2] [--concurrency 8] [--lease-seconds 2] [--delay 0.2]
        [--kill-window S] [--seed N] [--settle 300] [--keep]

The exit status is 1 when an invariant broke (lost step, repeated effect, stuck run,
failed run, unexpected traceback in a process log), 0 otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent)]

from chaos_graphs import STEPS  # noqa: E402
from chaos_harness import (  # noqa: E402  (tests/ is put on the path first)
    ChaosServer,
    Fleet,
    Kill,
    Ledger,
    Verdict,
    held_by,
    percentile,
    pick_victim,
    unexpected_tracebacks,
)
from postgres_control import PostgresControl  # noqa: E402
from server_harness import postgres_schema  # noqa: E402


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _top_up(ledger: Ledger, load: int) -> None:
    active = ledger.active()
    for _ in range(max(0, load - len(active))):
        ledger.submit()


def _settings(args: argparse.Namespace) -> dict[str, object]:
    # a run may be hit by many kills in a long bench: the poison-run limit is not measured
    return {"lease_seconds": args.lease_seconds, "poll_interval": 0.2,
            "max_takeovers": 10_000}


def run_postgres(args: argparse.Namespace, work: Path, rng: random.Random,
                 postgres: PostgresControl) -> tuple[Ledger, Verdict, str, int, list[str]]:
    restarted = died = 0
    with postgres_schema() as url:
        api = ChaosServer(work, postgres=url, workers=0, settings=_settings(args)).start()
        fleet = Fleet(api, size=args.workers, concurrency=args.concurrency)
        try:
            fleet.start()
            with api.http() as http:
                ledger = Ledger(http, work, args.delay, url)
                while (trial := len(ledger.kills)) < args.trials:
                    _top_up(ledger, args.load)
                    if (args.pg_restart_every and trial and trial % args.pg_restart_every == 0
                            and restarted < trial // args.pg_restart_every):
                        took = postgres.restart()
                        restarted += 1
                        _progress(f"trial {trial}: PostgreSQL restarted in {took:.1f} s")
                    died += fleet.reap()  # a worker that died on its own: a finding
                    victim, _ = pick_victim(rng, url, lambda: list(fleet.alive),
                                            lambda w: w.proc.pid if w.proc else None)
                    time.sleep(rng.uniform(0, args.kill_window))
                    if victim.proc.poll() is not None:
                        continue
                    pid = victim.proc.pid
                    held = held_by(url, pid)
                    ledger.kills.append(Kill(fleet.kill(victim), pid, held))
                    fleet.replace()
                    if (trial + 1) % 10 == 0:
                        _progress(f"trial {trial + 1}/{args.trials}: {len(ledger.runs)} runs "
                                  f"submitted")
                stuck = _settle(ledger, args.settle)
                verdict = _verify(ledger)
        finally:
            fleet.stop()
            api.stop()
            postgres.ensure_up()
        logs = api.output() + fleet.logs()
    ledger.died = died  # type: ignore[attr-defined]
    return ledger, verdict, logs, restarted, stuck


def run_sqlite(args: argparse.Namespace, work: Path, rng: random.Random
               ) -> tuple[Ledger, Verdict, str, int, list[str]]:
    db = str(work / "server.db")
    servers = [ChaosServer(work, settings=_settings(args)).start()]
    http = servers[-1].http()
    try:
        ledger = Ledger(http, work, args.delay, db)
        for trial in range(args.trials):
            _top_up(ledger, args.load)
            server = servers[-1]
            pid = server.proc.pid if server.proc else None
            pick_victim(rng, db, lambda s=server: [s], lambda _s, p=pid: p)
            time.sleep(rng.uniform(0, args.kill_window))
            held = held_by(db, pid)
            at = time.time()
            server.kill()
            ledger.kills.append(Kill(at, pid, held))
            servers.append(ChaosServer(work, settings=_settings(args)).start())
            http.close()
            http = ledger.http = servers[-1].http()
            if (trial + 1) % 10 == 0:
                _progress(f"trial {trial + 1}/{args.trials}: {len(ledger.runs)} runs submitted")
        stuck = _settle(ledger, args.settle)
        verdict = _verify(ledger)
    finally:
        http.close()
        servers[-1].stop()
        for server in servers:
            server.kill()
    return ledger, verdict, "".join(s.output() for s in servers), 0, stuck


def _verify(ledger: Ledger) -> Verdict:
    _progress(f"verifying {len(ledger.runs)} runs")
    return ledger.verify()


def _settle(ledger: Ledger, timeout: float) -> list[str]:
    _progress(f"waiting for {len(ledger.active())} active run(s) to end")
    return ledger.wait(timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--mode", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--pg-restart-every", type=int, default=100,
                        help="restart PostgreSQL every K trials (0: never)")
    parser.add_argument("--load", type=int, default=6, help="runs kept in flight")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (postgres)")
    parser.add_argument("--concurrency", type=int, default=8, help="runs at once per worker")
    parser.add_argument("--lease-seconds", type=float, default=2.0)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds per step")
    parser.add_argument("--kill-window", type=float, default=None,
                        help="a kill comes 0..this many seconds after a victim is found "
                             "(default: a run's length, 5 x --delay)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--settle", type=float, default=300.0,
                        help="seconds to wait for the last runs to end")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    if args.kill_window is None:
        args.kill_window = len(STEPS) * args.delay
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    postgres = PostgresControl.detect()
    print(f"chaos bench: mode {args.mode}, seed {seed} (replay: --seed {seed}), "
          f"{args.trials} trials, load {args.load} runs, lease {args.lease_seconds} s, "
          f"step {args.delay} s")
    if args.mode == "postgres" and args.pg_restart_every:
        print(postgres.describe())
    work = Path(tempfile.mkdtemp(prefix="waypoint-chaos-"))
    started = time.monotonic()
    try:
        if args.mode == "postgres":
            ledger, verdict, logs, restarts, stuck = run_postgres(args, work, rng, postgres)
        else:
            ledger, verdict, logs, restarts, stuck = run_sqlite(args, work, rng)
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    expected, unexpected = unexpected_tracebacks(logs, database_restarted=restarts > 0)
    hit = sum(len(k.runs) for k in ledger.kills)

    def seconds(values: list[float], q: float) -> str:
        found = percentile(values, q)
        return "n/a" if found is None else f"{found:.2f} s"

    rows = [
        ("mode", args.mode),
        ("trials (SIGKILLs)", f"{len(ledger.kills)}, hitting {hit} running runs"),
        ("PostgreSQL restarts", f"{restarts}" + (f" ({postgres.method})" if restarts else "")),
        ("runs", f"{verdict.runs} + {sum(len(r.run_ids) - 1 for r in ledger.runs)} "
                 f"resume(s) after a doubt ({dict(verdict.statuses)})"),
        ("steps committed / executed", f"{verdict.committed} / {verdict.executions}"),
        ("lost committed steps", str(len(verdict.lost_steps))),
        ("duplicate step outputs", str(len(verdict.duplicate_steps))),
        ("repeated effects", str(len(verdict.repeated_effects))),
        ("missing effects", str(len(verdict.missing_effects))),
        ("effects in doubt (answered)", str(len(verdict.in_doubt))),
        ("stuck runs", str(len(set(stuck) | set(verdict.stuck)))),
        ("runs ended not success", f"{len(verdict.not_success)} (database errors: "
                                   f"{len(verdict.database_errors)})"),
        ("takeover: kill -> next step committed",
         f"p50 {seconds(verdict.takeover, 0.5)}, p99 {seconds(verdict.takeover, 0.99)} "
         f"(n={len(verdict.takeover)}, {verdict.censored} killed again first; "
         + (f"lease_seconds {args.lease_seconds})" if args.mode == "postgres" else
            "includes the server's restart)")),
        ("kill -> a step starts elsewhere",
         f"p50 {seconds(verdict.resume, 0.5)}, p99 {seconds(verdict.resume, 0.99)}"),
        ("worker processes that died on their own", str(getattr(ledger, "died", 0))),
        ("tracebacks in logs", f"{len(expected)} expected (database restart), "
                               f"{len(unexpected)} unexpected"),
        ("wall time", f"{time.monotonic() - started:.0f} s"),
    ]
    print("| measure | value |")
    print("| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    problems = verdict.problems()
    if problems:
        print("\n" + problems)
    for line in unexpected[:20]:
        print(f"unexpected traceback: {line}")
    if os.environ.get("CHAOS_PRINT_LOGS"):
        print(logs)
    return 1 if problems or unexpected or stuck or getattr(ledger, "died", 0) else 0


if __name__ == "__main__":
    sys.exit(main())
