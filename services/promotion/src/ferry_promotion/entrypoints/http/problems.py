"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ferry_promotion.errors import ApplicationError, Invalid
from ferry_runtime import get_logger

log = get_logger(__name__)

PROBLEM_TYPE = "https://ferry.dev/problems/"
PROBLEM_JSON = "application/problem+json"


def problem(
    request: Request, status: int, title: str, detail: str, slug: str, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header") and len(parts) > 1:
        parts = parts[1:]
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _json_error(err: dict[str, Any], document: Any) -> dict[str, str]:
    """A body that is not JSON: where it breaks (line, column, character) and why."""
    loc = list(err.get("loc", ()))
    pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    ctx = err.get("ctx") or {}
    why = str(ctx.get("error", "")) or "not valid JSON"
    if pos is None:
        return {"field": "body", "message": f"not valid JSON: {why}"}
    where = f"character {pos}"
    if isinstance(document, (str, bytes)):
        text = document.decode("utf-8", "replace") if isinstance(document, bytes) else document
        before = text[:pos]
        line = before.count("\n") + 1
        column = pos - (before.rfind("\n") + 1) + 1
        where = f"line {line} column {column} (character {pos})"
    return {"field": "body", "message": f"not valid JSON at {where}: {why}"}


_STATUS_TITLES = {
    400: ("Bad request", "bad-request"),
    401: ("Unauthorized", "unauthorized"),
    403: ("Forbidden", "forbidden"),
    404: ("Not found", "not-found"),
    405: ("Method not allowed", "method-not-allowed"),
    406: ("Not acceptable", "not-acceptable"),
    413: ("Payload too large", "payload-too-large"),
    415: ("Unsupported media type", "unsupported-media-type"),
}


def install(app: FastAPI) -> None:
    """Every error becomes problem+json; nothing a client sends produces a 500."""

    async def application_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApplicationError)
        extra: dict[str, Any] = {}
        if isinstance(exc, Invalid):
            extra["errors"] = [{"field": e.field, "message": e.message} for e in exc.errors]
        return problem(request, exc.status, exc.title, exc.detail, exc.slug, **extra)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = []
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                errors.append(_json_error(err, exc.body))
                continue
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            errors.append({"field": _field(err.get("loc", ())), "message": message})
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return problem(request, 422, "Invalid request", detail, "invalid-request", errors=errors)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        title, slug = _STATUS_TITLES.get(exc.status_code, ("Error", "error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /openapi.json"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /openapi.json"
        return problem(request, exc.status_code, title, detail, slug)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error in API", path=request.url.path, error=repr(exc), exc_info=exc)
        return problem(
            request,
            500,
            "Internal error",
            "promotion failed to handle this request; the error is in its logs",
            "internal",
        )

    app.add_exception_handler(ApplicationError, application_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
