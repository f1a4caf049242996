"""`create_react_agent` and `bind_tools`: the shapes LangGraph documents for its prebuilt
agent (tool loop, prompt forms, response_format, interrupt before tools, remaining_steps,
hooks), each on waypoint, plus waypoint's policies on top (approvals, retry, budget)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, TypedDict

import pytest
from pydantic import BaseModel

from waypoint import Budget, Command, RetryPolicy, StateGraph, TransientError, add_messages
from waypoint.checkpoint import MemorySaver
from waypoint.messages import AIMessage, SystemMessage
from waypoint.models import ModelRequest, Reply, ScriptedModel
from waypoint.models.schema_tools import decision_request, recover_template_calls
from waypoint.prebuilt import AgentState, RemainingSteps, ToolNode, create_react_agent
from waypoint.tools import tool


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny in {city}"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


SENT: list[str] = []


@tool(effect="write")
def send_email(to: str, body: str) -> str:
    """Send an e-mail."""
    SENT.append(f"{to}: {body}")
    return "sent"


def calls(*pairs):
    return {"tool_calls": [{"name": n, "args": a} for n, a in pairs]}


def cfg(thread="t"):
    return {"configurable": {"thread_id": thread}}


def kinds(messages):
    return [m.type for m in messages]


def test_tool_loop_until_the_model_answers():
    model = ScriptedModel([calls(("get_weather", {"city": "Paris"})), "Sunny in Paris."])
    agent = create_react_agent(model, [get_weather])
    out = agent.invoke({"messages": [("user", "weather in Paris?")]})
    assert kinds(out["messages"]) == ["human", "ai", "tool", "ai"]
    assert out["messages"][2].content == "sunny in Paris"
    assert out["messages"][-1].content == "Sunny in Paris."
    # the model saw the tools, bound as OpenAI function specs
    assert [t["function"]["name"] for t in model.requests[0].tools] == ["get_weather"]
    assert kinds(model.requests[1].messages) == ["human", "ai", "tool"]


def test_parallel_tool_calls_answer_each_in_order():
    model = ScriptedModel([calls(("get_weather", {"city": "Oslo"}), ("add", {"a": 2, "b": 3})),
                           "done"])
    agent = create_react_agent(model, [get_weather, add])
    out = agent.invoke({"messages": [("user", "both")]})
    tool_messages = [m for m in out["messages"] if m.type == "tool"]
    assert [m.content for m in tool_messages] == ["sunny in Oslo", "5"]
    ai = out["messages"][1]
    assert [m.tool_call_id for m in tool_messages] == [c["id"] for c in ai.tool_calls]


@pytest.mark.parametrize("form", ["string", "system_message", "callable"])
def test_prompt_forms(form):
    model = ScriptedModel(["hi"])
    prompt = {"string": "Be brief.", "system_message": SystemMessage("Be brief."),
              "callable": lambda state: [SystemMessage("Be brief."), *state["messages"]]}[form]
    create_react_agent(model, [get_weather], prompt=prompt).invoke(
        {"messages": [("user", "hello")]})
    sent = model.requests[0].messages
    assert sent[0].type == "system" and sent[0].content == "Be brief."
    assert sent[1].content == "hello"


def test_bad_prompt_is_refused_by_name():
    with pytest.raises(TypeError, match="prompt must be"):
        create_react_agent(ScriptedModel(["x"]), [], prompt=42)


class Weather(BaseModel):
    city: str
    conditions: str


def test_response_format_fills_structured_response():
    model = ScriptedModel([calls(("get_weather", {"city": "Rome"})), "Sunny in Rome.",
                           {"city": "Rome", "conditions": "sunny"}])
    agent = create_react_agent(model, [get_weather], response_format=Weather)
    out = agent.invoke({"messages": [("user", "weather in Rome?")]})
    assert out["structured_response"] == Weather(city="Rome", conditions="sunny")
    assert model.requests[2].response_format["json_schema"]["name"] == "Weather"


def test_response_format_with_its_own_prompt_and_a_json_schema():
    schema = {"title": "Answer", "type": "object", "properties": {"n": {"type": "integer"}},
              "required": ["n"]}
    model = ScriptedModel(["five", json.dumps({"n": 5})])
    out = create_react_agent(model, [], response_format=("Answer as JSON.", schema)).invoke(
        {"messages": [("user", "2+3?")]})
    assert out["structured_response"] == {"n": 5}
    assert model.requests[1].messages[0].content == "Answer as JSON."


def test_interrupt_before_tools_then_resume():
    model = ScriptedModel([calls(("get_weather", {"city": "Lima"})), "Sunny."])
    agent = create_react_agent(model, [get_weather], checkpointer=MemorySaver(),
                               interrupt_before=["tools"])
    agent.invoke({"messages": [("user", "weather?")]}, cfg())
    state = agent.get_state(cfg())
    assert state.next == ("tools",)
    out = agent.invoke(None, cfg())
    assert out["messages"][-1].content == "Sunny."


def test_remaining_steps_ends_with_an_apology_before_the_recursion_limit():
    model = ScriptedModel([calls(("add", {"a": 1, "b": 1}))], cycle=True)
    agent = create_react_agent(model, [add])
    out = agent.invoke({"messages": [("user", "loop")]}, {"recursion_limit": 6})
    assert out["messages"][-1].content == "Sorry, need more steps to process this request."
    assert not out["messages"][-1].tool_calls


class StepsState(TypedDict):
    messages: Annotated[list, add_messages]
    remaining_steps: RemainingSteps


def test_remaining_steps_is_a_managed_value_in_custom_schemas():
    seen = []
    graph = StateGraph(StepsState)
    graph.add_node("a", lambda s: seen.append(s["remaining_steps"]) or {"messages": []})
    graph.add_node("b", lambda s: seen.append(s["remaining_steps"]) or {"messages": []})
    graph.add_edge("__start__", "a")
    graph.add_edge("a", "b")
    out = graph.compile().invoke({"messages": []}, {"recursion_limit": 10})
    assert seen == [9, 8]
    assert "remaining_steps" not in out  # never stored


def test_pre_model_hook_can_trim_what_the_model_sees():
    def trim(state):
        return {"llm_input_messages": state["messages"][-1:]}

    model = ScriptedModel(["ok"])
    agent = create_react_agent(model, [], pre_model_hook=trim)
    out = agent.invoke({"messages": [("user", "one"), ("assistant", "two"), ("user", "three")]})
    assert [m.content for m in model.requests[0].messages] == ["three"]
    assert len(out["messages"]) == 4  # the state keeps the whole conversation


def test_post_model_hook_runs_after_each_model_call():
    seen = []

    def after(state):
        seen.append(state["messages"][-1].type)
        return {}

    model = ScriptedModel([calls(("add", {"a": 1, "b": 2})), "3"])
    create_react_agent(model, [add], post_model_hook=after).invoke(
        {"messages": [("user", "1+2")]})
    assert seen == ["ai", "ai"]


def test_name_labels_the_answers():
    out = create_react_agent(ScriptedModel(["hello"]), [], name="helper").invoke(
        {"messages": [("user", "hi")]})
    assert out["messages"][-1].name == "helper"


# -- waypoint's policies --------------------------------------------------------------------


def test_a_tool_with_an_effect_waits_for_approval_and_runs_once():
    SENT.clear()
    model = ScriptedModel([calls(("send_email", {"to": "a@b.c", "body": "hi"})), "Sent."])
    agent = create_react_agent(model, [send_email, get_weather], checkpointer=MemorySaver())
    out = agent.invoke({"messages": [("user", "mail a@b.c")]}, cfg("mail"))
    question = out["__interrupt__"][0].value
    assert question["kind"] == "approval"
    assert question["request"]["tool"] == "send_email"
    assert question["request"]["args"] == {"to": "a@b.c", "body": "hi"}
    assert SENT == []
    out = agent.invoke(Command(resume={"action": "approve", "by": "ops"}), cfg("mail"))
    assert SENT == ["a@b.c: hi"]
    assert out["messages"][-1].content == "Sent."


def test_a_rejected_call_is_answered_and_never_runs():
    SENT.clear()
    model = ScriptedModel([calls(("send_email", {"to": "x@y.z", "body": "spam"})), "OK, not sent."])
    agent = create_react_agent(model, [send_email], checkpointer=MemorySaver())
    agent.invoke({"messages": [("user", "mail")]}, cfg("rej"))
    out = agent.invoke(Command(resume={"action": "reject", "comment": "no spam"}), cfg("rej"))
    tool_message = out["messages"][2]
    assert "not approved: no spam" in tool_message.content
    assert SENT == []


def test_an_edited_call_runs_with_the_edited_arguments():
    SENT.clear()
    model = ScriptedModel([calls(("send_email", {"to": "x@y.z", "body": "hi"})), "Sent."])
    agent = create_react_agent(model, [send_email], checkpointer=MemorySaver())
    agent.invoke({"messages": [("user", "mail")]}, cfg("edit"))
    out = agent.invoke(Command(resume={"action": "edit",
                                       "edits": {"to": "boss@y.z", "body": "hi"}}), cfg("edit"))
    assert SENT == ["boss@y.z: hi"]
    # the conversation shows the call that ran, not the one proposed
    assert out["messages"][1].tool_calls[0]["args"] == {"to": "boss@y.z", "body": "hi"}
    assert len(out["messages"]) == 4


def test_an_edit_that_does_not_fit_the_tool_is_refused_and_asked_again():
    SENT.clear()
    model = ScriptedModel([calls(("send_email", {"to": "x@y.z", "body": "hi"})), "Sent."])
    agent = create_react_agent(model, [send_email], checkpointer=MemorySaver(),
                               approval_options={"assignee": "ops", "deadline": 3600})
    out = agent.invoke({"messages": [("user", "mail")]}, cfg("bad-edit"))
    assert out["__interrupt__"][0].value["assignee"] == "ops"
    assert out["__interrupt__"][0].value["deadline"] is not None
    out = agent.invoke(Command(resume={"action": "edit", "edits": {"to": 5}}), cfg("bad-edit"))
    question = out["__interrupt__"][0].value
    assert "edits do not fit the schema" in question["error"] and SENT == []
    agent.invoke(Command(resume={"action": "approve"}), cfg("bad-edit"))
    assert SENT == ["x@y.z: hi"]


def test_approval_can_be_turned_off_or_named():
    SENT.clear()
    model = ScriptedModel([calls(("send_email", {"to": "a", "body": "b"})), "ok"])
    create_react_agent(model, [send_email], approve_tools=False).invoke(
        {"messages": [("user", "go")]})
    assert SENT == ["a: b"]
    with pytest.raises(ValueError, match="approve_tools"):
        create_react_agent(model, [send_email], approve_tools="sometimes")


def test_requires_approval_on_a_read_tool():
    @tool(requires_approval=True)
    def peek(path: str) -> str:
        """Read a file."""
        return "secret"

    model = ScriptedModel([calls(("peek", {"path": "/etc"})), "done"])
    agent = create_react_agent(model, [peek], checkpointer=MemorySaver())
    out = agent.invoke({"messages": [("user", "peek")]}, cfg("peek"))
    assert out["__interrupt__"][0].value["request"]["tool"] == "peek"


def test_model_node_retries_transient_errors():
    model = ScriptedModel([TransientError("overloaded"), "fine"])
    agent = create_react_agent(model, [], retry=RetryPolicy(initial_interval=0.01,
                                                            max_attempts=3))
    assert agent.invoke({"messages": [("user", "hi")]})["messages"][-1].content == "fine"


def test_budget_applies_to_every_run():
    model = ScriptedModel([calls(("add", {"a": 1, "b": 1}))], cycle=True)
    agent = create_react_agent(model, [add], budget=Budget(max_model_calls=2, on_exceed="fail"))
    with pytest.raises(Exception, match="model"):
        agent.invoke({"messages": [("user", "loop")]})
    assert len(model.requests) == 2


def test_a_prebuilt_tool_node_and_async_runs():
    model = ScriptedModel([calls(("add", {"a": 4, "b": 5})), "9"])
    agent = create_react_agent(model, ToolNode([add]))
    out = asyncio.run(agent.ainvoke({"messages": [("user", "4+5")]}))
    assert out["messages"][-1].content == "9"


def test_streaming_messages_carries_tokens_and_tool_results():
    model = ScriptedModel([calls(("get_weather", {"city": "Nice"})), "Sunny in Nice today."])
    agent = create_react_agent(model, [get_weather])
    parts = list(agent.stream({"messages": [("user", "weather?")]}, stream_mode="messages"))
    nodes = [meta["langgraph_node"] for _, meta in parts]
    assert "tools" in nodes  # the tool's answer, as LangGraph streams node-returned messages
    tokens = [m.content for m, meta in parts if meta["langgraph_node"] == "agent"]
    assert "".join(tokens) == "Sunny in Nice today."
    assert len(tokens) > 2


def test_default_state_schema_is_agent_state():
    agent = create_react_agent(ScriptedModel(["x"]), [])
    assert set(agent.get_graph().nodes) >= {"agent", "tools"}
    assert AgentState.__annotations__.keys() >= {"messages", "remaining_steps"}


# -- bind_tools -----------------------------------------------------------------------------


def test_bind_tools_accepts_every_tool_shape_and_tool_choice():
    class Lookup(BaseModel):
        """Look an order up."""

        order_id: str

    spec = {"type": "function", "function": {"name": "raw", "description": "r",
                                             "parameters": {"type": "object"}}}

    def plain(x: int) -> int:
        """Double x."""
        return 2 * x

    model = ScriptedModel(["ok"]).bind_tools([get_weather, Lookup, spec, plain],
                                             tool_choice="Lookup")
    model.invoke("hi")
    request = model.requests[0]
    assert [t["function"]["name"] for t in request.tools] == ["get_weather", "Lookup", "raw",
                                                              "plain"]
    assert request.tool_choice == {"type": "function", "function": {"name": "Lookup"}}
    assert ScriptedModel(["x"]).bind_tools([add], tool_choice="any").defaults[
        "tool_choice"] == "required"
    with pytest.raises(ValueError, match="neither auto"):
        ScriptedModel(["x"]).bind_tools([add], tool_choice="nope")
    with pytest.raises(ValueError, match="unique"):
        ScriptedModel(["x"]).bind_tools([add, add])


def test_schema_decision_offers_the_chosen_tools_and_an_answer():
    request = ModelRequest(messages=[("user", "hi")],
                           tools=[get_weather.schema, add.schema], tool_choice="auto")
    plain, names, may_answer = decision_request(request)
    assert names == ["get_weather", "add"] and may_answer
    options = plain.response_format["json_schema"]["schema"]["anyOf"]
    assert [o["properties"]["tool"]["const"] for o in options] == ["get_weather", "add", "none"]
    assert plain.temperature == 0.0
    forced = ModelRequest(messages=[], tools=[get_weather.schema, add.schema],
                          tool_choice={"type": "function", "function": {"name": "add"}})
    _, names, may_answer = decision_request(forced)
    assert names == ["add"] and not may_answer


def test_schema_decision_turns_history_into_decisions():
    history = [("user", "2+2?"), AIMessage("", tool_calls=[
        {"name": "add", "args": {"a": 2, "b": 2}, "id": "c1"}]),
        {"role": "tool", "content": "4", "tool_call_id": "c1", "name": "add"}]
    plain, _, _ = decision_request(ModelRequest(messages=history, tools=[add.schema]))
    texts = [m.content for m in plain.messages]
    assert json.loads(texts[1]) == {"tool": "add", "args": {"a": 2, "b": 2}}
    assert texts[2] == "Result of add: 4"


def test_schema_tool_calling_over_an_openai_endpoint(monkeypatch):
    """`tool_calling="schema"` on OpenAICompatible: the decision becomes tool calls."""
    from waypoint.models import OpenAICompatible
    from waypoint.models.base import ModelDelta

    answers = iter(['{"tool": "add", "args": {"a": 1, "b": 2}}',
                    '{"tool": "none", "answer": "It is 3."}'])

    def fake_plain(self, request):
        assert request.tools is None and request.response_format is not None
        yield ModelDelta(next(answers))
        yield ModelDelta(finish_reason="stop")

    monkeypatch.setattr(OpenAICompatible, "_stream_plain", fake_plain)
    model = OpenAICompatible("http://127.0.0.1:9", "m", tool_calling="schema").bind_tools([add])
    first = model.invoke("1+2?")
    assert first.tool_calls[0]["name"] == "add" and first.tool_calls[0]["args"] == {"a": 1, "b": 2}
    second = model.invoke("1+2?")
    assert second.content == "It is 3." and not second.tool_calls


def test_a_decision_naming_an_unknown_tool_is_corrected_once():
    from waypoint.models.base import ModelDelta
    from waypoint.models.schema_tools import stream_decision

    answers = iter(['{"tool": "nope", "args": {}}', '{"tool": "add", "args": {"a": 1, "b": 1}}'])
    seen = []

    def raw(request):
        seen.append(request)
        yield ModelDelta(next(answers), finish_reason="stop")

    request = ModelRequest(messages=[("user", "1+1")], tools=[add.schema])
    deltas = list(stream_decision(request, raw))
    assert deltas[-1].tool_calls[0]["name"] == "add"
    assert "unknown tool 'nope'" in seen[1].messages[-1].content


def test_answer_text_streams_out_of_the_decision():
    from waypoint.models.base import ModelDelta
    from waypoint.models.schema_tools import stream_decision

    pieces = ['{"tool": "none", ', '"answer": "Hel', 'lo \\"you\\"', '!"}']

    def raw(request):
        for piece in pieces:
            yield ModelDelta(piece)
        yield ModelDelta(finish_reason="stop")

    deltas = list(stream_decision(ModelRequest(messages=[], tools=[add.schema]), raw))
    assert "".join(d.text for d in deltas) == 'Hello "you"!'
    assert len([d for d in deltas if d.text]) >= 2


def test_template_json_tool_calls_are_recovered():
    text = '```json\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n```'
    assert recover_template_calls(text, ["add"])[0]["args"] == {"a": 1, "b": 2}
    assert recover_template_calls('{{"name": "add", "arguments": {}}}', ["add"])
    assert recover_template_calls('{"name": "other", "arguments": {}}', ["add"]) is None
    assert recover_template_calls("Hello!", ["add"]) is None


def test_scripted_replies_with_usage_still_work_through_bind_tools():
    model = ScriptedModel([Reply("x")]).bind_tools([add])
    assert model.invoke("hi").content == "x"


def test_parallel_tool_calls_keep_their_effects_apart_across_a_rerun():
    """Effects inside tools are keyed by the tool call's id, so two calls running in
    parallel get their own recorded results back when the node runs again."""
    from waypoint import effect, interrupt

    ran: list[str] = []
    passes: dict[str, int] = {}

    @tool(effect="write")
    def charge(who: str) -> str:
        """Charge someone."""
        passes[who] = passes.get(who, 0) + 1
        # the first pass reaches effect() ann first, the re-run bob first: numbering by
        # arrival would hand each the other's receipt
        late = "bob" if passes[who] == 1 else "ann"
        if who == late:
            time.sleep(0.2)
        receipt = effect("charge", lambda: ran.append(who) or f"receipt-{who}")
        if who == "bob":
            interrupt("confirm bob")  # the whole tools node runs again on resume
        return receipt

    model = ScriptedModel([calls(("charge", {"who": "ann"}), ("charge", {"who": "bob"})),
                           "done"])
    agent = create_react_agent(model, [charge], approve_tools=False, checkpointer=MemorySaver())
    agent.invoke({"messages": [("user", "charge both")]}, cfg("fx"))
    out = agent.invoke(Command(resume=True), cfg("fx"))
    assert sorted(ran) == ["ann", "bob"]  # each charged once
    answers = [m.content for m in out["messages"] if m.type == "tool"]
    assert answers == ["receipt-ann", "receipt-bob"]


# -- bind_tools: parallel calls on the schema path, and on a Gateway ------------------------


def test_parallel_tool_calls_on_the_schema_path(monkeypatch):
    """`parallel_tool_calls=True` offers `{"calls": [...]}`; such a decision becomes several
    tool calls of one answer, which the agent runs side by side."""
    from waypoint.models import OpenAICompatible
    from waypoint.models.base import ModelDelta

    seen: list[ModelRequest] = []
    answers = iter([json.dumps({"calls": [{"tool": "get_weather", "args": {"city": "Oslo"}},
                                          {"tool": "add", "args": {"a": 1, "b": 2}}]}),
                    '{"tool": "none", "answer": "Snowy, and 3."}'])

    def fake_plain(self, request):
        seen.append(request)
        yield ModelDelta(next(answers))
        yield ModelDelta(finish_reason="stop")

    monkeypatch.setattr(OpenAICompatible, "_stream_plain", fake_plain)
    model = OpenAICompatible("http://127.0.0.1:9", "m", tool_calling="schema")
    out = create_react_agent(model.bind_tools([get_weather, add], parallel_tool_calls=True),
                             [get_weather, add]).invoke({"messages": [("user", "both?")]})
    ai = out["messages"][1]
    assert [(c["name"], c["args"]) for c in ai.tool_calls] == [
        ("get_weather", {"city": "Oslo"}), ("add", {"a": 1, "b": 2})]
    assert len({c["id"] for c in ai.tool_calls}) == 2
    assert [m.content for m in out["messages"] if m.type == "tool"] == ["sunny in Oslo", "3"]
    assert out["messages"][-1].content == "Snowy, and 3."
    options = seen[0].response_format["json_schema"]["schema"]["anyOf"]
    assert any("calls" in o["properties"] for o in options)
    # without it, the decision offers one call at a time
    single = OpenAICompatible("http://127.0.0.1:9", "m", tool_calling="schema").bind_tools(
        [get_weather, add])
    answers = iter(['{"tool": "add", "args": {"a": 1, "b": 1}}'])
    single.invoke("1+1")
    assert not any("calls" in o["properties"]
                   for o in seen[-1].response_format["json_schema"]["schema"]["anyOf"])


def test_bind_tools_on_a_gateway_reaches_every_model_of_the_chain():
    from waypoint.models import ModelUnavailable
    from waypoint.models.gateway import Gateway

    down = ScriptedModel([ModelUnavailable("down", model="primary")], model="primary")
    backup = ScriptedModel([calls(("add", {"a": 1, "b": 2})), "3"], model="backup")
    gateway = Gateway([down, backup], retries=0, sleep=lambda s: None)
    bound = gateway.bind_tools([add], tool_choice="any")
    assert isinstance(bound, Gateway) and gateway.defaults.get("tools") is None
    answer = bound.invoke("1+2?")
    assert answer.tool_calls[0]["name"] == "add"
    for model in (down, backup):
        assert [t["function"]["name"] for t in model.requests[0].tools] == ["add"]
        assert model.requests[0].tool_choice == "required"
    out = create_react_agent(Gateway([backup], retries=0), [add]).invoke(
        {"messages": [("user", "1+2?")]})
    assert out["messages"][-1].content == "3"
    assert backup.requests[-1].tools[0]["function"]["name"] == "add"
    assert bound.ledger.total().calls == 1


def test_measure_tool_choice_runs_on_the_scripted_model(capsys, monkeypatch):
    """examples/measure_tool_choice.py end to end without a model (so it cannot rot): its
    cases through the agent template's graph, on the schema path (a scripted decision,
    parsed as the local model's is) and the native one, then the table."""
    import importlib.util
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    monkeypatch.syspath_prepend(str(examples))
    spec = importlib.util.spec_from_file_location("measure_tool_choice_example",
                                                  examples / "measure_tool_choice.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "measure_tool_choice_example", module)
    spec.loader.exec_module(module)
    decided: list[ModelRequest] = []
    real = module.stream_decision
    monkeypatch.setattr(module, "stream_decision",
                        lambda request, raw: decided.append(request) or real(request, raw))
    assert module.main(["--model", "scripted"]) == 0
    table = capsys.readouterr().out.split("| path |")[1].splitlines()
    cases = len(module.CASES)
    assert table[2].startswith(f"| `schema` | {cases}/{cases} | 4/4 | {cases}/{cases} |")
    assert table[3].startswith(f"| `native` | {cases}/{cases} | 4/4 | {cases}/{cases} |")
    assert len(decided) == cases  # the schema path went through the decision each time


def test_the_react_agent_example_runs_on_the_scripted_model(capsys):
    """examples/react_agent.py with `--model scripted`: both turns on one thread, the tools
    really run (the local-model runs are in test_local_model.py)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "react_agent.py"
    spec = importlib.util.spec_from_file_location("react_agent_scripted", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    agent, config = example.run(["--model", "scripted"])
    messages = agent.get_state(config).values["messages"]
    assert [(m.name, m.content) for m in messages if m.type == "tool"] == [
        ("get_weather", "sunny, 21 °C"), ("get_local_time", "14:05")]
    assert [m.type for m in messages].count("human") == 2
    assert "weather: sunny, 21 °C." in capsys.readouterr().out  # streamed
    assert example.main(["--model", "scripted"]) == 0
