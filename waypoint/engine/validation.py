"""`validate=`: checking a node's update before it is applied.

A schema (pydantic model, TypedDict, dataclass) is checked with pydantic; a function
may return None/True (valid), False, an error message or a list of errors, or raise.
An invalid update raises `OutputValidationError`, which the node's retry policy treats
as transient, with the errors as feedback for the next attempt.
"""

from __future__ import annotations

from typing import Any

from ..errors import OutputValidationError

_ADAPTERS: dict[int, Any] = {}


def _adapter(schema: type) -> Any:
    adapter = _ADAPTERS.get(id(schema))
    if adapter is None:
        from pydantic import TypeAdapter

        adapter = TypeAdapter(schema)
        _ADAPTERS[id(schema)] = adapter
    return adapter


def check_update(node: str, validator: Any, update: dict[str, Any]) -> None:
    """Raise `OutputValidationError` naming what is wrong with `update`."""
    if isinstance(validator, type):
        from pydantic import ValidationError

        try:
            _adapter(validator).validate_python(update)
        except ValidationError as exc:
            errors = [
                f"{'.'.join(str(p) for p in e['loc']) or '(update)'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            ]
            raise OutputValidationError(node, "; ".join(errors)) from None
        return
    try:
        verdict = validator(update)
    except (ValueError, AssertionError, TypeError, KeyError) as exc:
        raise OutputValidationError(node, str(exc) or type(exc).__name__) from None
    if verdict is None or verdict is True:
        return
    if verdict is False:
        name = getattr(validator, "__name__", "validator")
        raise OutputValidationError(node, f"rejected by {name}")
    if isinstance(verdict, str):
        raise OutputValidationError(node, verdict)
    if isinstance(verdict, (list, tuple)):
        if not verdict:
            return
        raise OutputValidationError(node, "; ".join(str(e) for e in verdict))
    raise TypeError(
        f"node {node!r}: the validate= function returned {type(verdict).__name__}; return "
        f"None/True when valid, or False, a message or a list of errors"
    )
