"""Chaos: an API process and two worker processes on PostgreSQL; 30 runs of a five-step
graph whose effects append to a side file; meanwhile workers are SIGKILLed at random
points (a replacement started each time) and PostgreSQL is restarted once under load.

Afterwards every run has finished with `success`, every step's output is in its run's
final state exactly once and no step was executed again after its commit (0 lost committed
steps), every effect's line is in the side file exactly once (0 repeated effects), and the
processes' logs hold no traceback but the database errors the restart causes.

An effect whose worker was killed between doing it and recording it is, by contract,
reported in doubt (the thread pauses with an `effect_in_doubt` interrupt): the test answers
it as a person would, by looking at the side file, and counts it.

The restart is `pg_ctlcluster --skip-systemctl-redirect <version> <cluster> restart` when
this runs as root beside the database; otherwise (or with
WAYPOINT_CHAOS_PG_RESTART=terminate) every other client backend of the database is
terminated with pg_terminate_backend, which is what a restart looks like to clients, and
the output says so. WAYPOINT_CHAOS_PG_RESTART=none leaves the database alone. The database
answers again before the test returns, whatever happened.

Runs in flight when the database restarts (or their connections are cut) are not failed:
their worker puts them back in the queue and they resume from their last checkpoint.

Random choices are seeded: WAYPOINT_CHAOS_SEED=<seed> replays a schedule (the seed is
printed; run with -s to see the summary).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter

from chaos_graphs import STEPS
from chaos_harness import (
    ChaosServer,
    Fleet,
    Kill,
    Ledger,
    held_by,
    pick_victim,
    summary_line,
    unexpected_tracebacks,
)
from postgres_control import PostgresControl
from server_harness import postgres_schema

# A bounded version for the suite; bench/chaos.py --trials 1000 is the long one.
KILLS = int(os.environ.get("WAYPOINT_CHAOS_KILLS", "6"))
RUNS = 3 * KILLS
LEASE_SECONDS = 2
STEP_DELAY = 0.3  # seconds per step (five steps a run)


def test_workers_killed_and_postgres_restarted_lose_nothing_and_repeat_nothing(tmp_path):
    seed = int(os.environ.get("WAYPOINT_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nchaos seed {seed} (replay: WAYPOINT_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    postgres = PostgresControl.detect()
    skip = os.environ.get("WAYPOINT_CHAOS_PG_RESTART") == "none"
    print("PostgreSQL restart skipped (WAYPOINT_CHAOS_PG_RESTART=none)" if skip
          else postgres.describe())
    what = ("restarted" if postgres.method == "pg_ctlcluster"
            else "had every other client backend terminated")
    restart_after = rng.randrange(3, KILLS - 2)  # under load, between two kills
    started = time.monotonic()
    with postgres_schema() as url:
        api = ChaosServer(tmp_path, postgres=url, workers=0, settings={
            "lease_seconds": LEASE_SECONDS, "poll_interval": 0.2,
            "max_takeovers": 100}).start()  # a run may be hit by several kills
        fleet = Fleet(api, size=2, concurrency=3)
        restarted = False
        try:
            fleet.start()
            with api.http() as http:
                ledger = Ledger(http, tmp_path, STEP_DELAY, url)
                # one run's worker dies inside an effect, after doing it: in doubt
                doubtful = ledger.submit(die_in_effect=str(tmp_path / "died-in-effect"))
                while len(ledger.kills) < KILLS:
                    while len(ledger.runs) < RUNS * (len(ledger.kills) + 1) // KILLS:
                        ledger.submit()
                    if len(ledger.kills) == restart_after and not restarted and not skip:
                        took = postgres.restart()
                        restarted = True
                        print(f"PostgreSQL {what} under load in {took:.1f} s "
                              f"({len(ledger.runs)} runs submitted)")
                    fleet.reap()  # the one that died in the effect
                    victim, _ = pick_victim(  # a worker running a run, at random
                        rng, url, lambda: list(fleet.alive),
                        lambda w: w.proc.pid if w.proc else None)
                    time.sleep(rng.uniform(0, STEP_DELAY))  # a random point in a step
                    if victim.proc.poll() is not None:  # it died on its own meanwhile
                        continue
                    pid = victim.proc.pid
                    held = held_by(url, pid)
                    ledger.kills.append(Kill(fleet.kill(victim), pid, held))
                    fleet.replace()
                while len(ledger.runs) < RUNS:
                    ledger.submit()
                fleet.reap()
                stuck = ledger.wait(timeout=120)
                verdict = ledger.verify()
        finally:
            fleet.stop()
            api.stop()
            postgres.ensure_up()  # whatever happened: the other tests need it

    logs = api.output() + fleet.logs()
    expected, unexpected = unexpected_tracebacks(logs, database_restarted=restarted)
    resumes = sum(len(run.run_ids) - 1 for run in ledger.runs)
    print(f"{verdict.runs} runs + {resumes} resume(s) ({dict(verdict.statuses)}), "
          f"{len(ledger.kills)} SIGKILLs "
          f"hitting {sum(len(k.runs) for k in ledger.kills)} running runs, "
          f"{len(postgres.restarts)} PostgreSQL restart(s); steps committed "
          f"{verdict.committed}, executed {verdict.executions} "
          f"({verdict.executions - verdict.committed} re-executed after kills); "
          f"effects in doubt answered: {len(verdict.in_doubt)} {verdict.in_doubt}")
    print(f"lost committed steps {len(verdict.lost_steps)}, repeated effects "
          f"{len(verdict.repeated_effects)}, stuck runs {len(verdict.stuck)}, runs failed by "
          f"the database restart {len(verdict.database_errors)}; takeover (kill -> next step "
          f"committed) {summary_line(verdict.takeover)}, lease {LEASE_SECONDS} s; "
          f"{len(expected)} expected traceback(s) (database restart); "
          f"{time.monotonic() - started:.1f} s")
    for line, count in Counter(item.split(" | ", 1)[1] for item in expected).items():
        print(f"  expected traceback x{count}: {line[:160]}")
    problems = verdict.problems()
    assert not stuck and not problems, f"still active after 120 s: {stuck}\n{problems}"
    assert not verdict.database_errors, verdict.database_errors  # resumed, not failed
    assert any(item.startswith(doubtful.run_id) and "happened: done" in item
               for item in verdict.in_doubt), verdict.in_doubt
    assert not unexpected, "unexpected tracebacks:\n" + "\n".join(unexpected) + "\n\n" + logs
    assert verdict.committed == len(ledger.runs) * len(STEPS)
