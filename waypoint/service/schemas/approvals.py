"""Request bodies of waypoint's approvals inbox (an addition to the Agent Server API)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from .runs import Strict, check_modes


class ApprovalDecide(Strict):
    """A person's decision: an allowed action, with edits (checked against the approval's
    JSON schema) for "edit" and "respond"."""

    action: str = Field(min_length=1, max_length=64)
    comment: str | None = Field(default=None, max_length=10000)
    edits: Any = None
    by: str | None = Field(default=None, max_length=256)
    # How the resuming run streams, for a client that joins it (e.g. the reply's tokens).
    stream_mode: list[str] | None = None

    @field_validator("stream_mode")
    @classmethod
    def _modes(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_modes(value)
