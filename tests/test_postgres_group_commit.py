"""PostgresSaver group commit: concurrent puts on the head share one transaction.

Each test works in its own schema, dropped afterwards. Without a server the tests skip,
except under CI=true, where they fail (store_backends.require). Batches are forced with the
saver's `_before_batch` hook, which holds a leader until the puts a test wants are queued;
nothing here depends on timings.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

import pytest
from store_backends import PG_URL, require

from waypoint import END, START, StateGraph
from waypoint.checkpoint.base import Checkpoint, make_config
from waypoint.checkpoint.ids import new_checkpoint_id
from waypoint.errors import CheckpointConflict

HOLD_SECONDS = 30.0  # a deadline for a broken test, never a wait a passing test sees


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh schema name; the schema is dropped when the test ends."""
    require("postgres")
    import psycopg

    name = f"wp_gc_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg() -> Any:
    """The module under test (imported only once PostgreSQL is known to be usable)."""
    require("postgres")
    from waypoint.checkpoint import postgres

    return postgres


@pytest.fixture
def saver(schema: str, pg: Any) -> Iterator[Any]:
    with pg.PostgresSaver.from_conn_string(PG_URL, schema=schema) as store:
        yield store


def _checkpoint(step: int, **values: Any) -> Checkpoint:
    return Checkpoint(new_checkpoint_id(), step, f"ts{step}", values, updated=tuple(values))


def _ids(saver: Any, thread_id: str) -> list[str]:
    return [t.checkpoint.id for t in saver.list(make_config(thread_id, "", None))]


def _root(saver: Any, thread_id: str) -> Checkpoint:
    root = _checkpoint(0, n=0)
    saver.put(make_config(thread_id, "", None), root, {}, parent_id=None, expected_head=None)
    return root


def _hold_first_batch(saver: Any, pg: Any, monkeypatch: pytest.MonkeyPatch, queued: int
                      ) -> None:
    """Make the next batch hold exactly the leader's put plus `queued` others: one leader
    at a time, held until that many puts wait behind it."""
    monkeypatch.setattr(pg, "_GROUP_LEADERS", 1)
    held = threading.Event()

    def before_batch() -> None:
        if held.is_set():
            return
        held.set()
        deadline = time.monotonic() + HOLD_SECONDS
        while len(saver._group.queue) < queued:
            assert time.monotonic() < deadline, "the puts never queued"
            time.sleep(0.001)

    saver._before_batch = before_batch


def _in_threads(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call in its own thread, started together; results or exceptions."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    workers = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


# ------------------------------------------------ many threads


class State(TypedDict):
    x: int


def _chain_graph(checkpointer: Any, nodes: int = 5) -> Any:
    g = StateGraph(State)
    names = [f"n{i}" for i in range(nodes)]
    for name in names:
        g.add_node(name, lambda state: {"x": state["x"] + 1})
    g.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        g.add_edge(a, b)
    g.add_edge(names[-1], END)
    return g.compile(checkpointer=checkpointer)


def test_fifty_threads_commit_every_step_and_share_transactions(saver: Any) -> None:
    graph, threads = _chain_graph(saver), 50
    configs = [{"configurable": {"thread_id": f"run-{i}"}} for i in range(threads)]
    results = _in_threads([lambda c=c: graph.invoke({"x": 0}, c) for c in configs])
    assert results == [{"x": 5}] * threads
    for config in configs:
        history = list(saver.list(config))
        assert [t.checkpoint.values for t in history] == [{"x": n} for n in range(5, -1, -1)] + [{}]
        assert [t.metadata["step"] for t in history] == list(range(5, -2, -1))
        for child, parent in itertools.pairwise(history):  # one linear chain
            assert child.parent_config["configurable"]["checkpoint_id"] == parent.checkpoint.id
        assert history[-1].parent_config is None
        assert saver.head_id(config["configurable"]["thread_id"]) == history[0].checkpoint.id
    stats = saver.stats
    assert stats.puts == threads * 7
    assert stats.largest > 1 and stats.transactions < stats.puts  # commits were shared
    assert stats.fallbacks == 0


def test_a_lone_put_is_its_own_transaction(saver: Any) -> None:
    root = _root(saver, "lone")
    assert saver.stats == type(saver.stats)(transactions=1, puts=1, largest=1)
    assert _ids(saver, "lone") == [root.id]


# ------------------------------------------------ one batch, separate outcomes


def test_a_stale_head_fails_only_its_own_put_in_a_batch(saver: Any, pg: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    roots = {f"t{i}": _root(saver, f"t{i}") for i in range(6)}
    moved = _checkpoint(1, n=1)  # t0 moves on, so a writer still expecting its root is stale
    saver.put(make_config("t0", "", None), moved, {}, parent_id=roots["t0"].id,
              expected_head=roots["t0"].id)
    before = saver.stats
    children = {t: _checkpoint(1, n=1) for t in roots}
    children["new"] = _checkpoint(0, n=0)

    def put(thread_id: str) -> Any:
        root = roots.get(thread_id)
        expected = None if thread_id in ("new", "t5") else root.id  # t5: claims an existing
        return saver.put(make_config(thread_id, "", None), children[thread_id], {},
                         parent_id=expected, expected_head=expected)

    _hold_first_batch(saver, pg, monkeypatch, queued=len(children) - 1)
    results = dict(zip(children, _in_threads([lambda t=t: put(t) for t in children]),
                       strict=True))

    for thread_id in ("t0", "t5"):
        conflict = results[thread_id]
        assert isinstance(conflict, CheckpointConflict), conflict
        assert conflict.thread_id == thread_id
        assert (conflict.expected, conflict.actual) == (
            (roots["t0"].id, moved.id) if thread_id == "t0" else (None, roots["t5"].id))
    assert _ids(saver, "t0") == [moved.id, roots["t0"].id]  # the stale put wrote nothing
    assert _ids(saver, "t5") == [roots["t5"].id]
    for thread_id in ("t1", "t2", "t3", "t4", "new"):
        assert results[thread_id]["configurable"]["checkpoint_id"] == children[thread_id].id
        assert saver.head_id(thread_id) == children[thread_id].id
        assert saver.get_tuple(make_config(thread_id, "", None)).checkpoint.values == {
            "n": children[thread_id].values["n"]}
    after = saver.stats
    assert after.transactions - before.transactions == 1  # all seven in one transaction
    assert after.largest == len(children) and after.fallbacks == 0


def test_two_puts_on_one_head_never_share_a_batch(saver: Any, pg: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = _root(saver, "race")
    others = [_root(saver, f"other-{i}") for i in range(3)]
    rivals = [_checkpoint(1, who=i) for i in range(2)]
    before = saver.stats
    calls = [lambda c=c: saver.put(make_config("race", "", None), c, {}, parent_id=root.id,
                                   expected_head=root.id) for c in rivals]
    calls += [lambda i=i, r=r: saver.put(make_config(f"other-{i}", "", None), _checkpoint(1),
                                         {}, parent_id=r.id, expected_head=r.id)
              for i, r in enumerate(others)]
    _hold_first_batch(saver, pg, monkeypatch, queued=len(calls) - 1)
    results = _in_threads(calls)

    won = [r for r in results[:2] if not isinstance(r, Exception)]
    lost = [r for r in results[:2] if isinstance(r, Exception)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], CheckpointConflict)
    winner = won[0]["configurable"]["checkpoint_id"]
    assert (lost[0].expected, lost[0].actual) == (root.id, winner)
    assert _ids(saver, "race") == [winner, root.id]
    assert all(not isinstance(r, Exception) for r in results[2:])
    after = saver.stats
    # the later rival waited for the next transaction instead of joining the first
    assert after.transactions - before.transactions == 2
    assert after.puts - before.puts == len(calls) and after.largest == len(calls) - 1


@pytest.mark.parametrize("bad", ["server", "client"])
def test_a_bad_put_in_a_batch_fails_only_itself(saver: Any, pg: Any, bad: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared transaction fails (a value PostgreSQL rejects, or one psycopg cannot
    send); the batch is retried put by put, so only the bad put's caller sees the error."""
    import psycopg

    roots = {f"t{i}": _root(saver, f"t{i}") for i in range(5)}
    children = {t: _checkpoint(1, n=1) for t in roots}
    poison = children["t2"]  # sorted into the middle of the batch
    if bad == "server":
        poison.step = 2**63  # bigint out of range: the statement fails inside PostgreSQL
    else:
        poison.ts = "bad\x00ts"  # NUL in text: psycopg refuses it while sending the batch
    before = saver.stats
    calls = [lambda t=t: saver.put(make_config(t, "", None), children[t], {},
                                   parent_id=roots[t].id, expected_head=roots[t].id)
             for t in roots]
    _hold_first_batch(saver, pg, monkeypatch, queued=len(calls) - 1)
    results = dict(zip(roots, _in_threads(calls), strict=True))

    assert isinstance(results["t2"], psycopg.DataError), results["t2"]
    assert _ids(saver, "t2") == [roots["t2"].id]  # nothing written, head unchanged
    for thread_id in ("t0", "t1", "t3", "t4"):
        assert results[thread_id]["configurable"]["checkpoint_id"] == children[thread_id].id
        assert _ids(saver, thread_id) == [children[thread_id].id, roots[thread_id].id]
    after = saver.stats
    assert after.fallbacks - before.fallbacks == 1
    assert after.largest == len(calls)
    assert after.transactions - before.transactions == 1 + len(calls)  # the batch, then each


def test_a_batch_whose_fate_was_unknown_is_recognised_as_committed(saver: Any) -> None:
    """After a connection lost around COMMIT, a put is retried alone: finding its own
    record at the head means its batch did commit it, which is success, not a conflict."""
    root = _root(saver, "unsure")
    child = _checkpoint(1, n=1)
    config = make_config("unsure", "", None)
    entry = saver._prepare(config, child, {}, root.id, root.id)
    saver._commit_alone(entry)  # stands in for the batch that did commit
    assert entry.done
    retry = saver._prepare(config, child, {}, root.id, root.id)
    retry.ambiguous = True
    saver._commit_alone(retry)
    assert retry.done and retry.error is None
    certain = saver._prepare(config, child, {}, root.id, root.id)  # a batch known to fail
    saver._commit_alone(certain)
    assert isinstance(certain.error, CheckpointConflict)
    assert _ids(saver, "unsure") == [child.id, root.id]


def test_a_batch_on_a_pool_passed_in(schema: str, pg: Any) -> None:
    """Connections not in autocommit: the batch is committed before anyone is told."""
    import psycopg
    from psycopg_pool import ConnectionPool

    with ConnectionPool(PG_URL, min_size=1, max_size=2, open=True) as pool:
        saver = pg.PostgresSaver(pool, schema=schema)
        roots = [_root(saver, f"p{i}") for i in range(4)]
        entries = [saver._prepare(make_config(f"p{i}", "", None), _checkpoint(1), {}, r.id,
                                  r.id) for i, r in enumerate(roots[:3])]
        entries.append(saver._prepare(make_config("p3", "", None), _checkpoint(1), {},
                                      None, None))  # p3 exists: a stale claim
        entries.reverse()  # arrival order differs from lock order
        saver._commit_group(entries)
        assert [e.args["t"] for e in entries if e.done] == ["p0", "p1", "p2"]
        stale = [e for e in entries if not e.done]
        assert [(e.args["t"], type(e.error)) for e in stale] == [("p3", CheckpointConflict)]
        assert stale[0].error.actual == roots[3].id
        with pool.connection() as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        saver.close()
    with psycopg.connect(PG_URL) as conn:  # visible to another connection: committed
        heads = conn.execute(f'SELECT thread_id, head FROM "{schema}".waypoint_threads '
                             "ORDER BY thread_id").fetchall()
    assert heads == [*((e.args["t"], e.args["id"]) for e in entries if e.done),
                     ("p3", roots[3].id)]


# ------------------------------------------------ async


async def test_async_tasks_share_transactions(schema: str, pg: Any) -> None:
    async with pg.PostgresSaver.from_conn_string(PG_URL, schema=schema) as saver:
        tasks, steps = 30, 4

        async def run(thread_id: str) -> None:
            head = None
            for step in range(steps):
                checkpoint = _checkpoint(step, n=step)
                await saver.aput(make_config(thread_id, "", None), checkpoint, {},
                                 parent_id=head, expected_head=head)
                head = checkpoint.id

        thread_ids = [f"a{i}" for i in range(tasks)]
        await asyncio.gather(*(run(t) for t in thread_ids))
        for thread_id in thread_ids:
            listed = [t async for t in saver.alist(make_config(thread_id, "", None))]
            assert [t.checkpoint.values for t in listed] == [{"n": n} for n in range(3, -1, -1)]
            for child, parent in itertools.pairwise(listed):
                assert child.parent_config["configurable"]["checkpoint_id"] == parent.checkpoint.id
        stats = saver.stats
        assert stats.puts == tasks * steps
        assert stats.largest > 1 and stats.transactions < stats.puts


async def test_async_stale_head_fails_only_its_own_put(schema: str, pg: Any) -> None:
    async with pg.PostgresSaver.from_conn_string(PG_URL, schema=schema) as saver:
        roots = {}
        for i in range(5):
            roots[f"t{i}"] = root = _checkpoint(0)
            await saver.aput(make_config(f"t{i}", "", None), root, {}, parent_id=None,
                             expected_head=None)
        queued = asyncio.Event()

        async def before_batch() -> None:  # hold the first leader until all five queued
            group = next(iter(saver._apools.values())).group
            while len(group.queue) < 5 and not queued.is_set():
                await asyncio.sleep(0)
            queued.set()

        saver._before_batch = before_batch
        before = saver.stats
        children = {t: _checkpoint(1) for t in roots}
        results = await asyncio.gather(*(
            saver.aput(make_config(t, "", None), children[t], {}, parent_id=roots[t].id,
                       expected_head=None if t == "t3" else roots[t].id)  # t3 is stale
            for t in roots), return_exceptions=True)
        assert isinstance(results[3], CheckpointConflict)
        assert results[3].actual == roots["t3"].id
        assert await saver.ahead_id("t3") == roots["t3"].id
        for i, thread_id in enumerate(roots):
            if thread_id != "t3":
                assert results[i]["configurable"]["checkpoint_id"] == children[thread_id].id
                assert await saver.ahead_id(thread_id) == children[thread_id].id
        after = saver.stats
        assert after.transactions - before.transactions == 1 and after.largest == 5


# ------------------------------------------------ switched off


def test_group_commit_off_commits_each_put_alone(schema: str, pg: Any) -> None:
    with pg.PostgresSaver.from_conn_string(PG_URL, schema=schema, group_commit=False) as saver:
        assert saver.group_commit is False
        graph, threads = _chain_graph(saver, 3), 10
        configs = [{"configurable": {"thread_id": f"off-{i}"}} for i in range(threads)]
        results = _in_threads([lambda c=c: graph.invoke({"x": 0}, c) for c in configs])
        assert results == [{"x": 3}] * threads
        for config in configs:
            assert [t.checkpoint.values for t in saver.list(config)] == [
                {"x": 3}, {"x": 2}, {"x": 1}, {"x": 0}, {}]
        root = _root(saver, "off-race")
        results = _in_threads([lambda c=c: saver.put(
            make_config("off-race", "", None), c, {}, parent_id=root.id, expected_head=root.id)
            for c in (_checkpoint(1), _checkpoint(1))])
        assert sorted(type(r).__name__ for r in results) == ["CheckpointConflict", "dict"]
        assert saver.stats == type(saver.stats)()  # the committer was never used
