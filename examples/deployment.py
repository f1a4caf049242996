#!/usr/bin/env python
"""A deployment pipeline with a person at the gate, on waypoint's failure policies.

    run_tests ──► build ──► approval ──► deploy ──► smoke_test ──► END
                               │ rejected / deadline passed
                               └──────────────────────────────────► END

* ``run_tests`` and ``build`` talk to flaky infrastructure: a lost connection is
  transient, so their ``RetryPolicy`` tries again with exponential backoff (each retry is
  streamed and kept in the checkpoint's metadata); a real test failure would be permanent.
* ``approval`` calls ``approve()``: the run stops (the process may exit) until someone
  approves or rejects, or until the deadline passes. A deadline is a durable timer:
  ``waypoint timers --graph examples.deployment:build_graph --store .waypoint/deploy.db``
  fires it later, from any process, and ``on_timeout`` applies ("reject", or "escalate"
  to the next approver with a fresh deadline).
* ``deploy`` is an ``effect``: it runs once per thread whatever re-executes the node, and
  the deploy target receives the idempotency key so it can refuse a duplicate too. The
  node declares ``compensate=rollback``.
* ``smoke_test`` failing is permanent: the run fails and waypoint compensates the
  completed steps in reverse order, here rolling the deployment back (recorded once).

No model: the CI, registry and cluster are small local stand-ins whose failures are
switched by flags, and which write what "happened" to ``.waypoint/deploy.log``, so you
can see that a deploy and a rollback each happen once.

    python examples/deployment.py --approve
    python examples/deployment.py --flaky-build 2 --fail-smoke --approve
    python examples/deployment.py --deadline 60           # leave it pending, then:
    python -m waypoint.cli timers --graph examples.deployment:build_graph \\
        --store .waypoint/deploy.db --watch
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TypedDict

from waypoint import (
    END,
    START,
    Command,
    PermanentError,
    RetryPolicy,
    StateGraph,
    approve,
    effect,
    get_config,
)
from waypoint.checkpoint import SqliteSaver

GRAPH_NAME = "deployment"  # timers are matched to graphs by name
DEFAULT_DB = os.path.join(".waypoint", "deploy.db")
DEFAULT_LOG = os.path.join(".waypoint", "deploy.log")

# Transient infrastructure failures: 4 attempts, waiting about 1 s, 2 s, 4 s (+ jitter).
RETRY = RetryPolicy(initial_interval=1.0, backoff_factor=2.0, max_interval=10.0,
                    max_attempts=4, jitter=True)
SMOKE_ENDPOINTS = ("/health", "/api/v1/status")


class SmokeTestFailed(PermanentError):
    """The new version answers wrongly: trying again will not help, roll it back."""


class DeployState(TypedDict, total=False):
    service: str
    version: str
    environment: str
    # How the simulated systems behave, and where they log (kept in the state, so that a
    # scheduler process resuming the run after a deadline uses the same switches).
    sim: dict[str, Any]
    # The approval policy: deadline (seconds or None), on_timeout, approver, escalate_to.
    gate: dict[str, Any]
    tests: str
    artifact: str
    decision: dict[str, Any]
    deployment: dict[str, Any] | None
    smoke: list[str]
    status: str  # "deployed" | "rejected" | "expired"


# ---------------------------------------------------------------------------------------
# The outside world: stand-ins for CI, the image registry and the cluster. Each one writes
# a line per thing that "happened" to a log file (tab-separated: time, thread, system,
# event, detail), which is also how they remember things between processes.
# ---------------------------------------------------------------------------------------


class Systems:
    """The simulated external systems of one run, logging to `log`."""

    def __init__(self, log: str | Path, thread: str, sim: dict[str, Any]) -> None:
        self.log = Path(log)
        self.thread = thread
        self.sim = sim

    def record(self, system: str, event: str, detail: str = "") -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with self.log.open("a", encoding="utf-8") as out:
            out.write(f"{stamp}\t{self.thread}\t{system}\t{event}\t{detail}\n")

    def events(self, system: str | None = None, event: str | None = None) -> list[list[str]]:
        """This thread's log lines, as [time, thread, system, event, detail]."""
        return read_log(self.log, self.thread, system, event)

    def _flaky(self, system: str, switch: str, error: str) -> None:
        """Fail with a lost connection for the first `sim[switch]` calls of this thread."""
        failed = len(self.events(system, "failed"))
        if failed < int(self.sim.get(switch, 0)):
            self.record(system, "failed", f"attempt {failed + 1}: {error}")
            raise ConnectionError(error)

    def run_tests(self, version: str) -> str:
        self._flaky("ci", "flaky_tests", "test runner lost its connection to the CI server")
        report = f"{version}: 128 passed, 0 failed"
        self.record("ci", "tests passed", report)
        return report

    def build(self, service: str, version: str) -> str:
        self._flaky("registry", "flaky_build", "connection to the image registry reset")
        digest = hashlib.sha256(f"{service}:{version}".encode()).hexdigest()[:12]
        artifact = f"registry.local/{service}:{version}@sha256:{digest}"
        self.record("registry", "image pushed", artifact)
        return artifact

    def deploy(self, artifact: str, environment: str, *, idempotency_key: str) -> dict[str, Any]:
        """Roll `artifact` out. A second call with the same key returns the first rollout
        (a real deploy API would do the same with an Idempotency-Key header)."""
        for line in read_log(self.log, None, "cluster", "deployed"):
            if f"key={idempotency_key}" in line[4]:
                return {"id": line[4].split()[0], "artifact": artifact,
                        "environment": environment, "key": idempotency_key,
                        "thread": self.thread}
        deployment_id = "dep-" + uuid.uuid4().hex[:8]
        self.record("cluster", "deployed",
                    f"{deployment_id} {artifact} to {environment} key={idempotency_key}")
        return {"id": deployment_id, "artifact": artifact, "environment": environment,
                "key": idempotency_key, "thread": self.thread}

    def rollback(self, deployment: dict[str, Any]) -> None:
        self.record("cluster", "rolled back",
                    f"{deployment['id']} in {deployment['environment']}: previous version "
                    f"restored")

    def smoke_test(self, deployment: dict[str, Any]) -> list[str]:
        results = []
        for endpoint in SMOKE_ENDPOINTS:
            if self.sim.get("fail_smoke") and endpoint != "/health":
                self.record("smoke", "failed", f"{endpoint} -> 500 on {deployment['id']}")
                raise SmokeTestFailed(f"smoke test {endpoint} answered 500 on "
                                      f"{deployment['id']}")
            results.append(f"{endpoint} -> 200")
            self.record("smoke", "passed", f"{endpoint} -> 200 on {deployment['id']}")
        return results


def read_log(log: str | Path, thread: str | None = None, system: str | None = None,
             event: str | None = None) -> list[list[str]]:
    """Lines of the systems' log, filtered by thread, system and event."""
    path = Path(log)
    if not path.exists():
        return []
    rows = [line.split("\t", 4) for line in path.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if len(r) == 5
            and (thread is None or r[1] == thread)
            and (system is None or r[2] == system)
            and (event is None or r[3] == event)]


def _systems(state: DeployState, thread: str | None = None) -> Systems:
    sim = state.get("sim") or {}
    if thread is None:
        thread = str(get_config()["configurable"]["thread_id"])
    return Systems(sim.get("log") or DEFAULT_LOG, thread, sim)


# ---------------------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------------------


def run_tests(state: DeployState) -> dict:
    return {"tests": _systems(state).run_tests(state["version"])}


def build(state: DeployState) -> dict:
    return {"artifact": _systems(state).build(state["service"], state["version"])}


def approval(state: DeployState) -> dict:
    """Ask for a go/no-go. Returns when someone decides or the deadline passes."""
    gate = state.get("gate") or {}
    on_timeout = gate.get("on_timeout", "reject")
    decision = approve(
        {"action": "deploy", "service": state["service"], "version": state["version"],
         "environment": state["environment"], "artifact": state["artifact"],
         "tests": state["tests"]},
        actions=("approve", "reject"),
        deadline=gate.get("deadline"),
        on_timeout=on_timeout,
        assignee=gate.get("approver"),
        escalate_to=gate.get("escalate_to") if on_timeout == "escalate" else None,
    )
    update: dict[str, Any] = {"decision": decision.to_dict()}
    if not decision.approved:
        update["status"] = "expired" if decision.timed_out else "rejected"
    return update


def after_approval(state: DeployState) -> str:
    return "deploy" if state.get("decision", {}).get("action") == "approve" else END


def deploy(state: DeployState) -> dict:
    systems = _systems(state)
    deployment = effect("deploy", systems.deploy, state["artifact"], state["environment"])
    return {"deployment": deployment}


def rollback(state: DeployState, update: dict) -> None:
    """Compensation of `deploy`: undo the rollout it made (`update` is what it wrote).

    Compensations run outside the node (no `get_config()`), so the deployment record
    carries the thread it belongs to."""
    deployment = update["deployment"]
    _systems(state, deployment["thread"]).rollback(deployment)


def smoke_test(state: DeployState) -> dict:
    results = _systems(state).smoke_test(state["deployment"])
    return {"smoke": results, "status": "deployed"}


def build_graph(checkpointer: Any = None, *, retry_policy: RetryPolicy = RETRY) -> Any:
    """The compiled pipeline. `build_graph(saver)` is what `waypoint timers --graph
    examples.deployment:build_graph` calls to fire approval deadlines."""
    builder = StateGraph(DeployState)
    builder.add_node("run_tests", run_tests, retry_policy=retry_policy)
    builder.add_node("build", build, retry_policy=retry_policy)
    builder.add_node("approval", approval)
    builder.add_node("deploy", deploy, compensate=rollback, on_doubt="ask")
    builder.add_node("smoke_test", smoke_test, retry_policy=retry_policy)
    builder.add_edge(START, "run_tests")
    builder.add_edge("run_tests", "build")
    builder.add_edge("build", "approval")
    builder.add_conditional_edges("approval", after_approval, ["deploy", END])
    builder.add_edge("deploy", "smoke_test")
    builder.add_edge("smoke_test", END)
    return builder.compile(checkpointer=checkpointer, name=GRAPH_NAME)


def initial_state(*, service: str = "checkout", version: str = "v1.4.2",
                  environment: str = "production", log: str | Path = DEFAULT_LOG,
                  flaky_tests: int = 0, flaky_build: int = 0, fail_smoke: bool = False,
                  deadline: float | None = None, on_timeout: str = "reject",
                  approver: str | None = "release-manager",
                  escalate_to: str | None = "head-of-engineering") -> DeployState:
    """The run's input: what to deploy, how the simulated systems behave, the gate's policy."""
    return {
        "service": service, "version": version, "environment": environment,
        "sim": {"log": str(Path(log).resolve()), "flaky_tests": flaky_tests,
                "flaky_build": flaky_build, "fail_smoke": fail_smoke},
        "gate": {"deadline": deadline, "on_timeout": on_timeout, "approver": approver,
                 "escalate_to": escalate_to},
        "deployment": None,
    }


def pending_approval(app: Any, config: dict) -> dict[str, Any] | None:
    """The approval request the thread waits on, if any (the interrupt's value)."""
    for item in app.get_state(config).interrupts:
        if isinstance(item.value, dict) and item.value.get("kind") == "approval":
            return item.value
    return None


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def _print_progress(mode: str, chunk: Any) -> None:
    if mode == "tasks" and "retry" in chunk:
        r = chunk["retry"]
        print(f"[retry] {r['node']}: attempt {r['attempt']} failed ({r['error']}; "
              f"{r['kind']}), next attempt in {r['delay']:.1f} s")
    elif mode == "tasks" and "effect" in chunk:
        e = chunk["effect"]
        print(f"[effect] {e['effect']} {e['status']} (key {e['key']})")
    elif mode == "updates":
        for node, update in chunk.items():
            if node == "__interrupt__":
                continue
            detail = ""
            if isinstance(update, dict):
                detail = (update.get("tests") or update.get("artifact")
                          or (update.get("deployment") or {}).get("id")
                          or ", ".join(update.get("smoke") or ())
                          or (update.get("decision") or {}).get("action") or "")
            print(f"[done] {node}" + (f": {detail}" if detail else ""))


def _run(app: Any, inputs: Any, config: dict) -> int:
    """Stream the run until it pauses or ends; a permanent failure is reported, not raised."""
    try:
        for mode, chunk in app.stream(inputs, config, stream_mode=["updates", "tasks"]):
            _print_progress(mode, chunk)
    except Exception as exc:
        summary = getattr(exc, "compensation", None)
        print(f"[failed] {type(exc).__name__}: {exc}")
        if summary is not None:
            print(f"[compensated] {', '.join(summary['compensated']) or 'nothing'}"
                  + (f"; could not compensate: {summary['failed']}" if summary["failed"] else ""))
        return 1
    return 0


def _decide(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any] | None:
    if args.approve or args.reject:
        return {"action": "approve" if args.approve else "reject", "by": args.by,
                "comment": args.comment}
    if not (sys.stdin is not None and sys.stdin.isatty()):
        return None
    answer = input("Deploy? [y = approve / n = reject / Enter = decide later] ").strip().lower()
    if answer in ("y", "yes"):
        return {"action": "approve", "by": args.by, "comment": args.comment}
    if answer in ("n", "no"):
        return {"action": "reject", "by": args.by, "comment": args.comment}
    return None


def _outcome(app: Any, config: dict, log: Path, thread: str) -> None:
    snapshot = app.get_state(config)
    values = snapshot.values
    compensation = (snapshot.metadata or {}).get("compensation")
    status = values.get("status") or "failed"
    if compensation:
        status = (f"failed ({compensation['reason']}); compensated: "
                  f"{', '.join(compensation['compensated']) or 'nothing'}")
    print(f"\nstatus: {status}")
    decision = values.get("decision") or {}
    if decision:
        who = decision.get("by") or "?"
        print(f"decision: {decision.get('action')} by {who}"
              + (" (deadline passed)" if decision.get("timed_out") else "")
              + (f": {decision['comment']}" if decision.get("comment") else ""))
    print(f"what happened ({log}):")
    for row in read_log(log, thread):
        print(f"  {row[2]:<8} {row[3]:<13} {row[4]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", default="checkout")
    parser.add_argument("--version", default="v1.4.2", dest="release")
    parser.add_argument("--environment", default="production")
    decision = parser.add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true", help="approve the deploy")
    decision.add_argument("--reject", action="store_true", help="reject the deploy")
    parser.add_argument("--by", default=os.environ.get("USER") or "cli",
                        help="who decides (recorded in the approval's audit)")
    parser.add_argument("--comment", default=None, help="comment recorded with the decision")
    parser.add_argument("--deadline", type=float, default=None, metavar="S",
                        help="seconds the approver has; then --on-timeout applies")
    parser.add_argument("--on-timeout", choices=("reject", "escalate"), default="reject",
                        help="when the deadline passes: reject, or escalate to --escalate-to "
                             "with a fresh deadline (default: %(default)s)")
    parser.add_argument("--approver", default="release-manager")
    parser.add_argument("--escalate-to", default="head-of-engineering")
    parser.add_argument("--flaky-tests", type=int, default=0, metavar="N",
                        help="the CI loses its connection on the first N test runs")
    parser.add_argument("--flaky-build", type=int, default=0, metavar="N",
                        help="the registry resets the connection on the first N builds")
    parser.add_argument("--fail-smoke", action="store_true",
                        help="the new version fails its smoke test (it is rolled back)")
    parser.add_argument("--thread-id", default=None,
                        help="resume this thread (e.g. to answer its pending approval)")
    parser.add_argument("--db", default=DEFAULT_DB, help="SQLite checkpoints (%(default)s)")
    parser.add_argument("--log", default=DEFAULT_LOG,
                        help="where the simulated systems write what happened (%(default)s)")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # progress lines in order, even through a pipe
        sys.stdout.reconfigure(line_buffering=True)
    for flag in ("flaky_tests", "flaky_build"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag.replace('_', '-')} must be 0 or more")
    if args.deadline is not None and args.deadline < 0:
        parser.error("--deadline must be 0 or more seconds")
    if args.on_timeout == "escalate" and args.deadline is None:
        parser.error("--on-timeout escalate needs --deadline")

    if os.path.dirname(args.db):
        os.makedirs(os.path.dirname(args.db), exist_ok=True)
    log = Path(args.log).resolve()
    with SqliteSaver.from_conn_string(args.db) as saver:
        app = build_graph(saver)
        thread = args.thread_id or f"deploy-{uuid.uuid4().hex[:8]}"
        config = {"configurable": {"thread_id": thread}}
        snapshot = app.get_state(config)
        if snapshot.next:
            print(f"resuming thread {thread} (waiting at: {', '.join(snapshot.next)})")
            log = Path((snapshot.values.get("sim") or {}).get("log") or log)
        elif snapshot.values:
            print(f"thread {thread} has already finished")
            _outcome(app, config, log, thread)
            return 0
        else:
            print(f"deploying {args.service} {args.release} to {args.environment} "
                  f"(thread {thread}, store {args.db})")
            inputs = initial_state(
                service=args.service, version=args.release, environment=args.environment,
                log=log, flaky_tests=args.flaky_tests, flaky_build=args.flaky_build,
                fail_smoke=args.fail_smoke, deadline=args.deadline,
                on_timeout=args.on_timeout, approver=args.approver,
                escalate_to=args.escalate_to)
            if _run(app, inputs, config):
                _outcome(app, config, log, thread)
                return 1
        request = pending_approval(app, config)
        if request is not None:
            due = request.get("deadline")
            print(f"\n[waiting] approval {request['approval_id']} for "
                  f"{request['request']['service']} {request['request']['version']} "
                  f"-> {request['request']['environment']}, assigned to {request['assignee']}"
                  + (f" (escalated {request['escalations']}x)" if request.get("escalations")
                     else "")
                  + (f", deadline {time.strftime('%H:%M:%S', time.localtime(due))}"
                     if due else ""))
            answer = _decide(args, request)
            if answer is None:
                print(f"\nThe run is paused and stored; nothing is running now. Decide later "
                      f"with:\n  python examples/deployment.py --thread-id {thread} "
                      f"--approve|--reject"
                      + ("\nor let the deadline fire with:\n  python -m waypoint.cli timers "
                         f"--graph examples.deployment:build_graph --store {args.db}"
                         if due else ""))
                return 0
            print(f"[decision] {answer['action']} by {answer['by']}")
            if _run(app, Command(resume=answer), config):
                _outcome(app, config, log, thread)
                return 1
        _outcome(app, config, log, thread)
    return 0


if __name__ == "__main__":
    sys.exit(main())
