"""Time-travel debugging on the command line: threads, history, show, diff, replay, fork.

The graphs live in this module so `--graph test_cli_threads:...` imports them (pytest puts
tests/ on sys.path); CALLS counts node executions to tell a replay from a resume.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import operator
import os
from typing import Annotated, Any, TypedDict

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from waypoint import END, START, StateGraph, interrupt
from waypoint.checkpoint import SqliteSaver
from waypoint.cli import app, main
from waypoint.cli.state_diff import diff, diff_json, normalise, path_text
from waypoint.messages import AIMessage, HumanMessage

CALLS: dict[str, int] = {}
ME = __name__  # the module name `--graph` imports


class State(TypedDict):
    log: Annotated[list, operator.add]
    n: int
    note: str


def _node(name: str, add: int):
    def node(state: State) -> dict[str, Any]:
        CALLS[name] = CALLS.get(name, 0) + 1
        return {"log": [name], "n": state["n"] + add}

    return node


def chain(saver: Any) -> Any:
    """a -> b -> c, each adding to n (1, 10, 100)."""
    g = StateGraph(State)
    for name, add in (("a", 1), ("b", 10), ("c", 100)):
        g.add_node(name, _node(name, add))
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", END)
    return g.compile(checkpointer=saver)


def _ask(state: State) -> dict[str, Any]:
    CALLS["ask"] = CALLS.get("ask", 0) + 1
    answer = interrupt({"question": "ship it?", "n": state["n"]})
    return {"log": [answer]}


def asker(saver: Any) -> Any:
    """a -> ask (interrupt) -> END."""
    g = StateGraph(State)
    g.add_node("a", _node("a", 1))
    g.add_node("ask", _ask)
    g.add_edge(START, "a")
    g.add_edge("a", "ask")
    g.add_edge("ask", END)
    return g.compile(checkpointer=saver)


def _explode(state: State) -> dict[str, Any]:
    raise RuntimeError("the tool is down")


def broken(saver: Any) -> Any:
    g = StateGraph(State)
    g.add_node("a", _node("a", 1))
    g.add_node("boom", _explode)
    g.add_edge(START, "a")
    g.add_edge("a", "boom")
    g.add_edge("boom", END)
    return g.compile(checkpointer=saver)


CHAIN = chain(None)  # a compiled graph with no store: the CLI binds it to --db's
LONG = "why " * 50


@pytest.fixture
def db(tmp_path, monkeypatch):
    """A SQLite store with a finished thread, one waiting at an interrupt, one failed."""
    monkeypatch.setenv("COLUMNS", "250")  # tables not squeezed into 80 columns
    path = tmp_path / "store.db"
    with SqliteSaver.from_conn_string(str(path)) as saver:
        chain(saver).invoke({"log": [], "n": 0, "note": LONG},
                            {"configurable": {"thread_id": "chain"}})
        asker(saver).invoke({"log": [], "n": 0, "note": ""},
                            {"configurable": {"thread_id": "asker"},
                             "metadata": {"graph_id": "approvals"}})
        with pytest.raises(RuntimeError):
            broken(saver).invoke({"log": [], "n": 0, "note": ""},
                                 {"configurable": {"thread_id": "broken"}})
    CALLS.clear()
    return path


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def as_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def history_of(db, thread: str) -> list[dict[str, Any]]:
    return as_json("history", thread, "--db", db)


def at_step(db, thread: str, step: int) -> str:
    return next(row["checkpoint_id"] for row in history_of(db, thread) if row["step"] == step)


def refused(result: Any, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output


def test_threads_lists_every_thread_with_its_status(db):
    rows = as_json("threads", "--db", db)
    by_id = {row["thread_id"]: row for row in rows}
    assert [row["thread_id"] for row in rows] == ["broken", "asker", "chain"]  # newest first
    assert by_id["chain"]["status"] == "done" and by_id["chain"]["checkpoints"] == 5
    assert by_id["chain"]["step"] == 3 and by_id["chain"]["graph"] == ""
    waiting = by_id["asker"]
    assert (waiting["status"], waiting["detail"]) == ("waiting", "at interrupt (ask)")
    assert waiting["graph"] == "approvals" and waiting["next"] == ["ask"]
    assert waiting["interrupts"][0]["value"] == {"question": "ship it?", "n": 1}
    assert by_id["broken"]["status"] == "errored"
    assert "boom" in by_id["broken"]["detail"] and "the tool is down" in by_id["broken"]["detail"]
    assert [r["thread_id"] for r in as_json("threads", "--db", db, "--limit", "1")] == ["broken"]
    table = cli("threads", "--db", db)
    assert table.exit_code == 0
    assert "waiting at interrupt (ask)" in table.stdout and "approvals" in table.stdout


def test_history_shows_every_checkpoint_newest_first(db):
    rows = history_of(db, "chain")
    assert [r["step"] for r in rows] == [3, 2, 1, 0, -1]
    assert [r["source"] for r in rows] == ["loop"] * 4 + ["input"]
    assert [r["wrote"] for r in rows] == [["c"], ["b"], ["a"], ["__start__"], []]
    assert [r["next"] for r in rows] == [[], ["c"], ["b"], ["a"], ["__start__"]]
    assert [r["head"] for r in rows] == [True, False, False, False, False]
    assert all(r["parent_id"] == below["checkpoint_id"] for r, below in itertools.pairwise(rows))
    assert len(as_json("history", "chain", "--db", db, "--limit", "2")) == 2
    waiting = history_of(db, "asker")[0]
    assert waiting["interrupts"][0]["node"] == "ask"
    failed = history_of(db, "broken")[0]
    assert failed["errors"] == [{"node": "boom", "error": "RuntimeError: the tool is down"}]
    table = cli("history", "chain", "--db", db)
    assert table.exit_code == 0
    for row in rows:  # every checkpoint, by a short id
        assert row["checkpoint_id"][:8] in table.stdout
    assert "__start__" in table.stdout


def test_show_the_state_at_an_earlier_checkpoint(db):
    early = as_json("show", "chain", "--db", db, "--checkpoint", at_step(db, "chain", 1))
    assert early["values"] == {"log": ["a"], "n": 1, "note": LONG}
    assert early["next"] == ["b"] and early["step"] == 1 and not early["head"]
    latest = as_json("show", "chain", "--db", db)
    assert latest["values"]["n"] == 111 and latest["head"] and latest["next"] == []
    waiting = as_json("show", "asker", "--db", db)
    assert waiting["interrupts"][0]["value"]["question"] == "ship it?"
    tree = cli("show", "chain", "--db", db, "--checkpoint", at_step(db, "chain", 1))
    assert tree.exit_code == 0
    assert "n: 1" in tree.stdout and "next: b" in tree.stdout
    assert LONG.strip() not in tree.stdout and "chars)" in tree.stdout  # clipped
    full = cli("show", "chain", "--db", db, "--full")
    assert LONG.strip() in full.stdout.replace("\n", "")
    asked = cli("show", "asker", "--db", db)
    assert "interrupts (1)" in asked.stdout and "ship it?" in asked.stdout


def test_diff_names_added_and_changed_keys(db):
    step1, head = at_step(db, "chain", 1), at_step(db, "chain", 3)
    report = as_json("diff", "chain", step1, head, "--db", db)
    assert report["from"] == step1 and report["to"] == head
    assert report["added"] == [{"path": "log[1]", "value": "b"},
                               {"path": "log[2]", "value": "c"}]
    assert report["changed"] == [{"path": "n", "old": 1, "new": 111}]
    assert report["removed"] == []
    text = cli("diff", "chain", step1, head, "--db", db)
    assert "+ log[1]" in text.stdout and "~ n: 1 → 111" in text.stdout
    assert "2 added, 0 removed, 1 changed" in text.stdout


def test_replay_reruns_the_later_nodes_on_a_new_branch(db):
    before = history_of(db, "chain")
    step1 = at_step(db, "chain", 1)
    result = cli("replay", "chain", "--db", db, "--checkpoint", step1[:20],
                 "--graph", f"{ME}:chain", "--json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["node"], e["update"]["n"]) for e in events[:-1]] == [("b", 11), ("c", 111)]
    assert CALLS == {"b": 1, "c": 1}  # a is not re-run: the branch starts after it
    done = events[-1]
    assert done["event"] == "done" and done["from"] == step1 and done["next"] == []
    after = history_of(db, "chain")
    assert done["head"] == after[0]["checkpoint_id"] != before[0]["checkpoint_id"]
    assert after[0]["head"] and len(after) == len(before) + 3  # fork copy, b, c
    assert {r["checkpoint_id"] for r in before} <= {r["checkpoint_id"] for r in after}
    text = cli("replay", "chain", "--db", db, "--checkpoint", step1, "--graph", f"{ME}:CHAIN")
    assert text.exit_code == 0, text.output
    assert "new head:" in text.stdout and "n: 111" in text.stdout


def test_a_replay_that_fails_again_exits_1_and_says_why(db):
    result = cli("replay", "broken", "--db", db, "--checkpoint", at_step(db, "broken", 0),
                 "--graph", f"{ME}:broken")
    assert result.exit_code == 1
    assert "run failed" in result.output and "the tool is down" in result.output
    assert {r["thread_id"]: r["status"] for r in as_json("threads", "--db", db)}[
        "broken"] == "errored"


def test_replay_to_an_interrupt_waits_again(db):
    step0 = at_step(db, "asker", 0)
    result = cli("replay", "asker", "--db", db, "--checkpoint", step0,
                 "--graph", f"{ME}:asker", "--json")
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout.splitlines()[-1])
    assert done["next"] == ["ask"] and done["interrupts"][0]["node"] == "ask"
    assert CALLS == {"a": 1, "ask": 1}
    status = {r["thread_id"]: r["status"] for r in as_json("threads", "--db", db)}
    assert status["asker"] == "waiting"


def test_fork_writes_an_edited_branch_and_runs_it(db):
    step1 = at_step(db, "chain", 1)
    forked = cli("fork", "chain", "--db", db, "--checkpoint", step1, "--graph", f"{ME}:chain",
                 "--set", "n=1000", "--set", 'note="edited"', "--json")
    assert forked.exit_code == 0, forked.output
    event = json.loads(forked.stdout)
    assert event["event"] == "fork" and event["from"] == step1
    new = as_json("show", "chain", "--db", db, "--checkpoint", event["checkpoint_id"])
    assert new["values"]["n"] == 1000 and new["values"]["note"] == "edited"
    assert new["source"] == "update" and new["next"] == ["b"] and new["head"]
    assert CALLS == {}  # nothing ran yet
    ran = cli("fork", "chain", "--db", db, "--checkpoint", step1, "--graph", f"{ME}:chain",
              "--set", "n=5", "--run")
    assert ran.exit_code == 0, ran.output
    assert CALLS == {"b": 1, "c": 1}
    final = as_json("show", "chain", "--db", db)
    assert final["values"]["n"] == 115 and final["values"]["log"] == ["a", "b", "c"]
    ends = [as_json("show", "chain", "--db", db, "--checkpoint", row["checkpoint_id"])
            for row in history_of(db, "chain") if not row["next"]]
    assert sorted(end["values"]["n"] for end in ends) == [111, 115]  # the old branch stays


def test_mistakes_exit_2_with_a_message_and_write_nothing(db, tmp_path):
    head = at_step(db, "chain", 3)
    count = len(history_of(db, "chain"))
    graph = f"{ME}:chain"
    refused(cli("history", "nobody", "--db", db), "no thread 'nobody'")
    refused(cli("show", "nobody", "--db", db), "no thread 'nobody'")
    refused(cli("show", "chain", "--db", db, "--checkpoint", "ffff"), "no checkpoint 'ffff'")
    refused(cli("diff", "chain", head, "zzz", "--db", db), "no checkpoint 'zzz'")
    refused(cli("replay", "chain", "--db", db, "-c", "ffff", "--graph", graph),
            "no checkpoint 'ffff'")
    refused(cli("fork", "nobody", "--db", db, "-c", head, "--graph", graph, "--set", "n=1"),
            "no thread 'nobody'")
    refused(cli("fork", "chain", "--db", db, "-c", head, "--graph", graph, "--set", "n=oops"),
            "invalid JSON")
    refused(cli("fork", "chain", "--db", db, "-c", head, "--graph", graph, "--set", "n"),
            "expected KEY=JSON")
    refused(cli("fork", "chain", "--db", db, "-c", head, "--graph", graph, "--set",
                "colour=1"), "colour: not in the state schema")
    refused(cli("fork", "chain", "--db", db, "-c", head, "--graph", graph, "--set", "n=1",
                "--as-node", "nowhere"), "not a node")
    refused(cli("replay", "chain", "--db", db, "-c", head, "--graph", f"{ME}:missing"),
            "no attribute 'missing'")
    refused(cli("threads", "--db", tmp_path / "absent.db"), "no database file")
    refused(cli("threads"), "pass one of --db FILE or --postgres URL")
    assert len(history_of(db, "chain")) == count and CALLS == {}


def test_a_unique_prefix_works_and_an_ambiguous_one_is_refused(db):
    ids = [row["checkpoint_id"] for row in history_of(db, "chain")]
    a, b = ids[1], ids[2]
    shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
    unique = next(a[:n] for n in range(shared + 1, len(a) + 1)
                  if sum(i.startswith(a[:n]) for i in ids) == 1)
    shown = as_json("show", "chain", "--db", db, "--checkpoint", unique.upper())
    assert shown["checkpoint_id"] == a
    refused(cli("show", "chain", "--db", db, "--checkpoint", a[:shared]), "ambiguous")


def test_main_entry_point_prints_json(db, capsys):
    assert main(["history", "chain", "--db", str(db), "--json", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["step"] == 3
    assert main(["show", "nobody", "--db", str(db)]) == 2
    assert "no thread 'nobody'" in capsys.readouterr().err


def test_threads_and_history_on_postgres():
    from store_backends import private_postgres_database, require

    require("postgres")  # skips when unreachable, fails under CI=true
    from waypoint.checkpoint.postgres import PostgresSaver

    thread = f"cli-{os.urandom(6).hex()}"
    with private_postgres_database() as url:  # `threads` lists every thread of a database
        with PostgresSaver.from_conn_string(url) as saver:
            asker(saver).invoke({"log": [], "n": 0, "note": ""},
                                {"configurable": {"thread_id": thread}})
        rows = as_json("threads", "--postgres", url)
        assert [(r["thread_id"], r["status"], r["checkpoints"]) for r in rows] == [
            (thread, "waiting", 3)]
        history = as_json("history", thread, "--postgres", url)
        assert [r["step"] for r in history] == [1, 0, -1]
        assert history[0]["interrupts"][0]["node"] == "ask"


# -- the diff module on its own --------------------------------------------------------


class Note(BaseModel):
    title: str
    tags: list[str] = []


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_state_diff_recurses_into_dicts_and_lists():
    old = {"plan": {"steps": ["a", "b"], "owner": {"name": "Ada"}}, "gone": 1, "same": [1]}
    new = {"plan": {"steps": ["a", "B", "c"], "owner": {"name": "Ada", "age": 36}},
           "same": [1], "fresh": {"k": [1]}}
    report = diff_json(diff(old, new))
    assert report["added"] == [{"path": "plan.steps[2]", "value": "c"},
                               {"path": "plan.owner.age", "value": 36},
                               {"path": "fresh", "value": {"k": [1]}}]
    assert report["removed"] == [{"path": "gone", "value": 1}]
    assert report["changed"] == [{"path": "plan.steps[1]", "old": "b", "new": "B"}]
    shrunk = diff({"xs": [1, 2, 3]}, {"xs": [1]})
    assert [(c.kind, c.where, c.old) for c in shrunk] == [("removed", "xs[1]", 2),
                                                          ("removed", "xs[2]", 3)]
    assert diff({"a": 1}, {"a": 1.0})[0].kind == "changed"  # a type change is a change
    assert diff({"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1, {"c": 2}]}}) == []


def test_state_diff_matches_messages_by_id():
    hi = HumanMessage("hi", id="m1")
    old = {"messages": [hi, AIMessage("hel", id="m2")]}
    new = {"messages": [hi, AIMessage("hello", id="m2"), HumanMessage("thanks", id="m3")]}
    report = diff_json(diff(old, new))
    assert report["changed"] == [{"path": "messages[1].content", "old": "hel", "new": "hello"}]
    assert [a["path"] for a in report["added"]] == ["messages[2]"]
    assert report["added"][0]["value"]["content"] == "thanks"
    assert report["added"][0]["value"]["type"] == "human"
    removed = diff_json(diff(new, {"messages": [new["messages"][2]]}))
    assert [r["path"] for r in removed["removed"]] == ["messages[0]", "messages[1]"]
    assert removed["added"] == [] and removed["changed"] == []


def test_state_diff_normalises_models_dataclasses_and_langchain_messages():
    from langchain_core.messages import AIMessage as LCMessage

    assert normalise(Note(title="t", tags=["x"])) == {"title": "t", "tags": ["x"]}
    assert normalise(Point(1, 2)) == {"x": 1, "y": 2}
    assert normalise({1: (1, 2), "s": {3}}) == {"1": [1, 2], "s": [3]}
    assert normalise(b"hi") == "aGk="
    loop: list[Any] = []
    loop.append(loop)
    assert normalise(loop) == ["<cycle>"]
    lc = normalise(LCMessage("ok", id="x"))
    assert lc["content"] == "ok" and lc["type"] == "ai" and lc["id"] == "x"
    changes = diff({"note": Note(title="a")}, {"note": Note(title="b", tags=["new"])})
    assert [(c.kind, c.where) for c in changes] == [("changed", "note.title"),
                                                    ("added", "note.tags[0]")]
    assert path_text(("a", 0, "weird key", "b")) == "a[0]['weird key'].b"
