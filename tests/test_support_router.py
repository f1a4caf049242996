"""The support-router example with the keyword stand-in model (the local model's score
on the labelled set is measured by `python examples/support_router.py --eval`)."""

import importlib.util
import sys
from pathlib import Path

import pytest

from waypoint.models import ScriptedModel, StructuredOutputError, UsageLedger

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "support_router.py"
spec = importlib.util.spec_from_file_location("support_router_example", EXAMPLE)
sr = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = sr
spec.loader.exec_module(sr)


def test_routes_by_the_structured_classification():
    model = ScriptedModel([
        '{"category": "billing", "priority": "medium", "reason": "double charge"}',
        '{"category": "technical", "priority": "high", "reason": "outage"}',
        '{"category": "technical", "priority": "low", "reason": "minor bug"}',
    ])
    app = sr.build_graph(model)
    billing = app.invoke({"text": "charged twice"})
    assert (billing["category"], billing["team"]) == ("billing", "billing")
    assert app.invoke({"text": "down!"})["team"] == "technical (on-call engineer paged)"
    assert app.invoke({"text": "typo"})["team"] == "technical"


def test_an_answer_outside_the_labels_is_retried_then_refused():
    model = ScriptedModel(['{"category": "sales", "priority": "low", "reason": "x"}',
                           '{"category": "general", "priority": "low", "reason": "x"}'])
    assert sr.build_graph(model).invoke({"text": "hi"})["category"] == "general"
    stubborn = ScriptedModel(['{"category": "sales", "priority": "low", "reason": "x"}'] * 2)
    with pytest.raises(StructuredOutputError, match="Classification"):
        sr.build_graph(stubborn).invoke({"text": "hi"})


def test_eval_scores_the_labelled_set():
    tickets = sr.load_tickets()
    assert len(tickets) >= 6
    app = sr.build_graph(sr.make_model("scripted", UsageLedger()))
    result = sr.evaluate(app, tickets)
    assert result["total"] == len(tickets)
    assert result["category_correct"] == len(tickets)  # the keyword rules fit this set
