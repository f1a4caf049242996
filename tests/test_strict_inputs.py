"""Strict inputs: misspelt keywords fail loudly, unsupported LangGraph keywords are
refused, and call-time breakpoints hold in every stream mode."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from typing import Annotated, Any, TypedDict

import pytest

from waypoint import END, START, Command, RetryPolicy, StateGraph, get_stream_writer
from waypoint.checkpoint import MemorySaver
from waypoint.errors import GraphValidationError


class State(TypedDict):
    x: int
    log: Annotated[list[str], lambda a, b: a + b]


def build(calls: list[str], **compile_kwargs: Any) -> Any:
    def node(name: str) -> Any:
        def run(state: State) -> dict[str, Any]:
            calls.append(name)
            get_stream_writer()({"node": name})
            return {"x": state["x"] + 1, "log": [name]}

        return run

    graph = StateGraph(State)
    for name in ("a", "b", "c"):
        graph.add_node(name, node(name))
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph.compile(checkpointer=MemorySaver(), **compile_kwargs)


def thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


# -- misspelt and unknown keywords ------------------------------------------------------


@pytest.mark.parametrize("method", ["invoke", "stream", "ainvoke", "astream"])
def test_a_misspelt_keyword_raises_with_the_closest_name(method: str) -> None:
    app = build([])
    with pytest.raises(TypeError, match=r"'interupt_before'.*did you mean 'interrupt_before'"):
        result = getattr(app, method)({"x": 0, "log": []}, thread(), interupt_before=["b"])
        if asyncio.iscoroutine(result):  # ainvoke checks when awaited, as any coroutine
            asyncio.run(result)


def test_stream_checks_keywords_when_called_not_when_iterated() -> None:
    app = build([])
    with pytest.raises(TypeError, match="strem_mode"):
        app.stream({"x": 0, "log": []}, thread(), strem_mode="values")
    with pytest.raises(TypeError, match="subgrafs"):
        app.astream({"x": 0, "log": []}, thread(), subgrafs=True)
    with pytest.raises(TypeError, match="include_nmes"):
        app.astream_events({"x": 0, "log": []}, thread(), include_nmes=["a"])


def test_an_unknown_keyword_with_no_close_match_lists_the_valid_ones() -> None:
    with pytest.raises(TypeError, match=r"'zzz'.*it takes: .*interrupt_after"):
        build([]).invoke({"x": 0, "log": []}, thread(), zzz=1)


def test_invoke_does_not_take_subgraphs() -> None:
    with pytest.raises(TypeError, match="subgraphs"):
        build([]).invoke({"x": 0, "log": []}, thread(), subgraphs=True)


def test_unsupported_langgraph_keywords_are_refused() -> None:
    app = build([])
    with pytest.raises(TypeError, match="control"):
        app.invoke({"x": 0, "log": []}, thread(), control=object())
    with pytest.raises(ValueError, match="v1"):
        app.stream({"x": 0, "log": []}, thread(), version="v2")
    calls: list[str] = []
    assert build(calls).invoke({"x": 0, "log": []}, thread(), control=None, version="v1")[
        "x"] == 3


def test_checkpoint_during_is_deprecated_durability() -> None:
    app = build([])
    with pytest.warns(DeprecationWarning, match="durability"):
        assert app.invoke({"x": 0, "log": []}, thread(), checkpoint_during=False)["x"] == 3
    with pytest.raises(ValueError, match="not both"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app.invoke({"x": 0, "log": []}, thread(), checkpoint_during=True, durability="sync")


def test_durability_is_checked() -> None:
    with pytest.raises(ValueError, match="durability"):
        build([]).invoke({"x": 0, "log": []}, thread(), durability="sometimes")


# -- output_keys, print_mode, debug ---------------------------------------------------------


def test_output_keys_on_invoke_and_stream() -> None:
    app = build([])
    assert app.invoke({"x": 0, "log": []}, thread(), output_keys="x") == 3
    assert app.invoke({"x": 0, "log": []}, thread(), output_keys=["log"]) == {
        "log": ["a", "b", "c"]}
    chunks = list(app.stream({"x": 0, "log": []}, thread(), stream_mode=["values", "updates"],
                             output_keys=["x"]))
    assert chunks[-1] == ("values", {"x": 3})
    assert ("updates", {"b": {"x": 2}}) in chunks
    assert list(app.stream({"x": 0, "log": []}, thread(), stream_mode="updates",
                           output_keys="log")) == [{"a": ["a"]}, {"b": ["b"]}, {"c": ["c"]}]
    with pytest.raises(ValueError, match="output_keys"):
        app.invoke({"x": 0, "log": []}, thread(), output_keys=["nope"])


def test_print_mode_and_debug_print_without_changing_the_output(capsys: Any) -> None:
    app = build([])
    out = list(app.stream({"x": 0, "log": []}, thread(), stream_mode="values",
                          print_mode="updates"))
    assert out[-1]["x"] == 3 and all(isinstance(c, dict) and "x" in c for c in out)
    printed = capsys.readouterr().out
    assert "[updates] {'a':" in printed
    assert build([]).invoke({"x": 0, "log": []}, thread(), debug=True)["x"] == 3
    assert "[debug]" in capsys.readouterr().out
    assert build([], debug=True).invoke({"x": 0, "log": []}, thread())["x"] == 3
    assert "[debug]" in capsys.readouterr().out


# -- call-time breakpoints in every mode --------------------------------------------------

MODES: list[Any] = ["values", "updates", "messages", "custom", "tasks", "checkpoints",
                    "debug", ["values", "updates"], ["custom", "messages", "tasks"]]


def _paused_before_b(app: Any, config: dict[str, Any], calls: list[str]) -> None:
    assert calls == ["a"]
    assert app.get_state(config).next == ("b",)


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_interrupt_before_at_call_time_in_stream_mode(mode: Any) -> None:
    calls: list[str] = []
    app, config = build(calls), thread()
    list(app.stream({"x": 0, "log": []}, config, stream_mode=mode, interrupt_before=["b"]))
    _paused_before_b(app, config, calls)
    list(app.stream(None, config, stream_mode=mode))  # resuming runs on to the end
    assert calls == ["a", "b", "c"]


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_interrupt_after_at_call_time_in_stream_mode(mode: Any) -> None:
    calls: list[str] = []
    app, config = build(calls), thread()
    list(app.stream({"x": 0, "log": []}, config, stream_mode=mode, interrupt_after=["a"]))
    _paused_before_b(app, config, calls)


@pytest.mark.parametrize("mode", MODES, ids=str)
def test_interrupt_before_at_call_time_in_astream(mode: Any) -> None:
    calls: list[str] = []
    app, config = build(calls), thread()

    async def main() -> None:
        async for _ in app.astream({"x": 0, "log": []}, config, stream_mode=mode,
                                   interrupt_before="b"):
            pass

    asyncio.run(main())
    _paused_before_b(app, config, calls)


@pytest.mark.parametrize("mode", ["values", "updates", "tasks", "debug", "custom",
                                  "messages", "checkpoints"])
def test_interrupt_before_at_call_time_in_invoke_with_a_stream_mode(mode: str) -> None:
    calls: list[str] = []
    app, config = build(calls), thread()
    app.invoke({"x": 0, "log": []}, config, stream_mode=mode, interrupt_before=["b"])
    _paused_before_b(app, config, calls)
    calls.clear()
    app, config = build(calls), thread()
    asyncio.run(app.ainvoke({"x": 0, "log": []}, config, stream_mode=mode,
                            interrupt_after=["a"]))
    _paused_before_b(app, config, calls)


def test_interrupt_at_call_time_in_invoke_and_astream_events() -> None:
    calls: list[str] = []
    app, config = build(calls), thread()
    out = app.invoke({"x": 0, "log": []}, config, interrupt_before="b")
    assert out["x"] == 1
    _paused_before_b(app, config, calls)
    assert app.invoke(None, config)["x"] == 3

    calls.clear()
    app, config = build(calls), thread()

    async def main() -> list[dict[str, Any]]:
        return [e async for e in app.astream_events({"x": 0, "log": []}, config,
                                                    interrupt_after=["a"],
                                                    include_types=["chain"])]

    events = asyncio.run(main())
    assert events and all(e["event"].startswith("on_chain") for e in events)
    _paused_before_b(app, config, calls)


def test_interrupt_star_and_unknown_names() -> None:
    calls: list[str] = []
    app, config = build(calls), thread()
    app.invoke({"x": 0, "log": []}, config, interrupt_after="*")
    _paused_before_b(app, config, calls)
    with pytest.raises(GraphValidationError, match="'bb' is not a node"):
        build([]).invoke({"x": 0, "log": []}, thread(), interrupt_before=["bb"])
    with pytest.raises(TypeError, match="interrupt_before"):
        build([]).invoke({"x": 0, "log": []}, thread(), interrupt_before=3)


# -- the rest of the public API -----------------------------------------------------------


def _two(state: State) -> dict[str, Any]:
    return {"x": state["x"] + 1}


def test_compile_refuses_unknown_and_bad_keywords() -> None:
    graph = StateGraph(State)
    graph.add_node("a", _two)
    graph.add_edge(START, "a")
    with pytest.raises(TypeError, match="did you mean 'checkpointer'"):
        graph.compile(checkpionter=MemorySaver())
    with pytest.raises(ValueError, match="durability"):
        graph.compile(durability="later")
    with pytest.raises(TypeError, match="Budget"):
        graph.compile(budget={"max_steps": 3})
    with pytest.raises(ValueError, match="run_timeout"):
        graph.compile(run_timeout=0)
    with pytest.warns(UserWarning, match="does not cache"):
        graph.compile(cache=object())


def test_add_node_refuses_silent_mistakes() -> None:
    graph = StateGraph(State)
    with pytest.raises(GraphValidationError, match="not two functions"):
        graph.add_node(_two, _two)
    with pytest.raises(GraphValidationError, match="not both"):
        graph.add_node("a", _two, retry_policy=RetryPolicy(), retry=RetryPolicy())
    with pytest.raises(GraphValidationError, match="defer"):
        graph.add_node("a", _two, defer=True)
    with pytest.raises(GraphValidationError, match="metadata"):
        graph.add_node("a", _two, metadata=["x"])
    with pytest.raises(GraphValidationError, match="destinations"):
        graph.add_node("a", _two, destinations=[1])
    with pytest.raises(GraphValidationError, match="retry_on"):
        graph.add_node("a", _two, retry_policy=RetryPolicy(retry_on="ValueError"))
    with pytest.raises(GraphValidationError, match="retry_on"):
        graph.add_node("a", _two, retry_policy=RetryPolicy(retry_on=[ValueError, "x"]))
    with pytest.raises(GraphValidationError, match="max_attempts"):
        graph.add_node("a", _two, retry_policy=RetryPolicy(max_attempts=True))
    with pytest.raises(TypeError, match="retry_polcy"):
        graph.add_node("a", _two, retry_polcy=RetryPolicy())
    with pytest.warns(UserWarning, match="does not cache"):
        graph.add_node("a", _two, cache_policy=object())
    graph.add_node("b", _two, retry_policy=RetryPolicy(retry_on=(ValueError, KeyError)))
    graph.add_node("c", _two, retry_policy=RetryPolicy(retry_on=lambda e: True))


def test_edges_refuse_silent_mistakes() -> None:
    graph = StateGraph(State)
    graph.add_node("a", _two)
    graph.add_node("b", _two)
    with pytest.raises(GraphValidationError, match="one node name"):
        graph.add_edge("a", ["b"])  # type: ignore[arg-type]
    with pytest.raises(GraphValidationError, match="string 'b'"):
        graph.add_conditional_edges("a", lambda s: "b", "b")  # type: ignore[arg-type]
    with pytest.raises(GraphValidationError, match=r"\(name, function\)"):
        graph.add_sequence([("x", _two, "extra")])  # type: ignore[list-item]
    with pytest.raises(GraphValidationError, match="not both"):
        StateGraph(State, input=State, input_schema=dict)


def test_run_config_numbers_are_checked() -> None:
    app = build([])
    for bad in (0, "10", 2.5):
        with pytest.raises(ValueError, match="recursion_limit"):
            app.invoke({"x": 0, "log": []}, {**thread(), "recursion_limit": bad})
    with pytest.raises(ValueError, match="limit"):
        app.get_state_history(thread(), limit=-1)


def test_update_state_and_get_state_keywords_are_strict() -> None:
    app = build([])
    config = thread()
    app.invoke({"x": 0, "log": []}, config)
    with pytest.raises(TypeError):
        app.get_state(config, subgrahs=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        app.update_state(config, {"x": 1}, as_nod="a")  # type: ignore[call-arg]
    assert app.invoke(Command(goto="c", update={"x": 10}), config)["x"] == 11


def test_compile_interrupts_must_be_node_names() -> None:
    graph = StateGraph(State)
    graph.add_node("a", _two)
    graph.add_edge(START, "a")
    with pytest.raises(GraphValidationError, match="node names"):
        graph.compile(interrupt_before=3)  # type: ignore[arg-type]
    assert graph.compile(interrupt_after=iter(["a"])).spec.interrupt_after == {"a"}


def test_a_graph_invoked_inside_a_node_honours_its_keywords() -> None:
    inner_calls: list[str] = []
    inner = build(inner_calls)

    def outer_node(state: State) -> dict[str, Any]:
        return {"x": inner.invoke({"x": state["x"], "log": []}, output_keys="x")}

    def streaming_node(state: State) -> dict[str, Any]:
        inner.invoke({"x": 0, "log": []}, stream_mode="updates")
        return {}

    for node, check in ((outer_node, None), (streaming_node, "stream_mode")):
        graph = StateGraph(State)
        graph.add_node("outer", node)
        graph.add_edge(START, "outer")
        app = graph.compile(checkpointer=MemorySaver())
        if check is None:
            assert app.invoke({"x": 1, "log": []}, thread())["x"] == 4
        else:
            with pytest.raises(ValueError, match=check):
                app.invoke({"x": 1, "log": []}, thread())

    def pausing_node(state: State) -> dict[str, Any]:
        return {"x": inner.invoke({"x": state["x"], "log": []}, interrupt_before=["c"])["x"]}

    graph = StateGraph(State)
    graph.add_node("outer", pausing_node)
    graph.add_edge(START, "outer")
    app, config = graph.compile(checkpointer=MemorySaver()), thread()
    inner_calls.clear()
    app.invoke({"x": 0, "log": []}, config)
    assert inner_calls == ["a", "b"]
    assert app.get_state(config).next == ("outer",)


def test_unknown_stream_modes_fail_when_called() -> None:
    app = build([])
    with pytest.raises(ValueError, match="unknown stream_mode"):
        app.stream({"x": 0, "log": []}, thread(), stream_mode="valuez")
    with pytest.raises(ValueError, match="unknown stream_mode"):
        app.astream({"x": 0, "log": []}, thread(), stream_mode=["values", "updatez"])
    with pytest.raises(ValueError, match="unknown stream_mode"):
        app.invoke({"x": 0, "log": []}, thread(), print_mode="debugg")
