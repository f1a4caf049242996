"""`waypoint usage`: the durable ledger summed on the command line (table and JSON), from a
SQLite file or PostgreSQL (which, under CI=true, must be reachable)."""

from __future__ import annotations

import json
import time

from server_harness import postgres_schema
from store_backends import require
from typer.testing import CliRunner

from waypoint.checkpoint import SqliteSaver
from waypoint.cli import app
from waypoint.usage import Usage, UsageRecord, parse_moment


def _ledger(path) -> None:
    with SqliteSaver.from_conn_string(str(path)) as saver:
        _fill(saver)


def _fill(saver) -> None:
    now = time.time()
    saver.put_usage([
        UsageRecord("gpt-x", Usage(100, 20), 0.5, 1.0, "t1", "r1", "write", at=now),
        UsageRecord("gpt-x", Usage(50, 10), None, 0.5, "t1", "r1", "review", at=now),
        UsageRecord("search", Usage(), 0.01, 0.2, "t1", "r1", "tools", at=now, kind="tool"),
        UsageRecord("gpt-x", Usage(7, 7), 0.1, 0.1, "t2", "r2", "write", at=now - 30 * 86400),
    ])


def test_usage_groups_filters_and_prints_json(tmp_path):
    db = tmp_path / "ledger.db"
    _ledger(db)
    runner = CliRunner()
    out = runner.invoke(app, ["usage", "--db", str(db), "--by", "node", "--since", "7d",
                              "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    nodes = {g["node"]: g for g in report["groups"]}
    assert set(nodes) == {"write", "review", "tools"}
    assert nodes["review"]["cost_usd"] is None and nodes["review"]["unpriced_calls"] == 1
    assert report["total"]["calls"] == 3 and report["total"]["cost_usd"] is None
    table = runner.invoke(app, ["usage", "--db", str(db), "--by", "model,kind",
                                "--thread", "t1"])
    assert table.exit_code == 0 and "gpt-x" in table.output and "unknown" in table.output
    everything = json.loads(runner.invoke(app, ["usage", "--db", str(db), "--json"]).output)
    assert everything["total"]["calls"] == 4


def test_usage_reads_a_postgres_ledger():
    cls = require("postgres")  # skips here without PostgreSQL; fails under CI=true
    with postgres_schema() as url:  # a fresh schema: only this test's rows
        with cls.from_conn_string(url) as saver:
            _fill(saver)
        runner = CliRunner()
        out = runner.invoke(app, ["usage", "--postgres", url, "--by", "node", "--since", "7d",
                                  "--json"])
        assert out.exit_code == 0, out.output
        report = json.loads(out.output)
        nodes = {g["node"]: g for g in report["groups"]}
        assert set(nodes) == {"write", "review", "tools"}
        assert nodes["write"]["cost_usd"] == 0.5 and nodes["write"]["input_tokens"] == 100
        assert nodes["review"]["cost_usd"] is None and nodes["review"]["unpriced_calls"] == 1
        assert report["total"]["calls"] == 3 and report["total"]["cost_usd"] is None
        table = runner.invoke(app, ["usage", "--postgres", url, "--by", "model,kind",
                                    "--thread", "t1"])
        assert table.exit_code == 0, table.output
        assert "gpt-x" in table.output and "unknown" in table.output
        by_thread = json.loads(runner.invoke(app, ["usage", "--postgres", url, "--by",
                                                   "thread_id", "--json"]).output)
        assert {g["thread_id"]: g["calls"] for g in by_thread["groups"]} == {"t1": 3, "t2": 1}
        both = runner.invoke(app, ["usage", "--postgres", url, "--db", "x.db"])
        assert both.exit_code == 2 and "one of --db FILE or --postgres URL" in both.output


def test_usage_refuses_bad_input_by_name(tmp_path):
    db = tmp_path / "ledger.db"
    _ledger(db)
    runner = CliRunner()
    bad = runner.invoke(app, ["usage", "--db", str(db), "--by", "colour"])
    assert bad.exit_code == 2 and "colour" in bad.output
    when = runner.invoke(app, ["usage", "--db", str(db), "--since", "last tuesday"])
    assert when.exit_code == 2 and "duration" in when.output
    missing = runner.invoke(app, ["usage", "--db", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and "no database file" in missing.output
    neither = runner.invoke(app, ["usage"])
    assert neither.exit_code == 2


def test_time_bounds_parse_durations_dates_and_epochs():
    assert parse_moment("2d", now=1_000_000.0) == 1_000_000.0 - 2 * 86400
    assert parse_moment("1700000000") == 1_700_000_000.0
    assert parse_moment("2026-12-01") == parse_moment("2026-12-01T00:00:00Z")
