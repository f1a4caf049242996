"""The model seam with ScriptedModel: calls, streaming, usage, ledger, structured output."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from waypoint import END, START, MessagesState, StateGraph
from waypoint.models import (
    ModelTimeout,
    PriceBook,
    Reply,
    ScriptedModel,
    StructuredOutputError,
    Usage,
    UsageLedger,
)
from waypoint.models.structured import choose_tool, decision_schema, parse_json_leniently


class Ticket(BaseModel):
    label: Literal["billing", "bug", "other"]
    summary: str = Field(max_length=80)


def test_invoke_returns_text_usage_and_finish_reason():
    model = ScriptedModel([Reply("hello there", usage=Usage(7, 2))])
    message = model.invoke("hi")
    assert message.content == "hello there"
    assert message.usage_metadata == {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}
    assert message.response_metadata["finish_reason"] == "stop"
    assert model.calls[0][0].content == "hi"


def test_stream_chunks_add_up_to_the_answer():
    model = ScriptedModel(["one two three"])
    chunks = list(model.stream([("user", "count")]))
    assert "".join(c.content for c in chunks) == "one two three"
    assert len([c for c in chunks if c.content]) == 3
    assert chunks[-1].usage_metadata["output_tokens"] == 3


async def test_async_calls_and_stream():
    model = ScriptedModel(["a b", "c d"])
    assert (await model.ainvoke("x")).content == "a b"
    assert "".join([c.content async for c in model.astream("y")]) == "c d"


def test_tool_calls_and_injected_errors():
    model = ScriptedModel([{"tool_calls": [{"name": "search", "args": {"q": "x"}}]},
                           ModelTimeout("slow", model="scripted")])
    message = model.invoke("find x")
    assert message.tool_calls == [{"name": "search", "args": {"q": "x"}, "id": "call_0",
                                   "type": "tool_call"}]
    with pytest.raises(ModelTimeout):
        model.invoke("again")
    with pytest.raises(RuntimeError, match="no reply left for call 3"):
        model.invoke("and again")


def test_max_tokens_cuts_the_answer_and_says_so():
    message = ScriptedModel(["a b c d e"]).invoke("x", max_tokens=2)
    assert message.content == "a b"
    assert message.response_metadata["finish_reason"] == "length"


def test_unknown_option_is_refused_by_name():
    with pytest.raises(TypeError, match="temprature"):
        ScriptedModel(["x"]).invoke("x", temprature=0)


def test_ledger_tags_calls_with_thread_run_and_node_and_prices_them():
    ledger = UsageLedger()
    prices = PriceBook({"priced": (1.0, 2.0)})  # USD per million tokens
    priced = ScriptedModel([Reply("x", usage=Usage(1000, 500))] * 2, model="priced",
                           ledger=ledger, prices=prices)
    unpriced = ScriptedModel([Reply("y", usage=Usage(10, 10))] * 2, model="mystery",
                             ledger=ledger, prices=prices)

    def draft(state):
        return {"messages": [priced.invoke(state["messages"])]}

    def check(state):
        return {"messages": [unpriced.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("draft", draft)
    builder.add_node("check", check)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "check")
    builder.add_edge("check", END)
    graph = builder.compile()
    for thread in ("t1", "t2"):
        graph.invoke({"messages": [("user", "go")]}, {"configurable": {"thread_id": thread}})

    draft_t1 = ledger.total(thread_id="t1", node="draft")
    assert (draft_t1.calls, draft_t1.input_tokens, draft_t1.output_tokens) == (1, 1000, 500)
    assert draft_t1.cost_usd == pytest.approx(0.002)
    t1 = ledger.total(thread_id="t1")
    assert t1.calls == 2 and t1.cost_usd is None and t1.unpriced_calls == 1
    runs = {r.run_id for r in ledger.records(thread_id="t1")}
    assert len(runs) == 1 and runs != {r.run_id for r in ledger.records(thread_id="t2")}
    assert set(ledger.by_node(thread_id="t2")) == {"draft", "check"}


def test_tokens_reach_the_graph_stream_in_messages_mode():
    model = ScriptedModel(["streamed answer here"])

    def chat(state):
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    graph = builder.compile()
    tokens = [chunk.content for chunk, meta in
              graph.stream({"messages": [("user", "q")]}, stream_mode="messages")
              if meta["langgraph_node"] == "chat" and chunk.content]
    assert "".join(tokens) == "streamed answer here" and len(tokens) == 3


# -- structured output -------------------------------------------------------------------


def test_parse_json_leniently_handles_fences_prose_and_raw_newlines():
    assert parse_json_leniently('Sure!\n```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json_leniently('Here it is: {"a": [1, 2]} hope it helps') == {"a": [1, 2]}
    assert parse_json_leniently('{"text": "line one\nline two"}') == {"text": "line one\nline two"}
    with pytest.raises(ValueError, match="no JSON"):
        parse_json_leniently("no json here")


def test_structured_returns_a_validated_object_and_sends_the_schema():
    model = ScriptedModel(['{"label": "billing", "summary": "double charge"}'])
    ticket = model.structured("I was charged twice", Ticket)
    assert ticket == Ticket(label="billing", summary="double charge")
    sent = model.requests[0].response_format
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"]["properties"]["label"]["enum"] == [
        "billing", "bug", "other"]


def test_structured_corrective_retry_shows_the_model_what_was_wrong():
    model = ScriptedModel(['{"label": "refund", "summary": "x"}',
                           '{"label": "billing", "summary": "x"}'])
    assert model.structured("charged twice", Ticket).label == "billing"
    retry = model.requests[1].messages
    assert retry[-2].content == '{"label": "refund", "summary": "x"}'
    assert "label" in retry[-1].content and "did not match" in retry[-1].content


def test_structured_treats_a_cut_off_answer_as_invalid():
    model = ScriptedModel([Reply('{"label": "bug", "summ', finish_reason="length"),
                           '{"label": "bug", "summary": "crash"}'])
    assert model.structured("app crashes", Ticket).summary == "crash"
    assert "cut off" in model.requests[1].messages[-1].content


def test_structured_gives_up_after_the_retry_with_the_raw_answer():
    model = ScriptedModel(["not json", "still not json"])
    with pytest.raises(StructuredOutputError) as info:
        model.structured("x", Ticket)
    assert info.value.raw == "still not json" and len(model.requests) == 2


async def test_async_structured():
    model = ScriptedModel(['{"label": "other", "summary": "hi"}'])
    assert (await model.astructured("hello", Ticket)).label == "other"


def test_choose_tool_returns_a_tool_call_message_or_an_answer():
    tools = [{"type": "function", "function": {
        "name": "lookup_order", "description": "Find an order",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                       "required": ["order_id"]}}}]
    schema = decision_schema(tools)
    assert [o["properties"]["tool"]["const"] for o in schema["anyOf"]] == ["lookup_order", "none"]
    model = ScriptedModel(['{"tool": "lookup_order", "args": {"order_id": "A7"}}',
                           '{"tool": "none", "answer": "Nothing to look up."}',
                           '{"tool": "delete_everything", "args": {}}'])
    call = choose_tool(model, "where is order A7?", tools)
    assert call.tool_calls[0]["name"] == "lookup_order"
    assert call.tool_calls[0]["args"] == {"order_id": "A7"}
    assert choose_tool(model, "hi", tools).content == "Nothing to look up."
    with pytest.raises(StructuredOutputError, match="unknown tool 'delete_everything'"):
        choose_tool(model, "x", tools)
