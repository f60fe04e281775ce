"""The one map from domain errors to HTTP status codes and JSON error bodies."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Unpack

import redis
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from api.params import InvalidParameters
from api.responses import Problem, ProblemDetails
from shared.config import ConfigError, ConfigSyntaxError, format_errors
from shared.errors import Conflict, NotFound, Unavailable

log = logging.getLogger("gorchester.api")


def problem(
    status: int, error: str, headers: Mapping[str, str] | None = None, **details: Unpack[ProblemDetails]
) -> JSONResponse:
    """Every error body has the same shape: a machine-readable `error` plus its details."""
    body: Problem = {"error": error, **details}
    return JSONResponse(body, status_code=status, headers=headers)


async def not_found(_: Request, exc: Exception) -> Response:
    return problem(404, "not_found", message=str(exc))


async def conflict(_: Request, exc: Exception) -> Response:
    return problem(409, "conflict", message=str(exc))


async def invalid(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConfigError)
    return problem(422, "invalid", errors=exc.errors)


async def invalid_model(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return problem(422, "invalid", errors=format_errors(exc))


async def invalid_parameters(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidParameters)
    return problem(400, "invalid", errors=exc.errors)


async def malformed(_: Request, exc: Exception) -> Response:
    return problem(400, "malformed", message=str(exc))


async def unavailable(_: Request, exc: Exception) -> Response:
    log.warning("backing service unavailable: %s", exc)
    reason = str(exc) if isinstance(exc, Unavailable) else f"redis unavailable: {exc}"
    return problem(503, "unavailable", reason=reason)


async def http_error(_: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown route, wrong method, too large) as JSON, not text."""
    assert isinstance(exc, HTTPException)
    error = HTTPStatus(exc.status_code).name.lower()
    return problem(exc.status_code, error, headers=exc.headers, message=exc.detail)


async def internal(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "internal", message="internal error; see the API's log")


HANDLERS: dict[Any, ExceptionHandler] = {
    NotFound: not_found,
    Conflict: conflict,
    ConfigError: invalid,
    ValidationError: invalid_model,
    InvalidParameters: invalid_parameters,
    ConfigSyntaxError: malformed,
    Unavailable: unavailable,
    redis.ConnectionError: unavailable,
    redis.TimeoutError: unavailable,
    HTTPException: http_error,
    Exception: internal,
}
