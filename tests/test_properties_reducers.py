"""Properties of the reducers, alone and through the engine and its stores.

`add_messages` (LangGraph's semantics): a message whose id is new is appended, a known id
is replaced where it stands, a RemoveMessage deletes its id (an unknown id is an error),
REMOVE_ALL_MESSAGES clears what came before it; messages without an id get a fresh one.
Stated declaratively below and checked against random batches; without removals it is
associative, has the empty list as identity and is idempotent. `operator.add` on lists and
`operator.or_` on dicts and sets, the reducers state schemas use most, are associative.

Through the engine: folding random batches of messages into a thread with `update_state`
(the reducer, `channel_changes`, a delta put) and reading it back gives the fold computed
directly, on memory, SQLite and PostgreSQL.

Budgets: tests/property_support.py (HYPOTHESIS_PROFILE=long for a longer search).
"""

from __future__ import annotations

import copy
import operator
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from property_support import budget, waypoint_messages
from store_backends import PG_URL, require

from waypoint import END, START, MessagesState, StateGraph, add_messages
from waypoint.checkpoint import MemorySaver, SqliteSaver
from waypoint.graph.messages_state import REMOVE_ALL_MESSAGES
from waypoint.messages import AIMessage, HumanMessage, Message, RemoveMessage, ToolMessage

ID_POOL = [f"m{i}" for i in range(6)]
texts = st.sampled_from(["hi", "ok", "yes", ""])
metadata = st.sampled_from([{}, {"model": "a"}, {"model": "b"}])


def message(ids: st.SearchStrategy[str | None]) -> st.SearchStrategy[Message]:
    return st.one_of(
        st.builds(HumanMessage, texts, id=ids),
        st.builds(AIMessage, texts, id=ids, response_metadata=metadata),
        st.builds(ToolMessage, texts, id=ids, tool_call_id=st.sampled_from(["c1", "c2"])),
    )


def unique(items: list[Message]) -> list[Message]:
    seen: set[Any] = set()
    return [m for m in items if not (m.id in seen or seen.add(m.id))]


pooled = message(st.sampled_from(ID_POOL))
unique_lists = st.lists(pooled, max_size=6).map(unique)
batch_items = st.one_of(pooled, st.builds(RemoveMessage, id=st.sampled_from(ID_POOL)))
batches = st.lists(batch_items, max_size=5)


def view(messages: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(type(m).__name__, m.to_dict()) for m in messages]


def expected_merge(left: list[Message], right: list[Message]) -> list[Message] | None:
    """add_messages stated declaratively; None where it must refuse (removing an id that
    is not there). `left` has unique ids."""
    for i, m in enumerate(right):
        if isinstance(m, RemoveMessage) and m.id == REMOVE_ALL_MESSAGES:
            left, right = [], right[i + 1:]
            break
    known = {m.id for m in left}
    for m in right:
        if isinstance(m, RemoveMessage) and m.id not in known:
            return None
        known.add(m.id)
    order = [m.id for m in left] + [i for i in dict.fromkeys(m.id for m in right
                                                              if not isinstance(m, RemoveMessage))
                                    if i not in {m.id for m in left}]
    last = {m.id: m for m in [*left, *right]}  # an id's last operation decides
    return [last[i] for i in order if not isinstance(last[i], RemoveMessage)]


@pytest.fixture(autouse=True, scope="module")
def pinned_messages() -> Iterator[None]:
    with waypoint_messages():
        yield


@budget(200)
@given(unique_lists, batches)
@example([HumanMessage("a", id="m0")], [RemoveMessage(id="m0"), AIMessage("b", id="m0")])
@example([HumanMessage("a", id="m0")], [RemoveMessage(id=REMOVE_ALL_MESSAGES),
                                        AIMessage("b", id="m0")])
def test_add_messages_matches_its_declared_semantics(left: list[Message],
                                                     right: list[Message]) -> None:
    before = view(left)
    wanted = expected_merge(copy.deepcopy(left), copy.deepcopy(right))
    if wanted is None:
        with pytest.raises(ValueError):
            add_messages(left, right)
    else:
        assert view(add_messages(left, right)) == view(wanted)
    assert view(left) == before  # the left list is never changed in place


@budget(100)
@given(unique_lists, unique_lists, unique_lists)
def test_add_messages_is_associative_without_removals(a: list[Message], b: list[Message],
                                                      c: list[Message]) -> None:
    assert (view(add_messages(add_messages(a, b), c))
            == view(add_messages(a, add_messages(b, c))))
    assert view(add_messages(a, [])) == view(a) == view(add_messages([], a))
    assert view(add_messages(a, a)) == view(a)


@budget(100)
@given(st.lists(message(st.none() | st.sampled_from(ID_POOL)), max_size=6))
def test_messages_without_an_id_get_a_fresh_one(items: list[Message]) -> None:
    merged = add_messages([], items)
    assert all(m.id is not None for m in merged)
    fresh = [m.id for m in merged if m.id not in ID_POOL]
    assert len(fresh) == len(set(fresh))


plain = st.integers() | st.text(max_size=3)


@budget(100)
@given(st.one_of(st.tuples(*[st.lists(plain)] * 3), st.tuples(*[st.dictionaries(plain, plain)] * 3),
                 st.tuples(*[st.sets(plain)] * 3)))
def test_add_and_or_are_associative(values: tuple[Any, Any, Any]) -> None:
    a, b, c = values
    merge = operator.add if isinstance(a, list) else operator.or_
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


# -- through the engine and a store ------------------------------------------------------


def graph_on(saver: Any) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("talk", lambda state: {})
    builder.add_edge(START, "talk")
    builder.add_edge("talk", END)
    return builder.compile(checkpointer=saver)


def fold_through(graph: Any, thread_id: str, history: list[list[Message]]) -> None:
    """update_state each batch the reducer accepts; the thread must read as the fold."""
    config = {"configurable": {"thread_id": thread_id}}
    state: list[Message] = []
    for batch in history:
        try:
            state = add_messages(copy.deepcopy(state), copy.deepcopy(batch))
        except ValueError:  # removing what is not there: refused, and not sent
            continue
        config = graph.update_state(config, {"messages": copy.deepcopy(batch)},
                                    as_node="talk")
        assert view(graph.get_state(config).values["messages"]) == view(state)
    last = {"configurable": {"thread_id": thread_id}}
    assert view(graph.get_state(last).values.get("messages", [])) == view(state)


histories = st.lists(batches, min_size=1, max_size=12)
REGRESSION = [[AIMessage("ok", id="m1")],  # replaced by a message equal but for metadata:
              [AIMessage("ok", id="m1", response_metadata={"model": "a"})]]  # was not stored


@budget(40)
@given(histories, st.integers(1, 4))
@example(REGRESSION, 4)
def test_fold_through_memory(history: list[list[Message]], snapshot_every: int) -> None:
    fold_through(graph_on(MemorySaver(snapshot_every=snapshot_every)), "t", history)


@budget(15)
@given(histories)
@example(REGRESSION)
def test_fold_through_sqlite(history: list[list[Message]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        saver = stack.enter_context(SqliteSaver.from_conn_string(f"{tmp}/r.db",
                                                                 snapshot_every=3))
        fold_through(graph_on(saver), "t", history)


@pytest.fixture(scope="module")
def pg_saver() -> Iterator[Any]:
    cls = require("postgres")
    with cls.from_conn_string(PG_URL, snapshot_every=3) as saver:
        yield saver


@budget(6)
@given(histories)
@example(REGRESSION)
def test_fold_through_postgres(pg_saver: Any, history: list[list[Message]]) -> None:
    thread_id = f"prop-reducers-{uuid.uuid4().hex[:12]}"
    try:
        fold_through(graph_on(pg_saver), thread_id, history)
    finally:
        pg_saver.delete_thread(thread_id)
