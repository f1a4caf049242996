"""Time-travel debugging: `waypoint threads | history | show | diff | replay | fork`.

"Why did the agent do that?" is answered from the checkpoints a thread left behind: list
the threads of a store, walk one thread's checkpoints, look at the state at any of them,
diff two of them, then re-run from one (`replay`) or from an edited copy of one (`fork`);
both make a new branch of the same thread, as LangGraph's time travel does, and leave the
old checkpoints as they were.

The read commands need only the store (`--db FILE` or `--postgres URL`); `replay` and
`fork` also need the graph (`--graph MODULE:ATTR`), bound to that store. Checkpoint ids can
be shortened to any unique prefix. Only the root namespace is shown (not subgraphs').
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ..checkpoint.base import BaseCheckpointSaver, CheckpointTuple, make_config
from ..constants import INTERRUPT
from ..types import StateSnapshot
from . import state_view as view
from .loading import graph_on
from .serve import console
from .state_diff import diff as diff_values
from .state_diff import diff_json, normalise
from .usage import _ledger

_DB = typer.Option(None, "--db", help="SQLite file holding the checkpoints (e.g. "
                   ".waypoint/server.db).")
_POSTGRES = typer.Option(None, "--postgres", help="postgresql:// URL of the store.")
_JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")
_FULL = typer.Option(False, "--full", help="Show long values whole instead of clipped.")
_THREAD = typer.Argument(..., help="The thread id (see `waypoint threads`).")
_GRAPH = typer.Option(..., "--graph", help="MODULE:ATTRIBUTE of a compiled graph, or of a "
                      "function that takes a checkpointer and returns one.")


def fail(message: str) -> NoReturn:
    """Say what is wrong on stderr and exit 2 (no traceback: these are user mistakes)."""
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(2)


def _out() -> Console:
    """Results go to stdout (pipeable); errors and progress notes go to `console` (stderr)."""
    return Console(highlight=False)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=repr))


def _line_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, default=repr))


# -- reading a store ---------------------------------------------------------------------


def snapshot_of(saver: BaseCheckpointSaver, saved: CheckpointTuple) -> StateSnapshot:
    """A stored checkpoint as `get_state` shows it (next nodes, interrupts, errors), with no
    graph at hand: the engine reads it the way it reads a graph called inside a node."""
    from ..engine.state_api import _snapshot  # no public graph-less reader (see docs/cli.md)

    return _snapshot(None, saver, saved, False)


def checkpoints_of(saver: BaseCheckpointSaver, thread_id: str) -> list[CheckpointTuple]:
    """The thread's root checkpoints, newest first; exit 2 if the store has no such thread."""
    found = list(saver.list(make_config(thread_id, "", None)))
    if not found:
        fail(f"no thread {thread_id!r} in this store (`waypoint threads` lists them)")
    return found


def resolve(found: Sequence[CheckpointTuple], prefix: str, thread_id: str) -> CheckpointTuple:
    """The checkpoint whose id is `prefix` or starts with it; exit 2 if none or several."""
    wanted = prefix.strip().lower()
    matches = [t for t in found if t.checkpoint.id.startswith(wanted)] if wanted else []
    exact = [t for t in matches if t.checkpoint.id == wanted]
    if exact:
        return exact[0]
    if not matches:
        fail(f"no checkpoint {prefix!r} in thread {thread_id!r} "
             f"(`waypoint history {thread_id}` lists them)")
    if len(matches) > 1:
        width = view.short_len(t.checkpoint.id for t in found)
        some = ", ".join(t.checkpoint.id[:width] for t in matches[:5])
        fail(f"checkpoint prefix {prefix!r} is ambiguous in thread {thread_id!r}: it matches "
             f"{len(matches)} checkpoints ({some}{', ...' if len(matches) > 5 else ''}); "
             f"give more characters")
    return matches[0]


def _error_text(error: BaseException) -> str:
    from ..engine.task_errors import TaskError

    return str(error) if isinstance(error, TaskError) else f"{type(error).__name__}: {error}"


def interrupts_of(snap: StateSnapshot) -> list[dict[str, Any]]:
    return [{"node": task.name, "id": item.id, "value": normalise(item.value)}
            for task in snap.tasks for item in task.interrupts]


def errors_of(snap: StateSnapshot) -> list[dict[str, Any]]:
    return [{"node": task.name, "error": _error_text(task.error)}
            for task in snap.tasks if task.error is not None]


def status_of(saved: CheckpointTuple, snap: StateSnapshot) -> tuple[str, str]:
    """(status, detail) of a thread from its head: done, cancelled, waiting (at which
    interrupt), errored (where), or running? — next tasks and nothing recorded about them:
    a run in progress, a pause at a static breakpoint, or a process that died mid-step."""
    from ..engine.budget import BUDGET_TASK

    meta = snap.metadata or {}
    if not saved.checkpoint.next_tasks:
        return ("cancelled", "") if meta.get("source") == "cancel" else ("done", "")
    waiting = list(dict.fromkeys(task.name for task in snap.tasks if task.interrupts))
    if waiting:
        return "waiting", f"at interrupt ({', '.join(waiting)})"
    if any(task_id == BUDGET_TASK and channel == INTERRUPT
           for task_id, channel, _ in saved.pending_writes):
        return "waiting", "for a budget decision"
    failed = errors_of(snap)
    if failed:
        return "errored", f"in {failed[0]['node']}: {failed[0]['error']}"
    return "running?", f"next: {', '.join(snap.next)}"


def graph_name(metadata: dict[str, Any] | None) -> str:
    """The graph (and assistant, when it differs) a server run recorded, else ''."""
    meta = metadata or {}
    graph, assistant = meta.get("graph_id"), meta.get("assistant_id")
    if graph and assistant and assistant != graph:
        return f"{graph} ({assistant})"
    return str(graph or assistant or "")


def thread_rows(saver: BaseCheckpointSaver) -> list[dict[str, Any]]:
    """A summary of every thread in the store, most recently updated first.

    The savers have no public "list threads" call, so this walks `list(None)` (every
    checkpoint of every thread, decoded) and counts; fine for a debugging session, slow on
    a store with millions of checkpoints."""
    counts: dict[str, int] = {}
    for saved in saver.list(None):
        conf = saved.config["configurable"]
        if not conf.get("checkpoint_ns"):
            counts[conf["thread_id"]] = counts.get(conf["thread_id"], 0) + 1
    rows = []
    for thread_id, count in counts.items():
        head = saver.get_tuple(make_config(thread_id, "", None))
        if head is None:
            continue
        snap = snapshot_of(saver, head)
        status, detail = status_of(head, snap)
        rows.append({"thread_id": thread_id, "graph": graph_name(snap.metadata),
                     "checkpoints": count, "step": head.checkpoint.step, "status": status,
                     "detail": detail, "next": list(snap.next),
                     "interrupts": interrupts_of(snap), "head": head.checkpoint.id,
                     "updated_at": head.checkpoint.ts})
    rows.sort(key=lambda row: (row["updated_at"] or "", row["head"]), reverse=True)
    return rows


def checkpoint_row(saver: BaseCheckpointSaver, saved: CheckpointTuple,
                   head_id: str | None) -> dict[str, Any]:
    """One checkpoint of a history: where it came from, what wrote it, what comes next."""
    snap = snapshot_of(saver, saved)
    meta = snap.metadata or {}
    parent = (saved.parent_config or {}).get("configurable", {}).get("checkpoint_id")
    return {"checkpoint_id": saved.checkpoint.id, "parent_id": parent,
            "step": saved.checkpoint.step, "source": meta.get("source"),
            "wrote": list(saved.checkpoint.ran), "updated": list(saved.checkpoint.updated),
            "next": list(snap.next), "interrupts": interrupts_of(snap),
            "errors": errors_of(snap), "retries": normalise(meta.get("retries") or []),
            "handled_errors": normalise(meta.get("handled_errors") or []),
            "created_at": saved.checkpoint.ts, "head": saved.checkpoint.id == head_id}


# -- read commands -----------------------------------------------------------------------


def threads(limit: int | None = typer.Option(None, "--limit", "-n", help="At most N threads."),
            db: Path | None = _DB, postgres: str | None = _POSTGRES,
            as_json: bool = _JSON) -> None:
    """The threads in a store, newest first, with their status (done, waiting, errored)."""
    with _ledger(db, postgres) as saver:
        rows = thread_rows(saver)
    rows = rows[:limit] if limit is not None else rows
    if as_json:
        _echo_json(rows)
    else:
        _out().print(view.threads_table(rows))


def history(thread: str = _THREAD,
            limit: int | None = typer.Option(None, "--limit", "-n",
                                             help="Only the newest N checkpoints."),
            db: Path | None = _DB, postgres: str | None = _POSTGRES,
            as_json: bool = _JSON) -> None:
    """A thread's checkpoints, newest first: what wrote each, what ran next, interrupts."""
    with _ledger(db, postgres) as saver:
        found = checkpoints_of(saver, thread)
        head_id = saver.head_id(thread)
        rows = [checkpoint_row(saver, saved, head_id)
                for saved in (found[:limit] if limit is not None else found)]
    if as_json:
        _echo_json(rows)
        return
    width = view.short_len(t.checkpoint.id for t in found)
    _out().print(view.history_table(thread, rows, width))


def show(thread: str = _THREAD,
         checkpoint: str | None = typer.Option(None, "--checkpoint", "-c", help="Checkpoint "
                                               "id or unique prefix (default: the head)."),
         full: bool = _FULL, db: Path | None = _DB, postgres: str | None = _POSTGRES,
         as_json: bool = _JSON) -> None:
    """The state at one checkpoint (default the latest), its next nodes and interrupts."""
    with _ledger(db, postgres) as saver:
        found = checkpoints_of(saver, thread)
        head_id = saver.head_id(thread)
        saved = resolve(found, checkpoint or head_id or found[0].checkpoint.id, thread)
        row = checkpoint_row(saver, saved, head_id)
        values = normalise(saved.checkpoint.values)
    if as_json:
        _echo_json({"thread_id": thread, **row, "values": values,
                    "metadata": normalise(dict(saved.metadata or {}))})
        return
    width = view.short_len(t.checkpoint.id for t in found)
    title = (f"[bold]{escape(thread)}[/] @ {row['checkpoint_id'][:width]}"
             f"{' (head)' if row['head'] else ''} · step {row['step']} · {row['source']}"
             f" · {view.when(row['created_at'])}")
    out = _out()
    out.print(view.state_tree(title, values, full))
    out.print(view.pending_tree(row["next"], row["interrupts"], row["errors"], full))


def diff(thread: str = _THREAD,
         a: str = typer.Argument(..., help="The older checkpoint (id or unique prefix)."),
         b: str = typer.Argument(..., help="The newer checkpoint (id or unique prefix)."),
         full: bool = _FULL, db: Path | None = _DB, postgres: str | None = _POSTGRES,
         as_json: bool = _JSON) -> None:
    """What changed in the state from checkpoint A to checkpoint B."""
    with _ledger(db, postgres) as saver:
        found = checkpoints_of(saver, thread)
        old, new = resolve(found, a, thread), resolve(found, b, thread)
    changes = diff_values(old.checkpoint.values, new.checkpoint.values)
    if as_json:
        _echo_json({"thread_id": thread, "from": old.checkpoint.id, "to": new.checkpoint.id,
                    **diff_json(changes)})
        return
    width = view.short_len(t.checkpoint.id for t in found)
    out = _out()
    out.print(f"[bold]{escape(thread)}[/]: {old.checkpoint.id[:width]} (step "
              f"{old.checkpoint.step}) → {new.checkpoint.id[:width]} (step "
              f"{new.checkpoint.step}): {view.diff_summary(changes)}")
    for line in view.diff_lines(changes, full):
        out.print(line)
    if not changes:
        out.print("[dim]the states are the same[/]")


# -- commands that run the graph ---------------------------------------------------------


def bind_graph(target: str, saver: BaseCheckpointSaver) -> Any:
    """The graph of `target` running on `saver` (a compiled graph built with another
    checkpointer is rebound: same nodes and options, this store)."""
    try:
        made = graph_on(target, saver)
    except typer.BadParameter as exc:
        fail(f"--graph: {exc}")
    spec = getattr(made, "spec", None)
    if spec is None or not hasattr(made, "update_state"):
        fail(f"--graph {target}: not a waypoint compiled graph (got {type(made).__name__})")
    if getattr(made, "saver", None) is saver:
        return made
    from ..engine.compiled import CompiledStateGraph

    return CompiledStateGraph(spec, checkpointer=saver, builder=made.builder, store=made.store,
                              **made.options)


def run_from(graph: Any, thread_id: str, checkpoint_id: str, *, as_json: bool,
             full: bool) -> None:
    """Continue the thread from `checkpoint_id`, printing each step's updates as they come;
    an older checkpoint makes a new branch (LangGraph's replay), the head just resumes."""
    out = _out()
    config = {"configurable": {"thread_id": thread_id, "checkpoint_id": checkpoint_id}}
    if not as_json:
        console.print(f"running {escape(thread_id)} from {checkpoint_id}")
    try:
        for update in graph.stream(None, config, stream_mode="updates"):
            for node, value in update.items():
                data = normalise(value)
                if as_json:
                    _line_json({"event": "update", "node": node, "update": data})
                else:
                    for line in view.update_lines(node, data, full):
                        out.print(line)
    except Exception as exc:  # the graph's own failure: report it, keep what was stored
        head = graph.saver.head_id(thread_id)
        if as_json:
            _line_json({"event": "error", "error": _error_text(exc), "head": head})
        else:
            console.print(f"[red]run failed:[/red] {escape(_error_text(exc))}")
            console.print(f"head: {head}")
        raise typer.Exit(1) from None
    saved = graph.saver.get_tuple(make_config(thread_id, "", None))
    snap = snapshot_of(graph.saver, saved)
    done = {"event": "done", "from": checkpoint_id, "head": saved.checkpoint.id,
            "next": list(snap.next), "interrupts": interrupts_of(snap)}
    if as_json:
        _line_json(done)
        return
    out.print(f"new head: [bold]{saved.checkpoint.id}[/]")
    if snap.next:
        out.print(view.pending_tree(done["next"], done["interrupts"], errors_of(snap), full))


def replay(thread: str = _THREAD,
           checkpoint: str = typer.Option(..., "--checkpoint", "-c", help="Checkpoint id or "
                                          "unique prefix to re-run from."),
           graph: str = _GRAPH, full: bool = _FULL, db: Path | None = _DB,
           postgres: str | None = _POSTGRES,
           as_json: bool = typer.Option(False, "--json", help="One JSON object per line: "
                                        "each update, then the new head.")) -> None:
    """Re-run the graph from a checkpoint: a new branch of the thread, old one kept."""
    with _ledger(db, postgres) as saver:
        saved = resolve(checkpoints_of(saver, thread), checkpoint, thread)
        compiled = bind_graph(graph, saver)
        run_from(compiled, thread, saved.checkpoint.id, as_json=as_json, full=full)


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=JSON` pairs from --set; exit 2 on a malformed one, before anything is written."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"--set {item!r}: expected KEY=JSON (e.g. --set count=3 or "
                 f"--set 'name=\"Ada\"')")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError as exc:
            fail(f"--set {key}: invalid JSON {raw!r} ({exc.msg}); a string needs quotes: "
                 f"--set '{key}=\"text\"'")
    return values


def fork(thread: str = _THREAD,
         checkpoint: str = typer.Option(..., "--checkpoint", "-c", help="Checkpoint id or "
                                        "unique prefix to fork from."),
         graph: str = _GRAPH,
         sets: list[str] = typer.Option([], "--set", help="KEY=JSON: a state value to write "
                                        "(repeatable; goes through the key's reducer)."),
         as_node: str | None = typer.Option(None, "--as-node", help="Write as if this node "
                                            "returned the values (default: the node that "
                                            "wrote the checkpoint)."),
         run: bool = typer.Option(False, "--run", help="Then continue from the new "
                                  "checkpoint, like replay."),
         full: bool = _FULL, db: Path | None = _DB, postgres: str | None = _POSTGRES,
         as_json: bool = typer.Option(False, "--json", help="One JSON object per line: the "
                                      "fork, then (with --run) each update and the head.")
         ) -> None:
    """Edit the state at a checkpoint (a new branch via update_state) and optionally run on."""
    from ..errors import InvalidUpdateError

    values = parse_sets(sets)
    if not values:
        fail("nothing to write: pass at least one --set KEY=JSON")
    with _ledger(db, postgres) as saver:
        saved = resolve(checkpoints_of(saver, thread), checkpoint, thread)
        compiled = bind_graph(graph, saver)
        keys = list(compiled.spec.keys)
        unknown = [key for key in values if key not in keys]
        if unknown:
            fail(f"--set {', '.join(unknown)}: not in the state schema of {graph} "
                 f"(keys: {', '.join(keys)})")
        config = make_config(thread, "", saved.checkpoint.id)
        try:
            written = compiled.update_state(config, values, as_node=as_node)
        except (InvalidUpdateError, ValueError, TypeError) as exc:
            fail(f"cannot write the update: {exc}")
        new_id = written["configurable"]["checkpoint_id"]
        if as_json:
            _line_json({"event": "fork", "from": saved.checkpoint.id, "checkpoint_id": new_id,
                        "values": normalise(values)})
        else:
            _out().print(f"forked {escape(thread)} at {saved.checkpoint.id} → new checkpoint "
                         f"[bold]{new_id}[/]")
        if run:
            run_from(compiled, thread, new_id, as_json=as_json, full=full)
