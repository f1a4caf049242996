"""What the property tests share (tests/test_properties_*.py): budgets and `same`.

Small by default, so the property modules together stay within seconds of the suite:
`budget(n)` runs n examples with no deadline (stores do I/O; timing is not a property).
`HYPOTHESIS_PROFILE=long` multiplies every budget by 25 for a search worth leaving to run,
e.g. `HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/test_properties_*.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import decimal
import math
import os
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, settings
from pydantic import BaseModel

from waypoint.interop.langchain_messages import set_message_classes
from waypoint.messages import Message

LONG = os.environ.get("HYPOTHESIS_PROFILE", "").lower() == "long"
FACTOR = 25 if LONG else 1


def budget(examples: int) -> settings:
    """Settings for a property: `examples` examples (x25 under HYPOTHESIS_PROFILE=long)."""
    return settings(max_examples=examples * FACTOR, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def same(a: Any, b: Any, path: str = "value") -> None:
    """Equal and of the same type, all the way down (floats by sign too)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} read back as {type(b).__name__}"
    if isinstance(a, float):
        assert a == b and math.copysign(1, a) == math.copysign(1, b), path
    elif isinstance(a, decimal.Decimal):
        assert str(a) == str(b), path
    elif isinstance(a, (dt.datetime, dt.time)):
        assert a == b and a.utcoffset() == b.utcoffset(), path
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} read back as {list(b)}"
        for k in a:
            same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, Message):
        assert a.to_dict() == b.to_dict(), path
    elif isinstance(a, BaseModel):
        same(dict(a), dict(b), path)
        same(a.__pydantic_extra__ or {}, b.__pydantic_extra__ or {}, f"{path}.<extra>")
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, (set, frozenset)):
        assert a == b, path
    else:
        assert a == b, path


@contextlib.contextmanager
def waypoint_messages() -> Iterator[None]:
    """Messages read back as waypoint's classes even if another test imported LangChain
    (the classes a state uses follow the process; see waypoint.interop)."""
    set_message_classes("waypoint")
    try:
        yield
    finally:
        set_message_classes(None)
