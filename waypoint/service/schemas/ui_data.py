"""Request bodies of the views the web UI needs and the Agent Server lacks (waypoint
additions): a search over runs across threads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .runs import Strict

RunStatus = Literal["pending", "running", "error", "success", "timeout", "interrupted"]


class RunSearch(Strict):
    """Runs of every thread the caller may see, newest first. `query` matches the start of
    a run id or a thread id; `tenant` narrows an admin's view (a member sees only its own
    tenant, whatever it asks)."""

    graph_id: str | None = Field(default=None, max_length=256)
    status: RunStatus | None = None
    tenant: str | None = Field(default=None, max_length=256)
    thread_id: str | None = Field(default=None, max_length=128)
    metadata: dict[str, Any] | None = None
    query: str | None = Field(default=None, max_length=128)
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=1_000_000)
