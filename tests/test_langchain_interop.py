"""Ported LangChain code on waypoint: LangChain chat models inside nodes (their messages,
their tokens in `stream_mode="messages"` and `astream_events`), LangChain tools, and
`create_react_agent` with a LangChain model. langchain-core is a test dependency only."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

lc_messages = pytest.importorskip("langchain_core.messages")
from langchain_core.language_models.chat_models import BaseChatModel  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langchain_core.tools import tool as lc_tool  # noqa: E402

from waypoint import END, START, MessagesState, StateGraph  # noqa: E402
from waypoint.checkpoint import MemorySaver, SqliteSaver  # noqa: E402
from waypoint.checkpoint.serde import dumps, loads  # noqa: E402
from waypoint.interop.langchain_messages import (  # noqa: E402
    from_langchain,
    set_message_classes,
    to_langchain,
)
from waypoint.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from waypoint.prebuilt import ToolNode, create_react_agent  # noqa: E402

pytestmark = pytest.mark.usefixtures("langchain_messages")

TEXT = "hello there my friend how are you today"


def chat_graph(model: Any, checkpointer: Any = None) -> Any:
    def chat(state):
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    return builder.compile(checkpointer=checkpointer)


def fake(text: str = TEXT) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([text]))


def test_a_langchain_model_accepts_the_state_messages():
    graph = chat_graph(fake())
    out = graph.invoke({"messages": [("user", "hi")]})  # the NotImplementedError
    assert [type(m) for m in out["messages"]] == [lc_messages.HumanMessage,
                                                 lc_messages.AIMessage]
    assert out["messages"][1].content == TEXT


def test_its_tokens_stream_in_messages_mode():
    graph = chat_graph(fake())
    parts = list(graph.stream({"messages": [("user", "hi")]}, stream_mode="messages"))
    assert len(parts) == len(TEXT.split()) * 2 - 1  # words and the spaces between them
    chunks = [chunk for chunk, _ in parts]
    assert all(isinstance(c, lc_messages.AIMessageChunk) for c in chunks)
    assert "".join(c.content for c in chunks) == TEXT
    assert {meta["langgraph_node"] for _, meta in parts} == {"chat"}
    assert len({c.id for c in chunks}) == 1  # one message; not repeated when the node returns


def test_its_tokens_stream_from_async_nodes_and_events():
    model = fake()

    async def chat(state):
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    graph = builder.compile()

    async def run():
        parts = [p async for p in graph.astream({"messages": [("user", "hi")]},
                                                stream_mode="messages")]
        events = [e async for e in graph.astream_events({"messages": [("user", "hi")]},
                                                        version="v2")]
        return parts, events

    model.messages = iter([TEXT, TEXT])
    parts, events = asyncio.run(run())
    assert "".join(c.content for c, _ in parts) == TEXT
    names = [e["event"] for e in events]
    assert names.count("on_chat_model_stream") == len(parts)
    assert "on_chat_model_start" in names and "on_chat_model_end" in names


def test_nostream_models_stay_quiet():
    model = fake().with_config(tags=["nostream"])
    graph = chat_graph(model)
    parts = list(graph.stream({"messages": [("user", "hi")]}, stream_mode="messages"))
    # the tokens are not streamed, but the node's returned message is, once
    assert len(parts) == 1 and parts[0][0].content == TEXT


class ToolCallingFake(BaseChatModel):
    """A LangChain chat model that cannot stream and answers from a script."""

    replies: list[Any]
    seen: list[Any] = []
    bound: list[Any] = []

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(list(messages))
        reply = self.replies.pop(0)
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def bind_tools(self, tools, **kwargs):
        self.bound.extend(tools)
        return self


@lc_tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_create_react_agent_with_a_langchain_model_and_tools():
    model = ToolCallingFake(replies=[
        lc_messages.AIMessage("", tool_calls=[{"name": "multiply", "args": {"a": 6, "b": 7},
                                               "id": "c1"}]),
        lc_messages.AIMessage("42")], seen=[], bound=[])
    agent = create_react_agent(model, [multiply], prompt="You multiply.",
                               checkpointer=MemorySaver())
    config = {"configurable": {"thread_id": "lc-agent"}}
    parts = list(agent.stream({"messages": [("user", "6*7?")]}, config,
                              stream_mode=["messages", "values"]))
    final = [p for mode, p in parts if mode == "values"][-1]
    assert [m.type for m in final["messages"]] == ["human", "ai", "tool", "ai"]
    assert final["messages"][2].content == "42" and final["messages"][2].tool_call_id == "c1"
    assert all(isinstance(m, lc_messages.BaseMessage) for m in final["messages"])
    assert model.bound[0]["function"]["name"] == "multiply"
    assert isinstance(model.seen[0][0], lc_messages.SystemMessage)
    streamed = [(m.type, meta["langgraph_node"]) for mode, (m, meta) in
                ((mode, p) for mode, p in parts if mode == "messages")]
    assert streamed == [("ai", "agent"), ("tool", "tools"), ("ai", "agent")]
    # the thread reads back as LangChain messages
    assert isinstance(agent.get_state(config).values["messages"][1], lc_messages.AIMessage)


def test_a_langchain_tool_runs_in_a_tool_node():
    node = ToolNode([multiply])
    out = node.invoke({"messages": [AIMessage("", tool_calls=[
        {"name": "multiply", "args": {"a": 3, "b": 4}, "id": "x"}])]})
    assert out["messages"][0].content == "12"
    bad = node.invoke({"messages": [AIMessage("", tool_calls=[
        {"name": "multiply", "args": {"a": "three"}, "id": "y"}])]})
    assert "invalid arguments" in bad["messages"][0].content


def test_messages_convert_both_ways_without_loss():
    originals = [
        HumanMessage("hi", id="1", name="ann"),
        AIMessage("", id="2", tool_calls=[{"name": "f", "args": {"x": 1}, "id": "c",
                                           "type": "tool_call"}],
                  usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
                  response_metadata={"finish_reason": "tool_calls"}),
        ToolMessage("boom", id="3", tool_call_id="c", name="f",
                    additional_kwargs={"status": "error"}),
    ]
    converted = [to_langchain(m) for m in originals]
    assert converted[2].status == "error"
    assert converted[1].tool_calls[0]["args"] == {"x": 1}
    back = [from_langchain(m) for m in converted]
    assert back == originals
    assert back[2].additional_kwargs == {"status": "error"}


def test_stored_messages_read_back_in_either_kind(tmp_path):
    path = str(tmp_path / "lc.db")
    with SqliteSaver.from_conn_string(path) as saver:
        graph = chat_graph(fake("stored answer"), saver)
        config = {"configurable": {"thread_id": "t"}}
        graph.invoke({"messages": [("user", "hi")]}, config)
        assert isinstance(graph.get_state(config).values["messages"][1], lc_messages.AIMessage)
        set_message_classes("waypoint")  # a process that does not use LangChain
        messages = graph.get_state(config).values["messages"]
        assert [type(m) for m in messages] == [HumanMessage, AIMessage]
        assert messages[1].content == "stored answer"
    blob = dumps([lc_messages.AIMessage("x", id="9")])
    assert loads(blob)[0] == AIMessage("x", id="9")


def test_auto_follows_whether_the_code_imports_langchain():
    """In a fresh process, waypoint's classes unless the code imported langchain_core."""
    script = (
        "import os; os.environ.pop('WAYPOINT_MESSAGE_CLASSES', None)\n"
        "import sys\n"
        "{extra}"
        "from waypoint import add_messages\n"
        "print(type(add_messages([], [('user', 'hi')])[0]).__module__)\n"
    )
    plain = subprocess.run([sys.executable, "-c", script.format(extra="")],
                           capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == "waypoint.messages"
    with_lc = subprocess.run(
        [sys.executable, "-c", script.format(extra="import langchain_core.messages\n")],
        capture_output=True, text=True, check=True)
    assert with_lc.stdout.strip().startswith("langchain_core.messages")


def test_unknown_message_classes_setting_is_refused():
    with pytest.raises(ValueError, match="message classes must be one of"):
        set_message_classes("pydantic")


# -- budgets and the usage ledger ------------------------------------------------------------


class UsageFake(BaseChatModel):
    """A LangChain chat model that reports usage, as providers do: on its message
    (`usage_metadata`) or, with `in_llm_output`, only in `llm_output["token_usage"]`."""

    replies: list[Any]
    usage: tuple[int, int] = (30, 10)
    in_llm_output: bool = False
    max_tokens: int = 20
    calls: int = 0
    cycle: bool = False

    @property
    def _llm_type(self) -> str:
        return "usage-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": "usage-fake", "max_tokens": self.max_tokens}

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        reply = self.replies[self.calls % len(self.replies)] if self.cycle else \
            self.replies[self.calls]
        self.calls += 1
        inputs, outputs = self.usage
        if self.in_llm_output:
            return ChatResult(generations=[ChatGeneration(message=reply.model_copy())],
                              llm_output={"token_usage": {"prompt_tokens": inputs,
                                                          "completion_tokens": outputs},
                                          "model_name": "usage-fake"})
        message = reply.model_copy(update={"usage_metadata": {
            "input_tokens": inputs, "output_tokens": outputs,
            "total_tokens": inputs + outputs}})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def bind_tools(self, tools, **kwargs):
        return self


@pytest.mark.parametrize("where", ["usage_metadata", "llm_output"])
def test_langchain_calls_are_in_the_durable_usage_ledger(where):
    model = UsageFake(replies=[lc_messages.AIMessage("one"), lc_messages.AIMessage("two")],
                      usage=(12, 5), in_llm_output=where == "llm_output")
    saver = MemorySaver()
    graph = chat_graph(model, saver)
    config = {"configurable": {"thread_id": f"ledger-{where}"}}
    graph.invoke({"messages": [("user", "hi")]}, config)
    graph.invoke({"messages": [("user", "again")]}, config)
    records = saver.usage_records(thread_id=f"ledger-{where}")
    assert len(records) == 2
    assert {(r.model, r.node, r.outcome) for r in records} == {("usage-fake", "chat", "ok")}
    assert all((r.usage.input_tokens, r.usage.output_tokens) == (12, 5) for r in records)
    assert all(r.cost_usd is None for r in records)  # no price known: unknown, not 0
    spent = graph.get_state(config).metadata.get("budget")
    assert spent is None  # no budget: nothing is reserved


def test_a_langchain_call_that_fails_is_recorded_as_failed():
    class Broken(UsageFake):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            raise RuntimeError("provider down")

    saver = MemorySaver()
    graph = chat_graph(Broken(replies=[]), saver)
    with pytest.raises(RuntimeError, match="provider down"):
        graph.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "f"}})
    records = saver.usage_records(thread_id="f")
    assert [(r.model, r.outcome) for r in records] == [("usage-fake", "error")]


def _looping_agent(model: Any, budget: Any) -> Any:
    return create_react_agent(model, [multiply], budget=budget, checkpointer=MemorySaver())


def test_a_token_budget_stops_a_langchain_model_as_it_stops_waypoints():
    """The same agent loop, a LangChain model and a waypoint model reporting the same usage
    (40 tokens a call, 20 at most out): a budget of 100 tokens lets both make the same
    number of calls, then the run fails with BudgetExceeded."""
    from waypoint import Budget, BudgetExceeded
    from waypoint.models import Reply, ScriptedModel, Usage

    call = {"name": "multiply", "args": {"a": 2, "b": 3}, "id": "c1"}
    lc_model = UsageFake(replies=[lc_messages.AIMessage("", tool_calls=[call])],
                         usage=(30, 10), cycle=True)
    with pytest.raises(BudgetExceeded, match="max_tokens=100"):
        _looping_agent(lc_model, Budget(max_tokens=100, on_exceed="fail")).invoke(
            {"messages": [("user", "loop")]}, {"configurable": {"thread_id": "lc"}})
    own = ScriptedModel([Reply("", tool_calls=[call], usage=Usage(30, 10))], cycle=True,
                        max_tokens=20)
    with pytest.raises(BudgetExceeded, match="max_tokens=100"):
        _looping_agent(own, Budget(max_tokens=100, on_exceed="fail")).invoke(
            {"messages": [("user", "loop")]}, {"configurable": {"thread_id": "own"}})
    assert lc_model.calls == len(own.requests) >= 2


def test_a_budget_pauses_a_langchain_model_for_a_person():
    from waypoint import Budget, Command

    call = {"name": "multiply", "args": {"a": 2, "b": 3}, "id": "c1"}
    model = UsageFake(replies=[lc_messages.AIMessage("", tool_calls=[call]),
                               lc_messages.AIMessage("6")], usage=(30, 10))
    agent = _looping_agent(model, Budget(max_model_calls=1))
    config = {"configurable": {"thread_id": "pause"}}
    out = agent.invoke({"messages": [("user", "2*3?")]}, config)
    question = out["__interrupt__"][0].value
    assert question["kind"] == "budget" and question["limit"] == "max_model_calls"
    assert model.calls == 1
    out = agent.invoke(Command(resume={"action": "raise", "budget": {"max_model_calls": 2}}),
                       config)
    assert out["messages"][-1].content == "6" and model.calls == 2
    spent = agent.get_state(config).metadata["budget"]["run"]
    assert spent["model_calls"] == 2 and spent["tokens"] == 80


def test_a_cost_budget_refuses_an_unpriced_langchain_model_by_name():
    from waypoint import Budget, PermanentError

    model = UsageFake(replies=[lc_messages.AIMessage("x")])
    graph = chat_graph(model)
    with pytest.raises(PermanentError, match="'usage-fake' has no known price"):
        graph.invoke({"messages": [("user", "hi")]}, budget=Budget(max_cost_usd=1))
    assert model.calls == 0
