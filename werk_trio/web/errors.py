"""Errors mapped to status codes, in one place.

Every error body is ``{"error": message, "field": name-or-null}`` (validation
errors add pydantic's ``detail`` list). Nothing a request sends reaches the
client as a 500 with a traceback: werk_trio's own errors map to 4xx/503, and
anything unexpected is logged here and answered with a bare 500.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import mask_dsn
from ..errors import (
    ConfigError,
    JobNotFound,
    PayloadTooLarge,
    PoolTimeout,
    SerializationError,
    UnknownTask,
    WerkError,
)

__all__ = ["ApiError", "error_response", "install_handlers"]

logger = logging.getLogger("werk_trio.web")


class ApiError(Exception):
    """Raised by an endpoint: answered with ``status`` and this message."""

    def __init__(self, status: int, message: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers


def error_response(status: int, message: str, *, field: str | None = None,
                   detail: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message, "field": field}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: Any) -> str | None:
    """``("query", "limit")`` -> ``"limit"``; ``("body", "kwargs", "x")`` -> ``"kwargs.x"``."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
         "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    name = _field(first["loc"])
    if first.get("type") == "json_invalid":
        message, name = "the request body is not valid JSON", None
    elif first["loc"] == ["body"]:
        message = "the request body must be a JSON object (content-type: application/json)"
    else:
        message = f"{name}: {first['msg']}" if name else str(first["msg"])
    return error_response(422, message, field=name, detail=errors)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))


async def _api(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, field=exc.field, headers=exc.headers)


async def _werk(request: Request, exc: Exception) -> JSONResponse:
    message = mask_dsn(str(exc))
    if isinstance(exc, JobNotFound):
        return error_response(404, message, field="job_id")
    if isinstance(exc, PayloadTooLarge):
        return error_response(413, message, field="args")
    if isinstance(exc, ConfigError | SerializationError | UnknownTask):
        return error_response(422, message)
    if isinstance(exc, PoolTimeout):
        return error_response(503, f"the database is busy: {message}")
    logger.warning("%s %s: %s", request.method, request.url.path, message)
    return error_response(503, message)


async def _database(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("%s %s: database error: %s", request.method, request.url.path, mask_dsn(str(exc)))
    return error_response(503, "the database is unavailable or refused the request; try again")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error (logged by the server)")


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(ApiError, _api)
    app.add_exception_handler(WerkError, _werk)
    app.add_exception_handler(psycopg.Error, _database)
    app.add_exception_handler(Exception, _unexpected)
