"""Rich rendering for the time-travel commands: threads, history, a state tree, a diff.

Everything here takes plain data (normalised values, summaries built in `threads.py`) and
returns Rich renderables, so what is shown stays separate from how the store is read.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from .state_diff import ADDED, CHANGED, REMOVED, Change

TRUNCATE = 80  # characters of a value shown unless --full

_STATUS_STYLE = {"done": "green", "cancelled": "dim", "waiting": "yellow", "errored": "red",
                 "running?": "cyan"}


def short_len(ids: Iterable[str], floor: int = 8) -> int:
    """The shortest prefix length that tells every id apart (checkpoint ids share their
    leading time digits within a run, so a fixed 8 would not do)."""
    ordered = sorted(set(ids))
    length = floor
    for a, b in itertools.pairwise(ordered):
        common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                      min(len(a), len(b)))
        length = max(length, common + 1)
    return length


def when(ts: str | None, short: bool = False) -> str:
    """An ISO timestamp as local 'YYYY-MM-DD HH:MM:SS' ('MM-DD HH:MM:SS' if short; as
    stored if it does not parse)."""
    if not ts:
        return ""
    try:
        moment = datetime.fromisoformat(ts).astimezone()
        return moment.strftime("%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return ts


def clip(text: str, full: bool, limit: int = TRUNCATE) -> str:
    if full or len(text) <= limit:
        return text
    return f"{text[:limit]}… (+{len(text) - limit} chars)"


def scalar(value: Any, full: bool = False, limit: int = TRUNCATE) -> str:
    """A leaf value as one line of JSON-ish text (markup-escaped, clipped)."""
    return escape(clip(json.dumps(value, ensure_ascii=False, default=repr), full, limit))


def status_text(status: str, detail: str) -> Text:
    style = _STATUS_STYLE.get(status, "")
    text = Text(status, style=style)
    if detail:
        text.append(f" {detail}")
    return text


def threads_table(rows: Sequence[dict[str, Any]]) -> Table:
    """Threads newest first; the graph column only when some run recorded its graph."""
    named = any(row["graph"] for row in rows)
    table = Table(title=f"threads ({len(rows)})", title_justify="left")
    table.add_column("thread")
    if named:
        table.add_column("graph")
    table.add_column("checkpoints", justify="right")
    table.add_column("step", justify="right")
    table.add_column("status")
    table.add_column("updated")
    for row in rows:
        graph = [escape(row["graph"] or "")] if named else []
        table.add_row(escape(row["thread_id"]), *graph, str(row["checkpoints"]),
                      str(row["step"]), status_text(row["status"], row["detail"]),
                      when(row["updated_at"]))
    return table


def _history_cells(row: dict[str, Any], width: int) -> dict[str, str]:
    # the nodes only: the questions themselves are in `waypoint show`
    interrupts = ", ".join(f"⏸ {escape(i['node'] or '?')}" for i in row["interrupts"])
    retries = len(row["retries"])
    notes = [f"[yellow]{retries} retr{'y' if retries == 1 else 'ies'}[/]"] if retries else []
    notes += [f"[red]{escape(e['node'])}: {escape(clip(e['error'], False, 60))}[/]"
              for e in row["errors"]]
    notes += [f"handled: {escape(str(h.get('node', h)))}" if isinstance(h, dict) else "handled"
              for h in row["handled_errors"]]
    return {"checkpoint": row["checkpoint_id"][:width] + (" [bold green]*[/]" if row["head"]
                                                           else ""),
            "step": str(row["step"]), "source": escape(row["source"] or ""),
            "wrote": escape(", ".join(row["wrote"])), "next": escape(", ".join(row["next"])),
            "waiting": interrupts, "time": when(row["created_at"], short=True),
            "notes": "\n".join(notes)}


def history_table(thread_id: str, rows: Sequence[dict[str, Any]], width: int) -> Table:
    """Checkpoints newest first. Where a checkpoint's parent is not the one listed below it
    (the first checkpoint of a replay or fork branch) its parent is shown under its id (↳); the
    waiting (interrupts) and notes columns show only when some checkpoint has any."""
    cells = [_history_cells(row, width) for row in rows]
    for cell, row, below in zip(cells, rows, [*rows[1:], None], strict=True):
        parent = row["parent_id"]
        if parent and below is not None and parent != below["checkpoint_id"]:
            cell["checkpoint"] += f"\n[dim]↳ {parent[:width]}[/]"
    days = {cell["time"][:5] for cell in cells}
    if len(days) == 1:  # one day: its date in the title, times alone in the column
        for cell in cells:
            cell["time"] = cell["time"][6:]
    shown = [name for name in ("checkpoint", "step", "source", "wrote", "next", "waiting",
                               "time", "notes")
             if name not in ("waiting", "notes") or any(c[name] for c in cells)]
    on = f" on {when(rows[0]['created_at'])[:10]}" if len(days) == 1 and rows else ""
    table = Table(title=f"history of {escape(thread_id)}{on} (newest first)",
                  title_justify="left", caption="* the head (where the thread goes on from); "
                  "↳ the parent a branch starts from")
    for name in shown:  # what wrote stays whole up to 10 characters; the rest wraps
        longest = max((len(Text.from_markup(c[name])) for c in cells), default=0)
        table.add_column(name, justify="right" if name == "step" else "left",
                         no_wrap=name in ("checkpoint", "source"),
                         min_width=min(longest, 10) if name == "wrote" else None)
    for cell in cells:
        table.add_row(*(cell[name] for name in shown))
    return table


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and "content" in value and ("role" in value
                                                                or "type" in value)


def _label(key: str | int, value: Any, full: bool) -> str:
    name = f"[{key}]" if isinstance(key, int) else f"[bold]{escape(str(key))}[/]"
    if _is_message(value):
        return f"{name} {brief(value, full)}"
    if isinstance(value, dict) and value:
        return f"{name} [dim]{{{len(value)} key{'s' if len(value) != 1 else ''}}}[/]"
    if isinstance(value, list) and value:
        return f"{name} [dim][{len(value)} item{'s' if len(value) != 1 else ''}][/]"
    return f"{name}: {scalar(value, full)}"


def _grow(branch: Tree, value: Any, full: bool) -> None:
    items: Iterable[tuple[str | int, Any]] = (
        value.items() if isinstance(value, dict) else enumerate(value))
    for key, item in items:
        if _is_message(item):
            node = branch.add(_label(key, item, full))
            rest = {k: v for k, v in item.items()
                    if k not in ("content", "type", "role") and v not in (None, {}, [])}
            _grow(node, rest, full)
        elif isinstance(item, (dict, list)) and item:
            _grow(branch.add(_label(key, item, full)), item, full)
        else:
            branch.add(_label(key, item, full))


def state_tree(title: str, values: dict[str, Any], full: bool) -> Tree:
    """Normalised state values as a nested tree; long strings clipped unless `full`."""
    tree = Tree(title, guide_style="dim")
    if not values:
        tree.add("[dim](empty)[/]")
    _grow(tree, values, full)
    return tree


def pending_tree(next_nodes: Sequence[str], interrupts: Sequence[dict[str, Any]],
                 errors: Sequence[dict[str, Any]], full: bool) -> Tree:
    """What runs next from a checkpoint, and what it waits for or failed on."""
    tree = Tree("[bold]next[/]: " + (escape(", ".join(next_nodes)) if next_nodes
                                     else "[green]nothing (the run finished)[/]"))
    if interrupts:
        branch = tree.add(f"[yellow]interrupts ({len(interrupts)})[/]")
        for item in interrupts:
            node = branch.add(f"{escape(item['node'] or '?')} [dim]id {escape(item['id'])}[/]")
            value = item["value"]
            if isinstance(value, (dict, list)) and value:
                _grow(node, value, full)
            else:
                node.add(scalar(value, full))
    for error in errors:
        tree.add(f"[red]error in {escape(error['node'])}[/]: {escape(clip(error['error'], full))}")
    return tree


def brief(value: Any, full: bool = False) -> str:
    """A value on one line; a message (or a list of them) as `who: content`."""
    if _is_message(value):
        who = value.get("type") or value.get("role")
        content = value["content"] if isinstance(value["content"], str) else \
            json.dumps(value["content"], default=repr)
        calls = ", ".join(str(c.get("name")) for c in value.get("tool_calls") or ()
                          if isinstance(c, dict))
        tail = f" [dim](calls {escape(calls)})[/]" if calls else ""
        return f"[magenta]{escape(str(who))}[/]: {escape(clip(content, full))}{tail}"
    if isinstance(value, list) and value and all(_is_message(v) for v in value):
        return " | ".join(brief(v, full) for v in value)
    return scalar(value, full)


def diff_lines(changes: Sequence[Change], full: bool) -> list[str]:
    """One line of markup per change: + added, - removed, ~ old → new."""
    lines = []
    for change in changes:
        where = escape(change.where)
        if change.kind == ADDED:
            lines.append(f"[green]+ {where}[/]: {brief(change.new, full)}")
        elif change.kind == REMOVED:
            lines.append(f"[red]- {where}[/]: {brief(change.old, full)}")
        else:
            lines.append(f"[yellow]~ {where}[/]: {brief(change.old, full)} → "
                         f"{brief(change.new, full)}")
    return lines


def diff_summary(changes: Sequence[Change]) -> str:
    counts = {kind: sum(1 for c in changes if c.kind == kind) for kind in (ADDED, REMOVED,
                                                                           CHANGED)}
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())


def update_lines(node: str, update: Any, full: bool) -> list[str]:
    """A streamed step update: the node, then each key it wrote."""
    if node == "__interrupt__":
        return [f"[yellow]⏸ interrupt[/]: "
                f"{brief(item.get('value') if isinstance(item, dict) else item, full)}"
                for item in update or ()] or ["[yellow]⏸ paused (breakpoint)[/]"]
    if not isinstance(update, dict) or not update:
        return [f"[bold cyan]{escape(node)}[/] {brief(update, full)}"]
    return [f"[bold cyan]{escape(node)}[/]"] + [
        f"  {escape(str(key))}: {brief(value, full)}" for key, value in update.items()]
