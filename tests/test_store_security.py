"""Stored data is safe: no pickle, clear errors for unstorable values, optional encryption."""

import operator
import socket
import sqlite3
from dataclasses import dataclass
from typing import Annotated, TypedDict

import pytest

from waypoint import START, StateGraph
from waypoint.checkpoint import SqliteSaver
from waypoint.checkpoint.crypto import Cipher, new_key, parse_key
from waypoint.checkpoint.serde import dumps, loads
from waypoint.errors import SerializationError


class State(TypedDict):
    research_results: Annotated[list, operator.add]


@dataclass
class Finding:
    title: str
    source: object


def graph(saver, value):
    builder = StateGraph(State)
    builder.add_node("research", lambda s: {"research_results": value})
    builder.add_edge(START, "research")
    return builder.compile(checkpointer=saver)


def test_unstorable_value_names_its_path_and_nothing_is_written(tmp_path):
    with socket.socket() as sock, SqliteSaver.from_conn_string(str(tmp_path / "s.db")) as saver:
        value = [Finding("a", "x"), Finding("b", "y"), Finding("c", "z"), Finding("d", sock)]
        app = graph(saver, value)
        config = {"configurable": {"thread_id": "t"}}
        with pytest.raises(SerializationError) as caught:
            app.invoke({"research_results": []}, config)
        assert "state.research_results[3].source: socket" in str(caught.value)
        state = app.get_state(config)  # the step was not committed; the input checkpoint was
        assert state.values == {"research_results": []}
        assert state.next == ("research",)


_ran = []


def _side_effect():
    _ran.append("executed")


class Booby:
    def __reduce__(self):
        return (_side_effect, ())


def test_pickle_payloads_are_never_executed():
    import pickle

    try:
        loads(pickle.dumps(Booby()))
    except Exception:
        pass  # refusing is fine; running it is not
    assert _ran == []


def test_unregistered_class_in_stored_data_is_refused():
    @dataclass
    class Secret:
        x: int

    data = dumps(Secret(1))
    from waypoint.checkpoint import serde

    serde._registry.pop(f"{Secret.__module__}:{Secret.__qualname__}")
    with pytest.raises(SerializationError, match="not registered"):
        loads(data)


def test_encrypted_store_reads_back_and_hides_the_data(tmp_path, monkeypatch):
    pytest.importorskip("cryptography")
    path = str(tmp_path / "enc.db")
    monkeypatch.setenv("WAYPOINT_ENCRYPTION_KEY", new_key())
    with SqliteSaver.from_conn_string(path) as saver:
        app = graph(saver, ["top secret finding"])
        config = {"configurable": {"thread_id": "t"}}
        app.invoke({"research_results": []}, config)
        assert app.get_state(config).values["research_results"] == ["top secret finding"]
    raw = b"".join(
        row[0] for row in sqlite3.connect(path).execute("SELECT body FROM waypoint_checkpoints")
    )
    assert b"top secret" not in raw
    monkeypatch.delenv("WAYPOINT_ENCRYPTION_KEY")
    with SqliteSaver.from_conn_string(path) as saver:
        with pytest.raises(SerializationError, match="encrypted"):
            saver.get_tuple({"configurable": {"thread_id": "t"}})
    monkeypatch.setenv("WAYPOINT_ENCRYPTION_KEY", new_key())
    with SqliteSaver.from_conn_string(path) as saver:
        with pytest.raises(SerializationError, match="wrong key"):
            saver.get_tuple({"configurable": {"thread_id": "t"}})


def test_bad_keys_are_refused_without_echoing_them():
    with pytest.raises(ValueError, match="32 bytes") as caught:
        parse_key("not-a-key-at-all")
    assert "not-a-key" not in str(caught.value)
    pytest.importorskip("cryptography")
    with pytest.raises(ValueError):
        Cipher(b"short")
