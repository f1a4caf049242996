"""Who is calling: API keys bound to tenants, or a pluggable function (JWT, OIDC...).

Every router depends on `current_identity`, so no endpoint but the probes answers without
it. A key is accepted as `x-api-key` (what langgraph-sdk sends) or `Authorization: Bearer`.
Keys are compared by their SHA-256 digest and never logged. Repeated wrong keys from one
address are refused with 429 for a while (`auth_limits`). With no keys and no function
configured, every caller is the admin of the "default" tenant (a local, loopback-only
server; `waypoint serve` refuses another host without keys unless told otherwise).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from .auth_limits import AuthFailureLimiter
from .errors import TooManyRequests, Unauthorized

DEFAULT_TENANT = "default"
ROLES = ("admin", "member")


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller: its tenant, role (an admin sees every tenant) and user id."""

    tenant: str
    role: str = "member"
    user_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def scope(self) -> str | None:
        """The tenant filter for queries: None lets an admin see every tenant."""
        return None if self.is_admin else self.tenant


ANONYMOUS = Identity(DEFAULT_TENANT, "admin", None)


@dataclass(frozen=True, slots=True)
class ApiKey:
    key: str
    tenant: str
    role: str = "member"
    user_id: str | None = None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def keys_from_env(value: str | None = None) -> list[ApiKey]:
    """`WAYPOINT_API_KEYS`: comma-separated `key:tenant[:role]` entries."""
    text = os.environ.get("WAYPOINT_API_KEYS", "") if value is None else value
    keys: list[ApiKey] = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError("WAYPOINT_API_KEYS entries are key:tenant or key:tenant:role "
                             f"(entry {len(keys) + 1} is not)")
        role = parts[2] if len(parts) == 3 else "member"
        if role not in ROLES:
            raise ValueError(f"WAYPOINT_API_KEYS entry {len(keys) + 1}: role must be one of "
                             f"{', '.join(ROLES)}")
        keys.append(ApiKey(parts[0], parts[1], role))
    return keys


class Authenticator:
    """Turns request headers into an Identity, or refuses with 401."""

    def __init__(self, keys: list[ApiKey], function: Any = None) -> None:
        self._by_digest = {_digest(k.key): k for k in keys}
        self._function = function

    @property
    def open(self) -> bool:
        """No keys and no function: every caller is the local admin."""
        return not self._by_digest and self._function is None

    async def identify(self, headers: Mapping[str, str], presented: str | None) -> Identity:
        if self._function is not None:
            found = self._function(headers)
            if inspect.isawaitable(found):
                found = await found
            if found is not None:
                return _as_identity(found)
            if not self._by_digest:
                raise Unauthorized("not authenticated", headers={"WWW-Authenticate": "Bearer"})
        if self.open:
            return ANONYMOUS
        if not presented:
            raise Unauthorized("missing API key: send it as x-api-key or Authorization: Bearer",
                               headers={"WWW-Authenticate": "Bearer"})
        digest = _digest(presented)
        for known, key in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return Identity(key.tenant, key.role, key.user_id)
        raise Unauthorized("invalid API key", headers={"WWW-Authenticate": "Bearer"})


def _as_identity(found: Any) -> Identity:
    if isinstance(found, Identity):
        return found
    if isinstance(found, Mapping) and found.get("tenant"):
        role = found.get("role", "member")
        if role not in ROLES:
            raise Unauthorized(f"auth function returned an unknown role {role!r}")
        return Identity(str(found["tenant"]), role, found.get("user_id") or found.get(
            "identity"))
    raise Unauthorized("auth function returned no tenant")


def load_function(target: str) -> Any:
    """`module:attr` of an auth function: headers -> Identity | {"tenant", ...} | None."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"auth function must be 'module:attr', got {target!r}")
    return getattr(importlib.import_module(module_name), attr)


_api_key = APIKeyHeader(name="x-api-key", auto_error=False,
                        description="An API key (as langgraph-sdk sends it)")
_bearer = HTTPBearer(auto_error=False, description="An API key or a token for the auth "
                                                   "function")


async def current_identity(
    request: Request,
    api_key: str | None = Security(_api_key),
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
) -> Identity:
    """The FastAPI dependency every router declares."""
    cached = getattr(request.state, "identity", None)
    if cached is not None:
        return cached
    authenticator: Authenticator = request.app.state.service.auth
    presented = api_key or (bearer.credentials if bearer is not None else None)
    limiter = _limiter(request) if presented and not authenticator.open else None
    if limiter is None:
        identity = await authenticator.identify(request.headers, presented)
    else:
        address = request.client.host if request.client else "unknown"
        digest = _digest(presented or "")
        wait = limiter.retry_after(address, digest)
        if wait is not None:
            raise TooManyRequests(f"too many failed authentications from this address: "
                                  f"retry in {wait} s", headers={"Retry-After": str(wait)})
        try:
            identity = await authenticator.identify(request.headers, presented)
        except Unauthorized:
            limiter.failed(address)
            raise
        limiter.succeeded(address, digest)
    request.state.identity = identity
    return identity


def _limiter(request: Request) -> AuthFailureLimiter | None:
    """The app's limiter of failed authentications, made on first use from the settings
    (None when `auth_failure_limit` is 0)."""
    state = request.app.state
    limiter = getattr(state, "auth_limiter", False)
    if limiter is False:
        settings = state.service.settings
        limiter = (AuthFailureLimiter(settings.auth_failure_limit,
                                      settings.auth_failure_window_seconds)
                   if settings.auth_failure_limit else None)
        state.auth_limiter = limiter
    return limiter
