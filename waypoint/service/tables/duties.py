"""Duties: fleet-wide chores (the TTL sweep) done by one process per period.

Every API and worker process runs the same background loops; a chore that should happen
once per period across the fleet first claims its row here for that period (a conditional
upsert, so two processes never both win), and the others skip it until the claim lapses.
A process that dies mid-chore leaves a claim that lapses at the end of its period.
"""

from __future__ import annotations

from .common import now
from .db import Tx


def claim(tx: Tx, name: str, holder: str, seconds: float, at: float | None = None) -> bool:
    """True for the one caller that holds duty `name` for the next `seconds`."""
    at = now() if at is None else at
    return bool(tx.execute(
        "INSERT INTO waypoint_duties (name, holder, until) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until "
        "WHERE waypoint_duties.until <= ?", (name, holder, at + seconds, at)))
