"""Graph JSON (`get_graph().to_json()`) and JSON Schemas (`graph_schemas`, `subgraph_schemas`)
in the shapes LangGraph's Agent Server returns for `/assistants/{id}/graph|schemas|subgraphs`.
"""

import json
import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import pytest
from pydantic import BaseModel, Field

from waypoint import END, START, Command, MessagesState, Send, StateGraph, add_messages
from waypoint.graph.json_schema import MESSAGE_SCHEMA, graph_schemas, subgraph_schemas
from waypoint.messages import Message

try:  # validate the schemas themselves when the validator is around; never required
    import jsonschema
except ImportError:  # pragma: no cover - depends on the environment
    jsonschema = None


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]


def noop(state):
    return {}


def chain(*names, schema=State, **compile_kwargs):
    g = StateGraph(schema)
    previous = START
    for name in names:
        g.add_node(name, noop)
        g.add_edge(previous, name)
        previous = name
    g.add_edge(previous, END)
    return g.compile(**compile_kwargs)


def edge_map(graph_json):
    return {(e["source"], e["target"]): e for e in graph_json["edges"]}


def node_ids(graph_json):
    return [n["id"] for n in graph_json["nodes"]]


def check_graph_json(graph_json):
    """Serialisable, and every edge joins two drawn nodes."""
    assert json.loads(json.dumps(graph_json)) == graph_json
    ids = set(node_ids(graph_json))
    for edge in graph_json["edges"]:
        assert edge["source"] in ids and edge["target"] in ids, edge


def check_schema(schema):
    assert json.loads(json.dumps(schema)) == schema
    if jsonschema is not None:  # pragma: no cover - depends on the environment
        jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert isinstance(schema.get("properties", {}), dict)


# --------------------------------------------------------------------------- graph JSON


def test_chain_json_matches_agent_server_shape():
    got = chain("a", "b", "c").get_graph().to_json()
    assert got == {
        "nodes": [
            {"id": "__start__", "type": "runnable", "data": {"name": "__start__"}},
            {"id": "a", "type": "runnable", "data": {"name": "a"}},
            {"id": "b", "type": "runnable", "data": {"name": "b"}},
            {"id": "c", "type": "runnable", "data": {"name": "c"}},
            {"id": "__end__"},
        ],
        "edges": [
            {"source": "__start__", "target": "a"},
            {"source": "a", "target": "b"},
            {"source": "b", "target": "c"},
            {"source": "c", "target": "__end__"},
        ],
    }


def test_conditional_edges_with_path_map_carry_labels_that_differ_from_target():
    g = StateGraph(State)
    for name in ["plan", "act", "review"]:
        g.add_node(name, noop)
    g.add_edge(START, "plan")
    g.add_edge("plan", "act")
    g.add_conditional_edges("act", lambda s: "review", {"review": "review", "done": END})
    g.add_edge("review", "act")
    got = g.compile().get_graph().to_json()
    check_graph_json(got)
    edges = edge_map(got)
    assert edges[("act", "review")] == {"source": "act", "target": "review", "conditional": True}
    assert edges[("act", "__end__")] == {
        "source": "act", "target": "__end__", "data": "done", "conditional": True,
    }
    assert "conditional" not in edges[("plan", "act")]
    assert "conditional" not in edges[("review", "act")]
    # nodes without a return route are not sent to the end
    assert ("review", "__end__") not in edges


def test_conditional_edges_without_path_map_use_the_literal_hint():
    def router(state) -> Literal["x", "y"]:
        return "x"

    g = StateGraph(State)
    g.add_node("x", noop)
    g.add_node("y", noop)
    g.add_conditional_edges(START, router)
    edges = edge_map(g.compile().get_graph().to_json())
    assert edges[("__start__", "x")] == {"source": "__start__", "target": "x",
                                         "conditional": True}
    assert edges[("__start__", "y")]["conditional"] is True
    assert "data" not in edges[("__start__", "y")]
    # x and y have no edges of their own: they end the graph
    assert "conditional" not in edges[("x", "__end__")]


def test_conditional_edge_without_any_hint_may_go_anywhere():
    g = StateGraph(State)
    for name in ["a", "b", "c"]:
        g.add_node(name, noop)
    g.add_edge(START, "a")
    g.add_conditional_edges("a", lambda s: "b")
    g.add_edge("b", END)
    g.add_edge("c", END)
    edges = edge_map(g.compile().get_graph().to_json())
    assert {t for (s, t), e in edges.items() if s == "a" and e.get("conditional")} == {
        "b", "c", "__end__",
    }


def test_two_labels_to_one_target_draw_one_edge():
    g = StateGraph(State)
    g.add_node("a", noop)
    g.add_node("b", noop)
    g.add_edge(START, "a")
    g.add_conditional_edges("a", lambda s: "yes", {"yes": "b", "ok": "b", "no": END})
    got = g.compile().get_graph().to_json()
    to_b = [e for e in got["edges"] if (e["source"], e["target"]) == ("a", "b")]
    assert len(to_b) == 1 and to_b[0]["conditional"] is True and to_b[0]["data"] == "yes"


def test_join_edges_are_plain_edges_from_each_source():
    g = StateGraph(State)
    for name in ["x", "y", "z"]:
        g.add_node(name, noop)
    g.add_edge(START, "x")
    g.add_edge(START, "y")
    g.add_edge(["x", "y"], "z")
    got = g.compile().get_graph().to_json()
    check_graph_json(got)
    edges = edge_map(got)
    assert edges[("x", "z")] == {"source": "x", "target": "z"}
    assert edges[("y", "z")] == {"source": "y", "target": "z"}
    assert edges[("z", "__end__")] == {"source": "z", "target": "__end__"}


def test_send_fan_out_is_a_conditional_edge_to_the_worker():
    def fan_out(state):
        return [Send("worker", {"log": [str(i)]}) for i in range(3)]

    g = StateGraph(State)
    g.add_node("plan", noop)
    g.add_node("worker", noop)
    g.add_node("reduce", noop)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", fan_out, ["worker"])
    g.add_edge("worker", "reduce")
    g.add_edge("reduce", END)
    got = g.compile().get_graph().to_json()
    check_graph_json(got)
    edges = edge_map(got)
    assert edges[("plan", "worker")] == {"source": "plan", "target": "worker",
                                         "conditional": True}
    assert not any(s == "plan" and t != "worker" for s, t in edges)


def test_command_destinations_are_conditional_edges():
    def chooser(state) -> Command[Literal["x", "__end__"]]:
        return Command(goto="x")

    g = StateGraph(State)
    g.add_node("chooser", chooser)
    g.add_node("x", noop)
    g.add_edge(START, "chooser")
    edges = edge_map(g.compile().get_graph().to_json())
    assert edges[("chooser", "x")]["conditional"] is True
    assert edges[("chooser", "__end__")]["conditional"] is True


def test_metadata_and_interrupts_are_node_metadata():
    g = StateGraph(State)
    g.add_node("a", noop, metadata={"owner": "ops"})
    g.add_node("b", noop)
    g.add_node("c", noop)
    g.add_edge(START, "a")
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    compiled = g.compile(interrupt_before=["b", "c"], interrupt_after=["c"])
    nodes = {n["id"]: n for n in compiled.get_graph().to_json()["nodes"]}
    assert nodes["a"]["metadata"] == {"owner": "ops"}
    assert nodes["b"]["metadata"] == {"__interrupt": "before"}
    assert nodes["c"]["metadata"] == {"__interrupt": "before,after"}
    assert "metadata" not in nodes["__start__"]


def _subgraph(*names):
    sub = StateGraph(State)
    previous = START
    for name in names:
        sub.add_node(name, noop)
        sub.add_edge(previous, name)
        previous = name
    return sub.compile()


def _parent(child):
    g = StateGraph(State)
    g.add_node("outer", noop)
    g.add_node("child", child)
    g.add_edge(START, "outer")
    g.add_edge("outer", "child")
    g.add_edge("child", END)
    return g.compile()


def test_subgraph_is_one_node_without_xray():
    got = _parent(_subgraph("one", "two")).get_graph().to_json()
    assert node_ids(got) == ["__start__", "outer", "child", "__end__"]
    assert set(edge_map(got)) == {("__start__", "outer"), ("outer", "child"),
                                  ("child", "__end__")}


def test_subgraph_nodes_are_prefixed_and_linked_with_xray():
    got = _parent(_subgraph("one", "two")).get_graph(xray=True).to_json()
    check_graph_json(got)
    assert node_ids(got) == ["__start__", "outer", "child:one", "child:two", "__end__"]
    nodes = {n["id"]: n for n in got["nodes"]}
    assert nodes["child:one"] == {"id": "child:one", "type": "runnable",
                                  "data": {"name": "child:one"}}
    # the subgraph's own start and end are dropped: the parent links to its first and
    # from its last node, as LangGraph draws it
    assert set(edge_map(got)) == {
        ("__start__", "outer"), ("outer", "child:one"), ("child:one", "child:two"),
        ("child:two", "__end__"),
    }


def test_subgraph_with_two_entries_keeps_its_start():
    sub = StateGraph(State)
    sub.add_node("left", noop)
    sub.add_node("right", noop)
    sub.add_edge(START, "left")
    sub.add_edge(START, "right")
    got = _parent(sub.compile()).get_graph(xray=True).to_json()
    check_graph_json(got)
    edges = set(edge_map(got))
    assert ("outer", "child:__start__") in edges
    assert {("child:__start__", "child:left"), ("child:__start__", "child:right")} <= edges
    assert {("child:left", "child:__end__"), ("child:right", "child:__end__")} <= edges
    assert ("child:__end__", "__end__") in edges
    nodes = {n["id"]: n for n in got["nodes"]}
    assert nodes["child:__end__"] == {"id": "child:__end__"}


def test_xray_depth_expands_that_many_levels():
    middle = StateGraph(State)
    middle.add_node("grand", _subgraph("leaf_a", "leaf_b"))
    middle.add_node("after", noop)
    middle.add_edge(START, "grand")
    middle.add_edge("grand", "after")
    top = _parent(middle.compile())

    one = node_ids(top.get_graph(xray=1).to_json())
    assert "child:grand" in one and "child:after" in one
    assert not any("leaf" in n for n in one)

    for xray in (2, True):
        got = top.get_graph(xray=xray).to_json()
        check_graph_json(got)
        ids = node_ids(got)
        assert {"child:grand:leaf_a", "child:grand:leaf_b", "child:after"} <= set(ids)
        assert "child:grand" not in ids
        edges = set(edge_map(got))
        assert ("outer", "child:grand:leaf_a") in edges
        assert ("child:grand:leaf_b", "child:after") in edges
        assert ("child:after", "__end__") in edges


def test_mermaid_is_unchanged_by_metadata():
    text = chain("a", "b", interrupt_before=["b"]).get_graph().draw_mermaid()
    assert "__interrupt" not in text and "a --> b;" in text


# --------------------------------------------------------------------------- schemas


SCHEMA_KEYS = {"graph_id", "input_schema", "output_schema", "state_schema", "config_schema",
               "context_schema"}


def one_node(schema, **kwargs):
    name = kwargs.pop("name", None)
    g = StateGraph(schema, **kwargs)
    g.add_node("node", noop)
    g.add_edge(START, "node")
    return g.compile(name=name)


def is_message_schema(prop):
    return (
        prop.get("type") == "object"
        and set(prop["properties"]["type"]["enum"]) == {"human", "ai", "system", "tool", "remove"}
        and {"content", "id", "name", "tool_calls", "tool_call_id"} <= set(prop["properties"])
        and prop.get("additionalProperties") is True
    )


class Profile(TypedDict):  # typing.TypedDict nested in a state: pydantic refuses it on 3.11
    name: str
    age: int


class TypedState(TypedDict):
    topic: str
    notes: Annotated[list[str], operator.add]
    profile: Profile
    rounds: NotRequired[int]


def test_typeddict_state_schemas():
    out = graph_schemas(one_node(TypedState), "agent")
    assert set(out) == SCHEMA_KEYS
    assert out["graph_id"] == "agent"
    for key in ("input_schema", "output_schema", "state_schema"):
        check_schema(out[key])
    state = out["state_schema"]
    assert state["title"] == "agent_state"
    assert out["input_schema"]["title"] == "agent_input"
    assert out["output_schema"]["title"] == "agent_output"
    assert list(state["properties"]) == ["topic", "notes", "profile", "rounds"]
    assert state["properties"]["topic"]["type"] == "string"
    # the reducer in Annotated does not reach the schema
    assert state["properties"]["notes"]["type"] == "array"
    assert state["properties"]["notes"]["items"] == {"type": "string"}
    assert state["properties"]["rounds"]["type"] == "integer"
    profile = state["properties"]["profile"]["$ref"].split("/")[-1]
    assert state["$defs"][profile]["properties"]["age"]["type"] == "integer"
    assert state["$defs"][profile]["required"] == ["name", "age"]
    # every key is optional in the state, and in the input when the state is the input
    assert "required" not in state
    assert "required" not in out["input_schema"]
    assert "required" not in out["output_schema"]
    assert out["config_schema"] == {}
    assert out["context_schema"] is None


def test_title_follows_the_graph_name():
    assert graph_schemas(one_node(State))["state_schema"]["title"] == "LangGraphState"
    named = graph_schemas(one_node(State, name="Research"), "research")
    assert named["graph_id"] == "research"
    assert named["state_schema"]["title"] == "ResearchState"
    assert named["input_schema"]["title"] == "ResearchInput"
    assert graph_schemas(one_node(State, name="helper"))["output_schema"]["title"] == (
        "helper_output"
    )


@dataclass
class DataState:
    query: str
    hits: Annotated[list[int], operator.add] = field(default_factory=list)
    limit: int = 5


def test_dataclass_state_schema():
    out = graph_schemas(one_node(DataState), "search")
    state, given = out["state_schema"], out["input_schema"]
    check_schema(state)
    check_schema(given)
    assert state["properties"]["hits"]["items"] == {"type": "integer"}
    assert given["properties"]["limit"]["default"] == 5
    assert "required" not in given  # the state is the input: nothing is required


class PydanticState(BaseModel):
    """What the researcher works on."""

    question: str
    messages: Annotated[list[Message], add_messages] = Field(default_factory=list)
    depth: int = Field(2, description="how far to dig")
    tags: Annotated[list[str], operator.add, Field(default_factory=list, max_length=3)]

    model_config = {"arbitrary_types_allowed": True}


def test_pydantic_state_schema():
    out = graph_schemas(one_node(PydanticState), "research")
    given = out["input_schema"]
    check_schema(given)
    check_schema(out["state_schema"])
    assert given["title"] == "PydanticState"  # a pydantic schema keeps its own name
    assert given["description"] == "What the researcher works on."
    assert given["required"] == ["question"]  # waypoint validates input with the model
    assert given["properties"]["depth"] == {
        "default": 2, "description": "how far to dig", "title": "Depth", "type": "integer",
    }
    assert is_message_schema(given["properties"]["messages"]["items"])
    # a Field in Annotated keeps its constraints beside the reducer
    assert given["properties"]["tags"]["maxItems"] == 3
    assert given["properties"]["tags"]["items"] == {"type": "string"}
    assert out["state_schema"]["title"] == "research_state"
    assert "required" not in out["state_schema"]


def test_messages_state_schema():
    class ChatState(MessagesState):
        summary: str

    out = graph_schemas(one_node(ChatState), "chat")
    for key in ("input_schema", "output_schema", "state_schema"):
        check_schema(out[key])
        messages = out[key]["properties"]["messages"]
        assert messages["type"] == "array"
        assert is_message_schema(messages["items"])
        content = messages["items"]["properties"]["content"]
        assert {"type": "string"} in content["anyOf"]
        assert any(branch.get("type") == "array" for branch in content["anyOf"])
    assert out["state_schema"]["properties"]["summary"]["type"] == "string"


def test_message_schema_is_not_shared_with_callers():
    out = graph_schemas(one_node(MessagesState), "chat")
    items = out["state_schema"]["properties"]["messages"]["items"]
    items["properties"].clear()
    assert MESSAGE_SCHEMA["properties"]
    again = graph_schemas(one_node(MessagesState), "chat")
    assert is_message_schema(again["state_schema"]["properties"]["messages"]["items"])


def test_langchain_messages_get_the_same_message_schema():
    lc = pytest.importorskip("langchain_core.messages")

    class LcState(TypedDict):
        messages: Annotated[list[lc.AnyMessage], add_messages]
        last: lc.AIMessage | None

    out = graph_schemas(one_node(LcState), "lc")
    props = out["state_schema"]["properties"]
    check_schema(out["state_schema"])
    assert is_message_schema(props["messages"]["items"])
    assert any(is_message_schema(b) for b in props["last"]["anyOf"])
    assert {"type": "null"} in props["last"]["anyOf"]


class Query(TypedDict):
    question: str
    style: NotRequired[str]


class Answer(TypedDict):
    answer: str


class Full(TypedDict, total=False):
    question: str
    style: str
    scratch: list[str]
    answer: str


class Private(TypedDict):
    secret: int


def test_input_and_output_schemas_hold_only_their_keys():
    def think(state: Private):
        return {}

    g = StateGraph(Full, input_schema=Query, output_schema=Answer)
    g.add_node("node", noop)
    g.add_node("think", think)
    g.add_edge(START, "node")
    g.add_edge("node", "think")
    out = graph_schemas(g.compile(), "qa")
    assert list(out["input_schema"]["properties"]) == ["question", "style"]
    # an explicit input schema keeps what it declares required
    assert out["input_schema"]["required"] == ["question"]
    assert list(out["output_schema"]["properties"]) == ["answer"]
    assert "required" not in out["output_schema"]
    # the state holds every key, a node's private ones too
    assert set(out["state_schema"]["properties"]) == {
        "question", "style", "scratch", "answer", "secret",
    }
    assert out["state_schema"]["properties"]["secret"]["type"] == "integer"


class Context(TypedDict):
    user_id: str
    region: NotRequired[str]


class Settings(BaseModel):
    model: str = "local"


def test_context_and_config_schemas():
    out = graph_schemas(one_node(State, context_schema=Context), "ctx")
    context = out["context_schema"]
    check_schema(context)
    assert context["title"] == "Context"
    assert context["properties"]["user_id"]["type"] == "string"
    assert context["required"] == ["user_id"]
    assert out["config_schema"] == {}

    out = graph_schemas(one_node(State, config_schema=Settings), "cfg")
    config = out["config_schema"]
    check_schema(config)
    assert config["title"] == "Settings"
    assert config["properties"]["model"]["default"] == "local"
    assert out["context_schema"] is None


class Opaque:
    """A type pydantic has no schema for."""


class Refuses:
    """A type whose pydantic hook fails outright."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        raise RuntimeError("no schema for you")


class OddState(TypedDict):
    good: int
    opaque: Opaque
    refuses: Refuses
    call: Any


def test_type_pydantic_cannot_describe_becomes_any_value():
    out = graph_schemas(one_node(OddState), "odd")
    for key in ("input_schema", "state_schema"):
        schema = out[key]
        check_schema(schema)
        props = schema["properties"]
        assert props["good"]["type"] == "integer"
        for name in ("opaque", "refuses", "call"):
            assert set(props[name]) <= {"title"}, props[name]  # `{}`: any value


def test_schemas_are_json_and_have_every_field():
    out = graph_schemas(one_node(TypedState), "agent")
    assert json.loads(json.dumps(out)) == out


def _nested_graph():
    leaf = StateGraph(Answer)
    leaf.add_node("leaf", noop)
    leaf.add_edge(START, "leaf")
    middle = StateGraph(State)
    middle.add_node("inner", leaf.compile())
    middle.add_edge(START, "inner")
    top = StateGraph(TypedState)
    top.add_node("first", noop)
    top.add_node("child", middle.compile(name="Middle"))
    top.add_node("plain", noop)
    top.add_edge(START, "first")
    top.add_edge("first", "child")
    top.add_edge("child", "plain")
    return top.compile()


def test_subgraph_schemas():
    graph = _nested_graph()
    direct = subgraph_schemas(graph)
    assert list(direct) == ["child"]
    assert set(direct["child"]) == SCHEMA_KEYS - {"graph_id"}
    assert direct["child"]["state_schema"]["title"] == "MiddleState"
    assert list(direct["child"]["state_schema"]["properties"]) == ["log"]

    deep = subgraph_schemas(graph, recurse=True)
    assert list(deep) == ["child", "child|inner"]
    inner = deep["child|inner"]
    check_schema(inner["state_schema"])
    assert list(inner["state_schema"]["properties"]) == ["answer"]
    assert inner["state_schema"]["title"] == "inner_state"  # unnamed: its node's name

    assert list(subgraph_schemas(graph, "child|inner")) == ["child|inner"]
    assert list(subgraph_schemas(graph, "child")) == ["child"]
    assert subgraph_schemas(graph, "plain") == {}
    assert subgraph_schemas(graph, "nowhere|inner") == {}
    assert subgraph_schemas(chain("a")) == {}
