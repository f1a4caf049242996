"""add_messages / MessagesState and the message classes.

Expectations were checked against LangGraph 1.2 + langchain_core messages, except the
section at the end (``.role``), which is waypoint-only (LangChain messages have no .role).
"""

import operator
from typing import Annotated, TypedDict

import pytest

import waypoint
from waypoint import START, MessagesState, StateGraph, add_messages
from waypoint.messages import (
    AIMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)

# The test suite is also run against a private LangGraph re-export ("shim") to make sure the
# expectations carry LangGraph's meaning; the real waypoint package never has this attribute.
UNDER_SHIM = bool(getattr(waypoint, "__SHIM__", False))
waypoint_only = pytest.mark.skipif(UNDER_SHIM, reason="waypoint-specific API (not in LangGraph)")


# --------------------------------------------------------------------------- message objects


def test_message_classes_have_content_type_and_id():
    cases = [
        (HumanMessage(content="hi", id="h1"), "human"),
        (AIMessage(content="hello", id="a1"), "ai"),
        (SystemMessage(content="be nice", id="s1"), "system"),
        (ToolMessage(content="42", tool_call_id="call-1", id="t1"), "tool"),
    ]
    for msg, typ in cases:
        assert msg.type == typ
        assert isinstance(msg.content, str) and msg.content
    assert [m.id for m, _ in cases] == ["h1", "a1", "s1", "t1"]


def test_tool_message_and_tool_calls_fields():
    ai = AIMessage(content="", tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "c1"}])
    assert len(ai.tool_calls) == 1
    call = ai.tool_calls[0]
    assert (call["name"], call["args"], call["id"]) == ("search", {"q": "x"}, "c1")
    tool = ToolMessage(content="result", tool_call_id="c1", name="search")
    assert tool.tool_call_id == "c1"
    assert tool.name == "search"
    assert tool.type == "tool"


def test_ai_message_without_tool_calls_has_empty_list():
    assert AIMessage(content="x").tool_calls == []


# --------------------------------------------------------------------------- add_messages


def test_add_messages_converts_dicts():
    out = add_messages(
        [],
        [
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": "a"},
            {"role": "system", "content": "s"},
            {"role": "tool", "content": "t", "tool_call_id": "c9"},
        ],
    )
    assert [m.type for m in out] == ["human", "ai", "system", "tool"]
    assert [m.content for m in out] == ["u", "a", "s", "t"]
    assert isinstance(out[0], HumanMessage)
    assert isinstance(out[1], AIMessage)
    assert isinstance(out[2], SystemMessage)
    assert isinstance(out[3], ToolMessage)
    assert out[3].tool_call_id == "c9"


def test_add_messages_converts_tuples():
    out = add_messages(
        [],
        [("user", "u"), ("human", "h"), ("assistant", "a"), ("ai", "ai"), ("system", "s")],
    )
    assert [m.type for m in out] == ["human", "human", "ai", "ai", "system"]
    assert [m.content for m in out] == ["u", "h", "a", "ai", "s"]


def test_add_messages_converts_plain_strings_to_human():
    out = add_messages([], ["just text", "more"])
    assert [m.type for m in out] == ["human", "human"]
    assert [m.content for m in out] == ["just text", "more"]


def test_add_messages_accepts_single_items_not_in_a_list():
    out = add_messages(HumanMessage(content="a", id="1"), AIMessage(content="b", id="2"))
    assert [(m.type, m.content, m.id) for m in out] == [("human", "a", "1"), ("ai", "b", "2")]
    out = add_messages([], "lone string")
    assert [(m.type, m.content) for m in out] == [("human", "lone string")]


def test_add_messages_assigns_unique_ids_when_missing():
    out = add_messages([], ["a", ("ai", "b"), {"role": "user", "content": "c"}])
    ids = [m.id for m in out]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == 3


def test_add_messages_keeps_given_ids():
    out = add_messages(
        [],
        [
            HumanMessage(content="a", id="keep-me"),
            {"role": "assistant", "content": "b", "id": "dict-id"},
        ],
    )
    assert [m.id for m in out] == ["keep-me", "dict-id"]


def test_add_messages_appends_in_order():
    left = [HumanMessage(content="1", id="1")]
    out = add_messages(left, [AIMessage(content="2", id="2"), HumanMessage(content="3", id="3")])
    assert [m.id for m in out] == ["1", "2", "3"]
    assert [m.id for m in left] == ["1"]  # the left list is not mutated


def test_add_messages_replaces_message_with_same_id_in_place():
    left = add_messages([], [("user", "first"), ("ai", "second"), ("user", "third")])
    target = left[1].id
    out = add_messages(left, [{"role": "assistant", "content": "SECOND", "id": target}])
    assert [m.content for m in out] == ["first", "SECOND", "third"]
    assert out[1].id == target
    assert len(out) == 3


def test_add_messages_replace_can_change_type():
    out = add_messages([HumanMessage(content="a", id="x")], [AIMessage(content="b", id="x")])
    assert [(m.type, m.content, m.id) for m in out] == [("ai", "b", "x")]


def test_add_messages_same_id_twice_in_update_keeps_last():
    out = add_messages(
        [HumanMessage(content="a", id="1")],
        [HumanMessage(content="b", id="x"), HumanMessage(content="c", id="x")],
    )
    assert [(m.content, m.id) for m in out] == [("a", "1"), ("c", "x")]


def test_remove_message_deletes_by_id():
    left = add_messages([], [("user", "a"), ("ai", "b"), ("user", "c")])
    out = add_messages(left, [RemoveMessage(id=left[1].id)])
    assert [m.content for m in out] == ["a", "c"]


def test_remove_and_add_in_one_update():
    left = [HumanMessage(content="a", id="1"), AIMessage(content="b", id="2")]
    out = add_messages(left, [RemoveMessage(id="1"), HumanMessage(content="c", id="3")])
    assert [m.id for m in out] == ["2", "3"]


def test_remove_message_with_unknown_id_raises():
    with pytest.raises(ValueError, match="nope"):
        add_messages([HumanMessage(content="a", id="1")], [RemoveMessage(id="nope")])


def test_dict_message_with_tool_calls():
    out = add_messages(
        [],
        [
            {
                "role": "assistant",
                "content": "",
                "id": "m1",
                "tool_calls": [{"name": "lookup", "args": {"k": 1}, "id": "tc1"}],
            },
            {"role": "tool", "content": "found", "tool_call_id": "tc1"},
        ],
    )
    assert out[0].type == "ai"
    assert [(c["name"], c["args"], c["id"]) for c in out[0].tool_calls] == [
        ("lookup", {"k": 1}, "tc1")
    ]
    assert out[1].type == "tool"
    assert out[1].tool_call_id == "tc1"


# --------------------------------------------------------------------------- in graphs


def _echo(state):
    last = state["messages"][-1]
    return {"messages": [("ai", f"echo:{last.content}")]}


async def test_messages_state_graph_with_tuples(run):
    g = StateGraph(MessagesState)
    g.add_node("echo", _echo)
    g.add_edge(START, "echo")
    out = await run(g.compile(), {"messages": [("user", "hello")]})
    msgs = out["messages"]
    assert [(m.type, m.content) for m in msgs] == [("human", "hello"), ("ai", "echo:hello")]
    assert all(m.id for m in msgs)


async def test_messages_state_input_string_and_dict(run):
    g = StateGraph(MessagesState)
    g.add_node("echo", _echo)
    g.add_edge(START, "echo")
    graph = g.compile()
    out = await run(graph, {"messages": "plain"})
    assert [m.content for m in out["messages"]] == ["plain", "echo:plain"]
    out = await run(graph, {"messages": [{"role": "user", "content": "d"}]})
    assert [(m.type, m.content) for m in out["messages"]] == [("human", "d"), ("ai", "echo:d")]


async def test_node_replaces_message_by_id(run):
    def edit(state):
        first = state["messages"][0]
        return {"messages": [HumanMessage(content=first.content.upper(), id=first.id)]}

    g = StateGraph(MessagesState)
    g.add_node("edit", edit)
    g.add_edge(START, "edit")
    out = await run(
        g.compile(), {"messages": [HumanMessage(content="shout", id="m1"), ("ai", "ok")]}
    )
    assert (out["messages"][0].id, out["messages"][0].content) == ("m1", "SHOUT")
    assert [m.content for m in out["messages"]] == ["SHOUT", "ok"]


async def test_node_removes_messages(run):
    def trim(state):
        return {"messages": [RemoveMessage(id=m.id) for m in state["messages"][:-1]]}

    g = StateGraph(MessagesState)
    g.add_node("trim", trim)
    g.add_edge(START, "trim")
    out = await run(g.compile(), {"messages": ["a", "b", "c"]})
    assert [m.content for m in out["messages"]] == ["c"]


async def test_multi_turn_conversation_loop(run):
    def bot(state):
        n = sum(1 for m in state["messages"] if m.type == "ai")
        return {"messages": [AIMessage(content=f"turn {n}")]}

    g = StateGraph(MessagesState)
    g.add_node("bot", bot)
    g.add_edge(START, "bot")
    g.add_conditional_edges("bot", lambda s: "bot" if len(s["messages"]) < 4 else "__end__")
    out = await run(g.compile(), {"messages": [("user", "start")]})
    assert [m.content for m in out["messages"]] == ["start", "turn 0", "turn 1", "turn 2"]


async def test_messages_state_subclass_with_extra_key(run):
    class Chat(MessagesState):
        turns: int

    def bot(state):
        return {"messages": [("ai", "hi")], "turns": state.get("turns", 0) + 1}

    g = StateGraph(Chat)
    g.add_node("bot", bot)
    g.add_edge(START, "bot")
    out = await run(g.compile(), {"messages": [("user", "yo")], "turns": 3})
    assert out["turns"] == 4
    assert [m.content for m in out["messages"]] == ["yo", "hi"]


async def test_custom_state_with_add_messages_reducer(run):
    class Chat(TypedDict):
        messages: Annotated[list, add_messages]
        log: Annotated[list, operator.add]

    def tool_node(state):
        call = state["messages"][-1].tool_calls[0]
        return {
            "messages": [ToolMessage(content="sunny", tool_call_id=call["id"])],
            "log": [call["name"]],
        }

    g = StateGraph(Chat)
    g.add_node("tools", tool_node)
    g.add_edge(START, "tools")
    ai = AIMessage(content="", tool_calls=[{"name": "weather", "args": {}, "id": "w1"}])
    out = await run(g.compile(), {"messages": [("user", "weather?"), ai], "log": []})
    assert out["log"] == ["weather"]
    assert [m.type for m in out["messages"]] == ["human", "ai", "tool"]
    assert out["messages"][-1].tool_call_id == "w1"


async def test_parallel_nodes_append_messages(run):
    g = StateGraph(MessagesState)
    g.add_node("a", lambda s: {"messages": [("ai", "from a")]})
    g.add_node("b", lambda s: {"messages": [("ai", "from b")]})
    g.add_edge(START, "b")
    g.add_edge(START, "a")
    out = await run(g.compile(), {"messages": ["q"]})
    # parallel writes are applied in node-name order (LangGraph), not edge order
    assert [m.content for m in out["messages"]] == ["q", "from a", "from b"]
    assert len({m.id for m in out["messages"]}) == 3


# --------------------------------------------------------------------------- waypoint only
# LangChain message objects have no ``.role``; waypoint's Message does (see SPEC).


@waypoint_only
def test_role_of_message_classes():
    assert HumanMessage(content="a").role == "user"
    assert AIMessage(content="a").role == "assistant"
    assert SystemMessage(content="a").role == "system"
    assert ToolMessage(content="a", tool_call_id="c").role == "tool"


@waypoint_only
def test_role_and_type_of_converted_messages():
    out = add_messages(
        [],
        [
            {"role": "user", "content": "u"},
            ("assistant", "a"),
            "s",
            ("system", "sys"),
            {"role": "tool", "content": "t", "tool_call_id": "c"},
        ],
    )
    assert [(m.role, m.type) for m in out] == [
        ("user", "human"),
        ("assistant", "ai"),
        ("user", "human"),
        ("system", "system"),
        ("tool", "tool"),
    ]


def test_waypoint_message_base_class():
    from waypoint.messages import Message

    out = add_messages([], [("user", "x")])
    assert isinstance(out[0], Message)
    assert isinstance(AIMessage(content="y"), Message)


def test_langchain_messages_are_accepted_when_installed(langchain_messages):
    lc = pytest.importorskip("langchain_core.messages")
    from waypoint.checkpoint import MemorySaver

    merged = add_messages([lc.HumanMessage("hi", id="1")], [{"role": "assistant", "content": "yo"}])
    assert [m.content for m in merged] == ["hi", "yo"]
    assert isinstance(merged[0], lc.HumanMessage)
    assert isinstance(merged[1], lc.AIMessage)  # one kind of message in a state

    builder = StateGraph(MessagesState)
    builder.add_node("reply", lambda s: {"messages": [lc.AIMessage("x", id="2")]})
    builder.add_edge("__start__", "reply")
    app = builder.compile(checkpointer=MemorySaver())
    config = {"configurable": {"thread_id": "lc"}}
    app.invoke({"messages": [lc.HumanMessage("hello", id="1")]}, config)
    stored = app.get_state(config).values["messages"]
    assert [type(m) for m in stored] == [lc.HumanMessage, lc.AIMessage]
    assert [m.id for m in stored] == ["1", "2"]
