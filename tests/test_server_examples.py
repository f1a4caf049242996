"""The server examples, end to end: `examples/chat_service/` (seed 004's chat backend with an
approval before the refund) and `examples/server_client.py` (seed 002's background job).

One real `waypoint serve` process per backend (SQLite, PostgreSQL), started from the
example's own `langgraph.json` (graph paths made absolute, the database and the payment log
in the test's directory), with the scripted model. The tests drive it with the official
SDK and run the two client scripts as a user would, asserting on what they print.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import ServerProcess, postgres_schema

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "chat_service"
REFUND = "Hi, order A-1001 arrived with a cracked case. I'd like a refund please."
STREAM = ["messages-tuple", "values"]


class ExampleServer(ServerProcess):
    """`ServerProcess` serving `examples/chat_service/langgraph.json` as shipped, except
    where it keeps its files: graph paths are made absolute and the database goes to the
    test's directory (the example's own `.waypoint/` is left alone)."""

    def config_path(self) -> Path:
        data = json.loads((EXAMPLE / "langgraph.json").read_text())
        data["graphs"] = {name: f"{(EXAMPLE / target.rsplit(':', 1)[0]).resolve()}:"
                                f"{target.rsplit(':', 1)[1]}"
                          for name, target in data["graphs"].items()}
        data["waypoint"] = {**data.get("waypoint", {}), "db": str(self.workdir / "chat.db"),
                            "poll_interval": 0.2}
        path = self.workdir / "langgraph.json"
        path.write_text(json.dumps(data))
        return path


def start_example(workdir: Path, postgres: str | None = None) -> ExampleServer:
    """The example's server on the scripted model, its payment log in `workdir`."""
    env = {"WAYPOINT_CHAT_MODEL": "scripted", "WAYPOINT_SCRIPTED_DELAY": "0",
           "WAYPOINT_CHAT_LOG": str(workdir / "payments.log")}
    running = ExampleServer(workdir, postgres=postgres, env=env).start()
    running.payments = workdir / "payments.log"  # type: ignore[attr-defined]
    return running


@contextlib.contextmanager
def _database(backend: str) -> Any:
    """None for SQLite (the example's file in the test's directory), else a PostgreSQL URL
    on a fresh schema."""
    if backend == "postgres":
        with postgres_schema() as url:
            yield url
    else:
        yield None


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with _database(request.param) as url:
        running = start_example(tmp_path_factory.mktemp(f"chat_service-{request.param}"), url)
        try:
            yield running
        finally:
            running.stop()


def refunds(server: Any, thread_id: str) -> list[str]:
    """The refunds the stand-in payment system made on this thread (one log line each)."""
    path: Path = server.payments
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines if f"\t{thread_id}\trefund issued\t" in line]


async def _collect(stream: Any) -> list[Any]:
    return [part async for part in stream]


def _tokens(parts: list[Any], node: str) -> list[dict[str, Any]]:
    return [p.data[0] for p in parts
            if p.event == "messages" and p.data[1]["langgraph_node"] == node]


async def test_question_streams_tool_calls_and_the_reply_token_by_token(server: Any) -> None:
    client = server.client()
    thread = (await client.threads.create())["thread_id"]
    parts = await _collect(client.runs.stream(
        thread, "agent", stream_mode=STREAM,
        input={"messages": [{"role": "user", "content": "Where is my order A-1002?"}]}))
    streamed = _tokens(parts, "agent")
    # The tool call arrives as a message chunk of the agent node, its result from `tools`.
    calls = [c for c in streamed if c.get("tool_calls")]
    assert [c["tool_calls"][0]["name"] for c in calls] == ["lookup_order"]
    [result] = _tokens(parts, "tools")
    assert result["type"] == "tool" and result["tool_call_id"] == calls[0]["tool_calls"][0]["id"]
    reply = [c for c in streamed if c["content"]]
    assert len(reply) > 3  # several chunks, not one block
    final = [p.data for p in parts if p.event == "values"][-1]
    last = final["messages"][-1]
    assert "".join(c["content"] for c in reply) == last["content"]
    assert last["content"] == "Your order A-1002 (phone charger) is in transit."
    assert {c["id"] for c in reply} == {last["id"]}  # chunks and message share the id
    # The state is create_react_agent's conversation, as a chat UI renders it.
    assert [m["type"] for m in final["messages"]] == ["human", "ai", "tool", "ai"]
    assert final["messages"][1]["tool_calls"][0]["args"] == {"order_id": "A-1002"}
    assert final["messages"][2]["tool_call_id"] == final["messages"][1]["tool_calls"][0]["id"]
    assert "__interrupt__" not in final and refunds(server, thread) == []


async def test_refund_waits_for_approval_then_runs_once(server: Any) -> None:
    client = server.client()
    thread = (await client.threads.create())["thread_id"]
    parts = await _collect(client.runs.stream(
        thread, "agent", stream_mode=STREAM,
        input={"messages": [{"role": "user", "content": REFUND}]}))
    assert [c["tool_calls"][0]["name"] for c in _tokens(parts, "agent")
            if c.get("tool_calls")] == ["lookup_order", "refund_order"]
    paused = [p.data for p in parts if p.event == "values"][-1]
    asked = paused["__interrupt__"][0]["value"]
    assert asked["kind"] == "approval" and asked["request"]["tool"] == "refund_order"
    assert asked["request"]["args"] == {"order_id": "A-1001", "amount_usd": 89.0,
                                        "reason": "item arrived damaged"}
    assert asked["request"]["tool_call_id"] == paused["messages"][-1]["tool_calls"][0]["id"]
    assert (await client.threads.get(thread))["status"] == "interrupted"
    assert refunds(server, thread) == []  # nothing paid before a person decided

    http = server.http()
    inbox = http.get("/approvals", params={"thread_id": thread}).json()
    assert [a["status"] for a in inbox] == ["pending"]
    approval = inbox[0]["approval_id"]
    assert approval == asked["approval_id"] and inbox[0]["graph_id"] == "agent"
    assert inbox[0]["actions"] == ["approve", "reject", "edit"]
    assert inbox[0]["response_schema"]["properties"]["amount_usd"]["maximum"] == 500

    wrong = http.post(f"/approvals/{approval}/decide", json={"action": "refund"})
    assert wrong.status_code == 422 and "approve, reject, edit" in wrong.json()["detail"]
    too_much = http.post(f"/approvals/{approval}/decide", json={
        "action": "edit", "edits": {"order_id": "A-1001", "amount_usd": 900, "reason": "x"}})
    assert too_much.status_code == 422
    assert "amount_usd" in too_much.json()["detail"] and "reason" in too_much.json()["detail"]
    assert refunds(server, thread) == []

    decided = http.post(f"/approvals/{approval}/decide", json={
        "action": "edit", "by": "lee", "comment": "the case only",
        "edits": {"order_id": "A-1001", "amount_usd": 40, "reason": "cracked case"}})
    assert decided.status_code == 200, decided.text
    run = decided.json()["run"]
    final = await client.runs.join(thread, run["run_id"])
    assert final["messages"][-1]["content"].startswith("Done: $40.00 for order A-1001")
    assert len(refunds(server, thread)) == 1 and "$40.00" in refunds(server, thread)[0]
    record = http.get(f"/approvals/{approval}").json()
    assert record["status"] == "decided" and record["decision"]["by"] == "lee"
    assert http.post(f"/approvals/{approval}/decide",
                     json={"action": "approve"}).status_code == 409

    # The conversation goes on; the refund is not made again.
    more = await client.runs.wait(thread, "agent", input={
        "messages": [{"role": "user", "content": "Thanks! And where is A-1002?"}]})
    assert more["messages"][-1]["content"].startswith("Your order A-1002")
    assert len(refunds(server, thread)) == 1


async def test_resume_command_streams_reply_and_reject_pays_nothing(server: Any) -> None:
    client = server.client()
    approved, rejected = [(await client.threads.create())["thread_id"] for _ in range(2)]
    for thread in (approved, rejected):
        await client.runs.wait(thread, "agent", input={
            "messages": [{"role": "user", "content": REFUND}]})

    parts = await _collect(client.runs.stream(
        approved, "agent", stream_mode=STREAM,
        command={"resume": {"action": "approve", "by": "ada"}}))
    reply = "".join(c["content"] for c in _tokens(parts, "agent"))
    assert reply.startswith("Done: $89.00 for order A-1001")
    assert len(refunds(server, approved)) == 1

    parts = await _collect(client.runs.stream(
        rejected, "agent", stream_mode=STREAM,
        command={"resume": {"action": "reject", "by": "ada", "comment": "too late"}}))
    messages = [p.data for p in parts if p.event == "values"][-1]["messages"]
    assert messages[-2]["type"] == "tool"
    assert messages[-2]["content"].startswith("The call to refund_order was not approved: "
                                              "too late")
    assert messages[-2]["additional_kwargs"]["error_type"] == "rejected"
    assert messages[-1]["content"].startswith("I'm sorry, I can't refund this order")
    assert refunds(server, rejected) == []
    history = server.http().get("/approvals", params={"thread_id": rejected,
                                                      "status": "all"}).json()
    assert [a["decision"]["action"] for a in history] == ["reject"]


def _script(server: Any, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(path), "--url", server.url, *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


def test_chat_client_script_pauses_then_decides_later(server: Any) -> None:
    first = _script(server, EXAMPLE / "client.py")
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert "  [agent] calls lookup_order {\"order_id\": \"A-1001\"}" in out
    assert "[approval " in out and "refund_order" in out and "waits for a decision" in out
    assert "paused; the thread waits on the server" in out
    thread = out.split("--thread-id ")[1].split()[0]
    assert refunds(server, thread) == []

    refused = _script(server, EXAMPLE / "client.py", "--thread-id", thread,
                      "--edit-amount", "900", "--via", "inbox")
    assert refused.returncode == 2
    assert "refused the decision (422)" in refused.stderr and "amount_usd" in refused.stderr

    done = _script(server, EXAMPLE / "client.py", "--thread-id", thread, "--approve",
                   "--via", "inbox")
    assert done.returncode == 0, done.stderr
    assert "[decision] approve by support-lead (via inbox)" in done.stdout
    assert "  [tools] refund_order -> {\"refund_id\": \"rf-" in done.stdout
    assert "agent: Done: $89.00 for order A-1001" in done.stdout
    assert len(refunds(server, thread)) == 1


def test_background_job_script_streams_pauses_and_publishes(server: Any) -> None:
    run = _script(server, REPO / "examples" / "server_client.py", "--topic", "tidal power",
                  "--approve", "--title", "Tides, briefly")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.count("[start] background run ") == 2  # the job, then its resumption
    assert "queued (status pending)" in out
    assert "    ... planning: splitting 'tidal power' into subtasks" in out
    assert "  [done] research (FAILED: TimeoutError" in out
    assert "  [done] review (score 0.90, approved)" in out
    assert "  [paused] before publish: waiting for a person" in out
    assert "[status] run success; thread interrupted" in out
    assert "[decision] {'approval': 'approved', 'title': 'Tides, briefly'}" in out
    assert "  [done] publish (published)" in out
    assert "[status] run success; thread idle" in out
    assert "# Tides, briefly" in out and "research coverage: 3/4 subtasks" in out
    streamed = int(out.split("model tokens streamed in all")[0].rsplit("(", 1)[1])
    assert streamed > 0


def test_background_job_script_polls_and_resumes_by_thread_id(server: Any) -> None:
    first = _script(server, REPO / "examples" / "server_client.py", "--poll",
                    "--interval", "0.05")
    assert first.returncode == 0, first.stderr
    assert "[poll] GET /threads/" in first.stdout
    assert "  run success, next: publish" in first.stdout
    assert "paused; the job waits on the server" in first.stdout
    thread = first.stdout.split("--thread-id ")[1].split()[0]

    state = httpx.get(f"{server.url}/threads/{thread}/state").json()
    assert state["next"] == ["publish"] and state["values"]["status"] == "awaiting_approval"

    second = _script(server, REPO / "examples" / "server_client.py", "--thread-id", thread,
                     "--reject", "--poll", "--interval", "0.05")
    assert second.returncode == 0, second.stderr
    assert "[decision] {'approval': 'rejected'}" in second.stdout
    assert "not published: 'Grid-scale battery storage: a research brief' was rejected" \
        in second.stdout
    again = _script(server, REPO / "examples" / "server_client.py", "--thread-id", thread,
                    "--approve")
    assert "nothing to decide: the job is rejected" in again.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_paused_refund_and_edited_decisions_survive_a_restart(backend: str,
                                                                    tmp_path: Path) -> None:
    """A refund waiting for a person is still in the inbox after the server restarts, and
    the records of earlier edits (stored as the approval schema's objects) still read."""
    with _database(backend) as url:
        await _survive_a_restart(tmp_path, url)


async def _survive_a_restart(tmp_path: Path, url: str | None) -> None:
    first = start_example(tmp_path, url)
    try:
        client, http = first.client(), first.http()
        edited, waiting = [(await client.threads.create())["thread_id"] for _ in range(2)]
        for thread in (edited, waiting):
            await client.runs.wait(thread, "agent", input={
                "messages": [{"role": "user", "content": REFUND}]})
        [asked] = http.get("/approvals", params={"thread_id": edited}).json()
        run = http.post(f"/approvals/{asked['approval_id']}/decide", json={
            "action": "edit", "edits": {"order_id": "A-1001", "amount_usd": 10,
                                        "reason": "goodwill"}}).json()["run"]
        await client.runs.join(edited, run["run_id"])
    finally:
        first.stop()

    second = start_example(tmp_path, url)
    try:
        http = second.http()
        everything = http.get("/approvals", params={"status": "all"})
        assert everything.status_code == 200, everything.text
        assert sorted(a["status"] for a in everything.json()) == ["decided", "pending"]
        [pending] = http.get("/approvals").json()
        assert pending["thread_id"] == waiting
        decided = http.post(f"/approvals/{pending['approval_id']}/decide",
                            json={"action": "approve", "by": "lee"})
        assert decided.status_code == 200, decided.text
        final = await second.client().runs.join(waiting, decided.json()["run"]["run_id"])
        assert final["messages"][-1]["content"].startswith("Done: $89.00")
        assert len(refunds(second, waiting)) == 1 and len(refunds(second, edited)) == 1
    finally:
        second.stop()
