"""Request bodies of the runs endpoints, named and shaped as the Agent Server's.

Fields the Agent Server accepts but waypoint has no use for (LangSmith tracing, feedback
keys, the deprecated `checkpoint_during`) are accepted and ignored, so the official SDK
works; any other unknown field is refused with a 422 naming it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..input_limits import MAX_FILTER_KEYS, MAX_IDS, MAX_OFFSET, check_json

STREAM_MODES = ("values", "updates", "messages", "messages-tuple", "custom", "events", "debug",
                "tasks", "checkpoints")
MultitaskStrategy = Literal["reject", "interrupt", "rollback", "enqueue"]
Durability = Literal["sync", "async", "exit"]
# A TTL is in minutes; a century is plenty, and bounds what the stores turn into an expiry
# time (SQLite keeps microseconds in a 64-bit integer: ~290,000 years, then overflow).
MAX_TTL_MINUTES = 100 * 366 * 24 * 60


class Checked(BaseModel):
    """A request body whose every value the stores can hold (see `input_limits`)."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        check_json(data)
        return data


class Strict(Checked):
    model_config = ConfigDict(extra="forbid")


Filter = dict[str, Any] | None  # a metadata filter: one condition per key, so bounded
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET)]


class CommandBody(Strict):
    """`Command` as JSON: resume an interrupt, update state, route."""

    update: Any = None
    resume: Any = None
    goto: Any = None


class CheckpointRef(BaseModel):
    """A checkpoint as the API names one (extra keys such as `checkpoint_map` pass)."""

    model_config = ConfigDict(extra="allow")
    checkpoint_id: str | None = None
    checkpoint_ns: str = ""
    thread_id: str | None = None


def check_modes(value: Any) -> list[str]:
    modes = [value] if isinstance(value, str) else list(value or [])
    unknown = [m for m in modes if m not in STREAM_MODES]
    if unknown:
        raise ValueError(f"unknown stream_mode {unknown}; supported: {', '.join(STREAM_MODES)}")
    return list(dict.fromkeys(modes)) or ["values"]


class RunCreateBase(Strict):
    assistant_id: str = Field(min_length=1, max_length=256)
    input: Any = None
    command: CommandBody | None = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = Field(default=None, max_length=2048)
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    stream_mode: str | list[str] = Field(default_factory=lambda: ["values"])
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    after_seconds: float | None = Field(default=None, ge=0, le=366 * 86400)
    priority: int = Field(default=0, ge=-1000, le=1000)  # waypoint's: higher starts first
    durability: Durability | None = None
    on_disconnect: Literal["cancel", "continue"] | None = None
    # Accepted for the SDK's sake and ignored (see the module docstring).
    feedback_keys: list[str] | None = None
    checkpoint_during: bool | None = None
    langsmith_tracer: dict[str, Any] | None = None
    strict_resume: bool | None = None

    @field_validator("stream_mode")
    @classmethod
    def _modes(cls, value: Any) -> list[str]:
        return check_modes(value)

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("webhook must be an http:// or https:// URL")
        return value


class RunCreateStateful(RunCreateBase):
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None
    multitask_strategy: MultitaskStrategy = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"


class RunCreateStateless(RunCreateBase):
    on_completion: Literal["delete", "keep"] = "delete"
    if_not_exists: Literal["create", "reject"] | None = None
    multitask_strategy: MultitaskStrategy | None = None


class RunBatchItem(RunCreateStateless):
    """One run of `/runs/batch` (stateless; a `thread_id` runs it on that thread)."""

    thread_id: str | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None


class RunsCancel(Strict):
    thread_id: str | None = None
    run_ids: list[str] | None = Field(default=None, max_length=MAX_IDS)
    status: Literal["pending", "running", "all"] | None = None


class CronCreate(Strict):
    schedule: str = Field(min_length=1, max_length=256)
    assistant_id: str = Field(min_length=1, max_length=256)
    timezone: str | None = None
    end_time: str | None = None
    input: Any = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    on_run_completed: Literal["delete", "keep"] = "delete"
    enabled: bool = True
    stream_mode: str | list[str] = Field(default_factory=lambda: ["values"])
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    durability: Durability | None = None
    multitask_strategy: MultitaskStrategy | None = None
    user_id: str | None = None

    @field_validator("stream_mode")
    @classmethod
    def _modes(cls, value: Any) -> list[str]:
        return check_modes(value)


class CronPatch(Strict):
    schedule: str | None = None
    timezone: str | None = None
    end_time: str | None = None
    input: Any = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    on_run_completed: Literal["delete", "keep"] | None = None
    enabled: bool | None = None
    stream_mode: str | list[str] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    durability: Durability | None = None


class CronSearch(Strict):
    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    metadata: Filter = Field(default=None, max_length=MAX_FILTER_KEYS)
    limit: int = Field(default=10, ge=0, le=1000)
    offset: Offset = 0
    sort_by: str | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None


class CronCount(Strict):
    assistant_id: str | None = None
    thread_id: str | None = None
    metadata: Filter = Field(default=None, max_length=MAX_FILTER_KEYS)
