"""The `waypoint` command line: one Typer app, a module per command group."""

from __future__ import annotations

import typer

from .. import __version__
from . import draw, evals, runs, serve, threads, timers, usage, worker

app = typer.Typer(name="waypoint", no_args_is_help=True, add_completion=False,
                  help="Durable agent workflows: draw graphs, fire timers, serve, run workers.",
                  pretty_exceptions_show_locals=False)
app.command("draw")(draw.draw)
app.command("timers")(timers.timers)
app.command("serve")(serve.serve)
app.command("worker")(worker.worker)
app.command("usage")(usage.usage)
app.command("eval")(evals.eval_command)
app.command("threads")(threads.threads)
app.command("history")(threads.history)
app.command("show")(threads.show)
app.command("diff")(threads.diff)
app.command("replay")(threads.replay)
app.command("fork")(threads.fork)
app.add_typer(runs.app, name="runs")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"waypoint {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Durable agent workflows: draw graphs, fire timers, serve the API."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `waypoint` script (and `python -m waypoint.cli`)."""
    try:
        app(args=argv, prog_name="waypoint")
    except SystemExit as done:
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
