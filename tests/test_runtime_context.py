"""The run's store and context inside nodes: compile(store=...), get_store(), a `store`
parameter, invoke(..., context=...), get_runtime() and a `runtime` parameter, with
LangGraph 0.6+ meanings; subgraphs inherit the parent's store and context.
"""

from __future__ import annotations

import operator
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

import pytest
from pydantic import BaseModel

from waypoint import (
    END,
    START,
    GraphValidationError,
    InvalidContextError,
    Runtime,
    Send,
    StateGraph,
    get_runtime,
    get_store,
    interrupt,
)
from waypoint.checkpoint import MemorySaver
from waypoint.store import BaseStore, InMemoryStore, SqliteStore
from waypoint.store import get_store as store_get_store


class State(TypedDict, total=False):
    user: str
    seen: Annotated[list, operator.add]


@dataclass
class Ctx:
    user_id: str
    lang: str = "en"


class PydCtx(BaseModel):
    user_id: str
    retries: int = 0


class DictCtx(TypedDict):
    user_id: str
    limit: int


def cfg() -> dict[str, Any]:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def single(fn: Any, *, context_schema: Any = None, name: str = "node", **compile_args: Any
           ) -> Any:
    builder = StateGraph(State, context_schema=context_schema)
    builder.add_node(name, fn).add_edge(START, name).add_edge(name, END)
    return builder.compile(**compile_args)


# -- the store ----------------------------------------------------------------------------


def test_get_store_in_a_sync_node_is_the_compiled_store() -> None:
    store = InMemoryStore()
    store.put(("users",), "ann", {"name": "Ann"})

    def greet(state: State) -> dict:
        found = get_store()
        assert found is store
        item = found.get(("users",), state["user"])
        found.put(("visits",), state["user"], {"count": 1})
        return {"seen": [item.value["name"] if item else "?"]}

    graph = single(greet, store=store)
    assert graph.store is store
    assert graph.invoke({"user": "ann"}) == {"user": "ann", "seen": ["Ann"]}
    assert store.get(("visits",), "ann") is not None


async def test_get_store_in_async_nodes_and_in_sync_nodes_of_an_async_run() -> None:
    store = InMemoryStore()

    async def async_node(state: State) -> dict:
        await get_store().aput(("log",), "async", {"by": "async"})
        return {"seen": ["async"]}

    def sync_node(state: State) -> dict:  # runs in a worker thread under ainvoke
        get_store().put(("log",), "sync", {"by": "sync"})
        return {"seen": ["sync"]}

    builder = StateGraph(State)
    builder.add_node("a", async_node).add_node("s", sync_node)
    builder.add_edge(START, "a").add_edge("a", "s").add_edge("s", END)
    graph = builder.compile(store=store)
    assert await graph.ainvoke({"user": "x"}) == {"user": "x", "seen": ["async", "sync"]}
    assert sorted(i.key for i in await store.asearch(("log",))) == ["async", "sync"]


async def test_a_store_parameter_receives_the_store() -> None:
    store = InMemoryStore()

    def by_keyword(state: State, *, store: BaseStore) -> dict:
        store.put(("kw",), "k", {"v": 1})
        return {"seen": ["kw"]}

    def by_position(state: State, config: dict, store: BaseStore) -> dict:
        assert config["configurable"]["thread_id"]
        store.put(("pos",), "k", {"v": 2})
        return {"seen": ["pos"]}

    async def async_with_store(state: State, store: BaseStore) -> dict:
        await store.aput(("async",), "k", {"v": 3})
        return {"seen": ["async"]}

    builder = StateGraph(State)
    builder.add_node("kw", by_keyword).add_node("pos", by_position)
    builder.add_node("as", async_with_store)
    builder.add_edge(START, "kw").add_edge("kw", "pos").add_edge("pos", "as")
    graph = builder.compile(checkpointer=MemorySaver(), store=store)
    result = await graph.ainvoke({"user": "x"}, cfg())
    assert result["seen"] == ["kw", "pos", "async"]
    assert [store.get((ns,), "k") is not None for ns in ("kw", "pos", "async")] == [True] * 3


def test_without_a_store_nodes_get_none() -> None:
    seen: list[Any] = []

    def node(state: State, store: BaseStore | None, runtime: Runtime) -> dict:
        seen.extend([get_store(), store, runtime.store, get_runtime().store])
        return {}

    single(node).invoke({"user": "x"})
    assert seen == [None, None, None, None]


def test_outside_a_run_get_store_and_get_runtime_raise() -> None:
    with pytest.raises(RuntimeError, match="inside a node"):
        get_store()
    with pytest.raises(RuntimeError, match="inside a node"):
        store_get_store()
    with pytest.raises(RuntimeError, match="inside a node"):
        get_runtime()


def test_waypoint_store_get_store_is_the_same_lookup() -> None:
    store = InMemoryStore()
    found: list[Any] = []
    single(lambda state: found.append(store_get_store()) or {}, store=store).invoke({})
    assert found == [store]


def test_compile_refuses_what_is_not_a_store() -> None:
    with pytest.raises(GraphValidationError, match="store must be a waypoint store"):
        single(lambda state: {}, store={"not": "a store"})


def test_memory_is_shared_across_threads_and_runs() -> None:
    store = InMemoryStore()

    def count(state: State, store: BaseStore) -> dict:
        item = store.get(("counts",), state["user"])
        n = (item.value["n"] if item else 0) + 1
        store.put(("counts",), state["user"], {"n": n})
        return {"seen": [n]}

    graph = single(count, checkpointer=MemorySaver(), store=store)
    for _ in range(3):
        graph.invoke({"user": "ann"}, cfg())  # a new thread each time
    assert store.get(("counts",), "ann").value == {"n": 3}  # type: ignore[union-attr]


def test_parallel_sends_write_to_a_sqlite_store(tmp_path: Any) -> None:
    class Fan(TypedDict, total=False):
        items: list[int]
        done: Annotated[list, operator.add]

    def work(arg: dict, store: BaseStore) -> dict:
        store.put(("work",), str(arg["i"]), {"square": arg["i"] ** 2})
        return {"done": [arg["i"]]}

    builder = StateGraph(Fan)
    builder.add_node("work", work)
    builder.add_conditional_edges(START, lambda s: [Send("work", {"i": i}) for i in s["items"]])
    with SqliteStore.from_conn_string(str(tmp_path / "s.db")) as store:
        graph = builder.compile(store=store)
        result = graph.invoke({"items": list(range(8))})
        assert sorted(result["done"]) == list(range(8))
        assert len(store.search(("work",), limit=20)) == 8
        assert [i.value for i in store.search(("work",), filter={"square": {"$gt": 40}})] == [
            {"square": 49}]


def test_store_survives_an_interrupt_and_resume() -> None:
    store = InMemoryStore()

    def ask(state: State, store: BaseStore) -> dict:
        answer = interrupt("name?")
        store.put(("names",), "answer", {"name": answer})
        return {"user": answer}

    graph = single(ask, checkpointer=MemorySaver(), store=store)
    config = cfg()
    assert "__interrupt__" in graph.invoke({"user": "?"}, config)
    from waypoint import Command

    assert graph.invoke(Command(resume="Bo"), config)["user"] == "Bo"
    assert store.get(("names",), "answer").value == {"name": "Bo"}  # type: ignore[union-attr]


def test_a_run_can_use_another_store_such_as_a_tenants_view() -> None:
    shared = InMemoryStore()

    def remember(state: State, store: BaseStore) -> dict:
        store.put(("m",), "k", {"user": state["user"]})
        return {}

    graph = single(remember, store=shared)
    graph.invoke({"user": "a"}, store=shared.scoped("tenant-a"))
    graph.invoke({"user": "b"}, store=shared.scoped("tenant-b"))
    assert shared.scoped("tenant-a").get(("m",), "k").value == {"user": "a"}  # type: ignore
    assert shared.scoped("tenant-b").get(("m",), "k").value == {"user": "b"}  # type: ignore
    assert shared.get(("m",), "k") is None
    with pytest.raises(GraphValidationError, match="store must be"):
        graph.invoke({"user": "c"}, store=object())  # type: ignore[arg-type]


# -- subgraphs ----------------------------------------------------------------------------


def _child(store: BaseStore | None = None, context_schema: Any = None) -> Any:
    def inner(state: State, runtime: Runtime) -> dict:
        assert get_store() is runtime.store
        if runtime.store is not None:
            runtime.store.put(("child",), "k", {"ctx": repr(runtime.context)})
        return {"seen": [("child", runtime.context)]}

    builder = StateGraph(State, context_schema=context_schema)
    builder.add_node("inner", inner).add_edge(START, "inner")
    return builder.compile(store=store)


def test_a_subgraph_node_inherits_the_parents_store_and_context() -> None:
    parent_store = InMemoryStore()
    builder = StateGraph(State, context_schema=Ctx)
    builder.add_node("child", _child()).add_edge(START, "child")
    graph = builder.compile(store=parent_store)
    result = graph.invoke({"user": "x"}, context={"user_id": "u1"})
    assert result["seen"] == [("child", Ctx("u1"))]
    assert parent_store.get(("child",), "k") is not None


def test_the_parents_store_wins_over_a_subgraphs_own() -> None:
    parent_store, child_store = InMemoryStore(), InMemoryStore()
    builder = StateGraph(State)
    builder.add_node("child", _child(child_store)).add_edge(START, "child")
    builder.compile(store=parent_store).invoke({"user": "x"})
    assert parent_store.get(("child",), "k") is not None
    assert child_store.get(("child",), "k") is None
    # without a parent store, the subgraph keeps its own
    alone = StateGraph(State)
    alone.add_node("child", _child(child_store)).add_edge(START, "child")
    alone.compile().invoke({"user": "x"})
    assert child_store.get(("child",), "k") is not None


async def test_a_graph_invoked_inside_a_node_inherits_store_and_context() -> None:
    store = InMemoryStore()
    child = _child()

    async def call_child(state: State) -> dict:
        out = await child.ainvoke({"user": state["user"]})
        return {"seen": out["seen"]}

    def call_child_sync(state: State) -> dict:
        return {"seen": child.invoke({"user": state["user"]})["seen"]}

    builder = StateGraph(State, context_schema=Ctx)
    builder.add_node("a", call_child).add_node("s", call_child_sync)
    builder.add_edge(START, "a").add_edge("a", "s")
    graph = builder.compile(store=store, checkpointer=MemorySaver())
    result = await graph.ainvoke({"user": "x"}, cfg(), context=Ctx("u2", "fr"))
    assert result["seen"] == [("child", Ctx("u2", "fr"))] * 2
    assert store.get(("child",), "k") is not None


# -- context and runtime ------------------------------------------------------------------


def test_context_reaches_get_runtime_and_the_runtime_parameter() -> None:
    got: list[Any] = []

    def node(state: State, runtime: Runtime[Ctx]) -> dict:
        got.append(runtime.context)
        got.append(get_runtime(Ctx).context)
        return {}

    graph = single(node, context_schema=Ctx)
    graph.invoke({"user": "x"}, context=Ctx(user_id="u1"))
    graph.invoke({"user": "x"}, context={"user_id": "u2", "lang": "de"})  # coerced
    assert got == [Ctx("u1"), Ctx("u1"), Ctx("u2", "de"), Ctx("u2", "de")]


def test_runtime_carries_store_and_stream_writer() -> None:
    store = InMemoryStore()

    def node(state: State, runtime: Runtime[Ctx]) -> dict:
        assert runtime.store is store
        runtime.stream_writer({"hello": runtime.context.user_id})
        assert runtime.previous is None
        return {}

    graph = single(node, context_schema=Ctx, store=store)
    chunks = list(graph.stream({"user": "x"}, stream_mode="custom", context={"user_id": "u"}))
    assert chunks == [{"hello": "u"}]
    result = graph.invoke({"user": "x"}, context={"user_id": "u"})  # writer is a no-op here
    assert result == {"user": "x", "seen": []}


async def test_context_in_async_nodes_and_astream() -> None:
    async def node(state: State, runtime: Runtime[PydCtx]) -> dict:
        return {"seen": [runtime.context.user_id, get_runtime().context.retries]}

    graph = single(node, context_schema=PydCtx)
    result = await graph.ainvoke({"user": "x"}, context={"user_id": "p", "retries": "3"})
    assert result["seen"] == ["p", 3]  # pydantic coerces "3"
    updates = [u async for u in graph.astream({"user": "x"}, stream_mode="updates",
                                               context=PydCtx(user_id="q"))]
    assert updates == [{"node": {"seen": ["q", 0]}}]


def test_typeddict_context_is_checked_and_stays_a_dict() -> None:
    got: list[Any] = []
    graph = single(lambda state: got.append(get_runtime().context) or {},
                   context_schema=DictCtx)
    graph.invoke({}, context={"user_id": "t", "limit": 5})
    assert got == [{"user_id": "t", "limit": 5}]
    with pytest.raises(InvalidContextError, match="limit"):
        graph.invoke({}, context={"user_id": "t", "limit": "many"})
    with pytest.raises(InvalidContextError, match=r"missing required field\(s\) \['limit'\]"):
        graph.invoke({}, context={"user_id": "t"})


@pytest.mark.parametrize(("context", "match"), [
    ({"user_id": 5}, "user_id: Input should be a valid string"),
    ({"lang": "en"}, r"missing required field\(s\) \['user_id'\]"),
    ({"user_id": "u", "colour": "red"}, r"key\(s\) \['colour'\] that context_schema Ctx"),
    ("just-a-string", "context must be a Ctx or a dict"),
])
def test_a_context_schema_violation_fails_before_the_run(context: Any, match: str) -> None:
    ran: list[str] = []
    graph = single(lambda state: ran.append("ran") or {}, context_schema=Ctx,
                   checkpointer=MemorySaver())
    config = cfg()
    with pytest.raises(InvalidContextError, match=match):
        graph.invoke({"user": "x"}, config, context=context)
    assert ran == []
    assert graph.get_state(config).values == {}  # nothing was written


async def test_a_context_schema_violation_fails_in_async_and_stream_too() -> None:
    graph = single(lambda state: {}, context_schema=PydCtx)
    with pytest.raises(InvalidContextError, match="user_id"):
        await graph.ainvoke({}, context={"retries": 1})
    with pytest.raises(InvalidContextError, match="retries"):
        list(graph.stream({}, context={"user_id": "u", "retries": "lots"}))
    with pytest.raises(InvalidContextError):
        [c async for c in graph.astream({}, context={})]


def test_without_a_schema_context_is_passed_as_given_and_defaults_to_none() -> None:
    got: list[Any] = []
    graph = single(lambda state: got.append(get_runtime().context) or {})
    marker = object()
    graph.invoke({}, context=marker)
    graph.invoke({})
    single(lambda state: got.append(get_runtime().context) or {},
           context_schema=Ctx).invoke({})
    assert got[0] is marker and got[1:] == [None, None]


def test_runtime_is_read_only_and_override_copies() -> None:
    def node(state: State, runtime: Runtime[Ctx]) -> dict:
        with pytest.raises(AttributeError):
            runtime.context = Ctx("other")  # type: ignore[misc]
        changed = runtime.override(context=Ctx("other"))
        assert changed.context == Ctx("other") and runtime.context == Ctx("u")
        return {"seen": ["ok"]}

    assert single(node, context_schema=Ctx).invoke({}, context=Ctx("u")) == {"seen": ["ok"]}


def test_context_is_the_same_for_every_node_and_step() -> None:
    seen: list[Any] = []

    def one(state: State, runtime: Runtime[Ctx]) -> dict:
        seen.append(runtime.context)
        return {}

    def two(state: State) -> dict:
        seen.append(get_runtime().context)
        return {}

    builder = StateGraph(State, context_schema=Ctx)
    builder.add_node("one", one).add_node("two", two)
    builder.add_edge(START, "one").add_edge("one", "two")
    graph = builder.compile(checkpointer=MemorySaver())
    graph.invoke({"user": "x"}, cfg(), context={"user_id": "same"})
    assert seen == [Ctx("same"), Ctx("same")]
    assert seen[0] is seen[1]  # built once for the run
