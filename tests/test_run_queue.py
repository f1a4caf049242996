"""The run queue's claim rules, on SQLite and PostgreSQL: priority, fairness across
tenants, concurrency limits counted across workers, per-thread order, graph versions."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_harness import postgres_schema

from waypoint.service.tables import runs as run_table
from waypoint.service.tables.runs import ClaimRules, Run
from waypoint.service.tables.schema import migrate


@contextlib.contextmanager
def _sqlite(tmp: Any) -> Iterator[Any]:
    from waypoint.checkpoint.sqlite import SqliteSaver
    from waypoint.service.tables.db import SqliteDatabase

    path = str(tmp / "queue.db")
    with SqliteSaver.from_conn_string(path) as saver:
        db = SqliteDatabase(saver.run_write, path, saver.arun_write)
        migrate(db)
        try:
            yield db
        finally:
            db.close()


@contextlib.contextmanager
def _postgres() -> Iterator[Any]:
    from waypoint.service.tables.db import PostgresDatabase

    with postgres_schema() as url:
        db = PostgresDatabase(url)
        migrate(db)
        try:
            yield db
        finally:
            db.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    with (_sqlite(tmp_path) if request.param == "sqlite" else _postgres()) as database:
        yield database


_clock = [1000.0]


def _add(db: Any, *, tenant: str = "t1", thread: str | None = None, graph: str = "g",
         priority: int = 0, version: str | None = None) -> Run:
    _clock[0] += 1
    at = _clock[0]
    run = Run(run_id=uuid.uuid4().hex, thread_id=thread or uuid.uuid4().hex, tenant=tenant,
              assistant_id="a", graph_id=graph, status="pending", created_at=at,
              updated_at=at, not_before=at, metadata={}, kwargs={},
              multitask_strategy="enqueue", temporary=False, priority=priority,
              graph_version=version)
    db.run(lambda tx: run_table.insert(tx, run))
    return run


def _claim(db: Any, rules: ClaimRules | None = None, worker: str = "w") -> Run | None:
    return db.run(lambda tx: run_table.claim(tx, worker, 60, at=time.time(), rules=rules))


def test_higher_priority_first_then_the_oldest(db):
    old = _add(db)
    urgent = _add(db, priority=5)
    newer = _add(db)
    assert [_claim(db).run_id for _ in range(3)] == [urgent.run_id, old.run_id, newer.run_id]
    assert _claim(db) is None


def test_a_thread_keeps_its_order_whatever_the_priorities(db):
    first = _add(db, thread="chat")
    second = _add(db, thread="chat", priority=9)
    assert _claim(db).run_id == first.run_id
    assert _claim(db) is None  # the thread is busy: its second run waits
    db.run(lambda tx: run_table.finish(tx, first.run_id, "success"))
    assert _claim(db).run_id == second.run_id


def test_the_tenant_with_fewest_running_runs_goes_first(db):
    busy = [_add(db, tenant="big") for _ in range(3)]
    assert _claim(db).run_id == busy[0].run_id  # "big" now has one running
    small = _add(db, tenant="small")  # newer than big's pending runs, but small runs none
    assert _claim(db).run_id == small.run_id
    assert _claim(db).run_id == busy[1].run_id


def test_per_tenant_and_global_running_limits(db):
    rules = ClaimRules(tenant_max_running=1)
    a1, a2 = _add(db, tenant="a"), _add(db, tenant="a")
    b1 = _add(db, tenant="b")
    assert _claim(db, rules).run_id == a1.run_id
    assert _claim(db, rules).run_id == b1.run_id  # a is at its limit
    assert _claim(db, rules) is None
    db.run(lambda tx: run_table.finish(tx, a1.run_id, "success"))
    assert _claim(db, rules).run_id == a2.run_id
    capped = ClaimRules(max_running=3)
    _add(db, tenant="c")
    _add(db, tenant="c")
    assert _claim(db, capped) is not None  # a2, b1 and this one: three running
    assert _claim(db, capped) is None


def test_a_global_limit_holds_when_many_workers_claim_at_once():
    with _postgres() as db:
        for _ in range(12):
            _add(db, tenant=uuid.uuid4().hex)
        rules = ClaimRules(max_running=3)
        claimed: list[Any] = []
        barrier = threading.Barrier(8)

        def worker(name: str) -> None:
            barrier.wait()
            for _ in range(3):
                found = _claim(db, rules, worker=name)
                if found is not None:
                    claimed.append(found.run_id)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(claimed) == 3 == len(set(claimed))


def test_runs_are_pinned_to_the_graph_version_they_started_on(db):
    v1 = ClaimRules(versions={"g": "v1"})
    v2 = ClaimRules(versions={"g": "v2", "other": "x"})
    run = _add(db, thread="th")
    started = _claim(db, v1)
    assert started.run_id == run.run_id and started.graph_version == "v1"
    db.run(lambda tx: run_table.finish(tx, run.run_id, "interrupted"))
    pinned = db.run(lambda tx: run_table.thread_version(tx, "th", "g"))
    assert pinned == "v1"
    resume = _add(db, thread="th", version=pinned)  # what submitting on the thread does
    assert _claim(db, v2) is None  # a v2 worker never resumes a v1 thread
    assert _claim(db, ClaimRules(versions={"other": "x"})) is None  # nor one without "g"
    uses = db.run(lambda tx: run_table.versions_in_use(tx, "g"))
    assert ("g", "v1", "pending", 1) in uses and ("g", "v1", "interrupted", 1) in uses
    moved = db.run(lambda tx: run_table.migrate_version(tx, "g", "v2", from_version="v1"))
    assert moved == 2
    assert _claim(db, v2).run_id == resume.run_id


def test_next_due_names_only_runs_that_fall_due_later(db):
    _add(db)  # due already
    assert db.run(lambda tx: run_table.next_due(tx, time.time())) is None
    later = _add(db)
    db.run(lambda tx: tx.execute("UPDATE waypoint_runs SET not_before = ? WHERE run_id = ?",
                                 (time.time() + 60, later.run_id)))
    assert db.run(lambda tx: run_table.next_due(tx, time.time())) > time.time()


def test_the_runs_command_lists_versions_and_migrates_them_on_purpose(tmp_path, capsys):
    import json

    from waypoint.cli import main

    path = tmp_path / "queue.db"
    with _sqlite(tmp_path) as database:
        run = _add(database, graph="three", thread="paused", version="old+123")
        database.run(lambda tx: run_table.finish(tx, run.run_id, "interrupted"))
        _add(database, graph="three", thread="paused", version="old+123")
    config = tmp_path / "langgraph.json"
    graphs = Path(__file__).parent / "server_graphs.py"
    config.write_text(json.dumps({"graphs": {"three": f"{graphs}:three"},
                                  "waypoint": {"graph_versions": {"three": "v2"}}}))
    assert main(["runs", "versions", "--db", str(path), "--config", str(config)]) == 0
    listed = capsys.readouterr().err
    assert "old+123" in listed and "interrupted" in listed and "no" in listed
    assert "three v2+" in listed
    assert main(["runs", "migrate", "--graph", "three", "--to", "current", "--db", str(path),
                 "--config", str(config)]) == 0
    assert "2 run(s) of three now pinned to v2+" in capsys.readouterr().err
    assert main(["runs", "versions", "--db", str(path)]) == 0
    assert "old+123" not in capsys.readouterr().err
    assert main(["runs", "migrate", "--graph", "three", "--to", "current",
                 "--db", str(path)]) == 2  # "current" needs the config that serves it


def test_a_fleet_chore_is_claimed_by_one_process_per_period(db):
    from waypoint.service.tables import duties

    assert db.run(lambda tx: duties.claim(tx, "sweep", "a", 60, at=100.0))
    assert not db.run(lambda tx: duties.claim(tx, "sweep", "b", 60, at=130.0))
    assert db.run(lambda tx: duties.claim(tx, "other", "b", 60, at=130.0))
    assert db.run(lambda tx: duties.claim(tx, "sweep", "b", 60, at=160.0))  # a's lapsed
    assert not db.run(lambda tx: duties.claim(tx, "sweep", "a", 60, at=170.0))


def test_renewing_reports_runs_taken_elsewhere_but_not_runs_that_just_ended(db):
    ended, taken, held = _add(db), _add(db), _add(db)
    for _ in range(3):
        _claim(db, worker="me")
    db.run(lambda tx: run_table.finish(tx, ended.run_id, "success"))
    db.run(lambda tx: run_table.requeue(tx, taken.run_id))  # its lease lapsed
    lost = db.run(lambda tx: run_table.renew(
        tx, "me", [ended.run_id, taken.run_id, held.run_id], time.time() + 60))
    assert lost == [taken.run_id]


def _claim_next(db: Any, worker: str, at: float, max_takeovers: int | None = None
                ) -> run_table.Claimed:
    return db.run(lambda tx: run_table.claim_next(tx, worker, 60, at=at,
                                                  max_takeovers=max_takeovers))


def test_the_next_claim_takes_a_run_whose_lease_lapsed_but_never_a_live_one(db):
    at = time.time()
    dead, live = _add(db), _add(db)
    db.run(lambda tx: run_table.claim(tx, "dead", 10, at=at))  # `dead`, lease 10 s
    db.run(lambda tx: run_table.claim(tx, "alive", 60, at=at))  # `live`, lease 60 s
    early = _claim_next(db, "idle", at + 5)  # both leases still held
    assert early.run is None and early.lapsed == []
    taken = _claim_next(db, "idle", at + 11)  # dead's lapsed; the claim itself takes it
    assert taken.lapsed == [dead.run_id] and taken.run is not None
    assert (taken.run.run_id, taken.run.worker, taken.run.attempt) == (dead.run_id, "idle", 2)
    # the dead attempt is fenced out in that same transaction: it can no longer end the run
    assert not db.run(lambda tx: run_table.finish(tx, dead.run_id, "success", attempt=1))
    held = db.run(lambda tx: run_table.get(tx, live.run_id, None))
    assert (held.status, held.worker, held.attempt) == ("running", "alive", 1)
    assert _claim_next(db, "other", at + 12).run is None  # nothing lapsed twice


def test_a_run_whose_lease_lapsed_too_often_fails_at_the_claim_as_a_poison_run(db):
    at = time.time()
    run = _add(db)
    db.run(lambda tx: run_table.claim(tx, "dead", 10, at=at))
    claimed = _claim_next(db, "idle", at + 11, max_takeovers=0)
    assert claimed.run is None and claimed.lapsed == []
    assert [p.run_id for p in claimed.poisoned] == [run.run_id]
    assert claimed.poisoned[0].status == "error"
    assert claimed.poisoned[0].error["error"] == "PoisonRun"


def test_workers_claiming_at_once_take_each_lapsed_run_once():
    """Eight idle workers poll at the same moment over six runs of a dead worker: each run
    is taken by exactly one, and no claim puts back a run another claim just took."""
    with _postgres() as db:
        at = time.time()
        runs = [_add(db) for _ in range(6)]
        for _ in runs:
            db.run(lambda tx: run_table.claim(tx, "dead", 1, at=at))
        taken: list[tuple[str, str]] = []
        barrier = threading.Barrier(8)

        def worker(name: str) -> None:
            barrier.wait()
            for _ in range(3):
                found = _claim_next(db, name, at + 10).run
                if found is not None:
                    taken.append((found.run_id, name))

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # SKIP LOCKED lets a racing claim come back empty while others hold the rows: what
        # no claim took in the race, a later poll takes (never one taken already).
        for _ in range(len(runs)):
            found = _claim_next(db, "late", at + 10).run
            if found is not None:
                taken.append((found.run_id, "late"))
        assert sorted(r for r, _ in taken) == sorted(r.run_id for r in runs)
        for run_id, name in taken:
            row = db.run(lambda tx, r=run_id: run_table.get(tx, r, None))
            assert (row.status, row.worker, row.attempt) == ("running", name, 2)
