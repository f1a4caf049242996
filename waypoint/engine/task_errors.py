"""Storing a task's error in pending writes and showing it again in `get_state`."""

from __future__ import annotations

import builtins
from typing import Any


class TaskError(Exception):
    """A stored task failure whose original exception type is not a builtin."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


def error_record(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "module": type(exc).__module__, "message": str(exc)}


def error_from_record(record: dict[str, Any]) -> Exception:
    if record.get("module") == "builtins":
        cls = getattr(builtins, record["type"], None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(record["message"])
            except Exception:
                pass
    return TaskError(record["type"], record["message"])
