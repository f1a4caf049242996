"""Property: the checkpoint serializer gives back what it was given, type for type.

Every kind of value serde.py tags (tuples, sets, frozensets, datetimes with and without a
zone, dates, times, timedeltas, UUIDs, decimals, integers beyond 64 bits, enums of every
flavour, dataclasses, pydantic models, waypoint's messages, Send, Interrupt), nested in
lists, tuples, dicts and each other, reads back equal and of the same type; so does a
checkpoint body sealed and unsealed as the stores do (compressed above 2 KB).

Dict keys are limited to what msgpack keeps (str, int within 64 bits, float, bool, None,
bytes, tuples of those): a UUID, date or enum key reads back as its string or value.

Budgets: tests/property_support.py (HYPOTHESIS_PROFILE=long for a longer search).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from property_support import budget, same, waypoint_messages
from pydantic import BaseModel, ConfigDict, Field

from waypoint.checkpoint import serde
from waypoint.checkpoint.records import seal, unseal
from waypoint.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    Message,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from waypoint.types import Interrupt, Send


class Color(enum.Enum):
    RED = "red"
    PAIR = (1, 2)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"
    SAFE = "safe"


class Perm(enum.Flag):
    READ = 1
    WRITE = 2


@dataclasses.dataclass
class Point:
    x: int
    y: float


@dataclasses.dataclass
class Box:
    value: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Tally:
    label: str
    total: int = dataclasses.field(init=False, default=0)  # set after __init__


class Doc(BaseModel):
    title: str
    tags: list[str] = []
    at: dt.datetime | None = None


class Aliased(BaseModel):
    count: int = Field(alias="Count")


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str


class Holder(BaseModel):
    value: Any = None


@pytest.fixture(autouse=True, scope="module")
def pinned_messages() -> Iterator[None]:
    with waypoint_messages():
        yield


def tally(label: str, total: int) -> Tally:
    item = Tally(label)
    object.__setattr__(item, "total", total)
    return item


zones = st.none() | st.builds(dt.timezone, st.timedeltas(min_value=dt.timedelta(hours=-23),
                                                          max_value=dt.timedelta(hours=23)))
ints = st.integers(min_value=-(2**130), max_value=2**130)
small_ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
texts = st.text(max_size=20)
hashables = st.recursive(
    st.none() | st.booleans() | small_ints | texts | st.binary(max_size=8) | st.uuids()
    | st.dates() | st.sampled_from(list(Color) + list(Level) + list(Mode)),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=4)
keys = st.none() | st.booleans() | small_ints | texts | st.binary(max_size=8) | st.tuples(
    small_ints, texts) | st.floats(allow_nan=False)
tool_calls = st.lists(st.fixed_dictionaries({"name": texts, "args": st.dictionaries(
    texts, small_ints, max_size=2), "id": texts}), max_size=2)
content = texts | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
                           max_size=2)
common = {"id": st.none() | texts, "name": st.none() | texts,
          "additional_kwargs": st.dictionaries(texts, small_ints, max_size=2),
          "response_metadata": st.dictionaries(texts, texts, max_size=2)}
messages = st.one_of(
    st.builds(HumanMessage, content, **common),
    st.builds(AIMessage, content, tool_calls=tool_calls,
              usage_metadata=st.none() | st.dictionaries(texts, small_ints, max_size=2),
              **common),
    st.builds(AIMessageChunk, content, **common),
    st.builds(SystemMessage, content, **common),
    st.builds(ToolMessage, content, tool_call_id=st.none() | texts, **common),
    st.builds(RemoveMessage, id=texts),
    st.builds(Message, content, role=st.sampled_from(["user", "assistant", "system", "tool"]),
              **common),
)
leaves = st.one_of(
    st.none(), st.booleans(), ints, st.floats(allow_nan=False), texts, st.binary(max_size=16),
    st.datetimes(timezones=zones), st.dates(), st.times(timezones=zones), st.timedeltas(),
    st.uuids(), st.decimals(allow_nan=False, places=None),
    st.sampled_from(list(Color) + list(Level) + list(Mode) + list(Perm) + [Perm.READ
                                                                           | Perm.WRITE]),
    st.builds(Point, small_ints, st.floats(allow_nan=False)),
    st.builds(tally, texts, small_ints),
    st.builds(Doc, title=texts, tags=st.lists(texts, max_size=2),
              at=st.none() | st.datetimes(timezones=zones)),
    st.builds(lambda n: Aliased(Count=n), small_ints),
    st.builds(lambda name, extra: Loose(name=name, **extra), texts,
              st.dictionaries(st.sampled_from(["a", "b"]), small_ints, max_size=2)),
    messages,
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4), st.lists(children, max_size=3).map(tuple),
        st.dictionaries(keys, children, max_size=4), st.sets(hashables, max_size=3),
        st.frozensets(hashables, max_size=3), st.builds(Box, children),
        st.builds(Holder, value=children), st.builds(Send, texts, children),
        st.builds(Interrupt, children, texts),
    )


values = st.recursive(leaves, containers, max_leaves=12)


@budget(150)
@given(values)
@example(Level.HIGH)  # an IntEnum read back as a plain int (serde checked ints first)
@example([Mode.FAST, {"k": Level.LOW}])
@example(tally("x", 5))  # a dataclass with an init=False field could not be read back
@example(Aliased(Count=3))  # a pydantic field with an alias could not be read back
@example(Loose(name="n", a=1))  # extra="allow" fields were dropped
@example(AIMessageChunk("part", id="1"))  # read back as AIMessage
@example(Message("hi", role="assistant"))  # read back as AIMessage
@example(HumanMessage("x", name=""))  # an empty name read back as None (and unequal)
@example(AIMessage("x", usage_metadata={}))
def test_round_trip_keeps_value_and_type(value: Any) -> None:
    same(value, serde.loads(serde.dumps(value)))


@budget(40)
@given(st.dictionaries(texts, values, max_size=4), st.lists(st.binary(min_size=1),
                                                             max_size=3))
def test_sealed_bodies_round_trip(state: dict[str, Any], padding: list[bytes]) -> None:
    """A stored body (compressed when large) reads back as the value that was sealed."""
    value = [state, padding * 200]  # sometimes far above the 2 KB compression threshold
    same(value, unseal(seal(value)))


@budget(30)
@given(st.lists(values, max_size=3))
def test_encoding_is_deterministic(items: list[Any]) -> None:
    """Serializing twice gives the same bytes: deltas and the read memo compare bytes."""
    assert serde.dumps(items) == serde.dumps(items)
