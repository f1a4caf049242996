"""Token log-probabilities reach the response, and become a field's confidence."""

from __future__ import annotations

import json
import math
from typing import Any, Literal

import model_fixtures
import pytest
from model_fixtures import StubReply, chunk
from pydantic import BaseModel

from waypoint.messages import SystemMessage
from waypoint.models import ScriptedModel
from waypoint.models.confidence import (
    calibrate_threshold,
    field_confidences,
    structured_with_confidence,
    value_span,
)
from waypoint.models.openai_compat import OpenAICompatible
from waypoint.models.scripted import Reply

model_cache = model_fixtures.model_cache
small_weights = model_fixtures.small_weights
llama = model_fixtures.llama
stub = model_fixtures.stub


class Label(BaseModel):
    category: Literal["billing", "technical", "general"]
    note: str = ""


def _with_logprobs(text: str, logprob: float) -> dict[str, Any]:
    event = chunk(text)
    event["choices"][0]["logprobs"] = {"content": [
        {"token": text, "logprob": logprob, "bytes": list(text.encode()),
         "top_logprobs": [{"token": text, "logprob": logprob},
                          {"token": "x", "logprob": -5.0}]}]}
    return event


def test_logprobs_are_requested_and_read_from_the_stream(stub) -> None:
    opening = chunk(None)
    opening["choices"][0]["logprobs"] = {"content": [{"token": "```", "logprob": -3.0}]}
    stub.script(StubReply(events=[opening, _with_logprobs('{"category": ', -0.01),
                                  _with_logprobs('"billing"', -0.2), _with_logprobs("}", 0.0),
                                  chunk(finish="stop"), "[DONE]"]))
    response = OpenAICompatible(stub.base_url, "m").generate("x", logprobs=True,
                                                            top_logprobs=2)
    body = stub.seen[0].body
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    # The opening chunk carries no text, so its logprob is not part of the answer's.
    assert [e["token"] for e in response.logprobs] == ['{"category": ', '"billing"', "}"]
    assert response.logprobs[1]["top_logprobs"][1] == {"token": "x", "logprob": -5.0}
    assert response.message.response_metadata["logprobs"]["content"] == response.logprobs
    assert field_confidences(response, ["category"]) == {"category": pytest.approx(
        math.exp(-0.2))}


def test_no_logprobs_unless_asked(stub) -> None:
    stub.script(StubReply(events=[chunk("hi"), chunk(finish="stop"), "[DONE]"]))
    response = OpenAICompatible(stub.base_url, "m").generate("x")
    assert response.logprobs is None and "logprobs" not in stub.seen[0].body
    assert "logprobs" not in response.message.response_metadata


def test_confidence_is_the_probability_of_the_value_tokens() -> None:
    text = '{"category": "technical", "note": "crash"}'
    # scripted tokens: '{"category":', ' "technical",', ' "note":', ' "crash"}'
    model = ScriptedModel([Reply(text, logprobs=[-0.01, -0.5, -0.02, -0.3])])
    value, confidence = structured_with_confidence(
        model, [SystemMessage("Classify."), ("user", "it crashes")], Label)
    assert value.category == "technical"
    assert confidence["category"] == pytest.approx(math.exp(-0.5))
    assert confidence["note"] == pytest.approx(math.exp(-0.3))
    assert model.requests[0].logprobs is True
    assert model.requests[0].temperature == 0.0


def test_confidence_is_none_without_logprobs() -> None:
    model = ScriptedModel(['{"category": "general"}'])
    value, confidence = structured_with_confidence(model, "hello", Label, fields=["category"])
    assert value.category == "general" and confidence == {"category": None}


def test_value_span_finds_strings_numbers_and_nested_values() -> None:
    text = '{"a": "x y", "b": 12, "c": {"d": [1, 2]}}'
    for key, value in (("a", '"x y"'), ("b", "12"), ("c", '{"d": [1, 2]}')):
        start, end = value_span(text, key)
        assert text[start:end] == value
    assert value_span(text, "missing") is None
    assert value_span('{"a": ', "a") is None


def test_calibrated_threshold_keeps_precision_and_sends_the_rest_to_a_person() -> None:
    scored = [(0.95, True), (0.9, True), (0.8, True), (0.7, False), (0.65, True),
              (0.6, True), (0.5, False), (0.4, False), (None, False)]
    threshold = calibrate_threshold(scored, min_precision=0.8)
    kept = [ok for c, ok in scored if (c or 0) >= threshold]
    assert sum(kept) / len(kept) >= 0.8
    assert threshold == 0.6  # the lowest cut that still holds 80 %
    assert calibrate_threshold(scored, min_precision=1.0) == 0.8
    assert calibrate_threshold([(0.9, False)], min_precision=0.9) == 1.0
    with pytest.raises(ValueError, match="min_precision"):
        calibrate_threshold(scored, min_precision=0)


def test_the_real_llama_server_reports_logprobs(llama) -> None:
    model = OpenAICompatible(llama.base_url, "qwen", api_key=llama.api_key, max_tokens=40)
    value, confidence = structured_with_confidence(
        model, [SystemMessage("Classify the ticket."),
                ("user", "I was charged twice for my plan, refund one please.")],
        Label, fields=["category"])
    assert value.category in ("billing", "technical", "general")
    assert 0.0 < confidence["category"] <= 1.0
    assert json.loads(json.dumps(confidence))  # plain floats, storable in state
