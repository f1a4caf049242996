"""The durable usage ledger: one contract on memory, SQLite and PostgreSQL, then the engine.

Every store test runs on the three backends against the same records and the same expected
answers, so the backends agree with each other as well as with the documented rules (one
test also compares their answers directly). PostgreSQL tests work in a schema of their own,
dropped afterwards: the ledger is shared by every thread, so a shared schema would mix other
tests' rows into the totals. Without a server they skip, except under CI=true, where they
fail (store_backends.require).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from store_backends import PG_URL, require

from waypoint import START, Budget, BudgetExceeded, MessagesState, StateGraph
from waypoint.checkpoint import Checkpoint, MemorySaver, SqliteSaver
from waypoint.checkpoint.base import make_config
from waypoint.checkpoint.fencing import Fence, fenced
from waypoint.checkpoint.ids import new_checkpoint_id
from waypoint.checkpoint.usage_ledger import DIMENSIONS, FILTERS, UsageGroup
from waypoint.errors import FencedOut
from waypoint.models import PriceBook, Reply, ScriptedModel
from waypoint.tools import ToolNode, tool, tools_condition
from waypoint.usage import Usage, UsageRecord

BACKENDS = ("memory", "sqlite", "postgres")

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC; the next day starts at T0 + 6400
D1, D2 = "2023-11-14", "2023-11-15"


class Where:
    """Where one test's ledger lives; `open()` gives a store on it (memory: the same one,
    since a MemorySaver cannot be reopened)."""

    def __init__(self, kind: str, url: str | None, schema: str | None) -> None:
        self.kind, self.url, self.schema = kind, url, schema
        self._memory = MemorySaver() if kind == "memory" else None

    @contextlib.contextmanager
    def open(self) -> Iterator[Any]:
        if self._memory is not None:
            yield self._memory
        elif self.kind == "sqlite":
            with SqliteSaver.from_conn_string(self.url) as store:
                yield store
        else:
            from waypoint.checkpoint.postgres import PostgresSaver

            with PostgresSaver.from_conn_string(self.url, schema=self.schema) as store:
                yield store


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.contextmanager
def _where(kind: str, tmp_path: Any) -> Iterator[Where]:
    require(kind)
    if kind != "postgres":
        yield Where(kind, str(tmp_path / f"{kind}.db"), None)
        return
    schema = f"wp_usage_{uuid.uuid4().hex[:10]}"
    try:
        yield Where(kind, PG_URL, schema)
    finally:
        _drop_schema(schema)


@pytest.fixture(params=BACKENDS)
def where(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Where]:
    with _where(request.param, tmp_path) as place:
        yield place


@pytest.fixture
def store(where: Where) -> Iterator[Any]:
    with where.open() as opened:
        yield opened


def _record(name: str, tokens: tuple[int, int], cost: float | None, latency: float, at: float,
            thread: str | None, run: str | None, node: str | None, tenant: str | None,
            user: str | None, assistant: str | None, *, kind: str = "model",
            outcome: str = "ok", cached: bool = False) -> UsageRecord:
    return UsageRecord(name, Usage(*tokens), cost, latency, thread, run, node, cached, at,
                       kind, outcome, "", tenant, user, assistant)


# Costs and latencies are binary fractions: every backend sums them exactly.
RECORDS = [
    _record("gpt-a", (100, 10), 0.5, 0.5, T0, "th1", "r1", "agent", "acme", "u1", "a1"),
    _record("gpt-a", (200, 20), 0.25, 0.25, T0 + 10, "th1", "r1", "agent", "acme", "u1", "a1",
            cached=True),
    _record("search", (0, 0), 0.125, 0.125, T0 + 20, "th1", "r1", "tools", "acme", "u1", "a1",
            kind="tool"),
    _record("search", (0, 0), 0.125, 0.125, T0 + 30, "th1", "r1", "tools", "acme", "u1", "a1",
            kind="tool", outcome="error"),
    _record("gpt-b", (50, 5), None, 0.5, T0 + 7000, "th2", "r2", "agent", "acme", "u2", "a1"),
    _record("gpt-a", (10, 1), 1.0, 0.25, T0 + 8000, "th3", "r3", "writer", "globex", "u3",
            "a2", outcome="error"),
    _record("fetch", (0, 0), None, 0.25, T0 + 9000, "th3", "r3", "tools", "globex", "u3", "a2",
            kind="tool"),
    _record("gpt-b", (1, 1), 0.0, 0.0, T0 + 100, None, None, None, None, None, None),
]

# For each dimension: the groups in the documented order, as (value, calls, cost_usd).
EXPECTED: dict[str, list[tuple[Any, int, float | None]]] = {
    "run_id": [("r1", 4, 1.0), (None, 1, 0.0), ("r3", 2, None), ("r2", 1, None)],
    "thread_id": [("th1", 4, 1.0), (None, 1, 0.0), ("th3", 2, None), ("th2", 1, None)],
    "node": [("writer", 1, 1.0), (None, 1, 0.0), ("agent", 3, None), ("tools", 3, None)],
    "model": [("gpt-a", 3, 1.75), (None, 3, None), ("gpt-b", 2, None)],
    "tool": [("search", 2, 0.25), (None, 5, None), ("fetch", 1, None)],
    "kind": [("model", 5, None), ("tool", 3, None)],
    "outcome": [("error", 2, 1.125), ("ok", 6, None)],
    "tenant": [(None, 1, 0.0), ("acme", 5, None), ("globex", 2, None)],
    "user_id": [("u1", 4, 1.0), (None, 1, 0.0), ("u3", 2, None), ("u2", 1, None)],
    "assistant_id": [(None, 1, 0.0), ("a1", 5, None), ("a2", 2, None)],
    "day": [(D1, 5, 1.0), (D2, 3, None)],
}


def _summary(groups: list[UsageGroup], dim: str) -> list[tuple[Any, int, float | None]]:
    return [(g.key[dim], g.calls, g.cost_usd) for g in groups]


# ---------------------------------------------------------------- totals


def test_expectations_cover_every_dimension() -> None:
    assert set(EXPECTED) == set(DIMENSIONS)
    assert set(FILTERS) == set(DIMENSIONS) - {"day"}


def test_the_grand_total(store: Any) -> None:
    store.put_usage(RECORDS)
    (total,) = store.usage_totals()
    assert total == UsageGroup({}, calls=8, input_tokens=361, output_tokens=37, cost_usd=None,
                               unpriced_calls=2, errors=2, cached_calls=1, latency_s=2.0)
    assert total.total_tokens == 398


def test_a_grand_total_over_nothing_is_zero(store: Any) -> None:
    assert store.usage_totals() == [UsageGroup({}, 0, 0, 0, 0.0, 0, 0, 0, 0.0)]
    assert store.usage_totals(["model"]) == []
    assert store.usage_records() == []


@pytest.mark.parametrize("dim", list(EXPECTED))
def test_totals_by_each_dimension(store: Any, dim: str) -> None:
    store.put_usage(RECORDS)
    groups = store.usage_totals([dim])
    assert _summary(groups, dim) == EXPECTED[dim]
    assert sum(g.calls for g in groups) == 8
    assert all(set(g.key) == {dim} for g in groups)


def test_every_sum_of_a_group(store: Any) -> None:
    store.put_usage(RECORDS)
    by_run = {g.key["run_id"]: g for g in store.usage_totals(["run_id"])}
    assert by_run["r1"] == UsageGroup({"run_id": "r1"}, calls=4, input_tokens=300,
                                      output_tokens=30, cost_usd=1.0, unpriced_calls=0,
                                      errors=1, cached_calls=1, latency_s=1.0)
    assert by_run["r3"] == UsageGroup({"run_id": "r3"}, calls=2, input_tokens=10,
                                      output_tokens=1, cost_usd=None, unpriced_calls=1,
                                      errors=1, cached_calls=0, latency_s=0.5)


def test_an_unknown_price_makes_the_group_cost_unknown(store: Any) -> None:
    store.put_usage(RECORDS)
    (gpt_b,) = store.usage_totals(["model"], model="gpt-b")
    assert gpt_b.cost_usd is None and gpt_b.unpriced_calls == 1 and gpt_b.calls == 2
    (free,) = store.usage_totals(["model"], model="gpt-b", since=T0 + 100, until=T0 + 101)
    assert free.cost_usd == 0.0 and free.unpriced_calls == 0  # a known price of 0 is 0


def test_tool_rows_have_a_tool_and_no_model(store: Any) -> None:
    store.put_usage(RECORDS)
    groups = store.usage_totals(["kind", "model", "tool"], kind="tool")
    assert [(g.key, g.calls, g.cost_usd, g.errors) for g in groups] == [
        ({"kind": "tool", "model": None, "tool": "search"}, 2, 0.25, 1),
        ({"kind": "tool", "model": None, "tool": "fetch"}, 1, None, 0)]
    assert all(g.input_tokens == g.output_tokens == 0 for g in groups)


def test_errors_are_counted_by_outcome(store: Any) -> None:
    store.put_usage(RECORDS)
    (errors,) = store.usage_totals(outcome="error")
    assert (errors.calls, errors.errors, errors.cost_usd) == (2, 2, 1.125)
    assert [(g.key["node"], g.errors) for g in store.usage_totals(["node"])] == [
        ("writer", 1), (None, 0), ("agent", 0), ("tools", 1)]


def test_grouping_by_day_orders_days_first(store: Any) -> None:
    store.put_usage(RECORDS)
    groups = store.usage_totals(["day", "kind"])
    assert [(g.key["day"], g.key["kind"], g.calls, g.cost_usd) for g in groups] == [
        (D1, "model", 3, 0.75), (D1, "tool", 2, 0.25),
        (D2, "model", 2, None), (D2, "tool", 1, None)]
    # the day is the UTC date of `at`: the last second of a day and the first of the next
    store.put_usage([_record("x", (1, 1), 0.0, 0.0, T0 + 6399.5, None, None, None, None, None,
                             None),
                     _record("x", (1, 1), 0.0, 0.0, T0 + 6400, None, None, None, None, None,
                             None)])
    assert [g.key["day"] for g in store.usage_totals(["day"], model="x")] == [D1, D2]


def test_a_dimension_asked_twice_is_one_key(store: Any) -> None:
    store.put_usage(RECORDS)
    assert store.usage_totals(["kind", "kind"]) == store.usage_totals(["kind"])


# ---------------------------------------------------------------- filters and windows


@pytest.mark.parametrize(("filters", "calls"), [
    ({"tenant": "acme"}, 5),
    ({"tenant": "acme", "kind": "model"}, 3),
    ({"model": "gpt-a"}, 3),
    ({"model": "search"}, 0),  # a tool's name is not a model
    ({"tool": "search"}, 2),
    ({"kind": "tool"}, 3),
    ({"outcome": "error"}, 2),
    ({"run_id": "r2"}, 1),
    ({"thread_id": "th3"}, 2),
    ({"node": "tools"}, 3),
    ({"user_id": "u1"}, 4),
    ({"assistant_id": "a2"}, 2),
    ({"tenant": None, "model": None}, 8),  # None: not filtered
    ({"tenant": "nobody"}, 0),
])
def test_filters(store: Any, filters: dict[str, Any], calls: int) -> None:
    store.put_usage(RECORDS)
    (total,) = store.usage_totals(**filters)
    assert total.calls == calls
    assert len(store.usage_records(**filters)) == calls


def test_since_is_inclusive_and_until_exclusive(store: Any) -> None:
    store.put_usage(RECORDS)
    assert store.usage_totals(since=T0 + 20)[0].calls == 6
    assert store.usage_totals(until=T0 + 20)[0].calls == 2
    window = store.usage_records(since=T0 + 7000, until=T0 + 9000)
    assert [r.at for r in window] == [T0 + 8000, T0 + 7000]
    assert store.usage_totals(["tenant"], since=T0 + 7000) == [
        UsageGroup({"tenant": "globex"}, 2, 10, 1, None, 1, 1, 0, 0.5),
        UsageGroup({"tenant": "acme"}, 1, 50, 5, None, 1, 0, 0, 0.5)]


# ---------------------------------------------------------------- records


def test_records_come_back_whole_newest_first(store: Any) -> None:
    store.put_usage(RECORDS)
    assert store.usage_records() == sorted(RECORDS, key=lambda r: r.at, reverse=True)


def test_limit_and_offset_page_through_records(store: Any) -> None:
    store.put_usage(RECORDS)
    newest = sorted(RECORDS, key=lambda r: r.at, reverse=True)
    assert store.usage_records(limit=3) == newest[:3]
    assert store.usage_records(limit=3, offset=2) == newest[2:5]
    assert store.usage_records(limit=3, offset=7) == newest[7:]
    assert store.usage_records(limit=0) == []
    assert store.usage_records(kind="tool", limit=1, offset=1) == [RECORDS[3]]


def test_records_of_the_same_moment_come_back_latest_written_first(store: Any) -> None:
    first, second = (_record(name, (1, 1), 0.0, 0.0, T0, "t", "r", "n", None, None, None)
                     for name in ("first", "second"))
    store.put_usage([first, second])
    assert [r.model for r in store.usage_records()] == ["second", "first"]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("call", [
    lambda s: s.usage_totals(["modle"]),
    lambda s: s.usage_totals("tenant_id"),
    lambda s: s.usage_totals(tenant_id="acme"),
    lambda s: s.usage_records(modle="gpt-a"),
])
def test_an_unknown_name_is_refused_naming_it_and_the_valid_ones(store: Any, call: Any) -> None:
    with pytest.raises(ValueError, match=r"(modle|tenant_id).*valid: run_id, thread_id, node"):
        call(store)


def test_day_is_for_grouping_only(store: Any) -> None:
    with pytest.raises(ValueError, match=r"'day'.*group_by only"):
        store.usage_totals(day=D1)


@pytest.mark.parametrize(("call", "message"), [
    (lambda s: s.usage_records(limit=-1), "limit"),
    (lambda s: s.usage_records(offset=1.5), "offset"),
    (lambda s: s.usage_totals(since="yesterday"), "since"),
    (lambda s: s.usage_totals(until=float("nan")), "until"),
    (lambda s: s.usage_totals(tenant=7), "tenant"),
    (lambda s: s.prune_usage(None), "before"),
])
def test_bad_arguments_are_refused(store: Any, call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(store)


@pytest.mark.parametrize(("bad", "message"), [
    ("not a record", r"records\[1\] must be a UsageRecord"),
    (_record("m", (-1, 0), 0.0, 0.0, T0, None, None, None, None, None, None),
     r"records\[1\]\.usage\.input_tokens"),
    (_record("m", (1, 0), float("inf"), 0.0, T0, None, None, None, None, None, None),
     r"records\[1\]\.cost_usd"),
    (_record("m", (1, 0), 0.0, 0.0, T0, None, None, None, None, None, None, kind="tap"),
     r"records\[1\]\.kind"),
    (_record("m", (1, 0), 0.0, 0.0, T0, None, None, None, None, None, None, outcome="meh"),
     r"records\[1\]\.outcome"),
    (_record("m", (1, 0), 0.0, 0.0, T0, 42, None, None, None, None, None),  # type: ignore[arg-type]
     r"records\[1\]\.thread_id"),
])
def test_a_bad_record_fails_the_whole_batch(store: Any, bad: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.put_usage([RECORDS[0], bad])
    assert store.usage_totals()[0].calls == 0


def test_an_empty_batch_is_a_no_op(store: Any) -> None:
    store.put_usage([])
    asyncio.run(store.aput_usage(()))
    assert store.usage_totals()[0].calls == 0


# ---------------------------------------------------------------- durability and retention


def test_records_survive_a_restart(where: Where) -> None:
    if where.kind == "memory":
        pytest.skip("a MemorySaver ends with its process")
    with where.open() as first:
        first.put_usage(RECORDS)
    with where.open() as second:
        assert second.usage_records() == sorted(RECORDS, key=lambda r: r.at, reverse=True)
        assert _summary(second.usage_totals(["model"]), "model") == EXPECTED["model"]


def _checkpoint(store: Any, thread_id: str) -> None:
    store.put(make_config(thread_id, "", None),
              Checkpoint(new_checkpoint_id(), 0, "ts", {"a": 1}, updated=("a",)), {},
              parent_id=None, expected_head=None)


def test_deleting_or_sweeping_a_thread_keeps_its_usage(store: Any) -> None:
    store.put_usage(RECORDS)
    _checkpoint(store, "th1")
    _checkpoint(store, "th3")
    store.delete_thread("th1")
    assert store.get_tuple(make_config("th1", "", None)) is None
    assert "th3" in store.sweep(0, now=T0 * 2)  # an idle thread: swept
    assert store.usage_totals(thread_id="th1")[0].calls == 4
    assert store.usage_totals(thread_id="th3")[0].calls == 2
    assert store.usage_totals()[0].calls == 8


def test_prune_usage_deletes_only_older_rows(store: Any) -> None:
    store.put_usage(RECORDS)
    assert store.prune_usage(T0 + 7000) == 5
    assert [r.at for r in store.usage_records()] == [T0 + 9000, T0 + 8000, T0 + 7000]
    assert store.prune_usage(T0 + 7000) == 0
    assert store.prune_usage(T0 + 10_000) == 3
    assert store.usage_totals()[0].calls == 0


def test_the_async_twins(store: Any) -> None:
    async def scenario() -> tuple[Any, ...]:
        await store.aput_usage(RECORDS)
        records = await store.ausage_records(kind="tool", limit=2)
        groups = await store.ausage_totals(["day"], tenant="acme")
        with pytest.raises(ValueError, match="modle"):
            await store.ausage_totals(["modle"])
        return records, groups, await store.aprune_usage(T0 + 25)

    records, groups, pruned = asyncio.run(scenario())
    assert records == [RECORDS[6], RECORDS[3]]
    assert [(g.key["day"], g.calls) for g in groups] == [(D1, 4), (D2, 1)]
    assert pruned == 3


def test_usage_is_written_even_when_the_writer_is_fenced_out(where: Where,
                                                              tmp_path: Any) -> None:
    """Spend of a worker that lost its lease is still spend: put_usage is never fenced."""
    if where.kind == "memory":
        pytest.skip("a MemorySaver has no fencing")
    table = f"wp_leases_{uuid.uuid4().hex[:10]}"
    run_sql = _lease_sql(where)
    run_sql(f'CREATE TABLE "{table}" (run_id TEXT PRIMARY KEY, epoch INTEGER)')
    try:
        run_sql(f"INSERT INTO \"{table}\" VALUES ('run-1', 2)")  # taken over: epoch 2
        stale = Fence(table, "run_id", "run-1", "epoch", 1)
        with where.open() as store, fenced(stale):
            with pytest.raises(FencedOut):
                _checkpoint(store, "fenced-thread")
            store.put_usage(RECORDS[:2])
            asyncio.run(store.aput_usage(RECORDS[2:3]))
            assert store.usage_totals()[0].calls == 3
    finally:
        run_sql(f'DROP TABLE IF EXISTS "{table}"')


def _lease_sql(where: Where) -> Any:
    def run(statement: str) -> None:
        if where.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(where.url)) as conn, conn:
                conn.execute(statement)
        else:
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(statement)

    return run


def test_every_backend_gives_the_same_answers(tmp_path: Any) -> None:
    """The same records, every dimension and a few combinations, on all three at once."""
    queries: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        ((dim,), {}) for dim in DIMENSIONS]
    queries += [(("day", "model", "tool"), {}), (("tenant", "user_id", "assistant_id"), {}),
                (("node", "outcome"), {"since": T0 + 10}), ((), {"kind": "model"}),
                (("run_id",), {"until": T0 + 8000, "tenant": "acme"})]
    answers = []
    with contextlib.ExitStack() as stack:
        for kind in BACKENDS:
            place = stack.enter_context(_where(kind, tmp_path))
            store = stack.enter_context(place.open())
            store.put_usage(RECORDS[:4])
            store.put_usage(RECORDS[4:])
            answers.append(([store.usage_totals(dims, **f) for dims, f in queries],
                            store.usage_records(limit=5, offset=1, tenant="acme")))
    assert answers[0] == answers[1] == answers[2]


# ---------------------------------------------------------------- the engine writes it


@tool(cost_estimate=0.01)
def lookup(city: str) -> str:
    """Look up the weather of a city."""
    return f"sunny in {city}"


# USD per million tokens: input $1, output $2.
PRICES = PriceBook({"paid": (1.0, 2.0)})
METADATA = {"tenant": "t1", "user_id": "u1", "assistant_id": "a1"}


def _agent(saver: Any, replies: list[Reply], tools: list[Any] | None = None,
           budget: Budget | None = None) -> Any:
    tools = tools or [lookup]
    model = ScriptedModel(replies, model="paid", prices=PRICES).bind_tools(tools)

    def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], max_tokens=100)]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=saver, budget=budget)


def _call(city: str, call_id: str, tokens: tuple[int, int] = (100, 20)) -> Reply:
    return Reply(tool_calls=[{"name": "lookup", "args": {"city": city}, "id": call_id,
                              "type": "tool_call"}], usage=Usage(*tokens))


@pytest.mark.parametrize("mode", ["invoke", "ainvoke"])
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_run_leaves_its_model_and_tool_calls_in_the_ledger(kind: str, mode: str,
                                                             tmp_path: Any) -> None:
    thread = f"usage-{uuid.uuid4().hex[:8]}"
    config = {"configurable": {"thread_id": thread}, "run_id": f"run-{thread}",
              "metadata": METADATA}
    with _where(kind, tmp_path) as place:
        with place.open() as saver:
            graph = _agent(saver, [_call("Oslo", "c1"), Reply("done", usage=Usage(50, 10))])
            if mode == "invoke":
                result = graph.invoke({"messages": [("user", "weather?")]}, config)
            else:
                result = asyncio.run(graph.ainvoke({"messages": [("user", "weather?")]},
                                                   config))
            assert result["messages"][-1].content == "done"
        with place.open() as reopened:  # a new store object: what a restart reads
            records = reopened.usage_records(thread_id=thread)
            by_kind = reopened.usage_totals(["kind"], run_id=f"run-{thread}")
    assert [(r.kind, r.model, r.node) for r in reversed(records)] == [
        ("model", "paid", "agent"), ("tool", "lookup", "tools"), ("model", "paid", "agent")]
    for r in records:
        assert (r.thread_id, r.run_id, r.tenant, r.user_id, r.assistant_id, r.outcome) == (
            thread, f"run-{thread}", "t1", "u1", "a1", "ok")
        assert r.checkpoint_ns == "" and not r.cached and r.latency_s >= 0
    first, tool_row, last = reversed(records)
    assert first.usage == Usage(100, 20)
    assert first.cost_usd == pytest.approx((100 * 1.0 + 20 * 2.0) / 1e6)
    assert last.usage == Usage(50, 10)
    assert last.cost_usd == pytest.approx((50 * 1.0 + 10 * 2.0) / 1e6)
    assert tool_row.usage == Usage() and tool_row.cost_usd == 0.01
    model_total, tool_total = sorted(by_kind, key=lambda g: g.key["kind"])
    assert (model_total.calls, model_total.input_tokens, model_total.output_tokens) == (
        2, 150, 30)
    assert model_total.cost_usd == pytest.approx(210 / 1e6)
    assert (tool_total.calls, tool_total.cost_usd) == (1, 0.01)


def test_a_failing_tool_is_recorded_as_an_error() -> None:
    @tool(cost_estimate=0.5)
    def broken(city: str) -> str:
        """Always fails."""
        raise RuntimeError("down")

    saver = MemorySaver()
    graph = _agent(saver, [Reply(tool_calls=[{"name": "broken", "args": {"city": "x"},
                                              "id": "c1", "type": "tool_call"}]),
                           Reply("sorry")], tools=[broken])
    graph.invoke({"messages": [("user", "?")]}, {"configurable": {"thread_id": "t"}})
    (row,) = saver.usage_records(kind="tool")
    assert (row.model, row.outcome, row.cost_usd) == ("broken", "error", 0.5)
    (errors,) = saver.usage_totals(["tool"], kind="tool")
    assert (errors.key, errors.errors, errors.cost_usd) == ({"tool": "broken"}, 1, 0.5)


def test_a_tools_cost_estimate_counts_toward_the_cost_budget() -> None:
    ran: list[str] = []

    @tool(cost_estimate=0.01)
    def paid_lookup(city: str) -> str:
        """Look up a city (one cent a call)."""
        ran.append(city)
        return f"sunny in {city}"

    def replies() -> list[Reply]:
        calls = [Reply(tool_calls=[{"name": "paid_lookup", "args": {"city": c}, "id": f"c{i}",
                                    "type": "tool_call"}], usage=Usage(1, 1))
                 for i, c in enumerate(("Oslo", "Rome"))]
        return [*calls, Reply("done", usage=Usage(1, 1))]

    # Two one-cent calls fit in 2.5 cents (the model's own calls cost micro-dollars).
    saver = MemorySaver()
    graph = _agent(saver, replies(), tools=[paid_lookup], budget=Budget(max_cost_usd=0.025))
    done = graph.invoke({"messages": [("user", "?")]}, {"configurable": {"thread_id": "ok"}})
    assert done["messages"][-1].content == "done" and ran == ["Oslo", "Rome"]
    assert saver.usage_totals(thread_id="ok", kind="tool")[0].cost_usd == pytest.approx(0.02)

    # With 1.5 cents, the second call is refused before its tool runs.
    ran.clear()
    saver = MemorySaver()
    graph = _agent(saver, replies(), tools=[paid_lookup],
                   budget=Budget(max_cost_usd=0.015, on_exceed="fail"))
    with pytest.raises(BudgetExceeded, match="max_cost_usd"):
        graph.invoke({"messages": [("user", "?")]}, {"configurable": {"thread_id": "over"}})
    assert ran == ["Oslo"]
    (spent,) = saver.usage_totals(["tool"], kind="tool")
    assert (spent.key, spent.calls, spent.cost_usd) == ({"tool": "paid_lookup"}, 1, 0.01)


def test_a_graph_without_a_checkpointer_records_nothing_and_still_runs() -> None:
    from waypoint.engine.context import current_runtime

    held: list[list[Any]] = []

    @tool(cost_estimate=0.01)
    def lookup(city: str) -> str:
        """Look up the weather of a city; notes what the run holds for its ledger."""
        held.append(list(current_runtime().loop.usage))  # after the first model call
        return f"sunny in {city}"

    graph = _agent(None, [_call("Oslo", "c1"), Reply("done")], tools=[lookup])
    assert graph.invoke({"messages": [("user", "?")]})["messages"][-1].content == "done"
    # Nothing is kept for a ledger that does not exist: with no commit to write them, the
    # first model call's row would still be held here when the tool runs.
    assert held == [[]]
    # The same calls with a checkpointer are in its ledger.
    saver = MemorySaver()
    graph = _agent(saver, [_call("Oslo", "c1"), Reply("done")], tools=[lookup])
    graph.invoke({"messages": [("user", "?")]}, {"configurable": {"thread_id": "kept"}})
    assert [r.kind for r in reversed(saver.usage_records())] == ["model", "tool", "model"]


def test_usage_of_a_run_on_memory_matches_its_messages() -> None:
    saver = MemorySaver()
    graph = _agent(saver, [_call("Oslo", "c1", (7, 3)), Reply("done", usage=Usage(5, 2))])
    result = graph.invoke({"messages": [("user", "?")]},
                          {"configurable": {"thread_id": "m"}, "metadata": METADATA})
    used = [m.usage_metadata for m in result["messages"] if m.type == "ai"]
    (total,) = saver.usage_totals(kind="model", tenant="t1")
    assert (total.input_tokens, total.output_tokens) == (
        sum(u["input_tokens"] for u in used), sum(u["output_tokens"] for u in used))
