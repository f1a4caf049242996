"""The three policy examples end to end, with scripted models or none, on SQLite files:
examples/deployment.py (seed 001), examples/resilient_node.py (seed 000) and
examples/agent_template.py (seed 004)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from waypoint import Command, RetryPolicy, fire_due_timers
from waypoint.checkpoint import SqliteSaver
from waypoint.messages import AIMessage, HumanMessage, ToolMessage
from waypoint.models import ScriptedModel

REPO = Path(__file__).resolve().parents[1]
FAST = RetryPolicy(initial_interval=0, jitter=False, max_attempts=4)


def _load(name: str) -> ModuleType:
    module_name = f"policy_example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


dep = _load("deployment")
res = _load("resilient_node")
agt = _load("agent_template")


def _config(prefix: str = "t") -> dict:
    return {"configurable": {"thread_id": f"{prefix}-{uuid.uuid4().hex[:8]}"}}


def _thread(config: dict) -> str:
    return config["configurable"]["thread_id"]


@pytest.fixture
def saver(tmp_path):
    with SqliteSaver.from_conn_string(str(tmp_path / "checkpoints.db")) as store:
        yield store


def _approval(app, config) -> dict:
    values = [i.value for i in app.get_state(config).interrupts
              if isinstance(i.value, dict) and i.value.get("kind") == "approval"]
    assert len(values) == 1, f"expected one pending approval, got {values}"
    return values[0]


# =========================================================================================
# deployment.py (seed 001)
# =========================================================================================


def _deploy_to_gate(saver, tmp_path, **options):
    app = dep.build_graph(saver, retry_policy=FAST)
    config = _config("deploy")
    log = tmp_path / "deploy.log"
    app.invoke(dep.initial_state(log=log, **options), config)
    return app, config, log


def _events(log, config, system=None, event=None):
    return dep.read_log(log, _thread(config), system, event)


def test_deployment_retries_flaky_steps_then_deploys_once_when_approved(saver, tmp_path):
    app, config, log = _deploy_to_gate(saver, tmp_path, flaky_tests=1, flaky_build=2)
    # Transient failures were retried: tests failed once, the build twice, then both passed.
    assert len(_events(log, config, "ci", "failed")) == 1
    assert len(_events(log, config, "registry", "failed")) == 2
    assert len(_events(log, config, "registry", "image pushed")) == 1
    retries = [r for snap in app.get_state_history(config)
               for r in (snap.metadata or {}).get("retries", ())]
    assert sorted(r["node"] for r in retries) == ["build", "build", "run_tests"]
    assert {r["kind"] for r in retries} == {"transient"}

    request = _approval(app, config)
    assert request["request"]["version"] == "v1.4.2"
    assert request["assignee"] == "release-manager"
    assert set(request["actions"]) == {"approve", "reject"}
    pending = saver.list_pending_approvals(_thread(config))
    assert [p.id for p in pending] == [request["approval_id"]]
    assert _events(log, config, "cluster") == []  # nothing deployed before the decision

    out = app.invoke(Command(resume={"action": "approve", "by": "alice", "comment": "LGTM"}),
                     config)
    assert out["status"] == "deployed"
    assert out["smoke"] == ["/health -> 200", "/api/v1/status -> 200"]
    deployed = _events(log, config, "cluster", "deployed")
    assert len(deployed) == 1
    assert f"key={out['deployment']['key']}" in deployed[0][4]
    record = saver.get_approval(_thread(config), request["approval_id"])
    assert record.status == "decided"
    assert record.decision["by"] == "alice" and record.decision["comment"] == "LGTM"
    effects = [e for e in saver.list_effects(_thread(config)) if e.name == "deploy"]
    assert [e.status for e in effects] == ["done"]

    # Nothing runs twice: resuming the finished thread, or replaying the deploy step from
    # the checkpoint before it, reuses the recorded deploy instead of deploying again.
    app.invoke(None, config)
    before_deploy = next(s for s in app.get_state_history(config) if s.next == ("deploy",))
    noted = [chunk["effect"]["status"]
             for chunk in app.stream(None, before_deploy.config, stream_mode="tasks")
             if "effect" in chunk]
    assert noted == ["reused"]  # the deploy node ran again; the deploy itself did not
    assert len(_events(log, config, "cluster", "deployed")) == 1


def test_deployment_rejected_does_not_deploy(saver, tmp_path):
    app, config, log = _deploy_to_gate(saver, tmp_path)
    request = _approval(app, config)
    out = app.invoke(Command(resume={"action": "reject", "by": "bob",
                                     "comment": "freeze until Monday"}), config)
    assert out["status"] == "rejected"
    assert out["deployment"] is None
    assert app.get_state(config).next == ()
    assert _events(log, config, "cluster") == []
    assert saver.list_effects(_thread(config)) == []
    record = saver.get_approval(_thread(config), request["approval_id"])
    assert record.decision["action"] == "reject" and record.decision["by"] == "bob"


def test_deployment_bad_decision_is_refused_and_asked_again(saver, tmp_path):
    app, config, _log = _deploy_to_gate(saver, tmp_path)
    app.invoke(Command(resume={"action": "ship it"}), config)
    again = _approval(app, config)
    assert "action must be one of approve, reject" in again["error"]
    out = app.invoke(Command(resume={"action": "approve", "by": "alice"}), config)
    assert out["status"] == "deployed"


def test_failed_smoke_test_rolls_the_deploy_back_once(saver, tmp_path):
    app, config, log = _deploy_to_gate(saver, tmp_path, fail_smoke=True)
    with pytest.raises(dep.SmokeTestFailed) as info:
        app.invoke(Command(resume={"action": "approve", "by": "alice"}), config)
    assert info.value.compensation["compensated"] == ["deploy"]
    assert info.value.compensation["failed"] == []
    deployed = _events(log, config, "cluster", "deployed")
    rolled_back = _events(log, config, "cluster", "rolled back")
    assert len(deployed) == 1 and len(rolled_back) == 1
    deployment_id = deployed[0][4].split()[0]
    assert rolled_back[0][4].startswith(deployment_id)
    assert [r[3] for r in _events(log, config)][-2:] == ["failed", "rolled back"]
    state = app.get_state(config)
    assert state.next == ()
    assert state.metadata["compensation"]["compensated"] == ["deploy"]
    assert len([e for e in saver.list_effects(_thread(config)) if e.name == "deploy"]) == 1
    # The thread is over: resuming it neither deploys nor rolls back again.
    app.invoke(None, config)
    assert len(_events(log, config, "cluster")) == 2


def test_approval_deadline_fires_from_the_timers_command(tmp_path):
    db, log = tmp_path / "deploy.db", tmp_path / "deploy.log"
    config = _config("deploy")
    with SqliteSaver.from_conn_string(str(db)) as store:
        app = dep.build_graph(store, retry_policy=FAST)
        app.invoke(dep.initial_state(log=log, deadline=0), config)
        request = _approval(app, config)
        assert request["deadline"] is not None
    # No process runs now; the deadline has passed. A scheduler process fires it.
    done = subprocess.run(
        [sys.executable, "-m", "waypoint.cli", "timers", "--graph",
         "examples.deployment:build_graph", "--store", str(db)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert f"fired: thread {_thread(config)}" in done.stdout
    with SqliteSaver.from_conn_string(str(db)) as store:
        app = dep.build_graph(store, retry_policy=FAST)
        values = app.get_state(config).values
        assert values["status"] == "expired"
        assert values["decision"]["timed_out"] is True
        assert values["decision"]["by"] == "deadline"
        record = store.get_approval(_thread(config), request["approval_id"])
        assert record.status == "expired"
        assert store.list_pending_approvals(_thread(config)) == []
    assert dep.read_log(log, _thread(config), "cluster") == []


def test_approval_deadline_escalates_then_the_escalated_person_decides(saver, tmp_path):
    app, config, log = _deploy_to_gate(saver, tmp_path, deadline=3600, on_timeout="escalate")
    first = _approval(app, config)
    assert first["assignee"] == "release-manager"
    assert fire_due_timers(app, now=time.time() + 10) == []  # not due yet
    fired = fire_due_timers(app, now=first["deadline"] + 1)
    assert [f.outcome for f in fired] == ["fired"]
    second = _approval(app, config)
    assert second["assignee"] == "head-of-engineering"
    assert second["escalations"] == 1
    assert second["approval_id"] == first["approval_id"]
    out = app.invoke(Command(resume={"action": "approve", "by": "carol"}), config)
    assert out["status"] == "deployed"
    assert out["decision"]["escalations"] == 1
    assert len(_events(log, config, "cluster", "deployed")) == 1


def test_deployment_cli_approves_and_reports_a_rollback(tmp_path, capsys):
    db, log = str(tmp_path / "d.db"), str(tmp_path / "d.log")
    assert dep.main(["--approve", "--by", "alice", "--db", db, "--log", log]) == 0
    out = capsys.readouterr().out
    assert "[effect] deploy ran" in out and "status: deployed" in out
    assert dep.main(["--approve", "--fail-smoke", "--db", db, "--log", log]) == 1
    out = capsys.readouterr().out
    assert "[compensated] deploy" in out
    assert "rolled back" in out


# =========================================================================================
# resilient_node.py (seed 000)
# =========================================================================================

NODE_FAST = RetryPolicy(initial_interval=0, jitter=False, max_attempts=2)


def _resilient(saver, tmp_path, *, fallback_down=False, fail_publish=False):
    waits: list[float] = []
    model = res.make_model("scripted", fallback_down=fallback_down, sleep=waits.append)
    app = res.build_graph(model, saver, node_retry=NODE_FAST)
    config = _config("incident")
    log = tmp_path / "status.log"
    inputs = {"notes": res.DEFAULT_NOTES,
              "sim": {"log": str(log), "fail_publish": fail_publish}}
    return app, config, log, model, waits, inputs


def test_primary_fails_and_the_fallback_answers(saver, tmp_path):
    app, config, log, model, waits, inputs = _resilient(saver, tmp_path)
    out = app.invoke(inputs, config)
    primary, fallback = model.models
    assert len(primary.requests) == 3  # the first try and two retries
    assert len(fallback.requests) == 1
    assert 1.5 in waits  # the 429's retry-after was honoured (longer than the backoff)
    assert out["written_by"] == "fallback-scripted"
    assert res.StatusUpdate.model_validate(out["update"]).status == "resolved"
    assert out["outcome"] == "published"
    assert [r[2] for r in res.read_log(log, _thread(config))] == ["draft created", "published"]
    assert [r.model for r in model.ledger.records()] == ["fallback-scripted"]


def test_both_models_fail_so_a_person_writes_the_update(saver, tmp_path):
    app, config, log, model, _waits, inputs = _resilient(saver, tmp_path, fallback_down=True)
    app.invoke(inputs, config)
    _primary, fallback = model.models
    assert len(fallback.requests) == 6  # 3 tries per node attempt, 2 node attempts
    request = _approval(app, config)
    assert request["actions"] == ["respond", "reject"]
    assert request["assignee"] == "on-call"
    errors = request["request"]["errors"]
    assert any(e.startswith("primary-gpt:") for e in errors)
    assert any(e.startswith("fallback-scripted:") for e in errors)
    assert res.read_log(log, _thread(config)) == []  # nothing staged without an update
    assert [p.id for p in saver.list_pending_approvals(_thread(config))] == [
        request["approval_id"]]

    # An answer that does not fit the schema is refused and the person asked again.
    app.invoke(Command(resume={"action": "respond", "by": "dana",
                               "edits": {"title": "Hi", "status": "resolved", "body": "ok"}}),
               config)
    again = _approval(app, config)
    assert "edits do not fit the schema" in again["error"]

    body = "Checkout failed for some customers between 14:05 and 14:40 UTC; it works again."
    out = app.invoke(Command(resume={"action": "respond", "by": "dana", "edits": {
        "title": "Checkout errors earlier today", "status": "resolved", "body": body}}), config)
    assert out["update"]["body"] == body
    assert out["written_by"] == "human:dana"
    assert out["outcome"] == "published"
    assert len(fallback.requests) == 6  # the models were not called again on resume
    assert [r[2] for r in res.read_log(log, _thread(config))] == ["draft created", "published"]


def test_person_gives_up_and_nothing_is_published(saver, tmp_path):
    app, config, log, _model, _waits, inputs = _resilient(saver, tmp_path, fallback_down=True)
    app.invoke(inputs, config)
    out = app.invoke(Command(resume={"action": "reject", "by": "dana"}), config)
    assert out["outcome"] == "abandoned"
    assert res.read_log(log, _thread(config)) == []


def test_failed_publish_compensates_the_draft(saver, tmp_path):
    app, config, log, _model, _waits, inputs = _resilient(saver, tmp_path, fail_publish=True)
    with pytest.raises(Exception, match="mail provider rejected") as info:
        app.invoke(inputs, config)
    assert info.value.compensation["compensated"] == ["stage_draft"]
    events = [r[2] for r in res.read_log(log, _thread(config))]
    assert events == ["draft created", "publish refused", "draft deleted"]


def test_resilient_cli_falls_back(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(res.time, "sleep", lambda s: None)  # the gateway's default sleep
    db, log = str(tmp_path / "r.db"), str(tmp_path / "r.log")
    code = res.main(["--model", "scripted", "--db", db, "--log", log])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "written by fallback-scripted" in out and "outcome: published" in out


# =========================================================================================
# agent_template.py (seed 004): create_react_agent with an approval before the refund
# =========================================================================================


def _agent(saver, tmp_path, *, model=None, orders_down=False, max_turns=agt.MAX_TURNS,
           request=agt.DEFAULT_REQUEST, budget=agt.BUDGET):
    model = model or agt.make_model("scripted")
    app = agt.build_agent(model, saver, retry=FAST, budget=budget)
    config = agt.run_config(f"agent-{uuid.uuid4().hex[:8]}", max_turns)
    log = tmp_path / "agent.log"
    app.invoke({"messages": [HumanMessage(request)],
                "sim": {"log": str(log), "orders_down": orders_down}}, config)
    return app, config, log, model


def _refunds(log, config):
    return [r for r in agt.read_log(log, _thread(config)) if r[2] == "refund issued"]


def _tool_results(messages, name):
    return [m for m in messages if isinstance(m, ToolMessage) and m.name == name]


def test_tool_loop_pauses_before_the_refund_and_approval_runs_it_once(saver, tmp_path):
    app, config, log, model = _agent(saver, tmp_path)
    # The loop ran: lookup (no approval needed), then the refund call, which waits.
    state = app.get_state(config)
    assert state.next == ("tools",)
    [lookup] = _tool_results(state.values["messages"], "lookup_order")
    assert json.loads(lookup.text)["amount_usd"] == 89.0
    request = _approval(app, config)
    assert request["request"]["tool"] == "refund_order"
    assert request["request"]["effect"] == "dangerous"
    assert request["request"]["args"] == {"order_id": "A-1001", "amount_usd": 89.0,
                                          "reason": "item arrived damaged"}
    assert request["actions"] == ["approve", "reject", "edit"]
    assert request["schema"]["properties"]["amount_usd"]["maximum"] == 500
    assert [p.id for p in saver.list_pending_approvals(_thread(config))] == [
        request["approval_id"]]
    assert _refunds(log, config) == []  # nothing paid before the decision
    assert len(model.requests) == 2

    out = app.invoke(Command(resume={"action": "approve", "by": "erin"}), config)
    assert len(_refunds(log, config)) == 1
    assert agt.outcome(out["messages"]) == "answered"
    assert out["messages"][-1].text.startswith("Done: $89.00 for order A-1001")
    [refund] = _tool_results(out["messages"], "refund_order")
    assert "rf-" in refund.text
    assert [e.status for e in saver.list_effects(_thread(config))] == ["done"]
    assert saver.get_approval(_thread(config), request["approval_id"]).decision["by"] == "erin"
    app.invoke(None, config)  # a finished thread does nothing more
    assert len(_refunds(log, config)) == 1 and len(model.requests) == 3


def test_rejected_refund_does_not_run_and_the_model_is_told(saver, tmp_path):
    app, config, log, model = _agent(saver, tmp_path)
    out = app.invoke(Command(resume={"action": "reject", "by": "erin",
                                     "comment": "outside the refund window"}), config)
    assert _refunds(log, config) == []
    [told] = _tool_results(out["messages"], "refund_order")
    assert told.additional_kwargs["error_type"] == "rejected"
    assert "not approved: outside the refund window" in told.text
    # The model's next call saw the rejection, and it answered the customer.
    assert any(isinstance(m, ToolMessage) and "outside the refund window" in m.text
               for m in model.requests[-1].messages)
    assert "declined" in out["messages"][-1].text
    assert agt.outcome(out["messages"]) == "answered" and len(model.requests) == 3


def test_approver_edit_changes_the_refund_arguments(saver, tmp_path):
    app, config, log, _model = _agent(saver, tmp_path)
    args = _approval(app, config)["request"]["args"]
    out = app.invoke(Command(resume={"action": "edit", "by": "erin",
                                     "edits": {**args, "amount_usd": 40}}), config)
    [refund] = _refunds(log, config)
    assert "$40.00" in refund[3]
    assert json.loads(_tool_results(out["messages"], "refund_order")[0].text)[
        "amount_usd"] == 40
    assert out["messages"][-1].text.startswith("Done: $40.00")


def test_orders_down_becomes_a_message_not_a_crash(saver, tmp_path):
    app, config, log, _model = _agent(saver, tmp_path, orders_down=True)
    state = app.get_state(config)
    assert state.next == () and not state.interrupts
    [failed] = _tool_results(state.values["messages"], "lookup_order")
    assert failed.additional_kwargs["status"] == "error"
    assert "ConnectionError" in failed.text and "after 2 attempts" in failed.text
    assert state.values["messages"][-1].text.startswith("Sorry, our order system")
    events = [r[2] for r in agt.read_log(log, _thread(config))]
    assert events == ["order lookup failed"] * 2  # the tool's own retry, then the message
    assert _refunds(log, config) == []


def test_bad_tool_arguments_go_back_to_the_model(saver, tmp_path):
    model = ScriptedModel([
        {"tool_calls": [{"name": "lookup_order", "args": {"order_id": "1001"}}]},
        {"tool_calls": [{"name": "lookup_order", "args": {"order_id": "A-1001"}}]},
        "Your order A-1001 was delivered."])
    app, config, log, _model = _agent(saver, tmp_path, model=model)
    messages = app.get_state(config).values["messages"]
    bad, good = _tool_results(messages, "lookup_order")
    assert bad.additional_kwargs["error_type"] == "invalid_arguments"
    assert "order_id" in bad.text and "corrected arguments" in bad.text
    assert json.loads(good.text)["status"] == "delivered"
    assert [r[2] for r in agt.read_log(log, _thread(config))] == ["order looked up"]
    assert agt.outcome(messages) == "answered"


def test_a_greeting_is_answered_without_tools(saver, tmp_path):
    app, config, log, model = _agent(saver, tmp_path, request="Hello there!")
    messages = app.get_state(config).values["messages"]
    assert [m.type for m in messages] == ["human", "ai"]
    assert messages[-1].text.startswith("Hello!") and len(model.requests) == 1
    assert agt.read_log(log, _thread(config)) == []


def test_model_failure_is_retried_then_fails_the_run(saver, tmp_path):
    from waypoint.models import ModelUnavailable

    model = ScriptedModel([ModelUnavailable("down", model="m")], cycle=True)
    with pytest.raises(ModelUnavailable):
        _agent(saver, tmp_path, model=model)
    assert len(model.requests) == FAST.max_attempts


def test_the_turn_limit_stops_a_model_that_never_stops(saver, tmp_path):
    # A model that keeps making the same bad call (the error goes back to it each time).
    model = ScriptedModel([{"tool_calls": [{"name": "lookup_order",
                                            "args": {"order_id": "1002"}}]}], cycle=True)
    app, config, _log, _model = _agent(saver, tmp_path, model=model, max_turns=3)
    messages = app.get_state(config).values["messages"]
    assert len(model.requests) == 3
    assert agt.outcome(messages) == "loop limit"
    assert isinstance(messages[-1], AIMessage) and not messages[-1].tool_calls


def test_the_thread_budget_holds_across_the_approval_pause(saver, tmp_path):
    from waypoint import Budget, BudgetExceeded

    budget = Budget(max_model_calls=2, on_exceed="fail", scope="thread")
    app, config, log, model = _agent(saver, tmp_path, budget=budget)
    assert _approval(app, config)["request"]["tool"] == "refund_order"  # 2 calls so far
    with pytest.raises(BudgetExceeded, match="max_model_calls"):
        app.invoke(Command(resume={"action": "approve"}), config)
    assert len(model.requests) == 2 and len(_refunds(log, config)) == 1


def test_agent_cli_approves_and_reports(tmp_path, capsys):
    db, log = str(tmp_path / "a.db"), str(tmp_path / "a.log")
    assert agt.main(["--model", "scripted", "--approve", "--db", db, "--log", log]) == 0
    out = capsys.readouterr().out
    assert '[agent] calls lookup_order {"order_id": "A-1001"}' in out
    assert "[approval] approve by" in out and "[effect] refund ran" in out
    assert "outcome: answered after 3 model call(s)" in out
    assert "refund issued" in out


def test_agent_cli_pauses_then_decides_later_by_thread_id(tmp_path, capsys):
    db, log = str(tmp_path / "a.db"), str(tmp_path / "a.log")
    assert agt.main(["--model", "scripted", "--db", db, "--log", log]) == 0
    out = capsys.readouterr().out
    assert "Paused and stored" in out
    thread = out.split("--thread-id ")[1].split()[0]
    assert agt.read_log(log, thread) and not [
        r for r in agt.read_log(log, thread) if r[2] == "refund issued"]
    assert agt.main(["--model", "scripted", "--thread-id", thread, "--edit-amount", "900",
                     "--db", db]) == 2
    assert "amount_usd" in capsys.readouterr().err
    assert agt.main(["--model", "scripted", "--thread-id", thread, "--reject", "--comment",
                     "too late", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "not approved: too late" in out and "outcome: answered" in out
    assert not [r for r in agt.read_log(log, thread) if r[2] == "refund issued"]


def test_agent_cli_reports_a_model_that_fails_for_good(tmp_path, capsys, monkeypatch):
    from waypoint.models import ModelUnavailable

    monkeypatch.setattr(agt, "MODEL_RETRY", FAST)
    monkeypatch.setattr(agt, "make_model", lambda *a, **k: ScriptedModel(
        [ModelUnavailable("connection refused", model="m")], cycle=True))
    code = agt.main(["--model", "scripted", "--db", str(tmp_path / "a.db"),
                     "--log", str(tmp_path / "a.log")])
    assert code == 1
    err = capsys.readouterr().err
    assert "the run failed: ModelUnavailable" in err and "--thread-id agent-" in err
