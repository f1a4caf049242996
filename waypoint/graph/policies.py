"""Checking a node's policy arguments when the graph is built, so mistakes fail early."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import GraphValidationError
from ..types import RetryPolicy, TimeoutPolicy
from .spec import GraphSpec

ON_DOUBT = ("ask", "fail", "retry")


def check_retry_policy(node: str, value: Any) -> Any:
    if value is None:
        return value
    if isinstance(value, RetryPolicy):
        _check_retry_on(node, value)
        return value
    if isinstance(value, Sequence) and value and all(isinstance(p, RetryPolicy) for p in value):
        for policy in value:
            _check_retry_on(node, policy)
        return tuple(value)
    raise GraphValidationError(
        f"node {node!r}: retry_policy must be a RetryPolicy or a list of them, got {value!r}"
    )


def _is_error_type(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


def _check_retry_on(node: str, policy: RetryPolicy) -> None:
    """What RetryPolicy reads only when a node fails: checked when the graph is built."""
    if isinstance(policy.max_attempts, bool):
        raise GraphValidationError(f"node {node!r}: RetryPolicy.max_attempts must be an int, "
                                   f"got {policy.max_attempts!r}")
    retry_on = policy.retry_on
    if _is_error_type(retry_on):
        return
    if isinstance(retry_on, Sequence) and not isinstance(retry_on, str):
        if retry_on and all(_is_error_type(t) for t in retry_on):
            return
    elif callable(retry_on) and not isinstance(retry_on, type):
        return
    raise GraphValidationError(
        f"node {node!r}: RetryPolicy.retry_on must be an exception type, a list of them or a "
        f"function(error) -> bool, got {retry_on!r}"
    )


def check_timeout(node: str, value: Any) -> TimeoutPolicy | None:
    try:
        return TimeoutPolicy.coerce(value)
    except (TypeError, ValueError) as exc:
        raise GraphValidationError(f"node {node!r}: {exc}") from None


def check_callable(node: str, what: str, value: Any) -> Callable[..., Any] | None:
    if value is not None and not callable(value):
        raise GraphValidationError(
            f"node {node!r}: {what} must be callable, got {type(value).__name__}"
        )
    return value


def check_validator(node: str, value: Any) -> Any:
    if value is None or callable(value):  # schemas (classes) are callable too
        return value
    raise GraphValidationError(
        f"node {node!r}: validate= takes a schema class or a function, got {type(value).__name__}"
    )


def check_on_doubt(node: str, value: str) -> str:
    if value not in ON_DOUBT:
        raise GraphValidationError(
            f"node {node!r}: on_doubt must be one of {', '.join(ON_DOUBT)}, got {value!r}"
        )
    return value


def apply_node_defaults(spec: GraphSpec, defaults: dict[str, Any]) -> None:
    """Give nodes without their own policy the graph's default (copies, builder untouched)."""
    if not defaults:
        return
    for name, node in list(spec.nodes.items()):
        if node.subgraph is not None:
            continue
        changes = {field: value for field, value in defaults.items()
                   if getattr(node, field) is None}
        if changes:
            spec.nodes[name] = dataclasses.replace(node, **changes)
