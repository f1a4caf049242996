"""Stored stream events: what a run streamed, numbered, so a client can catch up.

An event id is "<attempt>-<seq>": a run taken over after a crash streams its next attempt
under a higher attempt number, so ids keep increasing even where the dead attempt's last
events never reached the table.
"""

from __future__ import annotations

from collections.abc import Sequence

from .db import Tx, notify

Event = tuple[str, int, int, str, bytes]  # (run_id, attempt, seq, event, data)


def parse_id(event_id: str | None) -> tuple[int, int] | None:
    """(attempt, seq) of an event id; None for a missing or foreign id (replay all)."""
    if not event_id:
        return None
    attempt, _, seq = event_id.strip().partition("-")
    try:
        return int(attempt), int(seq)
    except ValueError:
        return None


def format_id(attempt: int, seq: int) -> str:
    return f"{attempt}-{seq}"


def append(tx: Tx, events: Sequence[Event], at: float) -> None:
    if events:
        tx.execute_many("INSERT INTO waypoint_run_events (run_id, attempt, seq, event, data, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        [(*event, at) for event in events])
        for run_id in {event[0] for event in events}:
            notify(tx, "waypoint_run_events", run_id)


def read(tx: Tx, run_id: str, after: tuple[int, int] | None) -> list[tuple[int, int, str,
                                                                            bytes]]:
    """A run's stored events after `after`, in order."""
    if after is None:
        rows = tx.all("SELECT attempt, seq, event, data FROM waypoint_run_events WHERE "
                      "run_id = ? ORDER BY attempt, seq", [run_id])
    else:
        rows = tx.all("SELECT attempt, seq, event, data FROM waypoint_run_events WHERE "
                      "run_id = ? AND (attempt > ? OR (attempt = ? AND seq > ?)) "
                      "ORDER BY attempt, seq", [run_id, after[0], after[0], after[1]])
    return [(a, s, e, bytes(d)) for a, s, e, d in rows]


def prune(tx: Tx, older_than: float) -> int:
    """Forget events of finished runs older than the retention window."""
    return tx.execute("DELETE FROM waypoint_run_events WHERE created_at < ? AND run_id IN "
                      "(SELECT run_id FROM waypoint_runs WHERE status NOT IN "
                      "('pending', 'running'))", [older_than])

