"""Sorting failures into transient (worth another try) and permanent (will fail again).

The rule users asked for: lost connections, timeouts, HTTP 408/425/429 and 5xx are
transient; programming and input errors (ValueError, TypeError, PermissionError, ...) and
every other 4xx are permanent. `TransientError` / `PermanentError` mark an exception
explicitly and win over the rule. Anything unknown counts as transient, as in LangGraph:
a retry policy is opt-in per node, so retrying an unexpected error is the expected default.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any, Literal

from .errors import PermanentError, TransientError

Kind = Literal["transient", "permanent"]

_TRANSIENT_STATUS = frozenset({408, 425, 429})
_PERMANENT_TYPES: tuple[type[BaseException], ...] = (
    ValueError, TypeError, PermissionError, LookupError, AttributeError, NameError,
    NotImplementedError, ArithmeticError, ImportError, SyntaxError, AssertionError,
    RuntimeError, ReferenceError, StopIteration, StopAsyncIteration, UnicodeError,
)


def status_code(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (httpx, requests, our model errors), if any."""
    for holder in (getattr(exc, "response", None), exc):
        if holder is None:
            continue
        for name in ("status_code", "status"):
            value = getattr(holder, name, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    return None


def classify(exc: BaseException) -> Kind:
    """'transient' or 'permanent' for a failure, by the rule in this module's docstring."""
    if isinstance(exc, PermanentError):
        return "permanent"
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, (ConnectionError, TimeoutError, asyncio.TimeoutError)):
        return "transient"
    status = status_code(exc)
    if status is not None:
        return "transient" if status in _TRANSIENT_STATUS or status >= 500 else "permanent"
    if _is_network_error(exc):
        return "transient"
    if isinstance(exc, (OSError, *_PERMANENT_TYPES)):
        return "permanent"
    return "transient"


def is_transient(exc: BaseException) -> bool:
    return classify(exc) == "transient"


def retry_after(exc: BaseException, *, now: float | None = None) -> float | None:
    """Seconds a server asked us to wait (`retry_after` attribute or Retry-After header)."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    try:
        raw = headers.get("retry-after") or headers.get("Retry-After")
    except Exception:
        return None
    return parse_retry_after(raw, now=now)


def parse_retry_after(raw: Any, *, now: float | None = None) -> float | None:
    """A Retry-After header value (delta seconds or an HTTP date) as seconds from now."""
    if raw is None:
        return None
    text = str(raw).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds)


def _is_network_error(exc: BaseException) -> bool:
    """httpx transport failures (timeouts, refused or reset connections, protocol errors)."""
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a core dependency
        return False
    return isinstance(exc, (httpx.TransportError, httpx.TimeoutException))


__all__ = ["Kind", "classify", "is_transient", "parse_retry_after", "retry_after",
           "status_code"]
