"""The RAG router example (examples/rag_router.py, seed 001): its index, its routes and their
tool sets, retrieval on the real docs, the citation check and its eval set, on the scripted
model with the real embeddings. The local model's figures come from `waypoint eval` (see
the example's docstring)."""

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from waypoint.checkpoint import MemorySaver
from waypoint.evals import load_dataset, run_eval
from waypoint.messages import AIMessage
from waypoint.models import ScriptedModel

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
import rag_corpus as corpus  # noqa: E402
import rag_router as rr  # noqa: E402

DATASET = EXAMPLES / "data" / "rag_router_eval.jsonl"

GUIDE = """# Widgets

Widgets are durable objects that remember their colour between runs.

## Pausing a widget

Call `widget.pause()` to stop a widget; `widget.resume()` starts it again from where it
stopped, keeping its colour.

```bash
# not a heading: a comment in a code block
widget pause --all
```

## Painting

A widget is painted with `paint(widget, colour)`; the paint dries in one step.
"""
REFERENCE = """# Command reference

## widget export

`widget export FILE` writes every widget to a JSON file, one object per widget.
"""
README = """# tinyproj

A tiny project about widgets and gadgets. Gadgets count sheep at night.
"""


@pytest.fixture
def tiny(tmp_path):
    """A small corpus with code to grep and an example to list."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(README)
    (tmp_path / "docs" / "widgets.md").write_text(GUIDE)
    (tmp_path / "docs" / "cli.md").write_text(REFERENCE)  # a reference page by name
    (tmp_path / "waypoint").mkdir()
    (tmp_path / "waypoint" / "widgets.py").write_text(
        "class Widget:\n    def pause(self):\n        '''Stop the widget.'''\n")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "paint_widgets.py").write_text(
        '"""Paint widgets in every colour and pause them."""\n')
    return tmp_path


@pytest.fixture
def tiny_index(tiny):
    index = corpus.open_index(tiny / "rag.db", root=tiny)
    yield index
    index.close()


# The real docs that the retrieval tests ask about, and the largest others as distractors:
# embedding every doc costs a minute of CPU on 2 cores, these ~40 % of it.
DOCS = ["README.md", "docs/store.md", "docs/tools.md", "docs/evals.md", "docs/policies.md"]
DOCS_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "waypoint"


def _copy(source: Path, target: Path) -> None:
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


@pytest.fixture(scope="module")
def docs_index(tmp_path_factory):
    """The index over those docs, in a temp file. Warm-started from the last run's copy in
    the user's cache (opening it re-embeds only the docs that changed), saved back after."""
    db = tmp_path_factory.mktemp("rag") / "rag.db"
    cached = DOCS_CACHE / "rag-test-docs.db"
    if cached.exists():
        _copy(cached, db)
    index = corpus.open_index(db, files=DOCS)
    try:
        DOCS_CACHE.mkdir(parents=True, exist_ok=True)
        _copy(db, cached)
    except (OSError, sqlite3.Error):  # a read-only home: the next run embeds again
        pass
    yield index
    index.close()


def scripted():
    return rr.make_model("scripted")


def labelled(kind):
    """Classifies every question as `kind`; answers like the scripted model."""
    return ScriptedModel([json.dumps({"query_type": kind, "symbol": ""}), rr.scripted_reply])


def run(app, question):
    """The final state and the nodes that ran, in order."""
    path, final = [], None
    for mode, chunk in app.stream({"question": question}, stream_mode=["updates", "values"]):
        if mode == "updates":
            path.extend(name for name in chunk if not name.startswith("__"))
        else:
            final = chunk
    return final, path


# -- the corpus and its index ------------------------------------------------------------

def test_chunks_follow_headings_and_carry_their_anchor():
    chunks = corpus.split_markdown("docs/widgets.md", GUIDE)
    assert [c.source for c in chunks] == ["docs/widgets.md#widgets",
                                          "docs/widgets.md#pausing-a-widget",
                                          "docs/widgets.md#painting"]
    assert "widget pause --all" in chunks[1].text  # the fenced "# ..." is not a heading
    assert chunks[1].heading == "Widgets > Pausing a widget"
    long = "# Big\n\n" + "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(12))
    sizes = [len(c.text) for c in corpus.split_markdown("big.md", long)]
    assert len(sizes) > 1 and all(250 <= s <= corpus.MAX_CHARS for s in sizes)


def test_index_is_built_once_reused_and_rebuilt_when_a_doc_changes(tiny):
    db = tiny / "rag.db"
    first = corpus.open_index(db, root=tiny)
    assert first.stats["embedded"] == ["README.md", "docs/cli.md", "docs/widgets.md"]
    first.close()
    again = corpus.open_index(db, root=tiny)
    assert again.stats["embedded"] == [] and again.stats["chunks"] == first.stats["chunks"]
    again.close()

    (tiny / "docs" / "widgets.md").write_text(GUIDE + "\n## Recycling\n\nOld widgets are "
                                              "melted into spoons at the recycling plant.\n")
    (tiny / "README.md").unlink()
    changed = corpus.open_index(db, root=tiny)
    assert changed.stats["embedded"] == ["docs/widgets.md"]
    assert changed.stats["removed"] == ["README.md"]
    top = changed.search("what happens to old widgets?", k=1)[0]
    assert top["source"] == "docs/widgets.md#recycling"
    assert all(h["source"] != "README.md#tinyproj" for h in changed.search("sheep", k=10))
    changed.close()
    forced = corpus.open_index(db, root=tiny, rebuild=True)
    assert forced.stats["embedded"] == ["docs/cli.md", "docs/widgets.md"]
    forced.close()


# -- routes and their tools --------------------------------------------------------------

@pytest.mark.parametrize("question, kind, tools", [
    ("How do I pause a widget?", "how_to", {"search_guides", "list_examples"}),
    ("What does `Widget` do when paused?", "api_reference", {"search_docs", "grep_code"}),
    ("Why does a widget remember its colour?", "concept", {"search_all"}),
])
def test_each_query_type_takes_its_route_and_runs_only_its_tools(tiny, tiny_index, question,
                                                                 kind, tools):
    app = rr.build_graph(labelled(kind), tiny_index, code_root=tiny)
    out, path = run(app, question)
    assert out["query_type"] == kind
    assert path == ["classify", kind, "tools", "gather", "answer", "check_citations"]
    called = {c["name"] for m in out["messages"] if m.type == "ai" for c in m.tool_calls}
    assert called == tools == set(rr.ROUTES.tools_for(out))
    assert {p["tool"] for p in out["passages"]} <= tools
    assert out["refused"] == [] and out["citations_ok"] is True
    if kind == "api_reference":   # grep_code found the class in the code tree
        assert any(p["source"] == "waypoint/widgets.py:1" for p in out["passages"])
    if kind == "how_to":          # only guides: the reference page is not searched
        assert all(not p["source"].startswith("docs/cli.md") for p in out["passages"])
        assert any(p["source"] == "examples/paint_widgets.py" for p in out["passages"])


def test_a_tool_outside_the_route_is_refused(tiny, tiny_index):
    """The how_to route's node may not grep the code: a call slipped in is answered with an
    error, and only the route's own tool runs."""
    app = rr.build_graph(labelled("how_to"), tiny_index, code_root=tiny,
                         checkpointer=MemorySaver(),
                         interrupt_before=["tools"])
    config = {"configurable": {"thread_id": "rogue"}}
    app.invoke({"question": "How do I pause a widget?"}, config)
    assert app.get_state(config).next == ("tools",)
    rogue = AIMessage("", tool_calls=[
        {"name": "grep_code", "args": {"symbol": "Widget"}, "id": "x1", "type": "tool_call"},
        {"name": "search_guides", "args": {"query": "pause a widget"}, "id": "x2",
         "type": "tool_call"}])
    app.update_state(config, {"messages": [rogue]}, as_node="how_to")
    out = app.invoke(None, config)
    assert len(out["refused"]) == 1 and out["refused"][0].startswith("grep_code: ")
    assert "not allowed" in out["refused"][0]
    refusal = next(m for m in out["messages"] if m.type == "tool" and m.name == "grep_code")
    assert refusal.additional_kwargs["error_type"] == "unknown_tool"
    assert {p["tool"] for p in out["passages"]} == {"search_guides"}


def test_out_of_scope_is_refused_without_retrieval(tiny, tiny_index, monkeypatch):
    searched = []
    monkeypatch.setattr(tiny_index, "search", lambda *a, **k: searched.append(a) or [])
    app = rr.build_graph(scripted(), tiny_index, code_root=tiny)
    out, path = run(app, "What is the capital of France?")
    assert path == ["classify", "refuse"]
    assert out["query_type"] == "out_of_scope" and out["answer"] == rr.REFUSAL
    assert out["passages"] == [] and out["citations"] == [] and searched == []
    assert not any(m.type == "tool" for m in out["messages"])


def test_the_router_is_data():
    table = str(rr.ROUTES)
    assert "grep_code" in table and "refuse" in table
    assert rr.ROUTES.tools_for({"query_type": "out_of_scope"}) == ()
    assert rr.ROUTES.to_dict()["routes"][0]["tools"] == ["search_guides", "list_examples"]


# -- retrieval on the real docs -----------------------------------------------------------

@pytest.mark.parametrize("question, source", [
    ("How do I resume a paused thread?", "README.md#people-in-the-loop"),
    ("What is a scope in the long-term store?", "docs/store.md#scopes-tenants"),
    ("What options does ToolNode take?", "docs/tools.md#toolnode"),
])
def test_retrieval_ranks_the_answering_section_first(docs_index, question, source):
    hits = docs_index.search(question, k=3)
    assert hits[0]["source"] == source
    assert hits[0]["score"] > hits[-1]["score"] > 0


def test_real_docs_answer_cites_the_right_doc(docs_index):
    out = rr.build_graph(scripted(), docs_index).invoke(
        {"question": "How do I resume a paused thread?"})
    assert out["passages"][0]["source"] == "README.md#people-in-the-loop"
    assert out["citations"] == [1] and out["citations_ok"] is True
    assert out["sources"] == ["[1] README.md#people-in-the-loop"]
    assert out["messages"][-1].content.endswith("[1] README.md#people-in-the-loop")


# -- the citation check ------------------------------------------------------------------

PASSAGES = [
    {"n": 1, "heading": "Widgets > Pausing", "text": "widget.resume() starts a paused widget "
                                                     "again, keeping its colour."},
    {"n": 2, "heading": "Gadgets", "text": "Gadgets count sheep at night."},
]


def test_citation_check_flags_missing_and_unsupported_citations():
    answer = ("A paused widget starts again with widget.resume(), keeping its colour [1]. "
              "Bananas ripen quickly in warm kitchens [2]. Also see [7].")
    text, kept, notes = rr.check_citations(answer, [1, 2, 7], PASSAGES)
    assert kept == [1]
    assert notes[0].startswith("[2] shares too little") and notes[1].startswith("[7] cites no")
    assert "[2]" not in text and "[7]" not in text and text.count("[1]") == 1
    # a number listed without a marker is checked against the whole answer
    assert rr.check_citations("Gadgets count sheep at night.", [2], PASSAGES)[1] == [2]


def test_bad_citations_from_the_model_set_citations_ok_false(tiny, tiny_index):
    model = ScriptedModel([
        json.dumps({"query_type": "concept", "symbol": ""}),
        json.dumps({"answer": "Widgets keep their colour between runs [1]. The moon is "
                              "made of cheese [2].", "citations": [1, 5]}),
        # 4 passages retrieved: citation 5 is out of range, [2] is only marked in the text
    ])
    out = rr.build_graph(model, tiny_index, code_root=tiny).invoke(
        {"question": "Why does a widget remember its colour?"})
    assert len(out["passages"]) == 4 and out["citations_ok"] is False
    assert out["citations"] == [1] and len(out["citation_notes"]) == 2
    assert "cheese" in out["answer"] and "[2]" not in out["answer"]


# -- the eval set ------------------------------------------------------------------------

def test_eval_set_passes_on_the_scripted_model(docs_index, monkeypatch):
    cases = load_dataset(DATASET)
    assert 8 <= len(cases) <= 12
    assert {c.expected["query_type"] for c in cases} == {
        "how_to", "api_reference", "concept", "out_of_scope"}
    assert all(c.rubric for c in cases)
    report = run_eval(lambda: rr.build_graph(scripted(), docs_index), cases,
                      scorers=["fields", "path"])
    assert report.score == 1.0, report.to_markdown()


def test_eval_graph_builds_on_the_named_model_without_a_checkpointer(docs_index, monkeypatch):
    monkeypatch.setenv("WAYPOINT_MODEL", "scripted")
    monkeypatch.setenv("WAYPOINT_RAG_DB", str(docs_index.path))
    monkeypatch.setenv("WAYPOINT_RAG_FILES", ",".join(DOCS))  # the docs it holds: none to add
    app = rr.eval_graph()
    assert app.checkpointer is None
    report = run_eval(rr.eval_graph, load_dataset(DATASET), scorers=["fields"])
    assert report.score == 1.0, report.to_markdown()
