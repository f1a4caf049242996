"""Graphs for the chaos tests (tests/test_chaos.py, bench/chaos.py), served by path.

`chaos` is five steps in a line, each a short sleep; three of them perform an effect
(`waypoint.effect`) that appends `<run id> <step> <idempotency key>` to the run's side file
(`side_file`). Every execution of a step, committed or not, also appends
`<time> <pid> <run id> <step>` to `side_file + ".steps"`, so a checker can tell steps
re-executed after a kill (expected: the killed attempt's step never committed) from steps
executed again after their checkpoint was committed (a lost commit). Each line is one
`write` to a file opened for appending: whole lines, even from processes killed mid-run.

With `die_in_effect` (a marker file path) in the input, the first process to perform the
"charge" effect SIGKILLs itself right after doing it, before it is recorded: the effect is
in doubt for whoever takes the run over.
"""

from __future__ import annotations

import itertools
import operator
import os
import signal
import time
from typing import Annotated, Any, TypedDict

from waypoint import END, START, StateGraph, effect

STEPS = ("reserve", "price", "charge", "pack", "ship")
EFFECT_STEPS = ("reserve", "charge", "ship")


class ChaosState(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]
    side_file: str
    delay: float
    die_in_effect: str  # a marker file: the first process to do "charge" dies inside it


def _die_once(marker: str) -> None:
    """SIGKILL this process the first time (the marker file does not exist yet)."""
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _step(name: str, with_effect: bool) -> Any:
    def node(state: ChaosState, config: dict[str, Any]) -> dict[str, Any]:
        run_id = config["configurable"]["run_id"]
        side = state["side_file"]
        _append(side + ".steps", f"{time.time():.6f} {os.getpid()} {run_id} {name}\n")
        delay = state.get("delay", 0.2)
        time.sleep(delay / 2)
        if with_effect:
            def act(*, idempotency_key: str) -> str:
                _append(side, f"{run_id} {name} {idempotency_key}\n")
                if name == "charge" and state.get("die_in_effect"):
                    _die_once(state["die_in_effect"])  # done, never recorded: in doubt
                return idempotency_key

            effect(name, act)
        time.sleep(delay / 2)
        return {"steps": [name]}

    node.__name__ = name
    return node


_builder = StateGraph(ChaosState)
for _name in STEPS:
    _builder.add_node(_name, _step(_name, _name in EFFECT_STEPS))
_builder.add_edge(START, STEPS[0])
for _before, _after in itertools.pairwise(STEPS):
    _builder.add_edge(_before, _after)
_builder.add_edge(STEPS[-1], END)
chaos = _builder.compile()
