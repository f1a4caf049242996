"""`waypoint usage`: what model and tool calls cost, from the durable usage ledger.

Reads the ledger kept beside the checkpoints (an embedded SQLite file such as the demo's
or a server's, or the shared PostgreSQL) and sums it by run, thread, node, model, tool,
tenant, user, assistant or day — the same totals as the server's `GET /usage`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..usage import parse_moment
from .serve import console


def parse_since(value: str | None, name: str) -> float | None:
    if not value:
        return None
    try:
        return parse_moment(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from None


@contextlib.contextmanager
def _ledger(db: Path | None, postgres: str | None) -> Iterator[Any]:
    if bool(db) == bool(postgres):
        console.print("[red]error:[/red] pass one of --db FILE or --postgres URL")
        raise typer.Exit(2)
    if postgres:
        from ..checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(postgres) as saver:
            yield saver
        return
    if not Path(str(db)).exists():
        console.print(f"[red]error:[/red] no database file {db}")
        raise typer.Exit(2)
    from ..checkpoint.sqlite import SqliteSaver

    with SqliteSaver.from_conn_string(str(db)) as saver:
        yield saver


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.6f}"


def usage(
    db: Path | None = typer.Option(None, "--db", help="SQLite file holding the checkpoints "
                                   "(e.g. .waypoint/research.db or a server's server.db)."),
    postgres: str | None = typer.Option(None, "--postgres", help="postgresql:// URL."),
    by: list[str] = typer.Option([], "--by", "-b", help="Group by run_id, thread_id, node, "
                                 "model, tool, kind, outcome, tenant, user_id, assistant_id "
                                 "or day (repeat or comma-separate)."),
    run: str | None = typer.Option(None, "--run", help="Only this run id."),
    thread: str | None = typer.Option(None, "--thread", help="Only this thread id."),
    node: str | None = typer.Option(None, "--node", help="Only this node."),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    tool: str | None = typer.Option(None, "--tool", help="Only this tool."),
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant."),
    user: str | None = typer.Option(None, "--user", help="Only this user id."),
    assistant: str | None = typer.Option(None, "--assistant", help="Only this assistant."),
    since: str | None = typer.Option(None, "--since", help="From: 7d, 24h, an ISO date..."),
    until: str | None = typer.Option(None, "--until", help="Until (same forms)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Calls, tokens and cost of model and tool calls, summed by what you group by."""
    from ..checkpoint.usage_ledger import GROUP_DIMS, total_of

    dims = [d.strip() for item in by for d in item.split(",") if d.strip()]
    unknown = sorted(set(dims) - set(GROUP_DIMS))
    if unknown:
        raise typer.BadParameter(f"cannot group by {', '.join(unknown)} (choose from "
                                 f"{', '.join(GROUP_DIMS)})", param_hint="--by")
    filters = {"run_id": run, "thread_id": thread, "node": node, "model": model,
               "tool": tool, "tenant": tenant, "user_id": user, "assistant_id": assistant}
    bounds = {"since": parse_since(since, "--since"), "until": parse_since(until, "--until")}
    with _ledger(db, postgres) as saver:
        groups = saver.usage_totals(dims, **bounds, **filters)
    total = [total_of(groups)]
    if as_json:
        typer.echo(json.dumps({"group_by": dims, "groups": [g.to_json() for g in groups],
                               "total": total[0].to_json() if total else None}, indent=2))
        return
    table = Table(title="usage" + (f" by {', '.join(dims)}" if dims else ""))
    for dim in dims:
        table.add_column(dim)
    for name in ("calls", "input tokens", "output tokens", "cost (USD)", "unpriced", "errors"):
        table.add_column(name, justify="right")
    for group in groups if dims else total:
        table.add_row(*[str(group.key.get(d)) for d in dims], str(group.calls),
                      f"{group.input_tokens:,}", f"{group.output_tokens:,}",
                      _money(group.cost_usd), str(group.unpriced_calls), str(group.errors))
    if dims and total:
        t = total[0]
        table.add_row(*(["[bold]total[/bold]"] + [""] * (len(dims) - 1)), str(t.calls),
                      f"{t.input_tokens:,}", f"{t.output_tokens:,}", _money(t.cost_usd),
                      str(t.unpriced_calls), str(t.errors))
    console.print(table)
