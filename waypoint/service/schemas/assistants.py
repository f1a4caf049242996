"""Request bodies of the assistants endpoints, named and shaped as the Agent Server's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..input_limits import MAX_FILTER_KEYS
from .runs import Filter, Offset, Strict


class AssistantCreate(Strict):
    graph_id: str = Field(min_length=1, max_length=128)
    assistant_id: str | None = Field(default=None, min_length=1, max_length=128)
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=4096)


class AssistantPatch(Strict):
    graph_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=4096)


class AssistantSearch(Strict):
    metadata: Filter = Field(default=None, max_length=MAX_FILTER_KEYS)
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(default=10, ge=0, le=1000)
    offset: Offset = 0
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at",
                     "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None


class AssistantCount(Strict):
    metadata: Filter = Field(default=None, max_length=MAX_FILTER_KEYS)
    graph_id: str | None = None
    name: str | None = None


class AssistantVersions(Strict):
    metadata: Filter = Field(default=None, max_length=MAX_FILTER_KEYS)
    limit: int = Field(default=10, ge=0, le=1000)
    offset: Offset = 0


class AssistantLatest(Strict):
    version: int = Field(ge=1, le=2**31)
