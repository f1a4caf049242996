"""Tools: validated arguments, schemas, metadata, and ToolNode inside real graphs."""

import asyncio
import enum
import threading
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from waypoint import END, START, Command, MessagesState, StateGraph, get_config, interrupt
from waypoint.checkpoint import MemorySaver
from waypoint.graph.routes import Condition, Route, Router
from waypoint.messages import AIMessage, HumanMessage, ToolMessage
from waypoint.models import ScriptedModel
from waypoint.tools import (
    InjectedState,
    InjectedToolCallId,
    Tool,
    ToolArgumentError,
    ToolDefinitionError,
    ToolNode,
    ToolTimeoutError,
    UnknownToolError,
    tool,
    tools_condition,
)


@tool
def add(a: int, b: Annotated[int, "the second addend"] = 10) -> int:
    """Add two integers.

    Longer notes that the model does not need.

    Args:
        a: the first addend.
    """
    return a + b


class Category(enum.Enum):
    SEARCH = "search"


@tool(category=Category.SEARCH, cost_estimate=0.002, timeout=3, retries=1)
async def search(query: str = Field(description="what to look for"), limit: int = 3) -> dict:
    """Search the web."""
    await asyncio.sleep(0)
    return {"query": query, "hits": limit}


def ai_calls(*calls):
    return AIMessage("", tool_calls=[
        {"name": name, "args": args, "id": call_id, "type": "tool_call"}
        for name, args, call_id in calls])


def run_node(node, *calls):
    return node({"messages": [HumanMessage("hi"), ai_calls(*calls)]})["messages"]


# -- arguments and schema -------------------------------------------------------------------


def test_arguments_are_validated_from_type_hints():
    assert add.invoke({"a": 2, "b": 3}) == 5
    assert add.invoke({"a": "2"}) == 12  # lax coercion; the default of b is honoured
    assert add.invoke('{"a": 1, "b": 1}') == 2  # JSON text, as some providers send it


def test_missing_argument_is_named_with_the_tool():
    with pytest.raises(ToolArgumentError) as info:
        add.invoke({"b": 1})
    assert "'add'" in str(info.value) and "'a' is required" in str(info.value)
    assert info.value.tool == "add"


def test_wrong_type_is_named_with_the_tool():
    with pytest.raises(ToolArgumentError) as info:
        add.invoke({"a": "two"})
    message = str(info.value)
    assert "tool 'add'" in message and "'a'" in message and "'two'" in message


def test_unexpected_argument_is_refused():
    with pytest.raises(ToolArgumentError, match=r"'c' is not an argument \(expected: a, b\)"):
        add.invoke({"a": 1, "c": 2})
    with pytest.raises(ToolArgumentError, match="not valid JSON"):
        add.invoke("{oops")
    with pytest.raises(ToolArgumentError, match="object of named values"):
        add.invoke([1, 2])


def test_schema_is_an_openai_function_spec():
    spec = add.schema
    assert spec["type"] == "function"
    function = spec["function"]
    assert function["name"] == "add"
    assert function["description"] == "Add two integers."
    params = function["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["a"]
    assert params["properties"]["a"] == {"type": "integer", "description": "the first addend."}
    assert params["properties"]["b"] == {
        "type": "integer", "default": 10, "description": "the second addend"}
    assert params["additionalProperties"] is False
    assert "title" not in params
    search_params = search.schema["function"]["parameters"]
    assert search_params["properties"]["query"]["description"] == "what to look for"
    assert search_params["required"] == ["query"]


def test_nested_models_and_literals_in_schema():
    class Filter(BaseModel):
        field: str
        title: str = "x"  # a property named like a schema keyword stays

    @tool
    def find(where: Filter, order: Literal["asc", "desc"] = "asc") -> str:
        """Find records."""
        return f"{where.field}:{order}"

    params = find.parameters
    assert params["properties"]["order"]["enum"] == ["asc", "desc"]
    assert "title" in params["$defs"]["Filter"]["properties"]
    assert find.invoke({"where": {"field": "f"}, "order": "desc"}) == "f:desc"
    with pytest.raises(ToolArgumentError, match=r"tool 'find'.*'order'"):
        find.invoke({"where": {"field": "f"}, "order": "up"})
    with pytest.raises(ToolArgumentError, match=r"'where.field' is required"):
        find.invoke({"where": {}})


def test_metadata():
    assert search.metadata == {
        "name": "search", "category": "search", "cost_estimate": 0.002, "effect": "read",
        "idempotent": True, "timeout": 3.0, "retries": 1, "requires_approval": False}
    assert add.effect == "read" and add.idempotent and add.cost_estimate is None

    @tool(name="send_mail", effect="dangerous", description="Send an e-mail.")
    def send(to: str) -> str:
        return to

    assert send.name == "send_mail" and send.description == "Send an e-mail."
    assert send.effect == "dangerous" and send.idempotent is False
    assert tool(effect="write", idempotent=True, description="d")(send.func).idempotent


def test_tool_constructor_wraps_without_decorator():
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    wrapped = Tool(shout, category="text")
    assert wrapped.name == "shout" and wrapped.category == "text"
    assert wrapped.invoke({"text": "hi"}) == "HI"
    assert wrapped("direct") == "DIRECT"  # calling it runs the function as written


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Tool(lambda x: x, name="nodoc"), "needs a description"),
        (lambda: tool(effect="delete")(add.func), "effect must be one of read, write"),
        (lambda: tool(cost_estimate=-1)(add.func), "cost_estimate"),
        (lambda: tool(timeout=0)(add.func), "timeout must be a positive"),
        (lambda: tool(retries=-1)(add.func), "retries must be an integer"),
        (lambda: Tool(add.func, name="has space"), "tool name 'has space' is not valid"),
        (lambda: tool("named"), "pass the name as a keyword"),
    ],
)
def test_definition_errors_are_clear(build, message):
    with pytest.raises(ToolDefinitionError, match=message):
        build()


def test_star_args_are_refused():
    def spread(*items: int) -> int:
        """Sum."""
        return sum(items)

    with pytest.raises(ToolDefinitionError, match=r"tool 'spread': \*items"):
        Tool(spread)


async def test_async_and_sync_tools_both_ways():
    assert search.is_async and not add.is_async
    assert search.invoke({"query": "q"}) == {"query": "q", "hits": 3}
    assert await search.ainvoke({"query": "q", "limit": 1}) == {"query": "q", "hits": 1}
    assert await add.ainvoke({"a": 1}) == 11
    with pytest.raises(ToolArgumentError, match="tool 'search'"):
        await search.ainvoke({"limit": "many"})


def test_injected_arguments_are_hidden_from_the_model():
    @tool
    def whoami(
        greeting: str,
        user: Annotated[str, InjectedState("user")],
        call_id: Annotated[str, InjectedToolCallId],
    ) -> str:
        """Greet the current user."""
        return f"{greeting} {user} ({call_id})"

    assert list(whoami.parameters["properties"]) == ["greeting"]
    node = ToolNode([whoami])
    state = {"messages": [ai_calls(("whoami", {"greeting": "hello"}, "c9"))], "user": "ada"}
    [answer] = node(state)["messages"]
    assert answer.content == "hello ada (c9)"
    assert whoami.invoke({"greeting": "hi", "user": "bob", "call_id": "x"}) == "hi bob (x)"
    with pytest.raises(ToolArgumentError, match="only ToolNode"):
        whoami.invoke({"greeting": "hi"})


# -- ToolNode -------------------------------------------------------------------------------


def test_tool_node_answers_in_call_order_and_encodes_results():
    class Point(BaseModel):
        x: int
        y: int

    @tool
    def point(x: int) -> Point:
        """Make a point."""
        return Point(x=x, y=-x)

    node = ToolNode([add, search, point])
    answers = run_node(node, ("search", {"query": "llm"}, "c1"), ("add", {"a": 1}, "c2"),
                       ("point", {"x": 2}, "c3"))
    assert [m.tool_call_id for m in answers] == ["c1", "c2", "c3"]
    assert [m.name for m in answers] == ["search", "add", "point"]
    assert all(isinstance(m, ToolMessage) for m in answers)
    assert answers[0].content == '{"query": "llm", "hits": 3}'
    assert answers[1].content == "11"
    assert answers[2].content == '{"x": 2, "y": -2}'
    assert not answers[0].additional_kwargs


def test_sync_tool_calls_run_in_parallel():
    barrier = threading.Barrier(2, timeout=10)

    @tool
    def left() -> str:
        """Wait for the right-hand tool."""
        barrier.wait()
        return "left"

    @tool
    def right() -> str:
        """Wait for the left-hand tool."""
        barrier.wait()
        return "right"

    answers = run_node(ToolNode([left, right]), ("left", {}, "1"), ("right", {}, "2"))
    assert [m.content for m in answers] == ["left", "right"]  # sequential would break it


async def test_async_tool_calls_run_concurrently():
    first, second = asyncio.Event(), asyncio.Event()

    @tool
    async def ping() -> str:
        """Signal, then wait for pong."""
        first.set()
        await asyncio.wait_for(second.wait(), 10)
        return "ping"

    @tool
    async def pong() -> str:
        """Wait for ping, then signal."""
        await asyncio.wait_for(first.wait(), 10)
        second.set()
        return "pong"

    node = ToolNode([ping, pong])
    out = await node.ainvoke({"messages": [ai_calls(("ping", {}, "1"), ("pong", {}, "2"))]})
    assert [m.content for m in out["messages"]] == ["ping", "pong"]


def test_timeout_becomes_an_error_message():
    release = threading.Event()

    @tool(timeout=0.05)
    def stuck() -> str:
        """Never answers in time."""
        release.wait(10)
        return "late"

    @tool
    async def slow_async() -> str:
        """Sleeps too long."""
        await asyncio.sleep(10)
        return "late"

    try:
        answers = run_node(ToolNode([stuck, slow_async, add], timeout=0.05),
                           ("stuck", {}, "1"), ("slow_async", {}, "2"), ("add", {"a": 1}, "3"))
    finally:
        release.set()
    for answer, name in zip(answers[:2], ("stuck", "slow_async"), strict=True):
        assert answer.additional_kwargs == {"status": "error", "error_type": "timeout"}
        assert f"tool {name!r} timed out" in answer.content
    assert answers[2].content == "11"


def test_retry_succeeds_on_a_flaky_tool():
    attempts = []

    @tool
    def flaky(text: str) -> str:
        """Fails twice, then works."""
        attempts.append(text)
        if len(attempts) < 3:
            raise ConnectionError("network blip")
        return text

    [answer] = run_node(ToolNode([flaky], retries=2), ("flaky", {"text": "ok"}, "1"))
    assert answer.content == "ok" and len(attempts) == 3


def test_exhausted_retries_and_write_tools():
    calls = {"read": 0, "write": 0}

    @tool
    def reader() -> str:
        """Always fails."""
        calls["read"] += 1
        raise ValueError("broken")

    @tool(effect="write")
    def writer() -> str:
        """Always fails, and writes."""
        calls["write"] += 1
        raise ValueError("broken")

    answers = run_node(ToolNode([reader, writer], retries=2),
                       ("reader", {}, "1"), ("writer", {}, "2"))
    assert calls == {"read": 3, "write": 1}  # node retries only idempotent tools
    assert answers[0].content == (
        "Error: tool 'reader' failed (after 3 attempts): ValueError: broken")
    assert answers[1].additional_kwargs["error_type"] == "exception"


def test_invalid_arguments_are_answered_and_never_retried():
    calls = []

    @tool(retries=3)
    def count(n: int) -> int:
        """Count."""
        calls.append(n)
        return n

    [answer] = run_node(ToolNode([count]), ("count", {"n": "many"}, "1"))
    assert calls == []
    assert answer.additional_kwargs["error_type"] == "invalid_arguments"
    assert "tool 'count' got invalid arguments: 'n'" in answer.content


def test_unknown_tool_becomes_an_error_message():
    [answer] = run_node(ToolNode([add]), ("subtract", {"a": 1}, "1"))
    assert answer.tool_call_id == "1"
    assert answer.additional_kwargs["error_type"] == "unknown_tool"
    assert "no tool named 'subtract' (available: add)" in answer.content


def test_handle_errors_false_raises():
    @tool
    def boom() -> str:
        """Fails."""
        raise KeyError("nope")

    node = ToolNode([add, boom], handle_errors=False)
    with pytest.raises(UnknownToolError, match="subtract"):
        run_node(node, ("subtract", {}, "1"))
    with pytest.raises(KeyError):
        run_node(node, ("add", {"a": 1}, "1"), ("boom", {}, "2"))
    with pytest.raises(ToolArgumentError, match="tool 'add'"):
        run_node(node, ("add", {}, "1"))

    @tool(timeout=0.01)
    async def sleepy() -> str:
        """Sleeps."""
        await asyncio.sleep(5)
        return "z"

    with pytest.raises(ToolTimeoutError, match="sleepy"):
        run_node(ToolNode([sleepy], handle_errors=False), ("sleepy", {}, "1"))


def test_handle_errors_text_or_function():
    fixed = ToolNode([add], handle_errors="Something went wrong.")
    [answer] = run_node(fixed, ("add", {}, "1"))
    assert answer.content == "Something went wrong."
    custom = ToolNode([add], handle_errors=lambda exc: f"sorry: {type(exc).__name__}")
    [answer] = run_node(custom, ("nope", {}, "1"))
    assert answer.content == "sorry: UnknownToolError"


def test_tool_node_inputs():
    node = ToolNode([add])
    message = ai_calls(("add", {"a": 1}, "1"))
    assert [m.content for m in node([HumanMessage("q"), message])] == ["11"]
    assert [m.content for m in node(message)] == ["11"]
    assert [m.content for m in node([{"name": "add", "args": {"a": 2}, "id": "x"}])] == ["12"]
    assert node({"messages": [AIMessage("no tools")]}) == {"messages": []}
    with pytest.raises(ValueError, match="last message is a 'tool' message"):
        node({"messages": [message, ToolMessage("11", tool_call_id="1")]})
    with pytest.raises(ValueError, match="no 'messages' key"):
        node({"history": []})
    with pytest.raises(ToolDefinitionError, match="two tools are named 'add'"):
        ToolNode([add, add])


def test_allowed_tools_come_from_the_route():
    router = Router([Route(Condition("mode", "==", "math"), to="tools", tools=("add",))],
                    default="tools", default_tools=("search",))
    node = ToolNode([add, search], allowed=router.tools_for)
    state = {"mode": "math", "messages": [
        ai_calls(("add", {"a": 1}, "1"), ("search", {"query": "x"}, "2"))]}
    answers = node(state)["messages"]
    assert answers[0].content == "11"
    assert "tool 'search' is not allowed at this point (allowed: add)" in answers[1].content


def test_tools_condition():
    assert tools_condition({"messages": [ai_calls(("add", {}, "1"))]}) == "tools"
    assert tools_condition({"messages": [AIMessage("done")]}) == END
    assert tools_condition([HumanMessage("hi")]) == END
    assert tools_condition({"messages": []}) == END


def agent_graph(model, node, checkpointer=None):
    def agent(state: MessagesState):
        return {"messages": [model.invoke(state["messages"], tools=node.schemas)]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", node)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer)


async def test_agent_loop_in_a_state_graph(run):
    model = ScriptedModel([
        {"tool_calls": [{"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"},
                        {"name": "search", "args": {"query": "sum"}, "id": "c2"}]},
        "The sum is 5.",
    ])
    graph = agent_graph(model, ToolNode([add, search]))
    result = await run(graph, {"messages": [HumanMessage("what is 2 + 3?")]})
    kinds = [m.type for m in result["messages"]]
    assert kinds == ["human", "ai", "tool", "tool", "ai"]
    assert result["messages"][2].content == "5"
    assert result["messages"][-1].content == "The sum is 5."
    second_call = model.requests[1]
    assert [getattr(m, "tool_call_id", None) for m in second_call.messages[2:]] == ["c1", "c2"]
    assert model.requests[0].tools[0]["function"]["name"] == "add"


def test_agent_loop_drawing_shows_both_branches():
    graph = agent_graph(ScriptedModel(["x"]), ToolNode([add]))
    mermaid = graph.get_graph().draw_mermaid()
    assert "agent -.-> tools;" in mermaid
    assert "agent -.-> __end__;" in mermaid
    assert "tools --> agent;" in mermaid


def test_tools_see_the_run_config():
    @tool
    def where() -> str:
        """Which thread is this."""
        return get_config()["configurable"]["thread_id"]

    model = ScriptedModel([{"tool_calls": [{"name": "where", "args": {}, "id": "c1"}]}, "ok"])
    graph = agent_graph(model, ToolNode([where]), MemorySaver())
    result = graph.invoke({"messages": [HumanMessage("?")]},
                          {"configurable": {"thread_id": "t-42"}})
    assert result["messages"][2].content == "t-42"


def test_tool_returning_a_command_updates_state():
    class State(MessagesState):
        user: str

    @tool
    def set_user(name: str, call_id: Annotated[str, InjectedToolCallId]) -> Command:
        """Remember the user's name."""
        return Command(update={
            "user": name,
            "messages": [ToolMessage(f"saved {name}", tool_call_id=call_id)],
        })

    model = ScriptedModel([
        {"tool_calls": [{"name": "set_user", "args": {"name": "ada"}, "id": "c1"},
                        {"name": "add", "args": {"a": 1}, "id": "c2"}]},
        "Hello Ada.",
    ])
    node = ToolNode([set_user, add])

    def agent(state: State):
        return {"messages": [model.invoke(state["messages"], tools=node.schemas)]}

    builder = StateGraph(State)
    builder.add_node("agent", agent)
    builder.add_node("tools", node)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    result = builder.compile().invoke({"messages": [HumanMessage("I am Ada")]})
    assert result["user"] == "ada"
    tool_messages = [m for m in result["messages"] if m.type == "tool"]
    assert [(m.tool_call_id, m.content) for m in tool_messages] == [
        ("c1", "saved ada"), ("c2", "11")]


def test_a_tool_can_pause_for_a_person():
    @tool(effect="dangerous")
    def delete(path: str) -> str:
        """Delete a file once a person approves."""
        return "deleted" if interrupt({"approve": path}) else "refused"

    model = ScriptedModel([
        {"tool_calls": [{"name": "delete", "args": {"path": "/tmp/x"}, "id": "c1"}]}, "done"])
    graph = agent_graph(model, ToolNode([delete]), MemorySaver())
    config = {"configurable": {"thread_id": "approve"}}
    paused = graph.invoke({"messages": [HumanMessage("remove it")]}, config)
    assert paused["__interrupt__"][0].value == {"approve": "/tmp/x"}
    result = graph.invoke(Command(resume=False), config)
    assert [m.content for m in result["messages"]][2:] == ["refused", "done"]
