"""Structured output shows the model what to produce and decodes greedily by default."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from waypoint.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from waypoint.models import ScriptedModel
from waypoint.models.schema_hint import schema_hint
from waypoint.models.structured import choose_tool


class Source(BaseModel):
    url: str
    rating: int = Field(ge=1, le=5)


class Ticket(BaseModel):
    """A triaged ticket."""

    category: Literal["billing", "technical", "general"]
    reason: str = Field(max_length=80, description="one line, why")
    tags: list[str] = Field(default_factory=list, max_length=3)
    source: Source | None = None


ANSWER = '{"category": "technical", "reason": "crash"}'


def test_hint_names_fields_choices_bounds_and_descriptions() -> None:
    hint = schema_hint(Ticket.model_json_schema())
    assert '"category": "billing" | "technical" | "general",' in hint
    assert '"reason": string at most 80 chars,  // one line, why' in hint
    assert '"tags": [string, ...] at most 3 items,  // optional' in hint
    assert '"rating": integer 1..5' in hint  # nested model through $defs
    assert "A triaged ticket." in hint


def test_schema_hint_handles_odd_schemas() -> None:
    assert "object" in schema_hint({"type": "object"})
    assert "any value" in schema_hint({"type": "object", "properties": {"x": {}}})
    hint = schema_hint({"type": "object", "properties": {
        "n": {"type": ["integer", "null"]}, "k": {"const": "fixed"},
        "b": {"type": "boolean"}, "when": {"type": "string", "format": "date"}}})
    assert '"n": integer | null' in hint and '"k": "fixed"' in hint
    assert "true | false" in hint and "string (date)" in hint


def test_structured_shows_the_schema_in_the_system_prompt_and_uses_temperature_zero() -> None:
    model = ScriptedModel([ANSWER])
    got = model.structured([SystemMessage("Classify the ticket."),
                            HumanMessage("The app crashes.")], Ticket)
    assert got.category == "technical"
    request = model.requests[0]
    assert request.temperature == 0.0
    assert request.response_format["json_schema"]["schema"]["properties"]["category"]
    system, user = request.messages
    assert system.content.startswith("Classify the ticket.\n\nAnswer with one JSON object")
    assert '"billing" | "technical" | "general"' in system.content
    assert user.content == "The app crashes."  # the conversation is left as it was


def test_without_a_system_prompt_the_hint_becomes_one() -> None:
    model = ScriptedModel([ANSWER])
    call = {"name": "lookup", "args": {}, "id": "c1", "type": "tool_call"}
    model.structured([HumanMessage("hi"), AIMessage("", tool_calls=[call]),
                      ToolMessage("found", tool_call_id="c1")], Ticket)
    messages = model.requests[0].messages
    assert len(messages) == 4 and messages[0].role == "system"
    assert messages[0].content.startswith("Answer with one JSON object")


def test_caller_and_model_temperatures_win_and_the_hint_can_be_turned_off() -> None:
    model = ScriptedModel([ANSWER, ANSWER, ANSWER])
    model.structured("x", Ticket, temperature=0.7)
    model.with_options(temperature=0.3).structured("x", Ticket)
    model.structured("x", Ticket, hint=False)
    first, second, third = model.requests
    assert first.temperature == 0.7
    assert second.temperature == 0.3
    assert [m.content for m in third.messages] == ["x"] and third.temperature == 0.0


def test_the_retry_keeps_the_hint_and_says_what_was_wrong() -> None:
    model = ScriptedModel(['{"category": "refunds", "reason": "?"}', ANSWER])
    assert model.structured("The app crashes.", Ticket).category == "technical"
    retry = model.requests[1].messages
    assert "Answer with one JSON object" in retry[0].content
    assert "category" in retry[-1].content


def test_async_structured_gets_the_same_request() -> None:
    model = ScriptedModel([ANSWER])
    got = asyncio.run(model.astructured("The app crashes.", Ticket))
    assert got.category == "technical"
    assert model.requests[0].temperature == 0.0
    assert "Answer with one JSON object" in model.requests[0].messages[0].content


def test_tool_choice_keeps_its_own_guide() -> None:
    model = ScriptedModel(['{"tool": "none", "answer": "hello"}'])
    spec = {"type": "function", "function": {"name": "lookup", "description": "find",
                                             "parameters": {"type": "object",
                                                            "properties": {}}}}
    assert choose_tool(model, "hi", [spec]).content == "hello"
    assert all("Answer with one JSON object" not in m.content
               for m in model.requests[0].messages)


@pytest.mark.parametrize("bad", ['{"category": "billing"}', "not json"])
def test_invalid_answers_still_fail_clearly(bad: str) -> None:
    from waypoint.models.errors import StructuredOutputError

    with pytest.raises(StructuredOutputError, match="Ticket"):
        ScriptedModel([bad, bad]).structured("x", Ticket)
