"""Request bodies of waypoint's approvals inbox (an addition to the Agent Server API)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .runs import Strict


class ApprovalDecide(Strict):
    """A person's decision: an allowed action, with edits (checked against the approval's
    JSON schema) for "edit" and "respond"."""

    action: str = Field(min_length=1, max_length=64)
    comment: str | None = Field(default=None, max_length=10000)
    edits: Any = None
    by: str | None = Field(default=None, max_length=256)
