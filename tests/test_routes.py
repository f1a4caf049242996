"""Routes as data: conditions, explanation, tools per path, config round trips, graphs."""

import json
from dataclasses import dataclass
from typing import TypedDict

import pytest
from pydantic import BaseModel

from waypoint import END, START, GraphValidationError, StateGraph
from waypoint.graph.routes import (
    MISSING,
    OPERATORS,
    Condition,
    Not,
    Route,
    RouteError,
    RouteEvaluationError,
    Router,
    any_of,
    not_,
    resolve_path,
)


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("==", "code", "code", True),
        ("==", "code", "data", False),
        ("!=", "code", "data", True),
        ("!=", "code", "code", False),
        ("<", 5, 3, True),
        ("<", 5, 5, False),
        ("<=", 5, 5, True),
        (">", 0.5, 0.7, True),
        (">", 0.5, 0.5, False),
        (">=", 0.5, 0.5, True),
        ("in", ["general", "factual"], "factual", True),
        ("in", ["general", "factual"], "code", False),
        ("not_in", ["general"], "code", True),
        ("not_in", ["general"], "general", False),
        ("contains", "urgent", "this is urgent!", True),
        ("contains", "urgent", "calm", False),
        ("contains", "vip", ["vip", "eu"], True),
        ("contains", "tier", {"tier": 1}, True),
        ("exists", True, "x", True),
        ("exists", True, None, False),
        ("exists", False, None, True),
        ("matches", r"^ORD-\d+$", "ORD-123", True),
        ("matches", r"^ORD-\d+$", "order 123", False),
    ],
)
def test_each_operator(op, value, actual, expected):
    condition = Condition("field", op, value)
    assert condition.evaluate({"field": actual}) is expected
    assert condition.check({"field": actual}).matched is expected


def test_every_operator_is_covered():
    assert set(OPERATORS) == {"==", "!=", "<", "<=", ">", ">=", "in", "not_in", "contains",
                              "exists", "matches"}


def test_operator_aliases_are_normalised():
    assert Condition("a", "eq", 1).op == "=="
    assert Condition("a", "gt", 1).op == ">"
    assert Condition("a", "not in", [1]).op == "not_in"
    assert Condition("a", "exists").value is True


def test_missing_fields():
    state = {"other": 1}
    assert not Condition("a", "==", 1).evaluate(state)
    assert Condition("a", "!=", 1).evaluate(state)
    assert not Condition("a", ">", 1).evaluate(state)
    assert not Condition("a", "in", [1]).evaluate(state)
    assert Condition("a", "not_in", [1]).evaluate(state)
    assert not Condition("a", "contains", "x").evaluate(state)
    assert not Condition("a", "matches", "x").evaluate(state)
    assert not Condition("a", "exists").evaluate(state)
    assert Condition("a", "exists", False).evaluate(state)
    assert not Condition("a", ">", 1).evaluate({"a": None})  # None orders with nothing


class Tier(BaseModel):
    name: str
    limit: int


class Customer(BaseModel):
    tier: Tier
    tags: list[str]


@dataclass
class Holder:
    customer: Customer


def test_dotted_paths_through_dicts_lists_attributes_and_models():
    state = {"user": {"tier": "gold", "orders": [{"id": 1}, {"id": 7}]},
             "holder": Holder(Customer(tier=Tier(name="silver", limit=3), tags=["eu"]))}
    assert resolve_path(state, "user.tier") == "gold"
    assert resolve_path(state, "user.orders.-1.id") == 7
    assert resolve_path(state, "user.orders.0.id") == 1
    assert resolve_path(state, "holder.customer.tier.limit") == 3
    assert resolve_path(state, "holder.customer.tags.0") == "eu"
    for missing in ("user.nope", "user.orders.5.id", "user.tier.x", "user.orders.first"):
        assert resolve_path(state, missing) is MISSING
        assert not Condition(missing, "exists").evaluate(state)
    assert Condition("holder.customer.tier.name", "==", "silver").evaluate(state)
    assert Condition("user.orders.-1.id", ">=", 7).evaluate(state)


def test_type_mismatch_is_an_error_not_a_silent_no():
    with pytest.raises(RouteEvaluationError, match=r"score > 0.5.*\"high\""):
        Condition("score", ">", 0.5).evaluate({"score": "high"})
    with pytest.raises(RouteEvaluationError, match="matches"):
        Condition("n", "matches", "1").evaluate({"n": 1})
    with pytest.raises(RouteEvaluationError, match="contains"):
        Condition("n", "contains", 1).evaluate({"n": "a1"})


def make_router():
    return Router(
        [
            Route(Condition("query_type", "==", "code"), to="code_search",
                  tools=("web_search", "code_interpreter"), name="code"),
            Route(Condition("query_type", "in", ["data", "sql"]), to="data_query",
                  tools=("sql_query", "file_read")),
            Route(any_of(Condition("query_type", "in", ["general", "factual"]),
                         Condition("user.tier", "matches", "^gold")),
                  to="web_search", tools=("web_search",)),
            Route([Condition("priority", ">=", 8), not_(Condition("user.blocked", "exists"))],
                  to=END),
        ],
        default="web_search",
        default_tools=("web_search",),
    )


def test_router_chooses_the_first_matching_route():
    router = make_router()
    assert router({"query_type": "code"}) == "code_search"
    assert router({"query_type": "sql"}) == "data_query"
    assert router({"query_type": "other", "user": {"tier": "gold+"}}) == "web_search"
    assert router({"query_type": "other", "priority": 9}) == END
    assert router({"query_type": "other", "priority": 9, "user": {"blocked": True}}) == (
        "web_search")
    assert router.destinations == ("code_search", "data_query", "web_search", END)
    assert router.path_map == {d: d for d in router.destinations}


def test_tools_for_the_chosen_path():
    router = make_router()
    assert router.tools_for({"query_type": "code"}) == ("web_search", "code_interpreter")
    assert router.tools_for({"query_type": "data"}) == ("sql_query", "file_read")
    assert router.tools_for({"query_type": "other", "priority": 9}) == ()
    assert router.tools_for({}) == ("web_search",)
    assert router.tools == ("web_search", "code_interpreter", "sql_query", "file_read")


def test_explain_says_which_condition_matched_and_why():
    router = make_router()
    decision = router.explain({"query_type": "other", "user": {"tier": "gold"}})
    assert decision.destination == "web_search" and decision.route == 2
    assert decision.tools == ("web_search",)
    assert [index for index, _ in decision.checks] == [0, 1, 2]
    assert [check.matched for _, check in decision.checks] == [False, False, True]
    assert decision.checks[0][1].reason == 'query_type is "other"'
    assert decision.matched.reason == 'user.tier matches "^gold": yes, user.tier is "gold"'
    assert "route 3 matched" in decision.reason
    named = router.explain({"query_type": "code"})
    assert named.name == "code" and named.route == 0
    fallback = router.explain({"query_type": "other"})
    assert fallback.route is None and fallback.matched is None
    assert fallback.reason == "no route matched: default"
    assert len(fallback.checks) == 4
    text = str(fallback)
    assert text.startswith("-> web_search (tools: web_search); no route matched")
    assert 'route 1: query_type == "code": no (query_type is "other")' in text


def test_str_renders_a_table():
    text = str(make_router())
    lines = text.splitlines()
    assert lines[0] == "Router (first matching route wins)"
    assert lines[1].split() == ["#", "when", "to", "tools"]
    assert 'query_type == "code"' in lines[2] and "code_search" in lines[2]
    assert "web_search, code_interpreter" in lines[2]
    assert 'query_type in ["general", "factual"] or user.tier matches "^gold"' in lines[4]
    assert "priority >= 8 and not (user.blocked exists)" in lines[5] and END in lines[5]
    assert lines[-1].split()[:3] == ["*", "otherwise", "web_search"]


def test_round_trip_through_plain_json():
    router = make_router()
    data = router.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["routes"][0] == {
        "when": {"field": "query_type", "op": "==", "value": "code"}, "to": "code_search",
        "tools": ["web_search", "code_interpreter"], "name": "code"}
    assert data["routes"][3]["when"] == {"all": [
        {"field": "priority", "op": ">=", "value": 8},
        {"not": {"field": "user.blocked", "op": "exists"}}]}
    again = Router.from_dict(data)
    assert again == router and again.to_dict() == data
    assert Router.from_json(router.to_json()) == router
    state = {"query_type": "other", "user": {"tier": "gold"}}
    assert again.explain(state).route == router.explain(state).route


def test_conditions_and_routes_accept_their_dict_forms():
    route = Route({"any": [{"field": "a", "op": "eq", "value": 1}]}, to="x", tools="t")
    assert route.tools == ("t",)
    assert route.when.evaluate({"a": 1})
    assert isinstance(Route({"not": {"field": "a", "op": "exists"}}, to="x").when, Not)
    assert Router([route.to_dict()], default="y")({"a": 1}) == "x"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"routes": [{"when": {"field": "a", "op": "equals", "value": 1}, "to": "x"}],
          "default": "y"}, r"routes\[0\]\.when: condition on 'a': unknown operator 'equals'"),
        ({"routes": [{"when": {"field": "a", "op": "==", "value": {"s": {1, 2}}}, "to": "x"}],
          "default": "y"}, r"routes\[0\]\.when: .*not JSON data"),
        ({"routes": [{"when": {"field": "a", "op": "==", "value": float("nan")}, "to": "x"}],
          "default": "y"}, "not JSON data"),
        ({"routes": [{"when": {"all": [{"field": "a", "op": "matches", "value": "(x"}]},
                      "to": "x"}], "default": "y"},
         r"routes\[0\]\.when\.all\[0\]: .*'\(x' does not compile"),
        ({"routes": [{"when": {"field": "a", "op": "in", "value": "abc"}, "to": "x"}],
          "default": "y"}, "'in' needs a list"),
        ({"routes": [{"when": {"field": "a", "op": "exists", "value": "yes"}, "to": "x"}],
          "default": "y"}, "'exists' takes true or false"),
        ({"routes": [{"when": {"field": "a", "op": ">", "value": [1]}, "to": "x"}],
          "default": "y"}, "'>' needs a number or a string"),
        ({"routes": [{"when": {"field": "a.__class__", "op": "exists"}, "to": "x"}],
          "default": "y"}, "'__class__' is not a valid path segment"),
        ({"routes": [{"when": {"field": "a", "op": "=="}, "to": "x", "tool": ["t"]}],
          "default": "y"}, r"routes\[0\]: unknown key\(s\) 'tool'"),
        ({"routes": [{"when": {"op": "=="}, "to": "x"}], "default": "y"},
         r"routes\[0\]\.when: a condition needs 'field'"),
        ({"routes": [{"when": {"field": "a", "op": "=="}}], "default": "y"},
         r"routes\[0\]: a route needs 'to'"),
        ({"routes": [{"when": {"field": "a", "op": "=="}, "to": 3}], "default": "y"},
         r"routes\[0\]\.to: expected a node name"),
        ({"routes": [{"when": {"field": "a", "op": "=="}, "to": "x", "tools": [""]}],
          "default": "y"}, "tool names must be non-empty strings"),
        ({"routes": [{"when": {"any": []}, "to": "x"}], "default": "y"},
         "any_of\\(\\) needs at least one condition"),
        ({"routes": []}, "'default' is required"),
        ({"routes": {}, "default": "y"}, "expected a list of routes"),
        ({"routes": [], "default": "y", "fallback": "z"}, "unknown key"),
        ([1], "expected an object"),
    ],
)
def test_bad_data_is_refused_with_the_field_named(data, message):
    with pytest.raises(RouteError, match=message):
        Router.from_dict(data)


def test_bad_constructor_arguments_are_refused():
    with pytest.raises(RouteError, match="unknown operator '~='"):
        Condition("a", "~=", 1)
    with pytest.raises(RouteError, match="does not compile"):
        Condition("a", "matches", "[")
    with pytest.raises(RouteError, match="not JSON data"):
        Condition("a", "==", object())
    with pytest.raises(RouteError, match="non-empty dotted path"):
        Condition("", "==", 1)
    with pytest.raises(RouteError, match="cannot lead back to START"):
        Route(Condition("a", "==", 1), to=START)
    with pytest.raises(RouteError, match="routes must be a list"):
        Router(Route(Condition("a", "==", 1), to="x"), default="y")
    with pytest.raises(RouteError, match="not valid JSON"):
        Router.from_json("{")


def test_check_against_known_nodes_and_tools():
    router = make_router()
    router.check(nodes=["code_search", "data_query", "web_search"],
                 tools=["web_search", "code_interpreter", "sql_query", "file_read"])
    with pytest.raises(RouteError, match="unknown node\\(s\\): data_query"):
        router.check(nodes=["code_search", "web_search"])
    with pytest.raises(RouteError, match="unknown tool\\(s\\): sql_query, file_read"):
        router.check(tools=["web_search", "code_interpreter"])


class State(TypedDict, total=False):
    query_type: str
    priority: int
    user: dict
    path: list


def step(name):
    def run(state):
        return {"path": [*state.get("path", []), name]}

    return run


def build(router, *, with_path_map):
    builder = StateGraph(State)
    for name in ("classify", "code_search", "data_query", "web_search"):
        builder.add_node(name, step(name))
    builder.add_edge(START, "classify")
    if with_path_map:
        builder.add_conditional_edges("classify", router, router.path_map)
    else:
        builder.add_conditional_edges("classify", router)
    for name in ("code_search", "data_query", "web_search"):
        builder.add_edge(name, END)
    return builder.compile()


@pytest.mark.parametrize("with_path_map", [True, False])
async def test_router_in_a_compiled_graph(run, with_path_map):
    graph = build(make_router(), with_path_map=with_path_map)
    result = await run(graph, {"query_type": "code", "path": []})
    assert result["path"] == ["classify", "code_search"]
    result = await run(graph, {"query_type": "other", "priority": 9, "path": []})
    assert result["path"] == ["classify"]
    result = await run(graph, {"query_type": "x", "path": []})
    assert result["path"] == ["classify", "web_search"]


def test_router_over_a_pydantic_state():
    class Ticket(BaseModel):
        kind: str = "general"
        score: float = 0.0
        route: str = ""

    router = Router([Route(Condition("score", ">", 0.8), to="escalate")], default="answer")
    builder = StateGraph(Ticket)
    builder.add_node("triage", lambda s: {})
    builder.add_node("escalate", lambda s: {"route": "escalate"})
    builder.add_node("answer", lambda s: {"route": "answer"})
    builder.add_edge(START, "triage")
    builder.add_conditional_edges("triage", router)
    graph = builder.compile()
    assert graph.invoke({"score": 0.9})["route"] == "escalate"
    assert graph.invoke({"score": 0.1})["route"] == "answer"


@pytest.mark.parametrize("with_path_map", [True, False])
def test_mermaid_drawing_shows_the_destinations(with_path_map):
    mermaid = build(make_router(), with_path_map=with_path_map).get_graph().draw_mermaid()
    for target in ("code_search", "data_query", "web_search", "__end__"):
        assert f"classify -.-> {target};" in mermaid
    assert "classify -.-> classify" not in mermaid


def test_compile_refuses_a_route_to_an_unknown_node():
    router = Router([Route(Condition("a", "==", 1), to="nowhere")], default="web_search")
    with pytest.raises(GraphValidationError, match="'nowhere'"):
        build(router, with_path_map=True)
