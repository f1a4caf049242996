"""Shared pieces of the seed examples (research_loop.py, supervisor.py, scatter_gather.py).

* ``make_model(kind, script)``: the model behind an example — the embedded local model by
  default, an OpenAI-compatible endpoint, or a ``ScriptedModel`` answering with the
  example's own deterministic ``script`` (a function of the request).
* ``add_model_arguments(parser)``: the ``--model`` / ``--base-url`` / ``--model-name`` flags,
  defaulting to ``WAYPOINT_MODEL`` (else ``local``).
* ``ask(...)``: one model call at temperature 0, schema-constrained when a schema is given.
* ``load_sources`` / ``search_notes``: the small library of source notes in
  ``data/research_sources.json`` and a keyword search over it (the research tool).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from waypoint.messages import HumanMessage, SystemMessage
from waypoint.models import ChatModel, ScriptedModel, UsageLedger

DATA = Path(__file__).resolve().parent / "data"
SOURCES = DATA / "research_sources.json"
MODEL_KINDS = ("local", "local-small", "openai", "scripted")


def default_model_kind() -> str:
    return os.environ.get("WAYPOINT_MODEL") or "local"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", choices=MODEL_KINDS, default=default_model_kind(),
        help="local: embedded Qwen2.5-Coder-1.5B (default, or $WAYPOINT_MODEL); local-small: "
             "its 0.5B sibling; openai: an OpenAI-compatible endpoint (--base-url); "
             "scripted: deterministic rules, no model")
    parser.add_argument("--base-url", default=os.environ.get("WAYPOINT_MODEL_URL"),
                        help="OpenAI-compatible endpoint (key from OPENAI_API_KEY)")
    parser.add_argument("--model-name", default=os.environ.get("WAYPOINT_MODEL_NAME"),
                        help="model name to ask the endpoint for")


def make_model(kind: str, script: Callable[[Any], str], *, name: str,
               ledger: UsageLedger | None = None, base_url: str | None = None,
               model_name: str | None = None) -> ChatModel:
    """The model for `kind`; `script` answers for the scripted one (named `name`)."""
    if kind == "scripted":
        return ScriptedModel([script], model=name, cycle=True, ledger=ledger)
    if kind == "openai":
        from waypoint.models.openai_compat import OpenAICompatible

        if not base_url:
            raise SystemExit(f"{name}: --model openai needs --base-url (or WAYPOINT_MODEL_URL)")
        return OpenAICompatible(base_url, model_name or "default",
                                api_key=os.environ.get("OPENAI_API_KEY"), ledger=ledger)
    if kind not in ("local", "local-small"):
        raise SystemExit(f"{name}: unknown model kind {kind!r} (one of {', '.join(MODEL_KINDS)})")
    from waypoint.models.local import LocalModel

    return LocalModel("qwen2.5-coder-0.5b" if kind == "local-small" else "qwen2.5-coder-1.5b",
                      ledger=ledger)


def ask(model: ChatModel, system: str, text: str, schema: type[BaseModel] | None = None,
        max_tokens: int = 200) -> Any:
    """One call at temperature 0: a validated `schema` instance, or the reply's text."""
    messages = [SystemMessage(system), HumanMessage(text)]
    if schema is None:
        return model.invoke(messages, max_tokens=max_tokens, temperature=0).text.strip()
    return model.structured(messages, schema, max_tokens=max_tokens, temperature=0)


def job_of(request: Any) -> tuple[str, str]:
    """For scripted stand-ins: (the job named before ':' in the system prompt, the user's
    text without the schema hint that structured calls append to it)."""
    text = request.messages[-1].content.split("\n\nAnswer with one JSON object", 1)[0]
    return request.messages[0].content.split(":", 1)[0], text


# -- the source notes and the search tool ---------------------------------------------------

STOPWORDS = frozenset("""a about an and are as at be been by can could did do does for from
had has have how in into is it its of on or over say says tell that the their them then there
these they this those to under up used uses was were what when where which who whom why will
with would write sentence sentences short one two three look find out give short""".split())


def terms(text: str) -> set[str]:
    """Search terms: content words of 4+ letters, cut to their first 4 (a crude stem)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {w[:4] for w in words if len(w) >= 4 and w not in STOPWORDS}


@cache
def load_sources() -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(SOURCES.read_text())["sources"])


@cache
def load_facts() -> dict[str, tuple[str, ...]]:
    """The corpus's labels: for each fact, the question words that ask about it."""
    return {k: tuple(v) for k, v in json.loads(SOURCES.read_text())["facts"].items()}


def source(source_id: str) -> dict[str, Any]:
    return next(s for s in load_sources() if s["id"] == source_id)


def search_notes(query: str, *, k: int = 3, exclude: Iterable[str] = (),
                 min_score: int = 2) -> list[dict[str, Any]]:
    """The research tool: up to `k` notes sharing at least `min_score` search terms with
    `query` (fewer when the query has fewer terms), best first, skipping `exclude`."""
    wanted = terms(query)
    need = min(min_score, len(wanted)) or 1
    skip = set(exclude)
    scored = []
    for note in load_sources():
        if note["id"] in skip:
            continue
        score = len(wanted & terms(f"{note['title']} {note['text']}"))
        if score >= need:
            scored.append((-score, note["id"], note))
    return [note for _, _, note in sorted(scored)[:k]]


def show_note(note: dict[str, Any]) -> str:
    return f"[{note['id']}] {note['title']}: {note['text']}"


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
