"""A task: one node run within a super-step, and what it produced (pure data)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..types import Command, Interrupt, Send
from .resume import NO_RESUME

if TYPE_CHECKING:
    from ..graph.spec import NodeSpec


class ChildCommand(Exception):
    """A nested graph's `Command(graph=PARENT)`, to be applied by the task that ran it."""

    def __init__(self, command: Command) -> None:
        super().__init__(command)
        self.command = command


class Task:
    """One node execution of a super-step and its outcome."""

    __slots__ = ("arg", "done", "effects", "error", "gotos", "handled", "id", "index",
                 "interrupts",
                 "is_push", "name", "node", "pending_resume", "resume", "retries", "update",
                 "writes")

    def __init__(self, index: int, name: str, node: NodeSpec | None, task_id: str,
                 arg: Any = None, is_push: bool = False) -> None:
        self.index = index
        self.name = name
        self.node = node
        self.id = task_id
        self.arg = arg
        self.is_push = is_push
        self.done = False
        self.writes: list[tuple[str, Any]] = []
        self.gotos: list[str | Send] = []
        self.update: Any = None  # what the node returned, for stream_mode="updates"
        self.error: BaseException | None = None
        self.interrupts: tuple[Interrupt, ...] = ()
        self.resume: list[Any] = []
        self.pending_resume: Any = NO_RESUME
        self.retries: list[dict[str, Any]] = []  # failed attempts that were retried
        self.handled: dict[str, Any] | None = None  # a failure its error_handler answered
        self.effects: list[dict[str, Any]] = []  # effects it ran or reused, for metadata

    def __repr__(self) -> str:
        return f"Task({self.name!r}, id={self.id!r})"
