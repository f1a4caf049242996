"""OpenAICompatible against a real llama.cpp server on loopback (the 0.5B model), and against
a scripted stub server for wire details and failures a real model cannot be asked for."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Literal

import model_fixtures
import pytest
from model_fixtures import StubReply, chunk, closed_port, text_stream
from pydantic import BaseModel, Field

from waypoint.messages import AIMessageChunk
from waypoint.models import (
    ModelConfigError,
    ModelTimeout,
    ModelUnavailable,
    PermanentModelError,
    RateLimited,
    UsageLedger,
)
from waypoint.models.openai_compat import OpenAICompatible
from waypoint.models.openai_format import json_schema_format

# the shared fixtures this module uses (a session's llama.cpp server, the stub server)
model_cache = model_fixtures.model_cache
small_weights = model_fixtures.small_weights
llama = model_fixtures.llama
stub = model_fixtures.stub

SECRET = "sk-test-0123456789abcdef-SECRET"


@pytest.fixture
def real(llama):
    model = OpenAICompatible(llama.base_url, "qwen", api_key=llama.api_key, max_tokens=16,
                             temperature=0, seed=7)
    yield model
    model.close()


class Ticket(BaseModel):
    label: Literal["bug", "feature", "question"]
    summary: str = Field(max_length=40)


TICKET_SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["bug", "feature", "question"]},
        "summary": {"type": "string", "maxLength": 40},
    },
    "required": ["label", "summary"],
    "additionalProperties": False,
}


# ------------------------------------------------ the real server


def test_stream_tokens_arrive_in_order_and_join_to_the_answer(real):
    prompt = [("system", "You answer briefly."), ("user", "Name three colours.")]
    chunks = list(real.stream(prompt))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    pieces = [c.content for c in chunks if c.content]
    assert len(pieces) >= 2
    final = chunks[-1]
    assert final.content == "" and final.usage_metadata["output_tokens"] >= len(pieces)
    # the same deterministic call, not streamed, gives the same text as the joined pieces
    assert real.invoke(prompt).content == "".join(pieces)


def test_usage_and_finish_reason_are_reported(real):
    ledger = UsageLedger()
    model = real.with_options(max_tokens=4)
    model.ledger = ledger
    response = model.generate("Count from one to twenty in words.")
    assert response.finish_reason == "length"
    assert response.usage.input_tokens > 5 and response.usage.output_tokens == 4
    assert response.message.usage_metadata["total_tokens"] == response.usage.total_tokens
    assert response.message.response_metadata == {"finish_reason": "length",
                                                  "model_name": "qwen"}
    [record] = ledger.records()
    assert record.model == "qwen" and record.usage == response.usage


def test_response_format_json_schema_gives_valid_json(real):
    response = real.generate(
        [("system", "Classify the support ticket."),
         ("user", "Ticket: the app crashes every time I press save.")],
        response_format=json_schema_format(TICKET_SCHEMA, name="ticket"), max_tokens=60)
    assert response.finish_reason == "stop"
    ticket = Ticket.model_validate(json.loads(response.message.content))
    assert ticket.label in ("bug", "feature", "question")


def test_real_server_accepts_tools_in_the_request(real):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]
    message = real.invoke("What is the weather in Paris?", tools=tools, max_tokens=24)
    # The small model may answer in text rather than call the tool; either is a valid answer.
    assert message.content or message.tool_calls
    for call in message.tool_calls or ():
        assert call["type"] == "tool_call" and call["id"]


def test_wrong_api_key_is_a_config_error_without_the_key(llama):
    model = OpenAICompatible(llama.base_url, "qwen", api_key=SECRET)
    with pytest.raises(ModelConfigError) as info:
        model.invoke("hi", max_tokens=2)
    assert info.value.status == 401
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


async def test_async_stream_from_the_real_server(real):
    pieces = [c.content async for c in real.astream("Say hello.") if c.content]
    assert pieces
    message = await real.ainvoke("Say hello.")
    assert message.content == "".join(pieces)
    assert message.usage_metadata["output_tokens"] > 0
    await real.aclose()


# ------------------------------------------------ the wire (stub server)


def test_request_body_and_headers(stub):
    stub.script(text_stream("ok"))
    model = OpenAICompatible(stub.base_url, "gpt-x", api_key=SECRET, headers={"X-Team": "a"})
    fmt = json_schema_format(TICKET_SCHEMA)
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    model.invoke([("system", "s"), ("user", "u")], response_format=fmt, tools=tools,
                 tool_choice="auto", max_tokens=9, temperature=0.5, stop="END", seed=3,
                 extra={"top_k": 4})
    [seen] = stub.seen
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {SECRET}"
    assert seen.headers["x-team"] == "a"
    body = seen.body
    assert body["model"] == "gpt-x" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "system", "content": "s"},
                                {"role": "user", "content": "u"}]
    assert body["response_format"] == fmt and body["tools"] == tools
    assert (body["tool_choice"], body["max_tokens"], body["temperature"], body["stop"],
            body["seed"], body["top_k"]) == ("auto", 9, 0.5, ["END"], 3, 4)


def test_key_never_in_repr_or_vars(stub):
    model = OpenAICompatible(stub.base_url, "gpt-x", api_key=SECRET)
    assert SECRET not in repr(model)
    assert SECRET not in repr(vars(model))
    assert SECRET not in str(model)


def test_api_key_from_environment(stub, monkeypatch):
    monkeypatch.setenv("STUB_KEY", SECRET)
    stub.script(text_stream("ok"))
    OpenAICompatible(stub.base_url, "m", api_key_env="STUB_KEY").invoke("hi")
    assert stub.seen[0].headers["authorization"] == f"Bearer {SECRET}"
    monkeypatch.delenv("STUB_KEY")
    with pytest.raises(ModelConfigError, match="STUB_KEY"):
        OpenAICompatible(stub.base_url, "m", api_key_env="STUB_KEY")


def test_tool_call_fragments_are_assembled_by_index(stub):
    stub.script(StubReply(events=[
        chunk(tool_calls=[{"index": 0, "id": "call_a", "type": "function",
                           "function": {"name": "search", "arguments": ""}}]),
        chunk(tool_calls=[{"index": 1, "id": "call_b", "type": "function",
                           "function": {"name": "get_", "arguments": '{"ci'}}]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"query": "wea'}}]),
        chunk(tool_calls=[{"index": 1, "function": {"name": "weather",
                                                    "arguments": 'ty": "Paris"}'}}]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": 'ther"}'}}]),
        chunk(tool_calls=[{"index": 2, "function": {"name": "broken",
                                                    "arguments": "{not json"}}]),
        chunk(finish="tool_calls"),
        chunk(usage={"prompt_tokens": 11, "completion_tokens": 22}),
        "[DONE]",
    ]))
    response = OpenAICompatible(stub.base_url, "m").generate("weather?")
    calls = response.message.tool_calls
    assert [(c["name"], c["args"]) for c in calls] == [
        ("search", {"query": "weather"}), ("get_weather", {"city": "Paris"}),
        ("broken", {"__raw__": "{not json"})]
    assert [c["id"] for c in calls[:2]] == ["call_a", "call_b"] and calls[2]["id"]
    assert all(c["type"] == "tool_call" for c in calls)
    assert response.finish_reason == "tool_calls"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 22)


def test_event_split_over_lines_and_comments(stub):
    stub.script(StubReply(events=[
        "raw:: keep-alive\n\n",
        "raw:data: {\"choices\": [{\"index\": 0,\ndata: \"delta\": {\"content\": \"hi\"}}]}\n\n",
        chunk(finish="stop"), "[DONE]"]))
    assert OpenAICompatible(stub.base_url, "m").invoke("x").content == "hi"


def test_non_streaming_json_answer_is_accepted(stub):
    stub.script(StubReply(body={
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "whole answer"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2}}))
    response = OpenAICompatible(stub.base_url, "m").generate("x")
    assert response.message.content == "whole answer"
    assert response.usage.output_tokens == 2 and response.finish_reason == "stop"


def test_connection_is_reused_between_calls(stub):
    stub.script(text_stream("a"), text_stream("b"))
    with OpenAICompatible(stub.base_url, "m") as model:
        assert model.invoke("1").content == "a"
        assert model.invoke("2").content == "b"
    assert stub.seen[0].client_port == stub.seen[1].client_port


def test_copies_share_the_pool_and_survive_close(stub):
    stub.script(text_stream("a"))
    model = OpenAICompatible(stub.base_url, "m")
    copy = model.with_options(max_tokens=3)
    assert copy.invoke("x").content == "a"
    model.close()
    assert copy.invoke("x").content == "a"
    assert stub.seen[-1].body["max_tokens"] == 3


def test_connection_dropped_before_an_answer_is_redialled_once(stub):
    stub.script(StubReply(drop=True), text_stream("second try"))
    assert OpenAICompatible(stub.base_url, "m").invoke("x").content == "second try"
    assert len(stub.seen) == 2
    stub.script(StubReply(drop=True))
    with pytest.raises(ModelUnavailable, match="without answering"):
        OpenAICompatible(stub.base_url, "m").invoke("x")
    assert len(stub.seen) == 2


# ------------------------------------------------ errors


def test_429_is_rate_limited_with_retry_after_seconds(stub):
    stub.script(StubReply(429, {"Retry-After": "7"},
                          {"error": {"message": "slow down please"}}))
    with pytest.raises(RateLimited, match="slow down please") as info:
        OpenAICompatible(stub.base_url, "m").invoke("x")
    assert info.value.retry_after == 7.0 and info.value.status == 429


def test_429_retry_after_as_http_date(stub):
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    stub.script(StubReply(429, {"Retry-After": when}, {"error": {"message": "later"}}))
    with pytest.raises(RateLimited) as info:
        OpenAICompatible(stub.base_url, "m").invoke("x")
    assert 100 < info.value.retry_after <= 120


def test_500_is_unavailable(stub):
    stub.script(StubReply(500, body={"error": {"message": "overloaded"}}))
    with pytest.raises(ModelUnavailable, match="overloaded") as info:
        OpenAICompatible(stub.base_url, "m").invoke("x")
    assert info.value.status == 500


def test_401_is_config_error_and_the_key_stays_secret(stub):
    stub.script(StubReply(401, body={"error": {"message": f"Incorrect API key {SECRET}"}}))
    model = OpenAICompatible(stub.base_url, "m", api_key=SECRET)
    with pytest.raises(ModelConfigError, match="Incorrect API key") as info:
        model.invoke("x")
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert info.value.__cause__ is None


def test_400_is_permanent_with_the_servers_message(stub):
    stub.script(StubReply(400, body={"error": {"message": "messages must not be empty"}}))
    with pytest.raises(PermanentModelError, match="messages must not be empty") as info:
        OpenAICompatible(stub.base_url, "m").invoke("x")
    assert not isinstance(info.value, ModelConfigError)


def test_plain_text_error_body(stub):
    stub.script(StubReply(502, body="Bad gateway from proxy"))
    with pytest.raises(ModelUnavailable, match="Bad gateway from proxy"):
        OpenAICompatible(stub.base_url, "m").invoke("x")


def test_server_that_never_answers_times_out(stub):
    stub.script(StubReply(hang=True))
    model = OpenAICompatible(stub.base_url, "m", timeout=30)
    with pytest.raises(ModelTimeout, match=r"within 0\.3s"):
        model.invoke("x", timeout=0.3)


def test_stream_that_stalls_past_the_deadline_times_out(stub):
    stub.script(StubReply(events=[chunk("a"), chunk("b"), chunk("c"), chunk(finish="stop"),
                                  "[DONE]"], delay=0.2))
    with pytest.raises(ModelTimeout):
        OpenAICompatible(stub.base_url, "m", timeout=0.3).invoke("x")


def test_closed_port_is_unavailable():
    model = OpenAICompatible(f"http://127.0.0.1:{closed_port()}/v1", "m")
    with pytest.raises(ModelUnavailable, match="cannot connect"):
        model.invoke("x")


def test_malformed_event_is_unavailable(stub):
    stub.script(StubReply(events=[chunk("a"), "raw:data: {broken\n\n", "[DONE]"]))
    with pytest.raises(ModelUnavailable, match="malformed stream"):
        OpenAICompatible(stub.base_url, "m").invoke("x")


def test_truncated_stream_is_unavailable(stub):
    stub.script(StubReply(events=[chunk("half an ans")]))
    with pytest.raises(ModelUnavailable, match="ended before the answer was complete"):
        OpenAICompatible(stub.base_url, "m").invoke("x")


def test_error_event_mid_stream_is_classified(stub):
    stub.script(StubReply(events=[chunk("a"), {"error": {"code": 400,
                                                         "message": "context exceeded"}}]))
    with pytest.raises(PermanentModelError, match="context exceeded"):
        OpenAICompatible(stub.base_url, "m").invoke("x")


def test_bad_base_url_is_refused():
    with pytest.raises(ModelConfigError, match="base_url"):
        OpenAICompatible("localhost:8000", "m")


def test_max_retries_retries_transient_failures_before_the_first_token(stub):
    stub.script(StubReply(503, {"Retry-After": "0"}, {"error": {"message": "busy"}}),
                StubReply(429, {"Retry-After": "0"}, {"error": {"message": "busy"}}),
                text_stream("fine"))
    model = OpenAICompatible(stub.base_url, "m", max_retries=2)
    assert model.invoke("x").content == "fine"
    assert len(stub.seen) == 3


def test_no_retry_by_default(stub):
    stub.script(StubReply(503, {"Retry-After": "0"}, {"error": {"message": "busy"}}),
                text_stream("fine"))
    with pytest.raises(ModelUnavailable):
        OpenAICompatible(stub.base_url, "m").invoke("x")
    assert len(stub.seen) == 1


# ------------------------------------------------ async


async def test_async_stream_from_stub(stub):
    stub.script(text_stream("one", " two", " three"))
    async with OpenAICompatible(stub.base_url, "m") as model:
        pieces = [c.content async for c in model.astream("x") if c.content]
    assert pieces == ["one", " two", " three"]


async def test_async_rate_limit_error(stub):
    stub.script(StubReply(429, {"Retry-After": "2"}, {"error": {"message": "quota"}}))
    model = OpenAICompatible(stub.base_url, "m", api_key=SECRET)
    with pytest.raises(RateLimited, match="quota") as info:
        await model.ainvoke("x")
    assert info.value.retry_after == 2.0 and SECRET not in str(info.value)
    await model.aclose()


async def test_async_timeout(stub):
    stub.script(StubReply(hang=True))
    model = OpenAICompatible(stub.base_url, "m", timeout=0.3)
    with pytest.raises(ModelTimeout):
        await model.ainvoke("x")
    await model.aclose()


async def test_async_closed_port_is_unavailable():
    model = OpenAICompatible(f"http://127.0.0.1:{closed_port()}/v1", "m")
    with pytest.raises(ModelUnavailable):
        await model.ainvoke("x")
