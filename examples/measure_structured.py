#!/usr/bin/env python
"""Structured output with a one-line prompt: does the model pick the right label?

A new user's first classifier is one line of instructions and a pydantic schema with a
`Literal` field, no field descriptions and no temperature. This scores exactly that on
the labelled tickets of `examples/data/` (the 12 of `support_tickets.jsonl` and 12
held-out ones in `tickets_heldout.jsonl`), with `model.structured(...)` as it is
(the schema shown to the model, greedy decoding) and, for comparison, with the schema
only enforced (`hint=False`) and the provider's default temperature (`--as-before`).

    python examples/measure_structured.py                    # the 1.5B local model
    python examples/measure_structured.py --as-before        # what it did before
    python examples/measure_structured.py --model local-small

Prints one line per ticket and the score per file; about 1-2 s per ticket on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from waypoint.messages import HumanMessage, SystemMessage

DATA = Path(__file__).resolve().parent / "data"
FILES = ("support_tickets.jsonl", "tickets_heldout.jsonl")
PROMPT = "Classify the customer support ticket as billing, technical or general."


class Ticket(BaseModel):
    category: Literal["billing", "technical", "general"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("local", "local-small"), default="local")
    parser.add_argument("--as-before", action="store_true",
                        help="schema enforced but not shown, provider's temperature")
    args = parser.parse_args(argv)
    from waypoint.models.local import LocalModel

    model = LocalModel("qwen2.5-coder-0.5b" if args.model == "local-small"
                       else "qwen2.5-coder-1.5b")
    options = {"hint": False, "temperature": 0.8} if args.as_before else {}
    totals = []
    for name in FILES:
        rows = [json.loads(line) for line in (DATA / name).read_text().splitlines() if line]
        right = 0
        started = time.perf_counter()
        for row in rows:
            answer = model.structured([SystemMessage(PROMPT), HumanMessage(row["text"])],
                                      Ticket, **options)
            ok = answer.category == row["category"]
            right += ok
            print(f"{row['id']:>4} {'ok ' if ok else 'BAD'} {answer.category:<9} "
                  f"(expected {row['category']}) {row['text'][:60]}")
        seconds = (time.perf_counter() - started) / len(rows)
        totals.append((name, right, len(rows), seconds))
    for name, right, n, seconds in totals:
        print(f"{name}: {right}/{n} right, {seconds:.2f} s per ticket")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
