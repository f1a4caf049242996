"""Seed 003's triage (examples/triage_confidence.py, examples/triage_review.py): confident
in-distribution tickets go to a team, unsure or off-topic ones to a person, a daily cron
puts a sample of the model's own decisions in front of a person.

Scripted model with scripted logprobs; the real embeddings model (loaded once per module,
through the example's cached references)."""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from server_harness import ServerProcess, wait_until

from waypoint import Command
from waypoint.checkpoint import MemorySaver
from waypoint.models import ScriptedModel
from waypoint.models.scripted import Reply
from waypoint.store import InMemoryStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import triage_confidence as triage  # noqa: E402
import triage_review  # noqa: E402

pytest.importorskip("onnxruntime")

CLEAR_BILLING = "I was charged twice for my subscription, please refund one payment."
CLEAR_TECHNICAL = "The app crashes with an error every time I open the settings page."
CLEAR_GENERAL = "Do you have a partner program for consultancies?"
MIXED = "The invoice PDF download fails with a 500 error."
GIBBERISH = "asdkjh qwe zxc purple monkey"


@pytest.fixture(scope="module", autouse=True)
def embeddings_loaded():
    triage.references()  # the model and the reference vectors, once


def graph(model: Any = None, store: Any = None, saver: Any = None):
    return triage.build_graph(model or triage.make_model("scripted"),
                              checkpointer=saver or MemorySaver(), store=store)


def cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def pending(app: Any, config: dict[str, Any]) -> list[Any]:
    return list(app.get_state(config).interrupts)


def test_confident_in_distribution_ticket_is_handled_by_the_model():
    store = InMemoryStore()
    app = graph(store=store)
    out = app.invoke({"ticket_id": "t1", "text": CLEAR_BILLING}, cfg("t1"))
    assert out["route_reason"] == "confident" and out["confidence"] == pytest.approx(0.92)
    assert out["similarity"] >= triage.FIXED["similarity"]
    assert (out["final_category"], out["decided_by"], out["team"]) == ("billing", "model",
                                                                       "billing")
    assert not pending(app, cfg("t1"))
    kept = store.get(triage.DECISIONS, "t1").value
    assert kept["decided_by"] == "model" and kept["day"] == triage.today()


def test_low_confidence_goes_to_a_person_whose_label_wins():
    # A clear billing ticket, but the model's logprobs put only 0.3 on its label.
    unsure = ScriptedModel([Reply('{"category": "billing"}', logprobs=[0.0, math.log(0.3)])])
    app = graph(unsure)
    out = app.invoke({"ticket_id": "t2", "text": CLEAR_BILLING}, cfg("t2"))
    assert "final_category" not in out
    [question] = pending(app, cfg("t2"))
    request = question.value["request"]
    assert question.value["kind"] == "approval" and question.value["actions"] == [
        "approve", "edit"]
    assert request["reason"] == "low_confidence" and request["model_label"] == "billing"
    assert request["confidence"] == pytest.approx(0.3) and "0.30 < 0.60" in request["why"]
    out = app.invoke(Command(resume={"action": "edit", "edits": {"category": "technical"},
                                     "by": "ana"}), cfg("t2"))
    assert (out["final_category"], out["decided_by"], out["reviewer"]) == ("technical",
                                                                           "person", "ana")
    assert out["category"] == "billing" and out["team"] == "technical"


def test_gibberish_goes_to_a_person_as_out_of_distribution():
    app = graph()
    out = app.invoke({"ticket_id": "t3", "text": GIBBERISH}, cfg("t3"))
    assert out["confidence"] == pytest.approx(0.8)  # sure of itself, like the real model
    assert out["route_reason"] == "out_of_distribution"
    assert out["similarity"] < triage.FIXED["similarity"]
    request = pending(app, cfg("t3"))[0].value["request"]
    assert request["reason"] == "out_of_distribution" and "unlike" in request["why"]
    out = app.invoke(Command(resume="approve"), cfg("t3"))  # the person keeps "general"
    assert (out["final_category"], out["decided_by"]) == ("general", "person")


def test_calibration_writes_thresholds_that_meet_the_precision(tmp_path):
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"other/model": {"confidence": 0.5, "similarity": 0.2}}))
    rows = triage.load_rows(triage.CALIBRATION)
    model = triage.make_model("scripted")
    entry = triage.calibrate(model, rows, min_precision=0.9, path=path)
    stored = json.loads(path.read_text())
    assert stored["other/model"]["confidence"] == 0.5  # other models' entries are kept
    assert stored["keywords"] == entry
    assert triage.load_thresholds("keywords", path) == {
        "confidence": entry["confidence"], "similarity": entry["similarity"]}
    # Recompute on the calibration set what the thresholds promise.
    refs = triage.references()
    kept = []
    for row in (r for r in rows if not r.get("ood")):
        category, confidence = triage.classify_ticket(model, row["text"])
        if confidence >= entry["confidence"]:
            kept.append(category == row["category"])
    assert kept and sum(kept) / len(kept) >= 0.9
    outside = [refs.similarity(r["text"]) for r in rows if r.get("ood")]
    inside = [refs.similarity(r["text"], skip=r["text"]) for r in rows if not r.get("ood")]
    caught = sum(s < entry["similarity"] for s in outside)
    flagged = sum(s < entry["similarity"] for s in inside)
    assert caught >= len(outside) - 1 and flagged == 0
    assert entry["ood_caught"] == f"{caught}/{len(outside)}"


def test_committed_thresholds_are_the_local_models():
    entry = json.loads(triage.THRESHOLDS.read_text())["local/qwen2.5-coder-1.5b"]
    assert 0 < entry["confidence"] < 1 and 0 < entry["similarity"] < 1
    assert entry["kept_right"] / entry["kept"] >= entry["min_precision"]


def test_eval_set_scores_one_on_the_scripted_model(monkeypatch):
    from waypoint.evals import load_dataset, run_eval

    monkeypatch.setenv("WAYPOINT_MODEL", "scripted")
    report = run_eval(triage.eval_graph, load_dataset(triage.EVAL_SET))
    assert report.score == 1.0, report.to_markdown()
    people = [r.id for r in report.rows if r.values["decided_by"] == "person"]
    assert len(people) == 6
    reasons = {r.values["route_reason"] for r in report.rows if r.id in people}
    assert reasons == {"low_confidence", "out_of_distribution"}


def _triage_some(app: Any) -> list[str]:
    """Three tickets the model handles, two a person decides; returns the model's."""
    for i, text in enumerate((CLEAR_BILLING, CLEAR_TECHNICAL, CLEAR_GENERAL, MIXED,
                              GIBBERISH)):
        config = cfg(f"ticket-{i}")
        app.invoke({"ticket_id": f"T{i}", "text": text}, config)
        if pending(app, config):
            app.invoke(Command(resume="approve"), config)
    return ["ticket-0", "ticket-1", "ticket-2"]


def test_sample_review_checks_n_model_decisions_and_records_agreement():
    store, saver = InMemoryStore(), MemorySaver()
    auto = _triage_some(graph(store=store, saver=saver))
    review = triage_review.build_review_graph(saver, store)
    config = cfg("review-1")
    review.invoke({"n": 2, "seed": "s"}, config)
    asks = pending(review, config)
    assert len(asks) == 2  # both at once: each its own approval
    keys = {a.value["request"]["triage_thread"] for a in asks}
    assert keys <= set(auto)
    first, second = asks
    review.invoke(Command(resume={first.id: "approve"}), config)
    wrong = {"billing": "general"}.get(second.value["request"]["model_label"], "billing")
    out = review.invoke(Command(resume={second.id: {"action": "edit", "by": "ana",
                                                    "edits": {"category": wrong}}}), config)
    assert (out["reviewed"], out["agreed"], out["agreement"]) == (2, 1, 0.5)
    stored = {i.key: i.value for i in store.search(triage.REVIEWS, limit=100)}
    assert set(stored) == keys and sorted(r["agree"] for r in stored.values()) == [False, True]
    # The next sample only offers what nobody has checked: the one left.
    again = cfg("review-2")
    review.invoke({"n": 5}, again)
    [left] = pending(review, again)
    assert left.value["request"]["triage_thread"] == (set(auto) - keys).pop()
    # Nothing decided by the model on another day.
    out = review.invoke({"n": 5, "day": "2000-01-01"}, cfg("review-3"))
    assert out["reviewed"] == 0 and out["agreement"] is None


# -- the daily cron, through `waypoint serve` ---------------------------------------------

class TriageServer(ServerProcess):
    """The server of examples/triage_service/langgraph.json, on a database of the test's."""

    def config_path(self) -> Path:
        service = EXAMPLES / "triage_service"
        config = json.loads((service / "langgraph.json").read_text())
        graphs = {name: str((service / target.split(":")[0]).resolve()) + ":"
                  + target.split(":")[1] for name, target in config["graphs"].items()}
        path = self.workdir / "langgraph.json"
        path.write_text(json.dumps({**config, "graphs": graphs, "waypoint": {
            "db": str(self.workdir / "server.db"), "poll_interval": 0.2}}))
        return path


def test_daily_cron_puts_a_sample_in_front_of_a_person(tmp_path):
    from langgraph_sdk import get_sync_client

    server = TriageServer(tmp_path, env={"WAYPOINT_MODEL": "scripted"}).start()
    try:
        client, http = get_sync_client(url=server.url), server.http()
        auto = []
        for i, text in enumerate((CLEAR_BILLING, CLEAR_TECHNICAL, CLEAR_GENERAL, GIBBERISH)):
            thread = client.threads.create()["thread_id"]
            out = client.runs.wait(thread, "triage", input={"ticket_id": f"T{i}", "text": text})
            if out.get("decided_by") == "model":
                auto.append(thread)
        assert len(auto) == 3  # the gibberish one waits for a person, unrecorded
        # The documented daily cron; keep its threads, or a waiting review is deleted.
        cron = client.crons.create("sample_review", schedule="0 17 * * *", input={"n": 2},
                                   on_run_completed="keep")
        assert datetime.fromisoformat(cron["next_run_date"]).astimezone(UTC).hour == 17
        # Not waiting a day: the same cron, every second, until its first run shows up.
        client.crons.update(cron["cron_id"], schedule="* * * * * *")
        found = wait_until(lambda: client.threads.search(
            metadata={"graph_id": "sample_review"}, status="interrupted"), timeout=30)
        client.crons.delete(cron["cron_id"])
        thread = sorted(found, key=lambda t: t["created_at"])[0]["thread_id"]
        [run] = client.runs.list(thread)
        assert run["metadata"]["cron_id"] == cron["cron_id"]
        inbox = http.get("/approvals", params={"thread_id": thread}).json()
        assert len(inbox) == 2 and all(a["graph_id"] == "sample_review" for a in inbox)
        assert {a["request"]["triage_thread"] for a in inbox} <= set(auto)
        for approval, body in zip(inbox, ({"action": "approve", "by": "ana"},
                                          {"action": "edit", "by": "ana",
                                           "edits": {"category": "general"}}), strict=True):
            if body["action"] == "edit" and approval["request"]["model_label"] == "general":
                body["edits"] = {"category": "billing"}
            decided = http.post(f"/approvals/{approval['approval_id']}/decide",
                                params={"thread_id": thread}, json=body)
            assert decided.status_code == 200, decided.text
            wait_until(lambda: client.threads.get(thread)["status"] != "busy", timeout=20)
        state = wait_until(lambda: (s := client.threads.get_state(thread))["values"].get(
            "reviewed") and s, timeout=20)
        assert (state["values"]["agreed"], state["values"]["agreement"]) == (1, 0.5)
        stored = client.store.search_items(("triage", "reviews"), limit=10)["items"]
        assert len(stored) == 2
    finally:
        server.stop()
