#!/usr/bin/env python
"""Questions about waypoint answered from its own docs, through typed branches (seed 001).

Seed 001's RAG workflow sorts a query by type and gives each branch its own tools. Here:

    classify ──ROUTES──► how_to | api_reference | concept ──► tools ──► gather ──► answer
             └─────────► refuse (out of scope: no tools, no retrieval)    check_citations ◄┘

``classify`` is structured output (a ``Literal`` query type). ``ROUTES`` is a
``waypoint.graph.Router``: each route names its node *and* its tools: how_to searches the
guides and lists the examples, api_reference searches docs/ and greps waypoint's source,
concept searches everything. The branch node calls its route's tools; the one ``ToolNode``
runs them with ``allowed=ROUTES.tools_for``, so a call outside the route's set is refused.
``gather`` numbers the passages (top-k by cosine score), ``answer`` writes a short answer
citing them as ``[n]`` (structured: text and citation numbers), and ``check_citations``
drops a citation that points nowhere or shares no content words with the sentence citing
it, recording ``citations_ok``.

The corpus (README.md, examples/README.md, docs/*.md) is chunked and embedded once into
``.waypoint/rag.db`` (``rag_corpus.py``); a changed doc is embedded again on the next run.

    python examples/rag_router.py "How do I resume a paused thread?"
    python examples/rag_router.py --model scripted "What does SqliteStore take?"
    python examples/rag_router.py --routes            # the routing table, tools per route
    WAYPOINT_MODEL=scripted python -m waypoint.cli eval --graph examples.rag_router:eval_graph \\
        --dataset examples/data/rag_router_eval.jsonl

``--model local`` (default: Qwen2.5-Coder-1.5B on the CPU), ``local-small``, ``openai
--base-url URL``, or ``scripted`` (keyword classification; the answer quotes the top
passage and cites it).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, Field

from waypoint import END, START, StateGraph, add_messages
from waypoint.graph import Condition, Route, Router
from waypoint.messages import AIMessage, HumanMessage, SystemMessage
from waypoint.tools import ToolNode, tool

try:
    from examples import _common as common
    from examples import rag_corpus as corpus
except ImportError:  # run as a script: python examples/rag_router.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _common as common  # type: ignore[no-redef]
    import rag_corpus as corpus  # type: ignore[no-redef]

QueryType = Literal["how_to", "api_reference", "concept", "out_of_scope"]
K = 4              # passages per search
MAX_PASSAGES = 5   # passages shown to the answer model
SHOWN_CHARS = 600  # of each passage


class Classification(BaseModel):
    query_type: QueryType = Field(description=(
        "how_to: how to do a task with waypoint; api_reference: what a named class, "
        "function, parameter, option or command takes, returns or does; concept: what an "
        "idea is or why waypoint works a certain way; out_of_scope: not about waypoint"))
    symbol: str = Field("", max_length=48, description=(
        "api_reference only: the class, function or command named in the question; else ''"))


class Answer(BaseModel):
    # The numbers first: the model picks its passages, then writes from them.
    citations: list[Annotated[int, Field(ge=1, le=MAX_PASSAGES)]] = Field(
        max_length=2, description="numbers of the passages the answer uses")
    answer: str = Field(max_length=320, description="at most two sentences, each ending "
                                                    "with [n]")


class RagState(TypedDict, total=False):
    question: str
    query_type: str
    symbol: str
    answer: str
    citations: list[int]
    citations_ok: bool
    citation_notes: list[str]
    sources: list[str]
    refused: list[str]
    passages: list[dict]
    messages: Annotated[list, add_messages]


CLASSIFY = ("Classify: sort a question sent to the help desk of waypoint, a Python library "
            "for durable agent workflows. how_to: how to do a task with waypoint; "
            "api_reference: what a named class, function, option or command takes, returns "
            "or means; concept: what a waypoint idea is or why it works so; out_of_scope: not "
            "about waypoint at all.")
# Shown as earlier turns of the chat: with only the descriptions above the 1.5B model called
# nearly everything "concept" (10/16 on questions outside the eval set); with these, 15/16.
SHOTS = (("How do I cache model calls?", "how_to", ""),
         ("What does PostgresSaver's pool argument do?", "api_reference", "PostgresSaver"),
         ("How tall is Mount Everest?", "out_of_scope", ""),
         ("What is a thread?", "concept", ""),
         ("How can I send a run's traces to Phoenix?", "how_to", ""),
         ("Which flags does waypoint serve accept?", "api_reference", "serve"),
         ("Can you write a limerick about cats?", "out_of_scope", ""),
         ("Why does a node run again after an interrupt?", "concept", ""))
ANSWER = ("Answer: you answer questions about waypoint using only the numbered passages "
          "from its docs. Reply in at most two sentences. The first sentence answers the "
          "question directly and names the exact function, option or command, spelled as in "
          "the passages. End each sentence with the number of the passage it comes from, like "
          "[2]. Write code in backticks, never in double quotes. If no passage answers the "
          "question, say that the docs do not cover it and cite nothing.")
REFUSAL = ("I can only answer questions about waypoint from its documentation, and this "
           "one looks outside it. Try asking how to do something with waypoint's graphs, "
           "threads, tools, stores, evals or server.")

ROUTES = Router([
    Route(Condition("query_type", "==", "how_to"), to="how_to",
          tools=("search_guides", "list_examples"), name="how-to"),
    Route(Condition("query_type", "==", "api_reference"), to="api_reference",
          tools=("search_docs", "grep_code"), name="api"),
    Route(Condition("query_type", "==", "concept"), to="concept",
          tools=("search_all",), name="concept"),
], default="refuse")


# -- tools -----------------------------------------------------------------------------

def content_words(text: str) -> set[str]:
    """Words that carry meaning (4+ letters, not stop words), cut to 5 letters as a stem."""
    words = re.findall(r"[a-z][a-z0-9_]+", text.lower())
    return {w[:5] for w in words if len(w) >= 4 and w not in common.STOPWORDS}


def make_tools(index: corpus.DocIndex, code_root: Path) -> list:
    """The five tools, bound to the index and to the tree holding waypoint/ and examples/."""

    @tool
    def search_guides(query: Annotated[str, "what to look for"]) -> list[dict]:
        """Search the guides (README, examples/README, docs that are not reference pages)."""
        return index.search(query, k=K, kind="guide")

    @tool
    def search_docs(query: Annotated[str, "what to look for"]) -> list[dict]:
        """Search the pages under docs/, reference pages included."""
        return index.search(query, k=K, area="docs")

    @tool
    def search_all(query: Annotated[str, "what to look for"]) -> list[dict]:
        """Search every indexed page."""
        return index.search(query, k=K)

    @tool
    def list_examples(topic: Annotated[str, "what the example should show"]) -> list[dict]:
        """The runnable examples whose description shares the most words with the topic."""
        wanted, found = content_words(topic), []
        for path in sorted((code_root / "examples").glob("[!_]*.py")):
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            summary = doc.split("\n\n")[0].replace("\n", " ")
            title = content_words(f"{path.stem.replace('_', ' ')} {summary}")
            score = 2 * len(wanted & title) + len(wanted & content_words(doc) - title)
            if score >= 3:
                found.append((-score, path.name, summary))
        return [{"source": f"examples/{name}", "heading": "example", "text": summary,
                 "score": None} for _, name, summary in sorted(found)[:2]]

    @tool
    def grep_code(symbol: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{1,59}$",
                                      description="a class, function or module name")
                  ) -> list[dict]:
        """Where a symbol is defined in waypoint's source (read-only; at most 3 hits)."""
        name = re.escape(symbol.rsplit(".", 1)[-1])  # Router.tools_for: def tools_for
        pattern = re.compile(rf"^\s*(?:async\s+)?(?:def|class)\s+{name}\b|^{name}\s*=")
        hits = []
        for path in sorted((code_root / "waypoint").rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines):
                if pattern.search(line):
                    text = "\n".join(x[:160] for x in lines[number:number + 4])
                    hits.append({"source": f"{path.relative_to(code_root).as_posix()}:"
                                           f"{number + 1}", "heading": "source",
                                 "text": text, "score": None})
                    if len(hits) == 3:
                        return hits
        return hits

    return [search_guides, search_docs, search_all, list_examples, grep_code]


def symbol_in(question: str) -> str:
    """A code name written in the question: `quoted`, CamelCase, snake_case or dotted."""
    for pattern in (r"`([A-Za-z_][\w.]*)", r"\b((?=\w*[a-z])[A-Z]\w*[A-Z]\w*)",
                    r"\b([a-z]+_[a-z_0-9]+)\b", r"\b([a-z]+\.[a-z_]\w*)\b"):
        found = re.search(pattern, question)
        if found:
            return found.group(1).rstrip(".")
    return ""


# -- the graph -------------------------------------------------------------------------

def build_graph(model: Any, index: corpus.DocIndex, *, code_root: Path = corpus.ROOT,
                checkpointer: Any = None, **compile_options: Any):
    tools = make_tools(index, code_root)
    ROUTES.check(tools=[t.name for t in tools])

    def classify(state: RagState) -> dict:
        chat: list[Any] = [SystemMessage(CLASSIFY)]
        for question, kind, symbol in SHOTS:
            chat += [HumanMessage(f"Question: {question}"),
                     AIMessage(json.dumps({"query_type": kind, "symbol": symbol}))]
        got = model.structured([*chat, HumanMessage(f"Question: {state['question']}")],
                               Classification, max_tokens=60, temperature=0)
        return {"query_type": got.query_type, "symbol": got.symbol.strip()}

    def branch(state: RagState) -> dict:
        """Call every tool of this route once (the route's tool set is the plan)."""
        question = state["question"]
        symbol = symbol_in(question) or state.get("symbol", "")
        args = {"search_guides": {"query": question}, "search_docs": {"query": question},
                "search_all": {"query": question}, "list_examples": {"topic": question},
                "grep_code": {"symbol": symbol}}
        calls = [{"name": name, "args": args[name], "id": f"call-{i}", "type": "tool_call"}
                 for i, name in enumerate(ROUTES.tools_for(state))
                 if name != "grep_code" or re.fullmatch(r"[A-Za-z_][\w.]{1,59}", symbol)]
        return {"messages": [AIMessage("", tool_calls=calls)]}

    def gather(state: RagState) -> dict:
        """Number the passages: the docs' best scores first, then code and examples."""
        results = []
        for message in reversed(state["messages"]):
            if message.type != "tool":
                break
            results.append(message)
        refused, docs, other, seen = [], [], [], set()
        for message in reversed(results):
            if (message.additional_kwargs or {}).get("status") == "error":
                refused.append(f"{message.name}: {message.content}")
                continue
            for hit in json.loads(message.content):
                if (hit["source"], hit["text"]) not in seen:  # a section may have 2 chunks
                    seen.add((hit["source"], hit["text"]))
                    (other if hit["score"] is None else docs).append(
                        {**hit, "tool": message.name})
        docs.sort(key=lambda h: -h["score"])
        passages = [{"n": n, **hit}
                    for n, hit in enumerate((docs + other)[:MAX_PASSAGES], start=1)]
        return {"passages": passages, "refused": refused}

    def answer(state: RagState) -> dict:
        passages = state.get("passages") or []
        if not passages:
            return {"answer": "I found nothing in the docs about this.", "citations": []}
        shown = "\n\n".join(f"[{p['n']}] ({p['source']}) {p['text'][:SHOWN_CHARS]}"
                            for p in passages)
        got = common.ask(model, ANSWER, f"Question: {state['question']}\n\nPassages:\n{shown}",
                         Answer, max_tokens=160)
        return {"answer": whole_sentences(got.answer), "citations": list(got.citations)}

    def check(state: RagState) -> dict:
        text, kept, notes = check_citations(state["answer"], state.get("citations") or [],
                                            state.get("passages") or [])
        by_n = {p["n"]: p for p in state.get("passages") or []}
        sources = [f"[{n}] {by_n[n]['source']}" for n in kept]
        reply = text + ("\n\nSources:\n" + "\n".join(sources) if sources else "")
        return {"answer": text, "citations": kept, "citation_notes": notes,
                "citations_ok": bool(kept) and not notes, "sources": sources,
                "messages": [AIMessage(reply)]}

    def refuse(state: RagState) -> dict:
        return {"answer": REFUSAL, "citations": [], "citations_ok": True, "sources": [],
                "passages": [], "messages": [AIMessage(REFUSAL)]}

    builder = StateGraph(RagState)
    builder.add_node("classify", classify)
    for name in ("how_to", "api_reference", "concept"):
        builder.add_node(name, branch)
        builder.add_edge(name, "tools")
    builder.add_node("tools", ToolNode(tools, allowed=ROUTES.tools_for, timeout=30))
    builder.add_node("gather", gather)
    builder.add_node("answer", answer)
    builder.add_node("check_citations", check)
    builder.add_node("refuse", refuse)
    builder.add_edge(START, "classify")
    builder.add_conditional_edges("classify", ROUTES, ROUTES.path_map)
    builder.add_edge("tools", "gather")
    builder.add_edge("gather", "answer")
    builder.add_edge("answer", "check_citations")
    builder.add_edge("check_citations", END)
    builder.add_edge("refuse", END)
    return builder.compile(checkpointer=checkpointer, **compile_options)


def whole_sentences(text: str) -> str:
    """The answer without a sentence cut off by the length limit (when a whole one is left)."""
    text = text.strip()
    if re.search(r"[.!?)\]]$", text):
        return text
    ends = [m.end() for m in re.finditer(r"[.!?](\s*\[\d+\])?(?=\s)", text)]
    return text[:ends[-1]] if ends else text


def check_citations(answer: str, citations: list[int], passages: list[dict]
                    ) -> tuple[str, list[int], list[str]]:
    """Keep the citations that exist and share content words with what cites them.

    The claim behind `[n]` is the sentences carrying that marker (the whole answer when the
    model listed `n` without a marker). It must share at least two content words with the
    passage, and a quarter of its own. Returns the answer without the dropped markers, the
    kept numbers and a note per dropped one."""
    by_n = {p["n"]: p for p in passages}
    sentences = re.split(r"(?<=[.!?\]])\s+(?!\[)", answer)  # "... end. [2]" stays whole
    marked = [int(m) for m in re.findall(r"\[(\d+)\]", answer)]
    kept, notes = [], []
    for n in dict.fromkeys([*citations, *marked]):
        if n not in by_n:
            notes.append(f"[{n}] cites no passage (there are {len(passages)})")
        else:
            claim = " ".join(s for s in sentences if f"[{n}]" in s) or answer
            said = content_words(re.sub(r"\[\d+\]", "", claim))
            shared = said & content_words(f"{by_n[n]['heading']} {by_n[n]['text']}")
            if len(shared) >= min(2, len(said)) and len(shared) >= len(said) / 4 and said:
                kept.append(n)
                continue
            notes.append(f"[{n}] shares too little with its claim "
                         f"({len(shared)} of {len(said)} content words)")
        answer = re.sub(rf"\s?\[{n}\]", "", answer)
    return answer.strip(), kept, notes


# -- the scripted stand-in -------------------------------------------------------------

TOPICS = ("waypoint", "graph", "node", "edge", "state", "thread", "checkpoint", "interrupt",
          "approv", "tool", "route", "router", "store", "model", "eval", "server", "serve",
          "stream", "retry", "budget", "effect", "timer", "trace", "cli", "command", "resume",
          "agent", "embedding", "semantic", "deploy", "scorer", "judge", "langgraph")


def scripted_reply(request: Any) -> str:
    """`--model scripted`: keyword classification; the answer quotes the top passage."""
    job, text = common.job_of(request)
    if job == "Classify":
        question = text.removeprefix("Question: ").lower()
        on_topic = any(re.search(rf"\b{t}", question) for t in TOPICS)
        if symbol_in(text) or (on_topic and re.search(
                r"\b(signature|parameter|argument|return|option|flag|method)s?\b", question)):
            kind = "api_reference"
        elif not on_topic:
            kind = "out_of_scope"
        elif re.match(r"how (do|can|should) i|how to", question):
            kind = "how_to"
        else:
            kind = "concept"
        return json.dumps({"query_type": kind, "symbol": symbol_in(text)})
    question, _, shown = text.partition("\n\nPassages:\n")
    top = re.match(r"\[1\] \([^)]*\) (.*?)(?=\n\n\[2\] |\Z)", shown, re.S)
    if top is None:
        return json.dumps({"answer": "The passages do not answer this.", "citations": []})
    flat = re.sub(r"\s+", " ", top.group(1).replace("`", ""))
    wanted = content_words(question)
    best = max(re.split(r"(?<=[.!?])\s+", flat), key=lambda s: len(wanted & content_words(s)))
    return json.dumps({"answer": f"{best[:300].rstrip()} [1]", "citations": [1]})


def make_model(kind: str, base_url: str | None = None, model_name: str | None = None):
    return common.make_model(kind, scripted_reply, name="rag-keywords", base_url=base_url,
                             model_name=model_name)


def eval_graph():
    """The graph for `waypoint eval` (examples/data/rag_router_eval.jsonl) on the model named
    by WAYPOINT_MODEL (local by default), over the index at WAYPOINT_RAG_DB (default
    .waypoint/rag.db) of the docs WAYPOINT_RAG_FILES names (comma-separated paths; default
    all), compiled without a checkpointer (the eval brings its own)."""
    model = make_model(common.default_model_kind(), os.environ.get("WAYPOINT_MODEL_URL"),
                       os.environ.get("WAYPOINT_MODEL_NAME"))
    files = [f.strip() for f in os.environ.get("WAYPOINT_RAG_FILES", "").split(",")
             if f.strip()] or None
    return build_graph(model, corpus.open_index(os.environ.get("WAYPOINT_RAG_DB")
                                                or corpus.DEFAULT_DB, files=files))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", help="a question about waypoint")
    common.add_model_arguments(parser)
    parser.add_argument("--db", default=str(corpus.DEFAULT_DB), help="the index's SQLite file")
    parser.add_argument("--rebuild", action="store_true", help="embed every doc again")
    parser.add_argument("--routes", action="store_true", help="print the routing table")
    args = parser.parse_args(argv)
    if args.routes:
        print(ROUTES)
        return 0
    if not args.question and not args.rebuild:
        parser.error("give a question (or --rebuild, or --routes)")
    started = time.perf_counter()
    index = corpus.open_index(args.db, rebuild=args.rebuild)
    stats = index.stats
    print(f"index: {stats['chunks']} chunks from {stats['files']} files; embedded now: "
          f"{', '.join(stats['embedded']) or 'nothing'} ({time.perf_counter() - started:.1f} s)")
    if not args.question:
        return 0
    model = make_model(args.model, args.base_url, args.model_name)
    started = time.perf_counter()
    out = build_graph(model, index).invoke({"question": args.question})
    print(f"route:    {out['query_type']} -> tools: "
          f"{', '.join(ROUTES.tools_for(out)) or 'none'}")
    for p in out.get("passages") or []:
        score = "code" if p["score"] is None else f"{p['score']:.2f}"
        print(f"  [{p['n']}] {score:>5}  {p['source']}")
    print(f"\n{out['answer']}\n")
    for line in out["sources"]:
        print(line)
    for note in out.get("citation_notes") or []:
        print(f"dropped: {note}")
    print(f"\ncitations_ok: {out['citations_ok']}   {time.perf_counter() - started:.1f} s "
          f"on {model.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
