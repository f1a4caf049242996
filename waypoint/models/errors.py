"""What can go wrong in a model call, sorted by what the caller should do about it.

Transient errors (timeouts, rate limits, overloaded or unreachable servers) are worth a
retry and then the next model of a fallback chain. Configuration errors (bad key, unknown
model, missing package or weights) are never masked by a fallback: they are re-raised, as
a fallback would only hide a deployment mistake. Other permanent errors (a request the
server refuses) fail the call.
"""

from __future__ import annotations

from typing import Any

from ..errors import PermanentError, TransientError, WaypointError


class ModelError(WaypointError):
    """A model call failed; `model` names which one."""

    def __init__(self, message: str, *, model: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(f"{model}: {message}" if model else message)
        self.model = model
        self.status = status


class TransientModelError(ModelError, TransientError):
    """Worth retrying, then falling back."""

    def __init__(self, message: str, *, model: str | None = None, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, model=model, status=status)
        self.retry_after = retry_after


class ModelTimeout(TransientModelError):
    """No (complete) answer within the call's timeout."""


class RateLimited(TransientModelError):
    """HTTP 429, or a local rate limit that would be exceeded."""


class ModelUnavailable(TransientModelError):
    """Connection refused or reset, HTTP 5xx: the server is down or overloaded."""


class PermanentModelError(ModelError, PermanentError):
    """The same request will fail again (HTTP 4xx other than 429, a refused input)."""


class ModelConfigError(PermanentModelError):
    """Wrong key, unknown model, missing package or weights: fix the deployment."""


class StructuredOutputError(PermanentModelError):
    """The model's answer did not fit the requested schema, even after a corrective retry."""

    def __init__(self, message: str, *, model: str | None = None, raw: str = "",
                 errors: Any = None) -> None:
        super().__init__(message, model=model)
        self.raw = raw
        self.errors = errors


def classify_status(status: int, message: str, *, model: str | None = None,
                    retry_after: float | None = None) -> ModelError:
    """The error for an HTTP status of an OpenAI-style endpoint."""
    if status == 429:
        return RateLimited(message, model=model, status=status, retry_after=retry_after)
    if status in (408, 409) or status >= 500:
        return ModelUnavailable(message, model=model, status=status, retry_after=retry_after)
    if status in (401, 403, 404):
        return ModelConfigError(message, model=model, status=status)
    return PermanentModelError(message, model=model, status=status)
