"""The read memo (waypoint/checkpoint/read_cache.py) never changes what a read returns.

`get_state` on a long chat resumes decoding from the longest chain prefix this process
already decoded, keyed by the stored bytes. These tests check the behaviour, never timings:
a write by another store object or another process is seen; update_state, a fork, prune,
rewind and copy_thread are seen; older checkpoints read back exactly as with the memo off;
a caller changing what it read does not change the next read; the memo never serves a
reader that lacks the key that decrypted an entry; the message classes follow the setting.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from store_backends import PG_URL, require

from waypoint import END, START, MessagesState, StateGraph
from waypoint.checkpoint import MemorySaver, SqliteSaver, read_cache
from waypoint.errors import SerializationError
from waypoint.messages import AIMessage, HumanMessage, RemoveMessage

KINDS = ("memory", "sqlite", "postgres")


def reply(state: dict) -> dict:
    last = state["messages"][-1]
    return {"messages": [{"role": "assistant", "content": f"re: {last.content} " * 4}]}


def chat(saver: Any) -> Any:
    builder = StateGraph(MessagesState)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


def say(graph: Any, config: dict, turns: range) -> None:
    for turn in turns:  # random text: chains big enough for the memo, compression or not
        text = f"question {turn} {uuid.uuid4().hex} {uuid.uuid4().hex}"
        graph.invoke({"messages": [{"role": "user", "content": text}]}, config)


def contents(snapshot: Any) -> list[str]:
    return [m.content for m in snapshot.values["messages"]]


def history(graph: Any, config: dict) -> list[tuple[str, list[Any], tuple[str, ...]]]:
    return [(s.config["configurable"]["checkpoint_id"], contents(s), s.next)
            for s in graph.get_state_history(config)]


@pytest.fixture
def memo() -> Iterator[read_cache.DecodeMemo]:
    """The process-wide memo, emptied before and after, with its usual size."""
    read_cache.configure(max_bytes=read_cache.DEFAULT_MAX_BYTES,
                         max_entries=read_cache.DEFAULT_MAX_ENTRIES)
    yield read_cache.memo
    read_cache.configure(max_bytes=read_cache.DEFAULT_MAX_BYTES,
                         max_entries=read_cache.DEFAULT_MAX_ENTRIES)


class Stores:
    """Opens stores of one kind on the same data (memory: one shared object)."""

    def __init__(self, kind: str, tmp_path: Any) -> None:
        self.kind = kind
        self.url = str(tmp_path / "chat.db") if kind == "sqlite" else PG_URL
        self._memory = MemorySaver(snapshot_every=8)
        self.threads: list[str] = []

    def thread(self) -> dict:
        thread_id = f"read-cache-{uuid.uuid4().hex[:12]}"
        self.threads.append(thread_id)
        return {"configurable": {"thread_id": thread_id}}

    def open(self, stack: Any) -> Any:
        if self.kind == "memory":
            return self._memory
        cls = require(self.kind)
        saver = stack.enter_context(cls.from_conn_string(self.url, snapshot_every=8))
        if self.kind == "postgres":
            stack.callback(saver.delete_threads, self.threads)
        return saver


@pytest.fixture(params=KINDS)
def stores(request: pytest.FixtureRequest, tmp_path: Any) -> Stores:
    require(request.param)
    return Stores(request.param, tmp_path)


def test_a_second_store_object_writing_the_thread_is_seen(stores: Stores, memo: Any) -> None:
    from contextlib import ExitStack

    with ExitStack() as stack:
        first, second = chat(stores.open(stack)), chat(stores.open(stack))
        config = stores.thread()
        say(first, config, range(30))
        before = contents(first.get_state(config))
        assert contents(first.get_state(config)) == before  # a read served by the memo
        say(second, config, range(30, 33))
        after = contents(first.get_state(config))
        assert after[:len(before)] == before and len(after) == len(before) + 6
        assert after == contents(second.get_state(config))
        assert memo.hits > 0


def test_another_process_writing_the_thread_is_seen(tmp_path: Any, memo: Any) -> None:
    path = str(tmp_path / "chat.db")
    config = {"configurable": {"thread_id": "shared"}}
    with SqliteSaver.from_conn_string(path, snapshot_every=8) as saver:
        graph = chat(saver)
        say(graph, config, range(20))
        before = contents(graph.get_state(config))
        child = textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {os.path.dirname(__file__)!r})
            from test_state_read_cache import chat, say
            from waypoint.checkpoint import SqliteSaver
            with SqliteSaver.from_conn_string({path!r}, snapshot_every=8) as saver:
                say(chat(saver), {config!r}, range(20, 23))
        """)
        subprocess.run([sys.executable, "-c", child], check=True, timeout=120)
        after = contents(graph.get_state(config))
    assert after[:len(before)] == before and len(after) == len(before) + 6
    assert after[-2].startswith("question 22")


def test_update_state_fork_and_older_reads_are_exact(stores: Stores, memo: Any) -> None:
    from contextlib import ExitStack

    with ExitStack() as stack:
        graph = chat(stores.open(stack))
        config = stores.thread()
        say(graph, config, range(25))
        head = graph.get_state(config)
        first_id = head.values["messages"][0].id
        # Replace one message, remove another, at the head.
        graph.update_state(config, {"messages": [AIMessage("edited", id=head.values[
            "messages"][1].id), RemoveMessage(id=first_id)]}, as_node="reply")
        edited = contents(graph.get_state(config))
        assert edited[0] == "edited" and len(edited) == len(head.values["messages"]) - 1
        # Fork from an older checkpoint: its branch reads as that checkpoint plus the fork.
        old = list(graph.get_state_history(config))[20]
        forked = graph.update_state(old.config, {"messages": [HumanMessage("fork")]},
                                    as_node="reply")
        assert contents(graph.get_state(forked)) == [*contents(old), "fork"]
        assert contents(graph.get_state(config)) == contents(graph.get_state(forked))
        assert contents(graph.get_state(head.config)) == contents(head)
        with_memo = history(graph, config)
        read_cache.configure(max_bytes=0)  # every read decodes its whole chain
        assert history(graph, config) == with_memo
        assert contents(graph.get_state(head.config)) == contents(head)


def test_retention_operations_are_seen(stores: Stores, memo: Any) -> None:
    from contextlib import ExitStack

    with ExitStack() as stack:
        saver = stores.open(stack)
        graph = chat(saver)
        config = stores.thread()
        say(graph, config, range(20))
        states = history(graph, config)
        head = graph.get_state(config)
        copy = stores.thread()
        saver.copy_thread(config["configurable"]["thread_id"], copy["configurable"]["thread_id"])
        assert history(graph, copy) == states
        saver.prune(config["configurable"]["thread_id"], keep_last=1)
        assert contents(graph.get_state(config)) == contents(head)
        say(graph, config, range(20, 22))
        assert contents(graph.get_state(config))[:-4] == contents(head)
        index = next(i for i, state in enumerate(states) if i >= 10 and not state[2])
        saver.rewind(copy["configurable"]["thread_id"], states[index][0])  # a finished turn
        assert contents(graph.get_state(copy)) == states[index][1]
        say(graph, copy, range(90, 91))
        assert contents(graph.get_state(copy))[:-2] == states[index][1]


def test_changing_what_was_read_does_not_change_the_next_read(memo: Any) -> None:
    graph = chat(MemorySaver(snapshot_every=8))
    config = {"configurable": {"thread_id": "t"}}
    say(graph, config, range(30))
    first = graph.get_state(config)
    expected = contents(first)
    first.values["messages"].append(HumanMessage("mine"))
    first.values["messages"].pop(0)
    first.values["extra"] = 1
    second = graph.get_state(config)
    assert contents(second) == expected and "extra" not in second.values
    assert second.values["messages"] is not first.values["messages"]


def test_memo_never_serves_a_reader_without_the_key(tmp_path: Any, memo: Any) -> None:
    pytest.importorskip("cryptography")
    from waypoint.checkpoint.crypto import Cipher

    path = str(tmp_path / "sealed.db")
    config = {"configurable": {"thread_id": "sealed"}}
    with SqliteSaver.from_conn_string(path, cipher=Cipher(os.urandom(32))) as keyed:
        graph = chat(keyed)
        say(graph, config, range(20))
        assert len(graph.get_state(config).values["messages"]) == 40
        with SqliteSaver.from_conn_string(path, cipher=None) as keyless:
            with pytest.raises(SerializationError):
                keyless.get_tuple(config)
            with SqliteSaver.from_conn_string(path, cipher=Cipher(os.urandom(32))) as wrong:
                with pytest.raises(SerializationError):
                    wrong.get_tuple(config)


def test_message_classes_follow_the_setting(memo: Any) -> None:
    pytest.importorskip("langchain_core")
    from waypoint.interop.langchain_messages import set_message_classes

    graph = chat(MemorySaver(snapshot_every=8))
    config = {"configurable": {"thread_id": "t"}}
    try:
        set_message_classes("waypoint")
        say(graph, config, range(20))
        ours = graph.get_state(config).values["messages"]
        assert type(ours[0]) is HumanMessage
        set_message_classes("langchain")
        theirs = graph.get_state(config).values["messages"]
        assert type(theirs[0]).__module__.startswith("langchain_core")
        assert [m.content for m in theirs] == [m.content for m in ours]
        set_message_classes("waypoint")
        assert type(graph.get_state(config).values["messages"][0]) is HumanMessage
    finally:
        set_message_classes(None)
