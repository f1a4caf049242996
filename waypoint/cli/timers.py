"""`waypoint timers`: resume threads whose durable timers are due."""

from __future__ import annotations

import contextlib
import time

import typer

from .loading import graph_on, open_store


def timers(
    graph: str = typer.Option(..., "--graph", help="MODULE:ATTRIBUTE of a compiled graph, or of "
                              "a function that takes a checkpointer and returns one"),
    store: str | None = typer.Option(None, "--store", help="SQLite file or postgresql:// URL "
                                     "the graph runs on"),
    watch: bool = typer.Option(False, "--watch", help="Keep firing timers as they fall due."),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between passes."),
    limit: int = typer.Option(100, "--limit", help="Timers per pass."),
) -> None:
    """Resume threads whose durable timers (sleeps, approval deadlines) are due."""
    from ..engine.timers import fire_due_timers

    with contextlib.ExitStack() as stack:
        saver = stack.enter_context(open_store(store)) if store else None
        compiled = graph_on(graph, saver)
        if compiled.saver is None:
            raise typer.BadParameter("the graph has no checkpointer: pass --store PATH_OR_URL")
        while True:
            for timer in fire_due_timers(compiled, limit=limit):
                typer.echo(f"{timer.outcome}: thread {timer.thread_id} ({timer.kind} timer "
                           f"{timer.timer_id})")
            if not watch:
                return
            time.sleep(interval)
