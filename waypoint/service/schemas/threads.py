"""Request bodies of the threads endpoints, named and shaped as the Agent Server's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from ..input_limits import MAX_FILTER_KEYS, MAX_IDS
from .runs import MAX_TTL_MINUTES, Checked, CheckpointRef, Filter, Offset, Strict

ThreadStatus = Literal["idle", "busy", "interrupted", "error"]


class ThreadTTL(Strict):
    """Delete the thread after `ttl` minutes without activity (strategy "delete")."""

    strategy: Literal["delete"] = "delete"
    ttl: float = Field(gt=0, le=MAX_TTL_MINUTES)


class ThreadCreate(Strict):
    thread_id: str | None = Field(default=None, min_length=1, max_length=128)
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    ttl: ThreadTTL | None = None
    supersteps: list[dict[str, Any]] | None = None


class ThreadPatch(Strict):
    metadata: dict[str, Any] | None = None
    ttl: ThreadTTL | None = None


class ThreadSearch(Strict):
    ids: list[str] | None = Field(default=None, max_length=MAX_IDS)
    metadata: Filter = Field(default=None, max_length=MAX_FILTER_KEYS)
    values: Filter = Field(default=None, max_length=MAX_FILTER_KEYS)
    status: ThreadStatus | None = None
    limit: int = Field(default=10, ge=0, le=1000)
    offset: Offset = 0
    sort_by: Literal["thread_id", "status", "created_at", "updated_at",
                     "state_updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None
    extract: dict[str, Any] | None = None


class ThreadCount(Strict):
    metadata: Filter = Field(default=None, max_length=MAX_FILTER_KEYS)
    values: Filter = Field(default=None, max_length=MAX_FILTER_KEYS)
    status: ThreadStatus | None = None


class ThreadStateUpdate(Strict):
    values: dict[str, Any] | list[Any] | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None
    as_node: str | None = None


class ThreadStateCheckpoint(Strict):
    checkpoint: CheckpointRef
    subgraphs: bool = False


class ThreadHistory(Checked):
    """`before` may be a checkpoint object or, as older clients send, a checkpoint config."""

    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=10, ge=1, le=10000)
    before: dict[str, Any] | str | None = None
    metadata: Filter = Field(default=None, max_length=MAX_FILTER_KEYS)
    checkpoint: CheckpointRef | None = None


class ThreadPrune(Strict):
    thread_ids: list[str] = Field(max_length=MAX_IDS)
    strategy: Literal["delete", "keep_latest"] = "delete"
