"""Child process for the reopen and crash tests; also holds the graphs they share.

    python tests/crash_child.py chain     KIND URL THREAD SIDE_FILE [sync|async [DURABILITY]]
    python tests/crash_child.py interrupt KIND URL THREAD [sync|async]

chain: runs `chain_graph` on THREAD to the end, resuming with invoke(None) if the thread
has a checkpoint (else starting fresh), with invoke/ainvoke and the given durability mode
(sync, async or exit; default sync). Prints "ready" once the store is open (the parent
times its kill from there) and "done <seconds>" at the end. Every node appends its name to
SIDE_FILE before returning, so the parent sees which nodes executed. "done" gives the
seconds from "ready" to the end of the run.

interrupt: runs `ask_graph` on THREAD to its interrupt, prints the interrupt's value as JSON.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import operator
import os
import sys
import time
import uuid
from typing import Annotated, Any, TypedDict

from store_backends import aopen_store, open_store

from waypoint import END, START, StateGraph, interrupt

CHAIN_LENGTH = 40
NODE_SLEEP = 0.008


class ChainState(TypedDict):
    log: Annotated[list, operator.add]
    last: str


def node_name(index: int) -> str:
    return f"n{index:02d}"


def chain_graph(saver: Any, side_file: str | None, *, length: int = CHAIN_LENGTH,
                sleep: float = NODE_SLEEP) -> Any:
    """n00 -> n01 -> ... : each node sleeps, records itself in side_file, appends its name."""

    def make(name: str):
        def node(state: ChainState) -> dict[str, Any]:
            if sleep:
                time.sleep(sleep)
            if side_file is not None:
                fd = os.open(side_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, f"{name}\n".encode())
                finally:
                    os.close(fd)
            return {"log": [name], "last": name}

        return node

    graph = StateGraph(ChainState)
    names = [node_name(i) for i in range(length)]
    for name in names:
        graph.add_node(name, make(name))
    graph.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        graph.add_edge(a, b)
    graph.add_edge(names[-1], END)
    return graph.compile(checkpointer=saver)


def chain_expected(length: int = CHAIN_LENGTH) -> dict[str, Any]:
    names = [node_name(i) for i in range(length)]
    return {"log": names, "last": names[-1]}


class AskState(TypedDict):
    log: Annotated[list, operator.add]
    stamp: Any


ASK_STAMP = (dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
             uuid.UUID("12345678-1234-5678-1234-567812345678"), frozenset({1, 2}))


def ask_graph(saver: Any) -> Any:
    """pre -> ask (interrupt("approve?")) -> post"""

    def pre(state: AskState) -> dict[str, Any]:
        return {"log": ["pre"], "stamp": ASK_STAMP}

    def ask(state: AskState) -> dict[str, Any]:
        answer = interrupt({"question": "approve?", "seen": list(state["log"])})
        return {"log": [f"answer:{answer}"]}

    def post(state: AskState) -> dict[str, Any]:
        return {"log": ["post"]}

    graph = StateGraph(AskState)
    graph.add_node("pre", pre)
    graph.add_node("ask", ask)
    graph.add_node("post", post)
    graph.add_edge(START, "pre")
    graph.add_edge("pre", "ask")
    graph.add_edge("ask", "post")
    graph.add_edge("post", END)
    return graph.compile(checkpointer=saver)


def _run_chain(kind: str, url: str, thread_id: str, side_file: str, mode: str,
               durability: str) -> None:
    config = {"configurable": {"thread_id": thread_id}}

    began = 0.0

    def start(saver: Any) -> Any:
        nonlocal began
        has_checkpoint = saver.get_tuple(config) is not None
        print("ready", flush=True)
        began = time.perf_counter()
        return None if has_checkpoint else {"log": []}

    if mode == "async":
        async def main() -> None:
            async with aopen_store(kind, url) as saver:
                app = chain_graph(saver, side_file)
                await app.ainvoke(start(saver), config, durability=durability)

        asyncio.run(main())
    else:
        with open_store(kind, url) as saver:
            app = chain_graph(saver, side_file)
            app.invoke(start(saver), config, durability=durability)
    print(f"done {time.perf_counter() - began:.3f}", flush=True)


def _run_interrupt(kind: str, url: str, thread_id: str, mode: str) -> None:
    config = {"configurable": {"thread_id": thread_id}}
    if mode == "async":
        async def main() -> dict[str, Any]:
            async with aopen_store(kind, url) as saver:
                return await ask_graph(saver).ainvoke({"log": []}, config)

        result = asyncio.run(main())
    else:
        with open_store(kind, url) as saver:
            result = ask_graph(saver).invoke({"log": []}, config)
    print(json.dumps([i.value for i in result["__interrupt__"]]), flush=True)


def main(argv: list[str]) -> int:
    command, kind, url, thread_id, *rest = argv
    if command == "chain":
        side_file, *options = rest
        mode, durability = [*options, "sync", "sync"][:2]
        _run_chain(kind, url, thread_id, side_file, mode, durability)
    elif command == "interrupt":
        _run_interrupt(kind, url, thread_id, rest[0] if rest else "sync")
    else:
        raise SystemExit(f"unknown command {command!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
