"""The service's own errors, and the one place they become HTTP answers.

Route handlers and the run machinery raise these; `install` maps them (and the engine's
input errors, and FastAPI's validation errors) to a status code with a JSON `detail` that
names the problem, so no bad input ever surfaces as a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from ..errors import (
    EmptyInputError,
    GraphValidationError,
    InvalidResumeError,
    InvalidUpdateError,
    SerializationError,
)

log = logging.getLogger("waypoint.service")


class ServiceError(Exception):
    status = 400

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class BadRequest(ServiceError):
    status = 400


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Unprocessable(ServiceError):
    status = 422


class TooLarge(ServiceError):
    status = 413


class TooManyRequests(ServiceError):
    status = 429


# Engine errors that mean "the request was wrong", never "the server broke".
_INPUT_ERRORS = (InvalidUpdateError, InvalidResumeError, EmptyInputError, GraphValidationError,
                 SerializationError)


def _answer(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        if error.get("type") == "json_invalid":
            return "Invalid JSON in request body"
        message = error.get("msg", "invalid").removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            message = "unknown field"
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        return _answer(exc.status, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _answer(422, _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(cause, ServiceError):
            # FastAPI wraps what reading the body raised in a 400 ("error parsing the
            # body"); a body the size guard stopped half way (chunked, no length) is a 413.
            return _answer(cause.status, cause.detail, cause.headers)
        return _answer(exc.status_code, exc.detail, getattr(exc, "headers", None))

    for kind in _INPUT_ERRORS:
        @app.exception_handler(kind)
        async def _engine_input(_: Request, exc: Exception) -> JSONResponse:
            return _answer(422, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _answer(500, f"internal error ({type(exc).__name__}); see the server log")
