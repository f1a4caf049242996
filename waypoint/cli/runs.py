"""`waypoint runs`: the graph versions runs are pinned to, and moving them on purpose.

A run records the version of its graph it started on, and a worker claims only runs of the
versions it serves: a rolling deploy never resumes a thread on a graph it did not start
on. Once a new version is known to be able to continue the old threads (or after the old
workers are gone for good), `waypoint runs migrate` re-pins them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from .serve import console, service_settings

app = typer.Typer(no_args_is_help=True, help="Graph versions of queued and paused runs.")

_CONFIG = typer.Option(None, "--config", "-c", help="The langgraph.json-style file the "
                       "servers use (to know the versions they serve).")
_POSTGRES = typer.Option(None, "--postgres", help="postgresql:// URL of the shared database.")
_DB = typer.Option(None, "--db", help="SQLite file of an embedded server.")


@contextlib.contextmanager
def _database(postgres: str | None, db: Path | None) -> Iterator[Any]:
    from ..service.tables.db import PostgresDatabase, SqliteDatabase
    from ..service.tables.schema import migrate

    if bool(postgres) == bool(db):
        console.print("[red]error:[/red] pass one of --postgres URL or --db FILE")
        raise typer.Exit(2)
    if postgres:
        database: Any = PostgresDatabase(postgres, max_size=1)
        try:
            migrate(database)
            yield database
        finally:
            database.close()
        return
    from ..checkpoint.sqlite import SqliteSaver

    if not Path(str(db)).exists():
        console.print(f"[red]error:[/red] no database file {db}")
        raise typer.Exit(2)
    with SqliteSaver.from_conn_string(str(db)) as saver:
        database = SqliteDatabase(saver.run_write, str(db), saver.arun_write)
        try:
            migrate(database)
            yield database
        finally:
            database.close()


def _served(config: Path | None) -> dict[str, str]:
    if config is None:
        return {}
    from ..service.context import load_graphs
    from ..service.graphs import GraphRegistry

    settings = service_settings(config, [])
    return GraphRegistry(load_graphs(settings), None, None,
                         settings.graph_versions).versions()


@app.command("versions")
def versions(config: Path | None = _CONFIG, postgres: str | None = _POSTGRES,
             db: Path | None = _DB,
             graph: str | None = typer.Option(None, "--graph", help="Only this graph.")
             ) -> None:
    """Pending, running and paused runs by graph version (and whether --config serves it)."""
    from ..service.tables import runs as run_table

    served = _served(config)
    with _database(postgres, db) as database:
        rows = database.run(lambda tx: run_table.versions_in_use(tx, graph))
    table = Table("graph", "version", "status", "runs", *(["served"] if served else []))
    for graph_id, version, status, count in rows:
        mark = ([("yes" if version in (None, served.get(graph_id)) else "[red]no[/red]")]
                if served else [])
        table.add_row(graph_id, version or "(not started)", status, str(count), *mark)
    console.print(table)
    if served:
        console.print("this config serves: " + ", ".join(f"{g} {v}" for g, v in served.items()))


@app.command("migrate")
def migrate_runs(graph: str = typer.Option(..., "--graph", help="The graph whose runs move."),
                 to: str = typer.Option(..., "--to", help="The version to pin them to, or "
                                        "'current' (the version --config serves)."),
                 from_version: str | None = typer.Option(None, "--from", help="Only runs "
                                                         "pinned to this version."),
                 thread: str | None = typer.Option(None, "--thread", help="Only this thread."),
                 config: Path | None = _CONFIG, postgres: str | None = _POSTGRES,
                 db: Path | None = _DB) -> None:
    """Re-pin the queued and paused runs of a graph to another version, on purpose."""
    from ..service.tables import runs as run_table

    if to == "current":
        served = _served(config)
        if graph not in served:
            console.print(f"[red]error:[/red] --to current needs --config serving {graph!r}")
            raise typer.Exit(2)
        to = served[graph]
    with _database(postgres, db) as database:
        moved = database.run(lambda tx: run_table.migrate_version(
            tx, graph, to, from_version=from_version, thread_id=thread))
    console.print(f"{moved} run(s) of {graph} now pinned to {to}")
