"""`create_react_agent` with more of LangGraph's arguments: `store=`, `interrupt_after=`,
`context_schema=`, a LangChain Runnable as the prompt, and `version="v2"` (each tool call
its own `Send` to the tools node, approvals per call)."""

from __future__ import annotations

import pytest

from waypoint import Command
from waypoint.checkpoint import MemorySaver
from waypoint.messages import SystemMessage
from waypoint.models import ScriptedModel
from waypoint.prebuilt import create_react_agent
from waypoint.tools import tool

SENT: list[str] = []


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny in {city}"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(effect="write")
def send_email(to: str, body: str) -> str:
    """Send an e-mail."""
    SENT.append(f"{to}: {body}")
    return "sent"


def calls(*pairs):
    return {"tool_calls": [{"name": n, "args": a} for n, a in pairs]}


def cfg(thread="t"):
    return {"configurable": {"thread_id": thread}}


# -- more of LangGraph's arguments ----------------------------------------------------------


def test_store_reaches_the_tools_and_the_prompt():
    from waypoint import get_store
    from waypoint.store import InMemoryStore

    @tool
    def remember(fact: str) -> str:
        """Remember a fact about the user."""
        get_store().put(("facts",), "latest", {"fact": fact})
        return "noted"

    def prompt(state):
        known = get_store().get(("facts",), "latest")
        note = known.value["fact"] if known else "nothing"
        return [SystemMessage(f"Known: {note}"), *state["messages"]]

    store = InMemoryStore()
    model = ScriptedModel([calls(("remember", {"fact": "likes tea"})), "Noted.", "Tea."])
    agent = create_react_agent(model, [remember], prompt=prompt, store=store,
                               checkpointer=MemorySaver())
    agent.invoke({"messages": [("user", "I like tea")]}, cfg("store"))
    assert store.get(("facts",), "latest").value == {"fact": "likes tea"}
    agent.invoke({"messages": [("user", "what do I like?")]}, cfg("other-thread"))
    assert model.requests[2].messages[0].content == "Known: likes tea"  # across threads


def test_interrupt_after_tools_then_resume():
    model = ScriptedModel([calls(("add", {"a": 2, "b": 2})), "4"])
    agent = create_react_agent(model, [add], checkpointer=MemorySaver(),
                               interrupt_after=["tools"])
    agent.invoke({"messages": [("user", "2+2")]}, cfg("after"))
    state = agent.get_state(cfg("after"))
    assert state.next == ("agent",)
    assert state.values["messages"][-1].type == "tool" and len(model.requests) == 1
    out = agent.invoke(None, cfg("after"))
    assert out["messages"][-1].content == "4"


def test_context_schema_is_checked_and_reaches_the_prompt():
    from dataclasses import dataclass

    from waypoint import InvalidContextError, get_runtime

    @dataclass
    class Context:
        user_name: str

    def prompt(state):
        return [SystemMessage(f"The user is {get_runtime().context.user_name}."),
                *state["messages"]]

    model = ScriptedModel(["Hi Ann."])
    agent = create_react_agent(model, [], prompt=prompt, context_schema=Context)
    out = agent.invoke({"messages": [("user", "hi")]}, context={"user_name": "Ann"})
    assert model.requests[0].messages[0].content == "The user is Ann."
    assert out["messages"][-1].content == "Hi Ann."
    with pytest.raises(InvalidContextError, match="user_name"):
        agent.invoke({"messages": [("user", "hi")]}, context={"name": "Ann"})


@pytest.mark.parametrize("kind", ["template", "lambda"])
def test_a_runnable_prompt(kind):
    prompts = pytest.importorskip("langchain_core.prompts")
    from langchain_core.runnables import RunnableLambda

    if kind == "template":
        prompt = prompts.ChatPromptTemplate.from_messages(
            [("system", "Be brief."), prompts.MessagesPlaceholder("messages")])
    else:
        prompt = RunnableLambda(lambda state: [("system", "Be brief."), *state["messages"]])
    model = ScriptedModel(["ok"])
    create_react_agent(model, [get_weather], prompt=prompt).invoke(
        {"messages": [("user", "hello")]})
    sent = model.requests[0].messages
    assert [(m.type, m.content) for m in sent] == [("system", "Be brief."), ("human", "hello")]


# -- version="v2": a Send per tool call -----------------------------------------------------


def test_v2_sends_each_tool_call_to_its_own_task():
    model = ScriptedModel([calls(("get_weather", {"city": "Oslo"}), ("add", {"a": 2, "b": 3})),
                           "done"])
    agent = create_react_agent(model, [get_weather, add], version="v2")
    updates = list(agent.stream({"messages": [("user", "both")]}, stream_mode="updates"))
    tool_updates = [u["tools"] for u in updates if "tools" in u]
    assert len(tool_updates) == 2  # two tasks of the tools node, one message each
    assert [len(u["messages"]) for u in tool_updates] == [1, 1]
    final = [u for u in updates if "agent" in u][-1]["agent"]["messages"][-1]
    assert final.content == "done"
    answers = sorted(u["messages"][0].content for u in tool_updates)
    assert answers == ["5", "sunny in Oslo"]


def test_v2_asks_approval_per_call_and_keeps_the_other_calls():
    SENT.clear()
    looked: list[str] = []

    @tool
    def lookup(city: str) -> str:
        """Look a city up."""
        looked.append(city)
        return f"{city}: fine"

    model = ScriptedModel([calls(("send_email", {"to": "a@b.c", "body": "hi"}),
                                 ("lookup", {"city": "Rome"})), "Both done."])
    agent = create_react_agent(model, [send_email, lookup], version="v2",
                               checkpointer=MemorySaver())
    out = agent.invoke({"messages": [("user", "mail and look")]}, cfg("v2-approve"))
    assert out["__interrupt__"][0].value["request"]["tool"] == "send_email"
    assert looked == ["Rome"] and SENT == []  # the sibling call ran; the write waits
    out = agent.invoke(Command(resume={"action": "edit",
                                       "edits": {"to": "boss@b.c", "body": "hi"}}),
                       cfg("v2-approve"))
    assert SENT == ["boss@b.c: hi"] and looked == ["Rome"]  # nothing ran twice
    asked = out["messages"][1]
    assert [c["args"] for c in asked.tool_calls] == [{"to": "boss@b.c", "body": "hi"},
                                                    {"city": "Rome"}]
    assert out["messages"][-1].content == "Both done."
    answered = {m.tool_call_id for m in out["messages"] if m.type == "tool"}
    assert answered == {c["id"] for c in asked.tool_calls}


def test_an_unknown_version_is_refused():
    with pytest.raises(ValueError, match="version must be 'v1' or 'v2'"):
        create_react_agent(ScriptedModel(["x"]), [], version="v3")
