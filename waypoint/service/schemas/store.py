"""Request bodies of the store endpoints (long-term memory), as the Agent Server's."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..input_limits import MAX_FILTER_KEYS
from .runs import MAX_TTL_MINUTES, Filter, Offset, Strict


class StorePut(Strict):
    namespace: list[str] = Field(min_length=1)
    key: str = Field(min_length=1, max_length=1024)
    value: dict[str, Any]
    index: bool | list[str] | None = None
    ttl: float | None = Field(default=None, gt=0, le=MAX_TTL_MINUTES)


class StoreDelete(Strict):
    namespace: list[str] = Field(min_length=1)
    key: str = Field(min_length=1, max_length=1024)


class StoreSearch(Strict):
    namespace_prefix: list[str] | None = None
    filter: Filter = Field(default=None, max_length=MAX_FILTER_KEYS)
    limit: int = Field(default=10, ge=0, le=1000)
    offset: Offset = 0
    query: str | None = None
    refresh_ttl: bool | None = None


class StoreNamespaces(Strict):
    prefix: list[str] | None = None
    suffix: list[str] | None = None
    max_depth: int | None = Field(default=None, ge=1, le=1000)
    limit: int = Field(default=100, ge=0, le=1000)
    offset: Offset = 0
