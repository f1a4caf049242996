"""Child process for the effect crash test.

    python tests/effect_child.py KIND URL THREAD SIDE_FILE

Runs `effect_graph` on THREAD: its node records an effect whose action appends a line to
SIDE_FILE and then blocks, so the parent can SIGKILL the process after the action happened
and before its result was recorded.
"""

from __future__ import annotations

import operator
import sys
import time
from typing import Annotated, Any, TypedDict

from store_backends import open_store

from waypoint import END, START, StateGraph
from waypoint.engine.effects import effect


class EffectState(TypedDict, total=False):
    log: Annotated[list, operator.add]
    receipt: Any


def effect_graph(saver: Any, side_file: str, *, block: bool, on_doubt: str = "ask") -> Any:
    def charge(amount: int, *, idempotency_key: str) -> dict:
        with open(side_file, "a") as out:
            out.write(f"charged {amount} {idempotency_key}\n")
        if block:
            time.sleep(3600)
        return {"amount": amount, "key": idempotency_key}

    def pay(state: EffectState) -> dict:
        receipt = effect("charge card", charge, 42)
        return {"receipt": receipt, "log": ["paid"]}

    builder = StateGraph(EffectState)
    builder.add_node("pay", pay, on_doubt=on_doubt)
    builder.add_node("ship", lambda state: {"log": ["shipped"]})
    builder.add_edge(START, "pay")
    builder.add_edge("pay", "ship")
    builder.add_edge("ship", END)
    return builder.compile(checkpointer=saver)


def main() -> None:
    kind, url, thread, side_file = sys.argv[1:5]
    with open_store(kind, url) as saver:
        graph = effect_graph(saver, side_file, block=True)
        print("ready", flush=True)
        graph.invoke({"log": []}, {"configurable": {"thread_id": thread}})


if __name__ == "__main__":
    main()
