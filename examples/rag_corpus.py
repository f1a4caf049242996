"""The corpus behind ``rag_router.py``: this project's own docs, chunked and embedded once.

* ``split_markdown(path, text)``: sections by heading (headings inside code fences are not
  headings), packed paragraph by paragraph into chunks of about 500 to 1,000 characters; each
  chunk's ``source`` is ``path#anchor`` (GitHub's heading anchors), so a citation can be
  followed in a browser.
* ``open_index(db)``: a ``SqliteStore`` with a semantic index (all-MiniLM-L6-v2, offline)
  at ``.waypoint/rag.db``. Each paragraph of a chunk is embedded on its own, prefixed with
  the heading trail, and a chunk scores its best paragraph: on 12 questions about these
  docs the right section came first 9 times this way, 7 times with one vector per chunk.
  The sha256 of every file is kept in the store next to its chunks, so opening the index
  again embeds nothing unless a file changed, appeared or went away, and then only that
  file's chunks (``rebuild=True`` re-embeds everything).

Guides and reference pages are told apart per file (``REFERENCE``), so a route can search
only the guides.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from waypoint.store import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = ROOT / ".waypoint" / "rag.db"
# Pages that list commands, formats or options rather than walk through a task.
REFERENCE = frozenset({"docs/cli.md", "docs/graph-json.md", "docs/policies.md"})
MAX_CHARS = 1000
MIN_CHARS = 250       # a section's last piece shorter than this joins the piece before it
CHUNKER = "md-v1"     # change when the chunking changes: every file is embedded again
FIELDS = ["parts[*]"]  # one vector per paragraph; an item scores its best one
CHUNKS = ("rag", "chunks")
FILES = ("rag", "files")
META = ("rag", "meta")


@dataclass(frozen=True)
class Chunk:
    path: str
    anchor: str
    heading: str      # the heading trail: "Page > Section > Subsection"
    text: str

    @property
    def source(self) -> str:
        return f"{self.path}#{self.anchor}" if self.anchor else self.path


def corpus_files(root: Path = ROOT) -> list[str]:
    """The files indexed under `root`: README.md, examples/README.md and docs/*.md."""
    names = [p for p in ("README.md", "examples/README.md") if (root / p).is_file()]
    return names + sorted(p.relative_to(root).as_posix() for p in (root / "docs").glob("*.md"))


def kind_of(path: str) -> str:
    return "reference" if path in REFERENCE else "guide"


def area_of(path: str) -> str:
    return "docs" if path.startswith("docs/") else "readme"


def anchor_of(heading: str, seen: dict[str, int]) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens,
    repeats numbered."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    return slug if count == 0 else f"{slug}-{count}"


def _blocks(lines: list[str]) -> list[str]:
    """Paragraphs of a section: blank lines split them, except inside a code fence."""
    blocks, current, fenced = [], [], False
    for line in lines:
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not line.strip() and not fenced:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _pieces(block: str) -> list[str]:
    """A block longer than MAX_CHARS, cut between its items (a list item or table row with
    its indented continuation lines), an item longer still at line ends, a line hard."""
    if len(block) <= MAX_CHARS:
        return [block]
    items: list[str] = []
    for line in block.split("\n"):
        if items and line[:1].isspace() and len(items[-1]) + len(line) < MAX_CHARS:
            items[-1] += "\n" + line
        else:
            items.append(line)
    pieces, current = [], ""
    for item in items:
        while len(item) > MAX_CHARS:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(item[:MAX_CHARS])
            item = item[MAX_CHARS:]
        if current and len(current) + 1 + len(item) > MAX_CHARS:
            pieces.append(current)
            current = ""
        current = f"{current}\n{item}" if current else item
    if current:
        pieces.append(current)
    return pieces


def _pack(blocks: list[str]) -> list[str]:
    chunks: list[str] = []
    current = ""
    for piece in (p for block in blocks for p in _pieces(block)):
        if len(current) >= MIN_CHARS and len(current) + 2 + len(piece) > MAX_CHARS:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{piece}" if current else piece
    if current:
        if chunks and len(current) < MIN_CHARS:
            chunks[-1] = f"{chunks[-1]}\n\n{current}"
        else:
            chunks.append(current)
    return chunks


def split_markdown(path: str, text: str) -> list[Chunk]:
    """Chunks of one Markdown file, in reading order."""
    sections: list[tuple[str, str, list[str]]] = []   # (anchor, heading trail, lines)
    trail: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    anchor, lines, fenced = "", [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        found = None if fenced else re.match(r"(#{1,6})\s+(.+?)\s*#*\s*$", line)
        if found is None:
            lines.append(line)
            continue
        sections.append((anchor, " > ".join(h for _, h in trail), lines))
        level, title = len(found.group(1)), found.group(2)
        trail = [(lv, h) for lv, h in trail if lv < level] + [(level, title)]
        anchor, lines = anchor_of(title, seen), []
    sections.append((anchor, " > ".join(h for _, h in trail), lines))
    return [Chunk(path, a, heading or path, body)
            for a, heading, body_lines in sections
            for body in _pack(_blocks(body_lines))]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class DocIndex:
    """The embedded chunks, searchable by meaning; `stats` says what opening it embedded."""

    def __init__(self, store: SqliteStore, stats: dict[str, Any], path: Path) -> None:
        self.store = store
        self.stats = stats
        self.path = path

    def search(self, query: str, *, k: int = 3, kind: str | None = None,
               area: str | None = None) -> list[dict[str, Any]]:
        """The `k` chunks closest to `query`, best first, optionally only of one kind/area."""
        wanted = {key: value for key, value in (("kind", kind), ("area", area)) if value}
        hits = self.store.search(CHUNKS, query=query, filter=wanted or None, limit=k)
        return [{"source": hit.value["source"], "heading": hit.value["heading"],
                 "text": hit.value["text"],
                 "score": None if hit.score is None else round(hit.score, 3)}
                for hit in hits]

    def close(self) -> None:
        self.store.close()


def open_index(db: str | Path = DEFAULT_DB, *, root: Path = ROOT, files: list[str] | None = None,
               rebuild: bool = False, embed: Any = "local") -> DocIndex:
    """Open the index at `db`, embedding only what changed since it was last opened."""
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    # A cache that can be rebuilt from the docs: no fsync per chunk.
    store = SqliteStore(str(db), index={"dims": 384, "embed": embed, "fields": FIELDS},
                        synchronous="NORMAL")
    store.setup()
    files = corpus_files(root) if files is None else files
    meta = store.get(META, "config")
    config = {"chunker": CHUNKER, "max_chars": MAX_CHARS, "fields": FIELDS,
              "embed": embed if isinstance(embed, str) else type(embed).__name__}
    rebuild = rebuild or meta is None or meta.value != config
    known = {item.key: item.value for item in store.search(FILES, limit=10_000)}
    stats: dict[str, Any] = {"files": len(files), "embedded": [], "removed": [], "chunks": 0}
    for path in sorted(set(known) - set(files)):
        _drop(store, path, known[path])
        stats["removed"].append(path)
    for path in files:
        digest = sha256((root / path).read_bytes())
        old = known.get(path)
        if not rebuild and old is not None and old["sha256"] == digest:
            stats["chunks"] += old["chunks"]
            continue
        if old is not None:
            _drop(store, path, old)
        chunks = split_markdown(path, (root / path).read_text(encoding="utf-8"))
        for number, chunk in enumerate(chunks):
            store.put(CHUNKS, f"{path}::{number}", {
                "source": chunk.source, "path": path, "heading": chunk.heading,
                "text": chunk.text, "kind": kind_of(path), "area": area_of(path),
                "parts": [f"{chunk.heading}: {block}"
                          for block in _blocks(chunk.text.split("\n"))]})
        store.put(FILES, path, {"sha256": digest, "chunks": len(chunks)}, index=False)
        stats["embedded"].append(path)
        stats["chunks"] += len(chunks)
    store.put(META, "config", config, index=False)
    return DocIndex(store, stats, Path(db))


def _drop(store: SqliteStore, path: str, entry: dict[str, Any]) -> None:
    for number in range(entry["chunks"]):
        store.delete(CHUNKS, f"{path}::{number}")
    store.delete(FILES, path)
